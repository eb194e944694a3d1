"""Storage listing, status, content listing and content deletion (pve-api.md §7)."""

import os

import pytest

from helpers import JSON_CT, NODE, assert_param_error, enc, upid_fields

STORAGE_FIELDS = {"storage", "type", "content", "enabled", "active", "shared", "total", "used", "avail"}


def storages(api, **params):
    r = api.get("/nodes/%s/storage" % NODE, params=params)
    assert r.status_code == 200, (r.status_code, r.reason, r.text)
    assert r.headers["Content-Type"] == JSON_CT
    return {s["storage"]: s for s in r.json()["data"]}


def test_storage_list_fields(shared_daemon, shared_api):
    s = storages(shared_api)
    assert {"local", "isoonly", "offline"} <= set(s), s
    local = s["local"]
    assert STORAGE_FIELDS <= set(local), local
    assert local["type"] == "dir"
    assert set(local["content"].split(",")) == {"iso", "vztmpl", "import"}
    assert (local["enabled"], local["active"], local["shared"]) == (1, 1, 0)
    vfs = os.statvfs(shared_daemon.storage_path("local"))
    assert local["total"] == vfs.f_blocks * vfs.f_frsize
    assert isinstance(local["used"], int) and isinstance(local["avail"], int)
    assert 0 < local["avail"] <= local["total"]
    assert isinstance(local["used_fraction"], float) and 0 <= local["used_fraction"] <= 1
    assert s["isoonly"]["content"] == "iso"
    off = s["offline"]
    assert (off["enabled"], off["active"]) == (0, 0), off
    assert (off["total"], off["used"], off["avail"]) == (0, 0, 0), off
    assert "used_fraction" not in off


def test_storage_list_filters(shared_api):
    assert set(storages(shared_api, content="vztmpl")) == {"local"}
    iso = set(storages(shared_api, content="iso"))
    assert {"local", "isoonly"} <= iso and "offline" not in iso
    assert "vg0" not in set(storages(shared_api, content="import,vztmpl"))
    enabled = storages(shared_api, enabled=1)
    assert "offline" not in enabled and {"local", "isoonly"} <= set(enabled)
    assert set(storages(shared_api, storage="isoonly")) == {"isoonly"}


def test_storage_list_unknown_storage(shared_api):
    r = shared_api.get("/nodes/%s/storage" % NODE, params={"storage": "nope"})
    assert_param_error(r, {"storage": "No such storage."})


def test_storage_status(shared_daemon, shared_api):
    r = shared_api.get("/nodes/%s/storage/local/status" % NODE)
    assert r.status_code == 200
    st = r.json()["data"]
    assert {"type", "content", "enabled", "active", "shared", "total", "used", "avail"} <= set(st), st
    assert "storage" not in st and "used_fraction" not in st, st
    assert st["type"] == "dir" and st["active"] == 1 and st["enabled"] == 1
    vfs = os.statvfs(shared_daemon.storage_path("local"))
    assert st["total"] == vfs.f_blocks * vfs.f_frsize


def test_storage_status_unknown(shared_api):
    r = shared_api.get("/nodes/%s/storage/nope/status" % NODE)
    assert_param_error(r, {"storage": "No such storage."})


def test_storage_index_lists_download_url(shared_api):
    r = shared_api.get("/nodes/%s/storage/local" % NODE)
    assert r.status_code == 200
    subdirs = [e.get("subdir") for e in r.json()["data"]]
    assert "download-url" in subdirs and "content" in subdirs and "status" in subdirs, subdirs


# --- content listing ----------------------------------------------------------------------------------

LISTED = {
    "template/iso/b.iso": ("local:iso/b.iso", "iso", "iso"),
    "template/iso/A.ISO": ("local:iso/A.ISO", "iso", "iso"),
    "template/iso/c.img": ("local:iso/c.img", "iso", "iso"),
    "template/cache/t1.tar.gz": ("local:vztmpl/t1.tar.gz", "tgz", "vztmpl"),
    "template/cache/t2.tar.zst": ("local:vztmpl/t2.tar.zst", "tzst", "vztmpl"),
    "template/cache/t3.tar.xz": ("local:vztmpl/t3.tar.xz", "txz", "vztmpl"),
    "template/cache/t4.tar.bz2": ("local:vztmpl/t4.tar.bz2", "tbz2", "vztmpl"),
    "template/cache/t5.tar": ("local:vztmpl/t5.tar", "tar", "vztmpl"),
    "import/d.qcow2": ("local:import/d.qcow2", "qcow2", "import"),
    "import/e.raw": ("local:import/e.raw", "raw", "import"),
    "import/g.ovf": ("local:import/g.ovf", "ovf", "import"),
    "import/h.vmdk": ("local:import/h.vmdk", "vmdk", "import"),
}
NOT_LISTED = [
    "template/iso/x.txt",
    "template/iso/small.iso.tmp_dwnl.1234",
    "template/iso/.hidden.iso.tmp_dcom.99",
    "template/cache/t.tgz",
    "import/bad name.qcow2",
    "import/x.vdi",
]


@pytest.fixture
def populated(daemon):
    store = daemon.storage_path()
    sizes = {}
    for i, rel in enumerate(sorted(LISTED) + NOT_LISTED):
        p = store / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * (100 + i))
        sizes[rel] = 100 + i
    (store / "template/iso/dir.iso").mkdir()  # directories are skipped
    return sizes


def test_content_listing(daemon, api, populated):
    store = daemon.storage_path()
    r = api.get("/nodes/%s/storage/local/content" % NODE)
    assert r.status_code == 200, (r.status_code, r.reason, r.text)
    data = r.json()["data"]
    expected = []
    for rel, (volid, fmt, content) in LISTED.items():
        st = os.stat(store / rel)
        expected.append({"volid": volid, "format": fmt, "size": populated[rel], "ctime": int(st.st_ctime),
                         "content": content})
    expected.sort(key=lambda e: e["volid"].lower())
    assert [e["volid"] for e in data] == [e["volid"] for e in expected]
    for got, exp in zip(data, expected):
        assert {k: got.get(k) for k in exp} == exp, got


@pytest.mark.parametrize("content", ["iso", "vztmpl", "import"])
def test_content_listing_filter(api, populated, content):
    r = api.get("/nodes/%s/storage/local/content" % NODE, params={"content": content})
    data = r.json()["data"]
    want = sorted((v for v, _, c in LISTED.values() if c == content), key=str.lower)
    assert [e["volid"] for e in data] == want
    assert all(e["content"] == content for e in data)


def test_content_listing_disabled_storage(api):
    r = api.get("/nodes/%s/storage/offline/content" % NODE)
    assert r.status_code == 500, (r.status_code, r.reason)
    assert r.reason == "storage 'offline' is disabled"


def test_content_listing_after_download(daemon, api, origin):
    u, st = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="fresh.iso")
    assert st["exitstatus"] == "OK"
    r = api.get("/nodes/%s/storage/local/content" % NODE, params={"content": "iso"})
    data = r.json()["data"]
    assert [(e["volid"], e["size"], e["format"]) for e in data] == [("local:iso/fresh.iso", 2 * 1024 * 1024, "iso")]


# --- delete -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("volume_in_path,volid", [
    ("local:iso/del1.iso", "local:iso/del1.iso"),
    ("iso/del1.iso", "local:iso/del1.iso"),
    ("iso%2Fdel1.iso", "local:iso/del1.iso"),
    ("local%3Aiso%2Fdel1.iso", "local:iso/del1.iso"),
    ("vztmpl/del1.tar.gz", "local:vztmpl/del1.tar.gz"),
    ("local:import/del1.qcow2", "local:import/del1.qcow2"),
], ids=["full-volid", "bare-volname", "encoded-slash", "encoded-full", "vztmpl", "import"])
def test_delete_content(daemon, api, volume_in_path, volid):
    store = daemon.storage_path()
    vtype, name = volid.split(":", 1)[1].split("/", 1)
    sub = {"iso": "template/iso", "vztmpl": "template/cache", "import": "import"}[vtype]
    path = store / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"data")
    keep = store / sub / ("keep-" + name)
    keep.write_bytes(b"keep")
    r = api.delete("/nodes/%s/storage/local/content/%s" % (NODE, volume_in_path))
    upid = api.ok_data(r)
    f = upid_fields(upid)
    assert f["type"] == "imgdel" and f["id"] == "local", f
    st = api.wait(upid)
    assert st["exitstatus"] == "OK", st
    assert not path.exists()
    assert keep.read_bytes() == b"keep"
    lines = api.log_lines(upid)
    assert "Removed volume '%s'" % volid in lines, lines
    assert lines[-1] == "TASK OK"


def test_delete_with_proxmoxer(daemon, prox):
    p = daemon.storage_path() / "template/iso/px.iso"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"data")
    from proxmoxer.tools import Tasks

    upid = prox.nodes(NODE).storage("local").content("local:iso/px.iso").delete()
    st = Tasks.blocking_status(prox, upid, timeout=60, polling_interval=0.2)
    assert st["exitstatus"] == "OK", st
    assert not p.exists()


def test_delete_missing_file_still_ok(daemon, api):
    r = api.delete("/nodes/%s/storage/local/content/local:iso/ghost.iso" % NODE)
    upid = api.ok_data(r)
    st = api.wait(upid)
    assert st["exitstatus"] == "OK", st
    lines = api.log_lines(upid)
    ghost = daemon.storage_path() / "template/iso/ghost.iso"
    assert any("disk image '%s' does not exist" % ghost in l for l in lines), lines


def test_delete_storage_mismatch(daemon, api):
    p = daemon.storage_path() / "template/iso/mm.iso"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"data")
    r = api.delete("/nodes/%s/storage/local/content/%s" % (NODE, enc("isoonly:iso/mm.iso")))
    assert_param_error(r, {"volume": "storage ID mismatch (isoonly != local)\n"})
    assert p.exists()
