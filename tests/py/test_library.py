"""The catalog end to end: records of downloads (hash, provenance, ISO and OS facts read from
real xorriso images, osinfo-db's match), PVE's volume attributes, adoption of files copied in by
hand, verification that finds corruption and a repair that heals it."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEBIAN_VOLUME_ID, SECRETS, TOKENS, _daemon_fixture
from helpers import (
    NODE,
    assert_error,
    assert_nothing_new,
    enc,
    record_rel,
    tree,
    wait_until,
)

OSINFO = Path("/usr/share/osinfo")


def library_setup(osinfo_db=OSINFO):
    def prepare(d):
        with open(d.config, "a") as f:
            f.write('osinfo-db = "%s"\ncatalog-scan-interval = 1\nbackground-bwlimit = 0\n' % osinfo_db)
        with open(d.base / "storage.cfg", "a") as f:
            f.write("\nisolib: lib\n\tpath %s/lib\n\tcontent iso,vztmpl,import\n" % d.base)
    return prepare


@pytest.fixture
def lib(request):
    """A daemon with osinfo-db, an isolib-type storage `lib` and a one-second catalog scan."""
    yield from _daemon_fixture(request, "isolib-lib-", library_setup())


@pytest.fixture
def lib_without_osinfo(request):
    yield from _daemon_fixture(request, "isolib-lib-", library_setup("/nonexistent/osinfo"))


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def volume(api, volid, storage="local"):
    return api.ok_data(api.get("/nodes/%s/storage/%s/content/%s" % (NODE, storage, enc(volid))))


def listed(api, volid, storage="local"):
    items = api.ok_data(api.get("/nodes/%s/storage/%s/content" % (NODE, storage)))
    return next((i for i in items if i["volid"] == volid), None)


def put(api, volid, storage="local", **params):
    return api.request("PUT", "/nodes/%s/storage/%s/content/%s" % (NODE, storage, enc(volid)), data=params)


def download(api, origin, name, storage="local", **params):
    upid = api.start_download(storage=storage, url=origin.file_url(name), content="iso", filename=name, **params)
    status = api.wait(upid)
    assert status["exitstatus"] == "OK", api.log_lines(upid)
    return upid


def test_a_download_records_hash_provenance_and_what_the_iso_is(lib, origin):
    api = lib.api("root")
    src = origin.files / "debian-like.iso"
    sha512 = hashlib.sha512(src.read_bytes()).hexdigest()
    upid = download(api, origin, "debian-like.iso", checksum=sha512, **{"checksum-algorithm": "sha512"})
    path = lib.storage_path("local") / "template/iso/debian-like.iso"
    info = volume(api, "local:iso/debian-like.iso")

    # PVE's fields, as PVE's dir storage answers them: no notes or protection on an ISO.
    assert info["path"] == str(path)
    assert info["size"] == src.stat().st_size
    assert info["format"] == "raw"
    assert info["used"] == os.stat(path).st_blocks * 512
    assert "notes" not in info and "protected" not in info

    # The record: the sha256 although the user gave a sha512, and where it came from.
    assert info["sha256"] == sha256(src)
    assert info["checksum"] == {"algorithm": "sha512", "value": sha512}
    source = info["source"]
    assert source["origin"] == "download"
    assert source["url"] == origin.file_url("debian-like.iso")
    assert source["final-url"] == origin.file_url("debian-like.iso")
    assert source["etag"].startswith('"') and source["last-modified"].endswith("GMT")
    assert source["upid"] == upid
    assert source["user"] == "root@pam!admin"

    iso = info["iso"]
    assert iso["volume-id"] == DEBIAN_VOLUME_ID
    assert iso["system-id"] == "LINUX"
    assert iso["publisher"] == "ISOLIB TESTS"
    assert iso["boot"] == {"bios": True, "uefi": True}
    assert iso["hybrid"] == {"mbr": True, "gpt": True}
    assert iso["size-ok"] is True and 0 < iso["volume-size"] <= src.stat().st_size
    assert iso["created"][:4].isdigit()

    # osinfo-db's entry for this volume id.
    assert info["os"]["id"] == "debian11"
    assert info["os"]["arch"] == "x86_64"
    assert info["os"]["name"].startswith("Debian")

    item = listed(api, "local:iso/debian-like.iso")
    assert item["sha256"] == info["sha256"] and item["os"] == "debian11"


def test_an_iso_nothing_matches_has_no_os_and_no_boot(lib, origin):
    api = lib.api("root")
    download(api, origin, "plain.iso")
    info = volume(api, "local:iso/plain.iso")
    assert info["iso"]["volume-id"] == "NOTHING KNOWN"
    assert info["iso"]["boot"] == {"bios": False, "uefi": False}
    assert info["iso"]["hybrid"] == {"mbr": False, "gpt": False}
    assert "os" not in info
    assert "os" not in listed(api, "local:iso/plain.iso")


def test_without_osinfo_db_the_os_stays_empty(lib_without_osinfo, origin):
    api = lib_without_osinfo.api("root")
    download(api, origin, "debian-like.iso")
    info = volume(api, "local:iso/debian-like.iso")
    assert info["iso"]["volume-id"] == DEBIAN_VOLUME_ID
    assert "os" not in info


def test_notes_and_protection_are_pves_on_dir_and_kept_on_isolib_storages(lib, origin):
    api = lib.api("root")
    download(api, origin, "small.iso")
    r = put(api, "local:iso/small.iso", notes="hello")
    assert_error(r, 500, "only backups can have notes")
    r = put(api, "iso/small.iso", protected=1)
    assert_error(r, 500, "only backups support attribute 'protected'")

    download(api, origin, "other.iso", storage="lib")
    fresh = volume(api, "lib:iso/other.iso", storage="lib")
    assert fresh["notes"] == "" and fresh["protected"] == 0
    assert api.ok_data(put(api, "lib:iso/other.iso", storage="lib", notes="golden image", protected=1)) is None
    info = volume(api, "lib:iso/other.iso", storage="lib")
    assert info["notes"] == "golden image" and info["protected"] == 1
    assert info["sha256"] == sha256(origin.files / "other.iso"), "the record keeps its hash"

    path = lib.storage_path("lib") / "template/iso/other.iso"
    r = api.delete("/nodes/%s/storage/lib/content/%s" % (NODE, enc("lib:iso/other.iso")))
    upid = api.ok_data(r)
    status = api.wait(upid)
    assert status["exitstatus"] == "cannot remove protected volume 'iso/other.iso' on 'lib'"
    assert path.is_file()

    api.ok_data(put(api, "lib:iso/other.iso", storage="lib", protected=0))
    r = api.delete("/nodes/%s/storage/lib/content/%s" % (NODE, enc("lib:iso/other.iso")), params={"delay": 5})
    assert api.ok_data(r) is None
    assert not path.exists()
    assert not (lib.storage_path("lib") / record_rel("template/iso/other.iso")).exists(), "the record goes too"


def test_a_file_copied_in_by_hand_is_adopted(lib, origin):
    api = lib.api("root")
    target = lib.storage_path("local") / "template/iso"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(origin.files / "debian-like.iso", target / "by-hand.iso")
    item = wait_until(
        lambda: (lambda i: i if i and "sha256" in i else None)(listed(api, "local:iso/by-hand.iso")),
        timeout=30,
        what="the copied file's record",
    )
    assert item["sha256"] == sha256(origin.files / "debian-like.iso")
    assert item["os"] == "debian11"
    info = volume(api, "local:iso/by-hand.iso")
    assert info["source"]["origin"] == "adopted"
    assert "url" not in info["source"]
    assert info["iso"]["boot"] == {"bios": True, "uefi": True}


def corrupt_in_place(path):
    """Bit rot: other bytes, same size, same mtime and inode."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(40000)
        f.write(b"\xff" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def verify(api, storage="local", **params):
    upid = api.ok_data(api.post("/nodes/%s/storage/%s/verify" % (NODE, storage), data=params))
    return upid, api.wait(upid), api.log_lines(upid)


def test_verify_finds_corruption_and_repair_heals_it(lib, origin):
    api = lib.api("root")
    download(api, origin, "debian-like.iso")
    download(api, origin, "small.iso")
    path = lib.storage_path("local") / "template/iso/debian-like.iso"
    good = sha256(path)

    upid, status, log = verify(api)
    assert status["exitstatus"] == "OK", log
    assert "local:iso/debian-like.iso: OK" in log and "local:iso/small.iso: OK" in log
    assert volume(api, "local:iso/small.iso")["verification"]["upid"] == upid

    corrupt_in_place(path)
    upid, status, log = verify(api)
    assert status["exitstatus"] == "verification failed for 1 of 2 volumes", log
    failed = [line for line in log if line.startswith("local:iso/debian-like.iso: FAILED - sha256 mismatch")]
    assert failed, log
    assert path.is_file(), "a failed volume is never deleted"
    info = volume(api, "local:iso/debian-like.iso")
    assert info["verification"]["state"] == "failed" and info["sha256"] == good
    assert listed(api, "local:iso/debian-like.iso")["verification"]["state"] == "failed"

    # The background scan leaves a failed volume alone; only a repair clears it.
    before = tree(lib.storage_path("local"))
    upid, status, log = verify(api, volume="local:iso/debian-like.iso", repair=1)
    assert status["exitstatus"] == "OK", log
    assert "local:iso/debian-like.iso: repaired" in log
    assert sha256(path) == good
    info = volume(api, "local:iso/debian-like.iso")
    assert info["verification"] == {"state": "ok", "time": info["verification"]["time"], "upid": upid}
    assert_nothing_new(before, lib.storage_path("local"))


def test_a_repair_whose_source_changed_replaces_nothing(lib, origin):
    api = lib.api("root")
    src = origin.files / "changing.iso"
    src.write_bytes(os.urandom(1024 * 1024))
    try:
        download(api, origin, "changing.iso")
        path = lib.storage_path("local") / "template/iso/changing.iso"
        corrupt_in_place(path)
        rotten = path.read_bytes()
        src.write_bytes(os.urandom(1024 * 1024))  # the origin now serves another file
        before = tree(lib.storage_path("local"))
        _, status, log = verify(api, volume="iso/changing.iso", repair=1)
        assert status["exitstatus"] == "verification failed for 1 of 1 volumes", log
        assert any("repair failed - the source no longer yields the recorded bytes" in line for line in log), log
        assert path.read_bytes() == rotten, "nothing replaced"
        assert_nothing_new(before, lib.storage_path("local"))
    finally:
        src.unlink()


def test_repair_needs_the_right_to_write_the_storage(lib):
    api = lib.api("dave")  # PVEDatastoreAdmin on /storage/local: allowed
    r = api.post("/nodes/%s/storage/local/verify" % NODE, data={"repair": 1})
    assert r.status_code == 200, r.text
    r = lib.api("alice_sep").post("/nodes/%s/storage/local/verify" % NODE, data={"repair": 1})
    assert r.status_code == 403, r.text


def isolib_add(daemon, *args):
    out = subprocess.run([str(daemon.binary), "add", "--config", str(daemon.config), *map(str, args)],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def test_isolib_add_copies_or_moves_a_local_file_with_its_record(lib, origin):
    api = lib.api("root")
    store = lib.storage_path("local")
    src = origin.files / "debian-like.iso"
    rc, out, err = isolib_add(lib, src, "--storage", "local")
    assert (rc, out) == (0, "local:iso/debian-like.iso\n"), err
    assert (store / "template/iso/debian-like.iso").read_bytes() == src.read_bytes()
    info = volume(api, "local:iso/debian-like.iso")
    assert info["source"]["origin"] == "local"
    assert info["source"]["url"] == "file://%s" % src
    assert info["source"]["user"] == "root@pam"
    assert info["os"]["id"] == "debian11" and info["sha256"] == sha256(src)

    # The same name again: never overwritten.
    rc, _, err = isolib_add(lib, src, "--storage", "local")
    assert rc != 0 and "refusing to override existing file '%s'" % (store / "template/iso/debian-like.iso") in err

    # --move on the storage's file system is a rename: the same inode, no copy.
    local = lib.base / "incoming.iso"
    shutil.copy(origin.files / "plain.iso", local)
    inode = os.stat(local).st_ino
    sha512 = hashlib.sha512(local.read_bytes()).hexdigest()
    rc, out, err = isolib_add(lib, local, "--storage", "local", "--filename", "moved.iso", "--move",
                              "--checksum", "sha512:" + sha512)
    assert (rc, out) == (0, "local:iso/moved.iso\n"), err
    assert not local.exists()
    assert os.stat(store / "template/iso/moved.iso").st_ino == inode
    assert volume(api, "local:iso/moved.iso")["checksum"] == {"algorithm": "sha512", "value": sha512}


def test_isolib_add_refuses_bad_input_and_leaves_nothing(lib, origin):
    store = lib.storage_path("local")
    before = tree(store)
    src = origin.files / "small.iso"
    rc, _, err = isolib_add(lib, src, "--storage", "local", "--checksum", "sha256:" + "0" * 64)
    got = sha256(src)
    assert rc != 0 and "checksum mismatch: got '%s' != expect '%s'" % (got, "0" * 64) in err, err
    rc, _, err = isolib_add(lib, origin.files / "tmpl.tar.gz", "--storage", "isoonly")
    assert rc != 0 and "storage 'isoonly' is not configured for content-type 'vztmpl'" in err, err
    notes = lib.base / "notes.txt"
    notes.write_text("x")
    rc, _, err = isolib_add(lib, notes, "--storage", "local")
    assert rc != 0 and "cannot tell the content type of 'notes.txt'" in err, err
    rc, _, err = isolib_add(lib, origin.files / "host-extent.vmdk", "--storage", "local")
    assert rc != 0 and "failed to verify file:" in err, err
    assert_nothing_new(before, store)
    assert src.exists()


@pytest.fixture
def lib2(request):
    """A second library daemon, empty, to import into."""
    yield from _daemon_fixture(request, "isolib-lib2-", library_setup())


def client(daemon, *args):
    out = subprocess.run([str(daemon.binary), *args, "--url", "https://127.0.0.1:%d" % daemon.port, "--insecure",
                          "--token", "%s=%s" % (TOKENS["root"], SECRETS["root"])],
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def test_inventory_export_then_import_on_an_empty_daemon_is_the_same_library(lib, lib2, origin, tmp_path):
    api, api2 = lib.api("root"), lib2.api("root")
    download(api, origin, "debian-like.iso")
    upid = api.start_download(url=origin.file_url("tmpl.tar.zst"), content="vztmpl",
                              filename="debian-12-standard_12.7-1_amd64.tar.zst")
    assert api.wait(upid)["exitstatus"] == "OK"
    download(api, origin, "other.iso", storage="lib")
    api.ok_data(put(api, "lib:iso/other.iso", storage="lib", notes="keep me", protected=1))

    rc, out, err = client(lib, "inventory", "export")
    assert rc == 0, err
    inventory = json.loads(out)
    assert inventory["format-version"] == 1 and inventory["node"] == NODE
    by_volid = {v["volid"]: v for v in inventory["volumes"]}
    assert set(by_volid) == {"local:iso/debian-like.iso", "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                             "lib:iso/other.iso"}
    assert by_volid["local:iso/debian-like.iso"]["sha256"] == sha256(origin.files / "debian-like.iso")
    assert by_volid["local:iso/debian-like.iso"]["os"]["id"] == "debian11"
    tmpl = by_volid["local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"]
    assert tmpl["source"]["url"] == origin.file_url("tmpl.tar.zst")
    assert by_volid["lib:iso/other.iso"]["notes"] == "keep me"
    rc, csv, err = client(lib, "inventory", "export", "--format", "csv")
    assert rc == 0, err
    rows = csv.splitlines()
    assert rows[0] == "volid,storage,content,size,sha256,origin,url,os,verification,protected,notes"
    assert len(rows) == 4 and any(r.startswith("lib:iso/other.iso,lib,iso,") and r.endswith(",1,keep me")
                                  for r in rows), rows
    path = tmp_path / "inventory.json"
    path.write_text(out)

    # A dry run on the empty daemon says what it would do and does nothing.
    before = tree(lib2.storage_path("local"))
    rc, out, err = client(lib2, "inventory", "import", str(path), "--dry-run")
    assert rc == 0, err
    assert "local:iso/debian-like.iso: would download %s" % origin.file_url("debian-like.iso") in out
    assert_nothing_new(before, lib2.storage_path("local"))

    rc, out, err = client(lib2, "inventory", "import", str(path))
    assert rc == 0, out + err
    assert "0 present, 3 downloaded, 0 not as the inventory says" in out
    for volid, storage in (("local:iso/debian-like.iso", "local"),
                           ("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst", "local"),
                           ("lib:iso/other.iso", "lib")):
        assert volume(api2, volid, storage)["sha256"] == by_volid[volid]["sha256"]
    other = volume(api2, "lib:iso/other.iso", storage="lib")
    assert other["notes"] == "keep me" and other["protected"] == 1
    assert volume(api2, "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")["template"] == {
        "os": "debian", "version": "12", "arch": "amd64"}

    # Again: everything is there.
    rc, out, err = client(lib2, "inventory", "import", str(path))
    assert rc == 0 and "3 present, 0 downloaded, 0 not as the inventory says" in out, out + err


def test_an_import_never_overwrites_a_volume_with_other_bytes(lib, lib2, origin, tmp_path):
    api = lib.api("root")
    download(api, origin, "small.iso")
    rc, out, err = client(lib, "inventory", "export")
    assert rc == 0, err
    path = tmp_path / "inventory.json"
    path.write_text(out)
    theirs = lib2.storage_path("local") / "template/iso/small.iso"
    theirs.parent.mkdir(parents=True, exist_ok=True)
    theirs.write_bytes(b"not the same image")
    rc, out, err = client(lib2, "inventory", "import", str(path))
    assert rc != 0
    assert "local:iso/small.iso: conflict - it holds sha256 '%s', the inventory says '%s'; left as it is" % (
        sha256(theirs), sha256(origin.files / "small.iso")) in out, out
    assert "task failed: inventory import incomplete: 1 volume(s) not as the inventory says" in err
    assert theirs.read_bytes() == b"not the same image"


@pytest.fixture
def lib_verifying(request):
    """A library daemon that verifies every volume again two seconds after the last check."""
    setup = library_setup()

    def prepare(d):
        setup(d)
        with open(d.config, "a") as f:
            f.write("verify-after-days = 0.000023\n")
    yield from _daemon_fixture(request, "isolib-lib-", prepare)


def test_the_schedule_verifies_in_the_background_and_finds_rot(lib_verifying, origin):
    api = lib_verifying.api("root")
    download(api, origin, "small.iso")
    state = lambda: (listed(api, "local:iso/small.iso").get("verification") or {}).get("state")  # noqa: E731
    wait_until(lambda: state() == "ok", timeout=30, what="a background verification")
    assert "upid" not in listed(api, "local:iso/small.iso")["verification"], "no task: the background"
    corrupt_in_place(lib_verifying.storage_path("local") / "template/iso/small.iso")
    wait_until(lambda: state() == "failed", timeout=30, what="the background verification to find the rot")
    assert (lib_verifying.storage_path("local") / "template/iso/small.iso").is_file()
