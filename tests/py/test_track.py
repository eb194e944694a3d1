"""Tracked releases: a track polls where a distribution announces its images (a signed checksum
file, an nginx directory index, Alpine's release list), downloads a newer release once through
the normal path, and keeps the newest N without removing a protected volume or one a guest
configuration uses."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import NODE, SECRETS, TOKENS, _daemon_fixture
from helpers import assert_param_error, enc, install_keyring, record_rel, tree, wait_until

PATTERN = r"distro-([0-9.]+)\.iso"


def track_setup(d):
    """An isolib storage `lib` (volumes can be protected there) and a PVE directory whose guest
    configurations retention reads."""
    pve = d.base / "pve"
    (pve / "priv").mkdir(parents=True)
    (pve / "nodes" / NODE / "qemu-server").mkdir(parents=True)
    with open(d.config, "a") as f:
        f.write('pve-dir = "%s"\n' % pve)
    with open(d.base / "storage.cfg", "a") as f:
        f.write("\nisolib: lib\n\tpath %s/lib\n\tcontent iso,vztmpl,import\n" % d.base)


@pytest.fixture
def tracked(request):
    yield from _daemon_fixture(request, "isolib-track-", track_setup)


def cli(daemon, *args):
    # `track add` takes the track's URL as --url, the daemon's as --daemon-url.
    flag = "--daemon-url" if args[:2] == ("track", "add") else "--url"
    out = subprocess.run([str(daemon.binary), *args, flag, "https://127.0.0.1:%d" % daemon.port, "--insecure",
                          "--token", "%s=%s" % (TOKENS["root"], SECRETS["root"])],
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


class Mirror:
    """A directory on the nginx origin laid out as a distribution publishes one release series."""

    def __init__(self, origin):
        self.origin = origin
        # Debian's layout: the release's checksum file beside its images.
        self.name = "m-%s/12.7.0/amd64/iso-cd" % uuid.uuid4().hex[:8]
        self.dir = origin.docroot / "mirror" / self.name
        self.dir.mkdir(parents=True)

    def url(self, name=""):
        return self.origin.url("/mirror/%s/%s" % (self.name, name))

    def image(self, version):
        name = "distro-%s.iso" % version
        data = (b"release %s\n" % version.encode()) * 20000
        (self.dir / name).write_bytes(data)
        return name, hashlib.sha256(data).hexdigest()

    def publish(self, versions, gpg=None, key=None):
        lines = []
        for v in versions:
            name, sha = self.image(v)
            lines.append("%s  %s\n" % (sha, name))
        sums = self.dir / "SHA256SUMS"
        sums.write_text("".join(lines))
        # nginx's ETag and Last-Modified come from the mtime: each publication gets its own.
        self.published = getattr(self, "published", 1_700_000_000) + 10
        os.utime(sums, (self.published, self.published))
        if gpg is not None:
            gpg.sign(key, sums, "detached")

    def gets(self, name):
        """How many times the origin sent `name` in full."""
        log = (self.origin.tmp / "nginx-access.log").read_text()
        return len(re.findall(r'"GET /mirror/%s/%s HTTP/1\.1" 200 ' % (re.escape(self.name), re.escape(name)), log))

    def not_modified(self, name):
        log = (self.origin.tmp / "nginx-access.log").read_text()
        return len(re.findall(r'"GET /mirror/%s/%s HTTP/1\.1" 304 ' % (re.escape(self.name), re.escape(name)), log))


def test_a_signed_release_series_bumped_retired_and_kept_when_in_use(tracked, origin, keys):
    gpg, debian, _, _ = keys
    install_keyring(tracked.base / "state", gpg, "debian", [debian], armor=True)
    api = tracked.api("root")
    store = tracked.base / "lib"
    mirror = Mirror(origin)
    mirror.publish(["1.8", "1.9"], gpg, debian)

    rc, out, err = cli(tracked, "track", "add", "deb", "--storage", "lib", "--url", mirror.url("SHA256SUMS"),
                       "--pattern", PATTERN, "--signature-url", mirror.url("SHA256SUMS.sign"),
                       "--keyring", "debian", "--keep", "1")
    assert rc == 0, err
    rc, out, err = cli(tracked, "track", "check", "deb")
    assert rc == 0, out + err
    assert "newest release: 1.9 (distro-1.9.iso)" in out
    assert "checksum file signed by %s" % debian in out
    record = json.loads((store / record_rel("template/iso/distro-1.9.iso")).read_text())
    assert record["source"]["checksum-signer"] == debian
    assert record["source"]["checksum-url"] == mirror.url("SHA256SUMS")
    assert not (store / "template/iso/distro-1.8.iso").exists(), "only the newest is fetched"

    # Nothing new: the origin answers 304 to the conditional request, nothing is fetched again.
    rc, out, err = cli(tracked, "track", "check", "deb")
    assert rc == 0, out + err
    assert "not modified since the last poll" in out
    assert mirror.not_modified("SHA256SUMS") == 1

    # 1.9 protected; 1.10 comes after 1.9 as people read versions.
    r = api.request("PUT", "/nodes/%s/storage/lib/content/%s" % (NODE, enc("lib:iso/distro-1.9.iso")),
                    data={"protected": 1})
    assert r.status_code == 200, r.text
    mirror.publish(["1.8", "1.9", "1.10"], gpg, debian)
    rc, out, err = cli(tracked, "track", "check", "deb")
    assert rc == 0, out + err
    assert "newest release: 1.10 (distro-1.10.iso)" in out
    assert "keeping lib:iso/distro-1.9.iso (protected)" in out

    # A VM's CD-ROM (in a snapshot section, too) holds 1.10.
    conf = tracked.base / "pve" / "nodes" / NODE / "qemu-server" / "100.conf"
    conf.write_text("boot: order=ide2\n\n[snap1]\nide2: lib:iso/distro-1.10.iso,media=cdrom\n")
    mirror.publish(["1.10", "1.11"], gpg, debian)
    rc, out, err = cli(tracked, "track", "check", "deb")
    assert rc == 0, out + err
    assert "keeping lib:iso/distro-1.10.iso (used by VM 100 (%s))" % conf in out
    assert "keeping lib:iso/distro-1.9.iso (protected)" in out

    mirror.publish(["1.11", "1.12"], gpg, debian)
    rc, out, err = cli(tracked, "track", "check", "deb")
    assert rc == 0, out + err
    assert "removed lib:iso/distro-1.11.iso (older than the newest 1)" in out
    files = sorted(p for p in tree(store) if (store / p).is_file())
    isos = ["template/iso/distro-%s.iso" % v for v in ("1.10", "1.12", "1.9")]
    assert files == sorted(isos + [record_rel(i) for i in isos]), files
    assert not (store / record_rel("template/iso/distro-1.11.iso")).exists()
    for v in ("1.9", "1.10", "1.11", "1.12"):
        assert mirror.gets("distro-%s.iso" % v) == 1, v

    info = json.loads(cli(tracked, "track", "show", "deb")[1])
    assert info["current"] == {"version": "1.12", "volid": "lib:iso/distro-1.12.iso"}
    assert [h["version"] for h in info["held"]] == ["1.12", "1.10", "1.9"]
    assert info["error"] is None and info["last-poll"] > 0
    rc, out, _ = cli(tracked, "track", "ls")
    assert rc == 0 and re.search(r"^deb\s+lib\s+1\.12\s+1\.12\s", out, re.M), out

    # Removing the track leaves its volumes.
    assert cli(tracked, "track", "rm", "deb")[0] == 0
    assert (store / "template/iso/distro-1.12.iso").exists()
    rc, _, err = cli(tracked, "track", "show", "deb")
    assert rc != 0 and "track 'deb' does not exist" in err


def test_a_signature_by_another_key_fails_closed(tracked, origin, keys):
    gpg, debian, _, stranger = keys
    install_keyring(tracked.base / "state", gpg, "debian", [debian], armor=False)
    store = tracked.base / "lib"
    mirror = Mirror(origin)
    mirror.publish(["2.0"], gpg, stranger)
    rc, _, err = cli(tracked, "track", "add", "st", "--storage", "lib", "--url", mirror.url("SHA256SUMS"),
                     "--pattern", PATTERN, "--signature-url", mirror.url("SHA256SUMS.sign"), "--keyring", "debian")
    assert rc == 0, err
    rc, out, err = cli(tracked, "track", "check", "st")
    assert rc != 0
    assert "checksum file '%s'" % mirror.url("SHA256SUMS") in out + err
    assert [p for p in tree(store) if (store / p).is_file()] == []
    assert mirror.gets("distro-2.0.iso") == 0
    info = json.loads(cli(tracked, "track", "show", "st")[1])
    assert info["error"] and info["current"] is None


def test_directory_index_and_alpine_feed(tracked, origin):
    api = tracked.api("root")
    store = tracked.base / "lib"
    # nginx's autoindex page, versions that sort differently as text and as numbers.
    index = Mirror(origin)
    for v in ("3.9", "3.10", "3.2"):
        index.image(v)
    rc, _, err = cli(tracked, "track", "add", "idx", "--storage", "lib", "--url", index.url(),
                     "--pattern", PATTERN)
    assert rc == 0, err
    rc, out, err = cli(tracked, "track", "check", "idx")
    assert rc == 0, out + err
    assert "newest release: 3.10 (distro-3.10.iso)" in out
    assert (store / "template/iso/distro-3.10.iso").read_bytes() == (index.dir / "distro-3.10.iso").read_bytes()

    # Alpine's latest-releases.yaml, one flavor picked by the pattern, its sha256 checked.
    feed = Mirror(origin)
    virt, sha = feed.image("3.21.2")
    shutil.move(str(feed.dir / virt), str(feed.dir / "alpine-virt-3.21.2-x86_64.iso"))
    (feed.dir / "latest-releases.yaml").write_text(
        "---\n-\n  title: \"Standard\"\n  flavor: alpine-standard\n  version: 3.21.2\n"
        "  iso: alpine-standard-3.21.2-x86_64.iso\n  sha256: %s\n"
        "-\n  title: \"Virtual\"\n  flavor: alpine-virt\n  version: 3.21.2\n"
        "  iso: alpine-virt-3.21.2-x86_64.iso\n  sha256: %s\n" % ("0" * 64, sha))
    rc, _, err = cli(tracked, "track", "add", "alp", "--storage", "lib", "--url", feed.url("latest-releases.yaml"),
                     "--feed", "alpine", "--pattern", "alpine-(virt)")
    assert rc == 0, err
    rc, out, err = cli(tracked, "track", "check", "alp")
    assert rc == 0, out + err
    assert "calculating checksum...OK, checksum verified" in out
    assert (store / "template/iso/alpine-virt-3.21.2-x86_64.iso").exists()

    # A feed whose checksum does not match: the task fails and leaves nothing.
    bad = Mirror(origin)
    name, _ = bad.image("9.9")
    (bad.dir / "latest-releases.yaml").write_text(
        "-\n  flavor: x\n  version: 9.9\n  iso: %s\n  sha256: %s\n" % (name, "1" * 64))
    before = tree(store)
    assert cli(tracked, "track", "add", "bad", "--storage", "lib", "--url", bad.url("latest-releases.yaml"),
               "--feed", "alpine", "--pattern", "(x)")[0] == 0
    rc, out, err = cli(tracked, "track", "check", "bad")
    assert rc != 0 and "checksum mismatch" in out + err
    assert tree(store) == before

    # Refused before anything is stored.
    tracks = "/cluster/isolib/tracks"
    base = {"storage": "lib", "url": index.url()}
    r = api.post(tracks, data=dict(base, name="x1", pattern="("))
    assert r.status_code == 400
    assert r.json()["errors"]["pattern"].startswith("invalid pattern: regex parse error"), r.text
    assert_param_error(api.post(tracks, data=dict(base, name="x2", pattern="distro-.*")),
                       {"pattern": "the pattern has no capture group for the version"})
    assert_param_error(api.post(tracks, data=dict(base, name="x3")),
                       {"pattern": "property is missing and it is not optional"})
    assert_param_error(api.post(tracks, data=dict(base, name="x4", pattern=PATTERN, keyring="nope")),
                       {"keyring": "keyring 'nope' is not configured (no %s/state/keyrings/nope.pgp)" % tracked.base})
    assert_param_error(api.post(tracks, data=dict(base, name="idx", pattern=PATTERN)),
                       {"name": "track 'idx' already exists"})
    assert_param_error(api.post(tracks, data=dict(base, name="Bad Name", pattern=PATTERN)),
                       {"name": "value does not match the regex pattern"})
    r = tracked.api(None).post(tracks, data=dict(base, name="x5", pattern=PATTERN))
    assert r.status_code == 401
    r = tracked.api("alice_sepds").post(tracks, data=dict(base, name="x6", pattern=PATTERN))
    assert r.status_code == 403, r.text
    assert sorted(t["name"] for t in api.ok_data(api.get(tracks))) == ["alp", "bad", "idx"]


def test_the_daemon_polls_on_its_interval(tracked, origin):
    api = tracked.api("root")
    mirror = Mirror(origin)
    mirror.publish(["5.0", "5.1"])
    r = api.post("/cluster/isolib/tracks", data={"name": "auto", "storage": "lib", "url": mirror.url("SHA256SUMS"),
                                                 "pattern": PATTERN, "interval": 10})
    assert r.status_code == 200, r.text
    target = tracked.base / "lib" / "template/iso/distro-5.1.iso"
    wait_until(target.exists, timeout=60, what="the scheduled poll's download")
    wait_until(lambda: api.ok_data(api.get("/cluster/isolib/tracks/auto"))["current"] is not None, timeout=30,
               what="the track's state")
    info = api.ok_data(api.get("/cluster/isolib/tracks/auto"))
    assert info["current"] == {"version": "5.1", "volid": "lib:iso/distro-5.1.iso"}
    tasks = api.ok_data(api.get("/nodes/%s/tasks" % NODE, params={"typefilter": "isolibtrack", "source": "all"}))
    assert [t["upid"] for t in tasks] == [info["task"]], tasks
    assert mirror.gets("distro-5.1.iso") == 1 and mirror.gets("distro-5.0.iso") == 0
