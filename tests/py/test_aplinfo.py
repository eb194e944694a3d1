"""PVE's appliance index: a mirror laid out like download.proxmox.com/images with a signed
aplinfo.dat.gz, listed by GET /nodes/{node}/aplinfo once its signature verified, and a template
downloaded by name against the index's sha512sum; a tampered index is refused."""

import gzip
import hashlib
import shutil

import pytest

from conftest import _daemon_fixture
from helpers import NODE, assert_error, assert_param_error, install_keyring, wait_until

TEMPLATE = "debian-12-standard_12.7-1_amd64.tar.zst"

RECORD = """Package: debian-12-standard
Version: 12.7-1
Type: lxc
OS: debian-12
Section: system
Architecture: amd64
Location: system/{template}
Infopage: https://pve.proxmox.com/wiki/Linux_Container
sha512sum: {sha512}
Description: Debian 12 Bookworm (standard)
 A small Debian Bookworm system including all standard packages.
"""


def publish_index(origin, gpg, fpr, text, sign=True):
    apl = origin.files / "apl"
    (apl / "aplinfo.dat").write_text(text)
    with open(apl / "aplinfo.dat", "rb") as src, gzip.open(apl / "aplinfo.dat.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    if sign:
        gpg.run("--local-user", fpr, "--armor", "--detach-sign", "--output", str(apl / "aplinfo.dat.asc"),
                str(apl / "aplinfo.dat"))


@pytest.fixture
def mirror(origin, keys):
    gpg, signer, _, _ = keys
    apl = origin.files / "apl"
    (apl / "system").mkdir(parents=True, exist_ok=True)
    shutil.copy(origin.files / "tmpl.tar.zst", apl / "system" / TEMPLATE)
    sha512 = hashlib.sha512((apl / "system" / TEMPLATE).read_bytes()).hexdigest()
    publish_index(origin, gpg, signer, RECORD.format(template=TEMPLATE, sha512=sha512))
    yield origin.file_url("apl")
    shutil.rmtree(apl)


@pytest.fixture
def apl_daemon(request, mirror, keys):
    gpg, signer, _, _ = keys

    def prepare(d):
        install_keyring(d.base / "state", gpg, "aplinfo", [signer], armor=False)
        with open(d.config, "a") as f:
            f.write('aplinfo-urls = "%s"\naplinfo-interval = 1\n' % mirror)
    yield from _daemon_fixture(request, "isolib-apl-", prepare)


def listed(api):
    return {a["template"]: a for a in api.ok_data(api.get("/nodes/%s/aplinfo" % NODE))}


def test_the_signed_index_is_listed_and_a_template_downloaded_by_name(apl_daemon, mirror, origin):
    api = apl_daemon.api("root")
    apps = wait_until(lambda: listed(api), timeout=30, what="the appliance index")
    app = apps[TEMPLATE]
    assert app["location"] == "%s/system/%s" % (mirror, TEMPLATE)
    assert (app["package"], app["type"], app["os"], app["section"]) == ("debian-12-standard", "lxc", "debian-12",
                                                                       "system")
    assert app["headline"] == "Debian 12 Bookworm (standard)"

    upid = api.ok_data(api.post("/nodes/%s/aplinfo" % NODE, data={"storage": "local", "template": TEMPLATE}))
    assert ":download:%s:" % TEMPLATE in upid
    assert api.wait(upid)["exitstatus"] == "OK", api.log_lines(upid)
    assert "calculating checksum...OK, checksum verified" in api.log_lines(upid)
    dest = apl_daemon.storage_path() / "template/cache" / TEMPLATE
    assert dest.read_bytes() == (origin.files / "tmpl.tar.zst").read_bytes()
    info = api.ok_data(api.get("/nodes/%s/storage/local/content/local:vztmpl%%2F%s" % (NODE, TEMPLATE)))
    assert info["template"] == {"os": "debian", "version": "12", "arch": "amd64"}

    r = api.post("/nodes/%s/aplinfo" % NODE, data={"storage": "local", "template": "nope.tar.gz"})
    assert_param_error(r, {"template": "no such template"})
    r = api.post("/nodes/%s/aplinfo" % NODE, data={"storage": "isoonly", "template": TEMPLATE})
    assert_error(r, 500, "storage 'isoonly' does not support templates")
    # dave may allocate on local only, as PVE checks the storage the body names
    r = apl_daemon.api("dave").post("/nodes/%s/aplinfo" % NODE, data={"storage": "isoonly", "template": TEMPLATE})
    assert_error(r, 403, "Permission check failed (/storage/isoonly, Datastore.AllocateTemplate)")


def test_a_tampered_index_is_refused_and_the_verified_one_kept(apl_daemon, mirror, origin, keys):
    gpg, signer, _, _ = keys
    api = apl_daemon.api("root")
    wait_until(lambda: listed(api), timeout=30, what="the appliance index")
    text = (origin.files / "apl" / "aplinfo.dat").read_text()
    evil = text + "\n" + RECORD.format(template="evil-1_1_amd64.tar.zst", sha512="0" * 128).replace(
        "debian-12-standard", "evil")
    publish_index(origin, gpg, signer, evil, sign=False)  # the old signature stays beside it
    wait_until(lambda: "the index has a signature that does not verify" in apl_daemon.log_text(), timeout=30,
               what="the refused update")
    assert set(listed(api)) == {TEMPLATE}
