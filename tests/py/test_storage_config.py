"""GET /storage and /storage/{storage}: PVE's storage configuration, filtered by the caller's
privileges as PVE filters it (what Ansible's proxmox_storage_info reads)."""

import hashlib

from helpers import assert_error


def storage_cfg_digest(daemon):
    return hashlib.sha1((daemon.base / "storage.cfg").read_bytes()).hexdigest()


def test_index_lists_what_the_caller_may_see(shared_daemon):
    root = shared_daemon.api("root")
    items = root.ok_data(root.get("/storage"))
    ids = [s["storage"] for s in items]
    assert ids == sorted(ids) and {"local", "isoonly", "offline", "vg0"} <= set(ids), ids
    local = next(s for s in items if s["storage"] == "local")
    assert local == {
        "storage": "local",
        "type": "dir",
        "path": str(shared_daemon.base / "local"),
        "content": "import,iso,vztmpl",
        "digest": storage_cfg_digest(shared_daemon),
    }, local
    offline = next(s for s in items if s["storage"] == "offline")
    assert offline["disable"] == 1, offline
    assert [s["storage"] for s in root.ok_data(root.get("/storage", params={"type": "lvm"}))] == ["vg0"]

    # Datastore rights on /storage/local only: only local.
    bob = shared_daemon.api("bob")
    assert [s["storage"] for s in bob.ok_data(bob.get("/storage"))] == ["local"]
    # An ACL on /storage that does not propagate grants no storage below it.
    carol = shared_daemon.api("carol")
    assert carol.ok_data(carol.get("/storage")) == []


def test_read_needs_datastore_allocate(shared_daemon):
    root = shared_daemon.api("root")
    cfg = root.ok_data(root.get("/storage/isoonly"))
    assert cfg["type"] == "dir" and cfg["content"] == "iso", cfg
    bob = shared_daemon.api("bob")
    assert bob.ok_data(bob.get("/storage/local"))["storage"] == "local"
    assert_error(bob.get("/storage/isoonly"), 403, "Permission check failed (/storage/isoonly, Datastore.Allocate)")
    assert_error(root.get("/storage/nosuch"), 500, "storage 'nosuch' does not exist")
    r = root.get("/storage", params={"type": "glusterfs"})
    assert r.status_code == 400 and "'glusterfs' does not have a value in the enumeration" in r.json()["errors"]["type"]
