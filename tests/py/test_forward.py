"""Forwarding: a request for `/nodes/<other>/...` that reaches one daemon is passed to that
node's daemon as pveproxy passes it (credentials as they came, TLS pinned to the peer's
certificate, no second hop), so one endpoint serves every node: a token, a proxmoxer ticket
login, a download whose file lands on the other node."""

import hashlib
import shutil
import ssl

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from conftest import NODE, _daemon_fixture
from helpers import assert_error, tree
from test_tickets import PASSWORD, user_add

PEER = "peer2"


def fingerprint(port):
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port)))
    return hashlib.sha256(der).hexdigest()


def rename_node(d, name):
    d.config.write_text(d.config.read_text().replace('node = "%s"' % NODE, 'node = "%s"' % name, 1))


@pytest.fixture
def pair(request):
    """Daemon `peer2`, and this node's daemon that knows it as a peer; both share the key that
    signs tickets, as a PVE cluster's nodes do."""
    second = _daemon_fixture(request, "isolib-peer-", lambda d: rename_node(d, PEER))
    b = next(second)

    def first_setup(d):
        shutil.copytree(b.base / "state" / "auth", d.base / "state" / "auth")
        with open(d.config, "a") as f:
            f.write('peers = ["%s 127.0.0.1:%d %s"]\n' % (PEER, b.port, fingerprint(b.port)))
    first = _daemon_fixture(request, "isolib-node-", first_setup)
    a = next(first)
    yield a, b
    next(first, None)
    next(second, None)


def test_one_endpoint_serves_the_other_node(pair, origin):
    a, b = pair
    api_a, api_b = a.api("root"), b.api("root")
    # The same answer through this node as from the other one itself.
    via = api_a.ok_data(api_a.get("/nodes/%s/storage/local/status" % PEER))
    direct = api_b.ok_data(api_b.get("/nodes/%s/storage/local/status" % PEER))
    assert via["total"] == direct["total"] and via["type"] == "dir"
    # A download for the other node is that node's task, and its file is there, not here.
    before = tree(a.storage_path())
    upid = api_a.ok_data(api_a.post("/nodes/%s/storage/local/download-url" % PEER, data={
        "url": origin.file_url("small.iso"), "content": "iso", "filename": "far.iso"}))
    assert upid.startswith("UPID:%s:" % PEER), upid
    status = api_a.ok_data(api_a.get("/nodes/%s/tasks/%s/status" % (PEER, upid)))
    while status["status"] == "running":
        status = api_a.ok_data(api_a.get("/nodes/%s/tasks/%s/status" % (PEER, upid)))
    assert status["exitstatus"] == "OK"
    assert (b.storage_path() / "template/iso/far.iso").read_bytes() == (origin.files / "small.iso").read_bytes()
    assert tree(a.storage_path()) == before
    # Errors come back as the other node gave them.
    for path in ("/nodes/%s/storage/nope/status" % PEER, "/nodes/%s/tasks/UPID:x/status" % PEER):
        via, direct = api_a.get(path), api_b.get(path)
        assert via.status_code >= 400
        assert (via.status_code, via.reason, via.json()) == (direct.status_code, direct.reason, direct.json())
    # An unknown node stays PVE's failed lookup.
    r = api_a.get("/nodes/nowhere/storage")
    assert r.status_code == 500 and "hostname lookup 'nowhere' failed" in r.reason


def test_a_ticket_login_works_for_the_other_node(pair, origin):
    a, b = pair
    user_add(a, "alice@pve", PASSWORD)
    prox = ProxmoxAPI("127.0.0.1", port=a.port, user="alice@pve", password=PASSWORD, verify_ssl=False,
                      timeout=30)
    ids = sorted(s["storage"] for s in prox.nodes(PEER).storage.get())
    assert "local" in ids
    # A write with the ticket needs its CSRF token, passed on too.
    upid = prox.nodes(PEER).storage("local")("download-url").post(
        url=origin.file_url("small.iso"), content="iso", filename="ticket.iso")
    assert upid.startswith("UPID:%s:" % PEER)
    assert Tasks.blocking_status(prox, upid, timeout=60)["exitstatus"] == "OK"
    assert (b.storage_path() / "template/iso/ticket.iso").exists()


def test_no_second_hop_and_only_the_pinned_certificate(request, pair):
    a, b = pair
    # A forwarded request for a node that is not the receiver's: PVE's loop guard.
    r = b.api("root").get("/nodes/%s/storage" % NODE, headers={"PVEDisableProxy": "true"})
    assert_error(r, 500, "proxy loop detected")
    # A peer whose certificate is not the pinned one is not talked to.
    gen = _daemon_fixture(request, "isolib-pin-", lambda d: open(d.config, "a").write(
        'peers = ["%s 127.0.0.1:%d %s"]\n' % (PEER, b.port, "00" * 32)))
    c = next(gen)
    try:
        r = c.api("root").get("/nodes/%s/storage" % PEER)
        assert_error(r, 500, "node '%s' presented another certificate than its own" % PEER)
    finally:
        next(gen, None)


def test_the_cluster_inventory_says_what_each_node_holds(pair, origin):
    a, b = pair
    api_a = a.api("root")

    def fetch(node, name, src):
        upid = api_a.ok_data(api_a.post("/nodes/%s/storage/local/download-url" % node, data={
            "url": origin.file_url(src), "content": "iso", "filename": name}))
        status = api_a.ok_data(api_a.get("/nodes/%s/tasks/%s/status" % (node, upid)))
        while status["status"] == "running":
            status = api_a.ok_data(api_a.get("/nodes/%s/tasks/%s/status" % (node, upid)))
        assert status["exitstatus"] == "OK"

    fetch(NODE, "both.iso", "small.iso")
    fetch(PEER, "both.iso", "small.iso")
    fetch(PEER, "far.iso", "other.iso")
    fetch(NODE, "odd.iso", "small.iso")
    fetch(PEER, "odd.iso", "other.iso")  # same name, other bytes
    upid = api_a.ok_data(api_a.post("/nodes/%s/storage/local/verify" % NODE, data={"volume": "local:iso/both.iso"}))
    assert api_a.wait(upid)["exitstatus"] == "OK"

    rows = {r["volid"]: r for r in api_a.ok_data(api_a.get("/cluster/isolib/inventory"))}
    assert rows["local:iso/both.iso"]["sha256"] == origin.digest("small.iso", "sha256")
    assert rows["local:iso/both.iso"]["nodes"] == {NODE: "verified", PEER: "present"}
    assert rows["local:iso/far.iso"]["nodes"] == {NODE: "missing", PEER: "present"}
    assert rows["local:iso/far.iso"]["size"] == len(origin.data("other.iso"))
    assert sorted(rows["local:iso/odd.iso"]["nodes"].values()) == ["different", "present"]

    # A node that does not answer is reported, not left out.
    b.stop()
    rows = {r["volid"]: r for r in api_a.ok_data(api_a.get("/cluster/isolib/inventory"))}
    assert rows["local:iso/both.iso"]["nodes"] == {NODE: "verified", PEER: "unknown"}
    assert "local:iso/far.iso" not in rows
