"""One fetch per cluster: three daemons, each in its own network namespace, share a stand-in for
/etc/pve. download-url with `nodes=all` fetches from the origin once and every other node copies
from a node that holds the volume, checked against its sha256; a copy whose source dies or whose
link is cut goes on from another node with the bytes it already has; requests for any node are
served through any node, with a token and with a ticket."""

import hashlib
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from proxmoxer import ProxmoxAPI

from conftest import _binary
from helpers import wait_until
from netcluster import PORT, Cluster
from test_tickets import PASSWORD

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

# The copying node is slowed down (bwlimit, KiB/s) so that a source can be lost mid-copy.
SLOW = 24 * 1024


@pytest.fixture(scope="module")
def cluster(request):
    c = Cluster(_binary(), node_config="stall-timeout = 2\ndownload-retries = 2\n")
    try:
        c.start()
        yield c
    finally:
        c.stop(dump=request.session.testsfailed > 0)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def origin_file(cluster, name, size):
    path = cluster.origin_root / name
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return sha256_of(path)


def ok(api, upid, timeout=120):
    status = api.wait(upid, timeout)
    assert status["exitstatus"] == "OK", "%s\n%s" % (status, "\n".join(api.log_lines(upid)))
    return api.log_lines(upid)


def held(cluster, rel):
    """What each node holds under `rel` in its own local storage (a real file, no partial)."""
    out = {}
    for n in cluster.nodes:
        p = n.storage / rel
        out[n.name] = sha256_of(p) if p.is_file() else None
    return out


def no_partials(cluster):
    for n in cluster.nodes:
        for root, _, files in os.walk(n.storage):
            for f in files:
                assert not f.endswith(".part"), (n.name, root, f)
                assert ".tmp" not in f, (n.name, root, f)


def test_nodes_all_fetches_once_from_the_origin(cluster):
    digest = origin_file(cluster, "once.iso", 24 << 20)
    n1, n2, n3 = cluster.nodes
    api = n1.api()
    upid = api.start_download(storage="data", node="n1", url=cluster.origin_url("once.iso"), content="iso",
                              filename="once.iso", nodes="all")
    lines = ok(api, upid)
    assert cluster.origin_gets("once.iso") == 1, cluster.origin_log.read_text()
    assert held(cluster, "template/iso/once.iso") == {"n1": digest, "n2": digest, "n3": digest}
    assert "node 'n2': OK" in lines and "node 'n3': OK" in lines, lines
    # A chain: n1 sent the volume once, to n2, which passed it on to n3 as it arrived.
    assert any("from 'n1' along 'n2' -> 'n3'" in line for line in lines), lines
    n3_task = next(line.split("task ")[1] for line in lines if line.startswith("node 'n3': task "))
    assert served(n1, "once.iso") == [(n2.ip, 200)], api.log_lines(n3_task)
    assert served(n2, "once.iso") == [(n3.ip, 200)]
    no_partials(cluster)
    # Every node knows it, each by its own record; asked through another node.
    rows = n2.api().ok_data(n2.api().get("/cluster/isolib/inventory"))
    row = next(r for r in rows if r["volid"] == "data:iso/once.iso")
    assert row["sha256"] == digest
    assert row["nodes"] == {"n1": "present", "n2": "verified", "n3": "verified"}, row
    # Asking again changes nothing and fetches nothing.
    upid = n3.api().ok_data(n3.api().post("/cluster/isolib/ensure",
                                          data={"volume": "data:iso/once.iso", "nodes": "all"}))
    lines = ok(n3.api(), upid)
    assert sum("holds 'data:iso/once.iso' already" in line for line in lines) == 3, lines
    assert cluster.origin_gets("once.iso") == 1


def test_nodes_that_see_the_same_directory_copy_nothing(cluster):
    """A storage not marked shared whose directory every node sees: its identity (a UUID file in
    its root) tells the nodes it is one, so nothing is copied and nothing is written twice."""
    n1 = cluster.nodes[0]
    digest = origin_file(cluster, "same.iso", 4 << 20)
    api = n1.api()
    lines = ok(api, api.start_download(storage="same", node="n1", url=cluster.origin_url("same.iso"),
                                       content="iso", filename="same.iso", nodes="all"))
    assert cluster.origin_gets("same.iso") == 1
    assert sha256_of(cluster.same / "template/iso/same.iso") == digest
    assert served(n1, "same.iso", storage="same") == []
    tasks = [line.split("task ")[1] for line in lines if re.match(r"node 'n[23]': task ", line)]
    assert len(tasks) == 2, lines
    for upid in tasks:
        assert "'same:iso/same.iso' is in the sources' own storage (the same identity): nothing to copy" \
            in api.log_lines(upid), api.log_lines(upid)
    assert [p.name for p in cluster.same.iterdir() if p.name.startswith(".isolib-storage-id")] == \
        [".isolib-storage-id"]


def test_ensure_refuses_what_it_cannot_do(cluster):
    api = cluster.nodes[0].api()
    r = api.post("/cluster/isolib/ensure", data={"volume": "data:iso/none.iso", "nodes": "all"})
    assert r.status_code == 400 and "no node holds 'data:iso/none.iso'" in r.text, r.text
    r = api.post("/cluster/isolib/ensure", data={"volume": "data:iso/none.iso", "nodes": "n1,n9"})
    assert r.status_code == 400 and "no such cluster node 'n9'" in r.text, r.text
    r = api.post("/cluster/isolib/ensure", data={"volume": "data:iso/none.iso", "nodes": "-x"})
    assert r.status_code == 400, r.text
    # A user without Datastore.AllocateTemplate on the storage gets PVE's refusal.
    r = cluster.nodes[0].api("carol").post(
        "/cluster/isolib/ensure", data={"volume": "data:iso/none.iso", "nodes": "all"})
    assert r.status_code == 403, r.text


def spread_to_two(cluster, name, size):
    """`name` from the origin on n1 and copied to n2: two sources for n3."""
    digest = origin_file(cluster, name, size)
    api = cluster.nodes[0].api()
    upid = api.start_download(storage="data", node="n1", url=cluster.origin_url(name), content="iso", filename=name,
                              nodes="n2")
    ok(api, upid)
    assert held(cluster, "template/iso/" + name) == {"n1": digest, "n2": digest, "n3": None}
    return digest


def copying(cluster, node, at_least):
    """Waits until `node`'s copy has `at_least` bytes in its temp file."""
    def progressed():
        for root, _, files in os.walk(node.storage):
            for f in files:
                if f.endswith(".part") and os.path.getsize(os.path.join(root, f)) >= at_least:
                    return True
        return False
    wait_until(progressed, timeout=60, interval=0.05, what="the copy to get going")


def ensure_slowly(cluster, name):
    """n3 copies `name` (from n1 first), at SLOW KiB/s."""
    n3 = cluster.nodes[2]
    n3.stop()
    with open(n3.config, "a") as f:
        f.write("bwlimit = %d\n" % SLOW)
    n3.start()
    api = n3.api()
    upid = api.ok_data(api.post("/cluster/isolib/ensure", data={"volume": "data:iso/" + name, "nodes": "n3"}))
    return api, upid


def unslow(cluster):
    n3 = cluster.nodes[2]
    n3.stop()
    n3.config.write_text(n3.config.read_text().replace("bwlimit = %d\n" % SLOW, ""))
    n3.start()


def served(node, name, storage="data"):
    """Who `node` sent `name` to, and with which status, as its log shows."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", node.log_text())
    return [(ip, int(status)) for ip, status in
            re.findall(r"GET /files/%s/iso/%s .* from (\S+): (\d+)" % (storage, re.escape(name)), text)]


def range_reads(node, name):
    """The byte offsets `node` was asked to send `name` from, as its log shows."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", node.log_text())
    return [int(m) for m in re.findall(r"/files/data/iso/%s\S*.*?bytes=(\d+)-" % re.escape(name), text)]


@pytest.mark.parametrize("fault", ["killed", "cut"])
def test_a_copy_goes_on_when_its_source_is_lost(cluster, fault):
    """The source node is killed, or its link cut (`ip link set down`: no reset, only silence),
    mid-copy: the copy goes on from the other node with the bytes it has, then the first is back."""
    n1, n2, n3 = cluster.nodes
    name = fault + ".iso"
    digest = spread_to_two(cluster, name, 96 << 20)
    api, upid = ensure_slowly(cluster, name)
    try:
        copying(cluster, n3, 16 << 20)
        if fault == "killed":
            n1.kill()
        else:
            n1.link(False)
        lines = ok(api, upid)
    finally:
        n1.link(True)
        if n1.proc is None:
            n1.start()
        unslow(cluster)
    assert held(cluster, "template/iso/" + name)["n3"] == digest
    lost = [line for line in lines if "node 'n1' failed after" in line]
    assert lost, lines
    if fault == "cut":
        assert "no answer for 2s" in lost[0], lost
    assert any("from node 'n2'" in line and "going on after" in line for line in lines), lines
    # n2 sent only what was missing.
    reads = range_reads(n2, name)
    assert reads and min(reads) >= 16 << 20, reads
    assert cluster.origin_gets(name) == 1
    assert n1.api().get("/version").status_code == 200
    no_partials(cluster)


def test_daemons_racing_on_a_shared_storage_write_once(cluster):
    """Three nodes asked at once for the same file on one `shared 1` storage: one writes, the
    others wait for it and find their work done; no partial or lock file is ever left."""
    digest = origin_file(cluster, "race.iso", 48 << 20)
    started = [(n.api(), n.api().start_download(storage="pool", node=n.name, url=cluster.origin_url("race.iso"),
                                                content="iso", filename="race.iso"))
               for n in cluster.nodes]
    logs = [ok(api, upid) for api, upid in started]
    assert cluster.origin_gets("race.iso") == 1, cluster.origin_log.read_text()
    writers = [lines for lines in logs if any(line.startswith("downloaded ") for line in lines)]
    assert len(writers) == 1, logs
    for lines in logs:
        assert lines[-2] == "download of '%s' to '%s' finished" % (
            cluster.origin_url("race.iso"), cluster.pool / "template/iso/race.iso") and lines[-1] == "TASK OK", lines
    waited = [lines for lines in logs
              if any("which is writing the same file on a storage this node shares" in line for line in lines)]
    assert waited, logs
    assert sha256_of(cluster.pool / "template/iso/race.iso") == digest
    left = [os.path.join(root, f) for root, _, files in os.walk(cluster.pool) for f in files]
    assert not [f for f in left if f.endswith((".part", ".lock", ".tmp"))], left
    volumes = [os.path.relpath(f, cluster.pool) for f in left if "/.isolib" not in f]
    assert volumes == ["template/iso/race.iso"], left
    # Asked again on any node, the file is met as PVE meets it.
    api = cluster.nodes[1].api()
    upid = api.start_download(storage="pool", node="n2", url=cluster.origin_url("race.iso"), content="iso",
                              filename="race.iso")
    status = api.wait(upid)
    assert "refusing to override existing file" in status["exitstatus"], status
    # A copy to the other nodes is none: the storage is shared.
    upid = api.ok_data(api.post("/cluster/isolib/ensure", data={"volume": "pool:iso/race.iso", "nodes": "all"}))
    lines = ok(api, upid)
    assert any("storage 'pool' is shared" in line for line in lines), lines
    assert cluster.origin_gets("race.iso") == 1


ACTIVATE = r"""
use strict; use warnings;
use PVE::Storage::Custom::IsolibPlugin;
PVE::Storage::Custom::IsolibPlugin->activate_volume('data', { type => 'isolib', path => $ARGV[0] }, $ARGV[1]);
print "ACTIVATED\n";
"""


def test_a_guest_start_copies_its_missing_iso_through_the_shim(cluster):
    """PVE activates a guest's ISO before it starts it. On n3, which lacks it, the isolib plugin
    asks n3's daemon, which copies it from n1 while the plugin copies the daemon's lines into the
    task log; activated again, the file is there and the daemon is not asked."""
    n1, n3 = cluster.nodes[0], cluster.nodes[2]
    digest = origin_file(cluster, "vm.iso", 8 << 20)
    ok(n1.api(), n1.api().start_download(storage="data", node="n1", url=cluster.origin_url("vm.iso"),
                                         content="iso", filename="vm.iso"))
    shim = Path(__file__).resolve().parents[2] / "perl-shim"
    env = dict(os.environ, ISOLIB_SOCKET=str(n3.state / "isolib.sock"))
    perl = ["perl", "-I", str(shim / "lib"), "-I", str(shim / "t" / "lib"), "-e", ACTIVATE,
            str(cluster.local_mount), "iso/vm.iso"]
    out = n3.run(*perl, env=env)
    assert out.returncode == 0, (out, [l for l in n3.log_text().splitlines() if "WARN" in l])
    assert out.stdout.startswith("isolib: 'data:iso/vm.iso' is not on this node; copying it from another node "
                                 "(task UPID:n3:"), out.stdout
    assert "copying 'data:iso/vm.iso' from node 'n1'" in out.stdout, out.stdout
    assert out.stdout.endswith("ACTIVATED\n"), out.stdout
    assert held(cluster, "template/iso/vm.iso")["n3"] == digest
    assert cluster.origin_gets("vm.iso") == 1
    before = [t["upid"] for t in n3.api().ok_data(n3.api().get("/nodes/n3/tasks"))]
    out = n3.run(*perl, env=env)
    assert (out.returncode, out.stdout) == (0, "ACTIVATED\n"), out
    after = [t["upid"] for t in n3.api().ok_data(n3.api().get("/nodes/n3/tasks"))]
    assert after == before, "the daemon was asked although the file is there"


def test_boot_configs_written_from_every_node_at_once_are_all_kept(cluster):
    """The boot book is one file in the cluster file system that every node changes. Each change
    is made under PVE's cluster lock (a directory in priv/lock), so when all nodes write at once
    none is lost, and no lock is left."""
    errors = []

    def add(node, i):
        r = node.api().post("/cluster/isolib/boot/configs", data={
            "name": "%s-%d" % (node.name, i), "format": "raw", "files": json.dumps({"a.cfg": "x\n"})})
        if r.status_code != 200:
            errors.append(r.text)
    threads = [threading.Thread(target=add, args=(n, i)) for i in range(6) for n in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    api = cluster.nodes[1].api()
    names = {c["name"] for c in api.ok_data(api.get("/cluster/isolib/boot/configs"))}
    assert names == {"%s-%d" % (n.name, i) for i in range(6) for n in cluster.nodes}
    assert list((cluster.pve / "priv" / "lock").iterdir()) == []


def test_any_node_serves_every_node(cluster):
    n1, n2, n3 = cluster.nodes
    # A token.
    api = n1.api()
    for node in ("n2", "n3"):
        status = api.ok_data(api.get("/nodes/%s/storage/data/status" % node))
        assert status["type"] == "dir" and status["active"] == 1
    # A ticket (one signed with the cluster's key is good on every node).
    # pveum's work on a PVE node: the password in the cluster's shadow file.
    crypted = subprocess.run(["openssl", "passwd", "-5", PASSWORD], capture_output=True, text=True,
                             check=True).stdout.strip()
    (cluster.pve / "priv" / "shadow.cfg").write_text("alice:%s:\n" % crypted)
    prox = ProxmoxAPI(n1.ip, port=PORT, user="alice@pve", password=PASSWORD, verify_ssl=False, timeout=30)
    origin_file(cluster, "ticket.iso", 1 << 20)
    upid = prox.nodes("n2").storage("data")("download-url").post(
        url=cluster.origin_url("ticket.iso"), content="iso", filename="by-ticket.iso")
    assert upid.startswith("UPID:n2:")
    deadline = time.monotonic() + 60
    while prox.nodes("n2").tasks(upid).status.get()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert prox.nodes("n2").tasks(upid).status.get()["exitstatus"] == "OK"
    assert (n2.storage / "template/iso/by-ticket.iso").is_file()
    assert not (n1.storage / "template/iso/by-ticket.iso").exists()
    items = prox.nodes("n2").storage("data").content.get(content="iso")
    assert "data:iso/by-ticket.iso" in [i["volid"] for i in items], items
