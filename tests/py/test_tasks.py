"""Task endpoints (pve-api.md §4): list, index, status, log, stop, persistence."""

import time

import pytest

from helpers import (
    JSON_CT,
    assert_error,
    NODE,
    assert_nothing_new,
    enc,
    tree,
    upid_fields,
    wait_until,
)

TASK_FIELDS = {"upid", "node", "pid", "pstart", "starttime", "type", "id", "user", "endtime", "status"}


def tasks(api, **params):
    r = api.get("/nodes/%s/tasks" % NODE, params=params)
    assert r.status_code == 200, (r.status_code, r.reason, r.text)
    assert r.headers["Content-Type"] == JSON_CT
    return r.json()


def start_slow(api, origin, filename="slow.iso"):
    return api.start_download(url=origin.url("/slow/big.iso"), content="iso", filename=filename)


def wait_running_with_bytes(api, upid, timeout=30):
    """Running and the download has begun (at least the first log line is there)."""
    def ready():
        st = api.status(upid)
        assert st["status"] == "running", st
        return len(api.log(upid)) >= 1
    wait_until(ready, timeout=timeout, what="task %s to start downloading" % upid)


@pytest.fixture
def three_tasks(daemon, api, origin):
    """An OK download (root), a failed one (root), an OK one by erin's token; run one after the other."""
    ups = []
    u, st = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="t1.iso")
    assert st["exitstatus"] == "OK"
    ups.append(u)
    time.sleep(1.1)  # distinct start times so "newest first" is well defined
    u, st = api.run_download(url=origin.url("/missing.iso"), content="iso", filename="t2.iso")
    assert st["exitstatus"] != "OK"
    ups.append(u)
    time.sleep(1.1)
    erin = daemon.api("erin")
    u, st = erin.run_download(url=origin.file_url("small.img"), content="iso", filename="t3.img")
    assert st["exitstatus"] == "OK"
    ups.append(u)
    return ups


def test_task_list_newest_first_with_total(api, three_tasks):
    body = tasks(api)
    data = body["data"]
    assert [t["upid"] for t in data] == list(reversed(three_tasks)), data
    assert body["total"] == 3
    for t in data:
        assert TASK_FIELDS <= set(t), t
        f = upid_fields(t["upid"])
        assert t["node"] == NODE and t["type"] == "download"
        assert (t["pid"], t["pstart"], t["starttime"], t["id"]) == (f["pid"], f["pstart"], f["starttime"], f["id"])
        assert isinstance(t["endtime"], int) and t["endtime"] >= t["starttime"]
    by = {t["upid"]: t for t in data}
    t1, t2, t3 = (by[u] for u in three_tasks)
    assert t1["status"] == "OK" and t3["status"] == "OK"
    assert t2["status"] == "download failed: HTTP 404 Not Found"
    # token tasks: user cut to user@realm, token name in tokenid
    assert (t1["user"], t1["tokenid"]) == ("root@pam", "admin")
    assert (t3["user"], t3["tokenid"]) == ("erin@pve", "tok")
    assert t1["id"] == "t1.iso" and t3["id"] == "t3.img"


def test_task_list_filters(api, three_tasks):
    t1, t2, t3 = three_tasks
    assert [t["upid"] for t in tasks(api, typefilter="download")["data"]] == [t3, t2, t1]
    body = tasks(api, typefilter="imgdel")
    assert body["data"] == [] and body.get("total", 0) == 0
    body = tasks(api, userfilter="ERIN")
    assert [t["upid"] for t in body["data"]] == [t3] and body["total"] == 1
    body = tasks(api, errors=1)
    assert [t["upid"] for t in body["data"]] == [t2] and body["total"] == 1
    # vmid is a pve-vmid (integer) matched against the task id: download ids are file names
    body = tasks(api, vmid=100)
    assert body["data"] == [] and body.get("total", 0) == 0
    r = api.get("/nodes/%s/tasks" % NODE, params={"vmid": "t1.iso"})
    assert r.status_code == 400 and list(r.json()["errors"]) == ["vmid"], (r.status_code, r.text)
    body = tasks(api, limit=1)
    assert [t["upid"] for t in body["data"]] == [t3] and body["total"] == 3
    body = tasks(api, start=1, limit=1)
    assert [t["upid"] for t in body["data"]] == [t2] and body["total"] == 3
    body = tasks(api, statusfilter="error")
    assert [t["upid"] for t in body["data"]] == [t2]
    body = tasks(api, statusfilter="ok")
    assert [t["upid"] for t in body["data"]] == [t3, t1]


def test_task_list_visibility_for_tokens(daemon, three_tasks):
    t1, t2, t3 = three_tasks
    # erin has no Sys.Audit on /nodes/testnode: sees only her own token's tasks
    body = tasks(daemon.api("erin"))
    assert [t["upid"] for t in body["data"]] == [t3], body


def test_task_list_source_active(daemon, api, origin):
    store = daemon.storage_path()
    u1, st = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="done.iso")
    assert st["exitstatus"] == "OK"
    before = tree(store)
    slow = start_slow(api, origin)
    try:
        wait_running_with_bytes(api, slow)
        archive = [t["upid"] for t in tasks(api)["data"]]
        assert slow not in archive and u1 in archive
        active = tasks(api, source="active")["data"]
        running = [t for t in active if t["upid"] == slow]
        assert len(running) == 1, active
        assert running[0]["status"] == "RUNNING", running
        assert "saved" in running[0], running
        allt = tasks(api, source="all")["data"]
        assert allt[0]["upid"] == slow, allt
        assert u1 in [t["upid"] for t in allt]
    finally:
        api.delete("/nodes/%s/tasks/%s" % (NODE, slow))
    st = api.wait(slow, timeout=30)
    assert st["exitstatus"] != "OK"
    assert_nothing_new(before, store)


def test_task_index(api, origin):
    u, _ = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="idx.iso")
    r = api.get("/nodes/%s/tasks/%s" % (NODE, u))
    assert r.status_code == 200
    assert r.json()["data"] == [{"name": "log"}, {"name": "status"}]


def test_status_fields_and_running_has_no_exitstatus(daemon, api, origin):
    store = daemon.storage_path()
    before = tree(store)
    upid = start_slow(api, origin)
    try:
        st = api.status(upid)
        assert st["status"] == "running", st
        assert "exitstatus" not in st, st
        f = upid_fields(upid)
        assert st["upid"] == upid
        assert (st["node"], st["pid"], st["pstart"], st["starttime"], st["type"], st["id"]) == (
            NODE, f["pid"], f["pstart"], f["starttime"], "download", "slow.iso")
        assert st["user"] == "root@pam" and st["tokenid"] == "admin", st
        # the running download is not visible as a volume
        assert not (store / "template/iso/slow.iso").exists()
        r = api.get("/nodes/%s/storage/local/content" % NODE)
        assert [c["volid"] for c in r.json()["data"]] == []
    finally:
        r = api.delete("/nodes/%s/tasks/%s" % (NODE, upid))
    assert r.status_code == 200 and r.json() == {"data": None}, (r.status_code, r.text)
    st = api.wait(upid, timeout=30)
    assert st["status"] == "stopped"
    assert st["exitstatus"] != "OK" and st["exitstatus"], st
    assert api.log_lines(upid)[-1].startswith("TASK ERROR: ") or st["exitstatus"] == "unexpected status"
    assert_nothing_new(before, store)


def test_stop_running_download_leaves_nothing(daemon, api, origin):
    store = daemon.storage_path()
    before = tree(store)
    upid = start_slow(api, origin, "stopme.iso")
    wait_running_with_bytes(api, upid)
    # let some bytes arrive so a partial file would exist somewhere
    time.sleep(1.0)
    r = api.delete("/nodes/%s/tasks/%s" % (NODE, enc(upid)))
    assert r.status_code == 200, (r.status_code, r.reason, r.text)
    assert r.json() == {"data": None}
    st = api.wait(upid, timeout=30)
    # pve-api.md §1.6 (read from the code): the worker's TERM handler dies "received interrupt"
    assert st["status"] == "stopped" and st["exitstatus"] == "download failed: received interrupt", st
    assert api.log_lines(upid)[-1] == "TASK ERROR: download failed: received interrupt"
    assert_nothing_new(before, store)
    lst = {t["upid"]: t for t in tasks(api)["data"]}
    assert upid in lst and lst[upid]["status"] == st["exitstatus"]


def test_log_paging(api, origin):
    u, _ = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="logpage.iso",
                            checksum=origin.digest("small.iso", "sha256"), **{"checksum-algorithm": "sha256"})
    path = "/nodes/%s/tasks/%s/log" % (NODE, u)
    r = api.get(path, params={"limit": 0})
    body = r.json()
    full = body["data"]
    n = len(full)
    assert n >= 4, full
    assert body["total"] == n
    assert [e["n"] for e in full] == list(range(1, n + 1))
    assert full[-1] == {"n": n, "t": "TASK OK"}
    # start is a 0-based offset, n is 1-based
    body = api.get(path, params={"start": 1, "limit": 2}).json()
    assert body["data"] == full[1:3] and body["total"] == n
    body = api.get(path, params={"start": n - 1}).json()
    assert body["data"] == [full[-1]] and body["total"] == n
    body = api.get(path, params={"start": 2, "limit": 0}).json()
    assert body["data"] == full[2:]
    body = api.get(path, params={"start": n + 5}).json()
    assert body["data"] == [] and body["total"] == n
    # default limit is 50
    body = api.get(path).json()
    assert body["data"] == full[:50]


def test_log_download_raw(api, origin):
    u, _ = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="raw.iso")
    lines = api.log_lines(u)
    r = api.get("/nodes/%s/tasks/%s/log" % (NODE, u), params={"download": 1})
    assert r.status_code == 200, (r.status_code, r.reason)
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    cd = r.headers.get("Content-Disposition", "")
    assert cd.startswith('attachment; filename="task-%s-download-' % NODE) and cd.endswith('.log"'), cd
    assert r.text.rstrip("\n").split("\n") == lines
    r = api.get("/nodes/%s/tasks/%s/log" % (NODE, u), params={"download": 1, "start": 1})
    assert_error(r, 500, "'download' cannot be used together with 'start' or 'limit' parameters")


def test_percent_encoded_upid(api, origin):
    u, st = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="pct.iso")
    e = enc(u)
    assert "%3A" in e and "%40" in e
    r = api.get("/nodes/%s/tasks/%s/status" % (NODE, e))
    assert r.status_code == 200, (r.status_code, r.reason)
    assert r.json()["data"] == st
    r = api.get("/nodes/%s/tasks/%s/log" % (NODE, e), params={"limit": 0})
    assert r.status_code == 200
    assert r.json()["data"][-1]["t"] == "TASK OK"


@pytest.mark.parametrize("suffix", ["/status", "/log"])
def test_unparseable_upid(shared_api, suffix):
    r = shared_api.get("/nodes/%s/tasks/UPID:bogus%s" % (NODE, suffix))
    assert r.status_code == 400, (r.status_code, r.reason, r.text)
    assert r.json()["errors"] == {"upid": "unable to parse worker upid"}


def test_unparseable_upid_stop(shared_api):
    r = shared_api.delete("/nodes/%s/tasks/not-a-upid" % NODE)
    assert r.status_code == 400, (r.status_code, r.reason, r.text)
    assert r.json()["errors"] == {"upid": "unable to parse worker upid"}


def test_unknown_task(shared_api):
    upid = "UPID:%s:00001234:00ABCDEF:5F000000:download:nothere.iso:root@pam!admin:" % NODE
    r = shared_api.get("/nodes/%s/tasks/%s/status" % (NODE, upid))
    assert r.status_code == 400, (r.status_code, r.reason, r.text)
    assert r.json()["errors"] == {"upid": "no such task"}


def test_tasks_survive_restart(daemon, api, origin):
    ok, st_ok = api.run_download(url=origin.file_url("small.iso"), content="iso", filename="keep1.iso")
    bad, st_bad = api.run_download(url=origin.url("/missing.iso"), content="iso", filename="keep2.iso")
    log_ok = api.log(ok)
    log_bad = api.log(bad)
    listed = tasks(api)
    daemon.restart()
    api2 = daemon.api("root")
    assert api2.status(ok) == st_ok
    assert api2.status(bad) == st_bad
    assert api2.log(ok) == log_ok
    assert api2.log(bad) == log_bad
    after = tasks(api2)
    assert after["data"] == listed["data"]
    assert after["total"] == listed["total"] == 2
    # new tasks still work and come first
    new, st = api2.run_download(url=origin.file_url("small.img"), content="iso", filename="keep3.img")
    assert st["exitstatus"] == "OK"
    assert [t["upid"] for t in tasks(api2)["data"]] == [new, bad, ok]


def test_download_interrupted_by_daemon_restart(daemon, api, origin):
    """A daemon stopped during a download: the target never appears under its name unless complete,
    and the task ends (stopped) after the restart; if it is reported OK, the file is complete."""
    store = daemon.storage_path()
    dest = store / "template/iso/crash.iso"
    upid = start_slow(api, origin, "crash.iso")
    wait_running_with_bytes(api, upid)
    daemon.restart()
    api2 = daemon.api("root")

    def stopped():
        listed = [c["volid"] for c in api2.ok_data(api2.get("/nodes/%s/storage/local/content" % NODE))]
        st = api2.status(upid)
        if st["status"] != "stopped":
            assert listed == [] and not dest.exists(), (listed, st)
            return None
        return st

    st = wait_until(stopped, timeout=150, interval=0.5, what="interrupted task to stop")
    if st["exitstatus"] == "OK":
        assert dest.read_bytes() == origin.data("big.iso")
    else:
        assert not dest.exists()
        r = api2.get("/nodes/%s/storage/local/content" % NODE)
        assert [c["volid"] for c in r.json()["data"]] == []
