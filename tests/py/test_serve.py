"""Volumes served over HTTP for installers and iPXE: GET and HEAD on /files/{storage}/{volname},
single ranges (206, 416), If-Range on the sha256 ETag, public and private volumes, and nothing
served that failed its verification."""

import hashlib
import os
import re
import subprocess
import time

import pytest
import requests

from conftest import _daemon_fixture, free_port
from helpers import NODE, enc, wait_until


def files_url(daemon, volname, storage="local"):
    return "https://127.0.0.1:%d/files/%s/%s" % (daemon.port, storage, volname)


def get(daemon, volname, method="GET", who=None, **headers):
    h = dict(headers)
    if who is not None:
        from conftest import SECRETS, TOKENS
        h["Authorization"] = "PVEAPIToken=%s=%s" % (TOKENS[who], SECRETS[who])
    return requests.request(method, files_url(daemon, volname), headers=h, verify=False, timeout=30)


def test_ranges_etags_and_access(daemon, origin):
    api = daemon.api("root")
    upid = api.start_download(url=origin.file_url("debian-like.iso"), content="iso", filename="d.iso")
    assert api.wait(upid)["exitstatus"] == "OK"
    data = (origin.files / "debian-like.iso").read_bytes()
    etag = '"sha256-%s"' % hashlib.sha256(data).hexdigest()

    # New volumes are private: credentials with Datastore.Audit, or nothing.
    assert get(daemon, "iso/d.iso").status_code == 401
    r = get(daemon, "iso/d.iso", who="root")
    assert r.status_code == 200 and r.content == data
    assert r.headers["ETag"] == etag and r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Last-Modified"].endswith("GMT")
    assert get(daemon, "iso/d.iso", who="alice_sep").status_code == 403

    r = api.request("PUT", "/nodes/%s/storage/local/content/%s" % (NODE, enc("local:iso/d.iso")),
                    data={"access": "public"})
    assert r.status_code == 200, r.text
    assert api.ok_data(api.get("/nodes/%s/storage/local/content/%s" % (NODE, enc("local:iso/d.iso"))))[
        "access"] == "public"
    r = daemon.api("alice_sep").request("PUT", "/nodes/%s/storage/local/content/%s" % (
        NODE, enc("local:iso/d.iso")), data={"access": "private"})
    assert r.status_code == 403, r.text

    # What iPXE's sanboot sends: HEAD for the size, then ranges of the volume descriptors.
    r = get(daemon, "iso/d.iso", method="HEAD")
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data) and r.content == b""
    r = get(daemon, "iso/d.iso", Range="bytes=32768-34815")
    assert r.status_code == 206 and r.content == data[32768:34816]
    assert r.headers["Content-Range"] == "bytes 32768-34815/%d" % len(data)
    r = get(daemon, "iso/d.iso", Range="bytes=-10")
    assert r.status_code == 206 and r.content == data[-10:]
    r = get(daemon, "iso/d.iso", Range="bytes=%d-" % len(data))
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */%d" % len(data)
    r = get(daemon, "iso/d.iso", Range="bytes=0-1,5-9")
    assert r.status_code == 200 and r.content == data, "a multi-range request gets the whole file"
    r = get(daemon, "iso/d.iso", Range="bytes=0-3", **{"If-Range": etag})
    assert r.status_code == 206 and r.content == data[:4]
    r = get(daemon, "iso/d.iso", Range="bytes=0-3", **{"If-Range": '"sha256-other"'})
    assert r.status_code == 200 and r.content == data

    assert get(daemon, "iso/nope.iso").status_code == 404
    assert get(daemon, "iso/d.iso", method="POST").status_code == 405

    # Bit rot found by a verification: no longer served.
    path = daemon.storage_path() / "template/iso/d.iso"
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 8)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    upid = api.ok_data(api.post("/nodes/%s/storage/local/verify" % NODE, data={"volume": "iso/d.iso"}))
    assert api.wait(upid)["exitstatus"] == "verification failed for 1 of 1 volumes", api.log_lines(upid)
    r = get(daemon, "iso/d.iso")
    assert r.status_code == 409 and "failed its verification" in r.text


@pytest.fixture
def plain_daemon(request):
    port = free_port()

    def prepare(d):
        d.plain_port = port
        with open(d.config, "a") as f:
            f.write('http-listen = "127.0.0.1:%d"\n' % port)
    yield from _daemon_fixture(request, "isolib-plain-", prepare)


def test_the_plain_listener_serves_public_volumes_only(plain_daemon, origin):
    api = plain_daemon.api("root")
    for name in ("pub.iso", "priv.iso"):
        upid = api.start_download(url=origin.file_url("small.iso"), content="iso", filename=name)
        assert api.wait(upid)["exitstatus"] == "OK"
    r = api.request("PUT", "/nodes/%s/storage/local/content/%s" % (NODE, enc("local:iso/pub.iso")),
                    data={"access": "public"})
    assert r.status_code == 200, r.text
    base = "http://127.0.0.1:%d" % plain_daemon.plain_port
    r = requests.get(base + "/files/local/iso/pub.iso", timeout=30)
    assert r.status_code == 200 and r.content == (origin.files / "small.iso").read_bytes()
    r = requests.get(base + "/files/local/iso/priv.iso", timeout=30, headers={
        "Authorization": "PVEAPIToken=x=y"})
    assert r.status_code == 404, "private volumes are not there, whatever the credentials"
    assert requests.get(base + "/api2/json/version", timeout=30).status_code == 404


def test_the_plain_listener_sends_with_sendfile(plain_daemon, origin, tmp_path):
    """The plain listener is a server of its own so that a volume's bytes go from the page cache
    to the socket with sendfile(2); the same answers as the API's listener, requests one after
    another on one connection."""
    api = plain_daemon.api("root")
    upid = api.start_download(url=origin.file_url("debian-like.iso"), content="iso", filename="zc.iso")
    assert api.wait(upid)["exitstatus"] == "OK"
    r = api.request("PUT", "/nodes/%s/storage/local/content/%s" % (NODE, enc("local:iso/zc.iso")),
                    data={"access": "public"})
    assert r.status_code == 200, r.text
    data = (origin.files / "debian-like.iso").read_bytes()
    etag = '"sha256-%s"' % hashlib.sha256(data).hexdigest()
    url = "http://127.0.0.1:%d/files/local/iso/zc.iso" % plain_daemon.plain_port
    s = requests.Session()
    r = s.head(url, timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data) and r.content == b""
    assert r.headers["ETag"] == etag and r.headers["Last-Modified"].endswith("GMT")
    r = s.get(url, headers={"Range": "bytes=32768-34815"}, timeout=30)
    assert r.status_code == 206 and r.content == data[32768:34816]
    assert r.headers["Content-Range"] == "bytes 32768-34815/%d" % len(data)
    r = s.get(url, headers={"Range": "bytes=%d-" % len(data)}, timeout=30)
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */%d" % len(data)
    r = s.get(url, headers={"Range": "bytes=0-3", "If-Range": '"sha256-other"'}, timeout=30)
    assert r.status_code == 200 and r.content == data
    r = s.post(url, timeout=30)
    assert r.status_code == 405

    trace = tmp_path / "strace.txt"
    pid = plain_daemon.proc.pid
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=sendfile,sendfile64", "-p", str(pid),
                               "-o", str(trace)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: "TracerPid:\t0" not in open("/proc/%d/status" % pid).read(), what="strace to attach")
        time.sleep(0.5)  # every thread, not just the first
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and r.content == data
    finally:
        tracer.terminate()
        tracer.wait(timeout=30)
    sent = sum(int(n) for n in re.findall(r"sendfile(?:64)?\(.*\)\s+=\s+(\d+)", trace.read_text()))
    assert sent == len(data), trace.read_text()[-2000:]
