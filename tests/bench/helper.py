#!/usr/bin/env python3
"""Stdlib-only helper for tests/bench/run.sh: drives the isolib API and runs the cut origin.

Every subcommand prints one JSON object on stdout. Loopback only.

  one   PORT URL NAME SHA PID          one download, timed request -> TASK OK; polls the daemon's
                                       VmRSS every 0.1 s and reads VmHWM at the end
  many  PORT SHA URL=NAME ...          concurrent different downloads, timed until all are OK
  same  PORT URL NAME SHA COUNT        COUNT identical concurrent requests, all must end OK
  cut   PORT FILE NAME SHA             a local origin that closes the first GET at half the
                                       file and honours `Range: bytes=N-` (206) afterwards;
                                       one isolib download through it; bytes the origin sent
  upload PORT FILE NAME PID            one multipart upload (PVE's upload endpoint), streamed
                                       from FILE, timed request -> TASK OK; peak RSS as `one`
  spool PORT DIR                       PVE's upload receiver in miniature: writes each POSTed
                                       body to DIR/pveupload-N with an MD5 on the way, as
                                       pve-http-server does; serves until killed
"""

import email.utils
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

NODE = os.environ.get("BENCH_NODE", "bench")
TOKEN = os.environ.get("BENCH_TOKEN", "root@pam!bench")
SECRET = os.environ["BENCH_SECRET"]
POLL = 0.05


def _req(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": "PVEAPIToken=%s=%s" % (TOKEN, SECRET)}
    if body is not None:
        body = urllib.parse.urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, "/api2/json" + path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError("%s %s -> HTTP %s %s: %r" % (method, path, r.status, r.reason, data[:300]))
    return json.loads(data)["data"]


def post(port, url, name, sha, **extra):
    params = {"url": url, "content": "iso", "filename": name,
              "checksum-algorithm": "sha256", "checksum": sha}
    params.update(extra)
    return _req(port, "POST", "/nodes/%s/storage/local/download-url" % NODE, params)


def wait(port, upid, timeout=3600):
    deadline = time.monotonic() + timeout
    q = urllib.parse.quote(upid, safe="")
    while time.monotonic() < deadline:
        s = _req(port, "GET", "/nodes/%s/tasks/%s/status" % (NODE, q))
        if s.get("exitstatus") is not None:
            return s["exitstatus"]
        time.sleep(POLL)
    return "timeout"


def proc_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def meminfo_kib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cmd_one(port, url, name, sha, pid, *extra):
    """One download; `extra` are more download-url parameters as KEY=VALUE."""
    pid = int(pid)
    peak = [proc_kib(pid, "VmRSS")]
    dirty = [meminfo_kib("Dirty")]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc_kib(pid, "VmRSS"))
            dirty[0] = max(dirty[0], meminfo_kib("Dirty"))
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.monotonic()
    upid = post(port, url, name, sha, **dict(e.split("=", 1) for e in extra))
    status = wait(port, upid)
    secs = time.monotonic() - start
    done.set()
    t.join()
    return {"seconds": secs, "status": status, "rss_peak_kib": peak[0],
            "hwm_kib": proc_kib(pid, "VmHWM"), "dirty_peak_kib": dirty[0]}


def _parallel(fn, args):
    out = [None] * len(args)
    errs = []

    def run(i, a):
        try:
            out[i] = fn(*a)
        except Exception as e:  # reported, not swallowed
            errs.append(repr(e))

    ts = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise RuntimeError("; ".join(errs))
    return out


def cmd_many(port, sha, *pairs):
    """The downloads at once, while a client polls a task's status and log 100 times a second,
    as the web UI and Packer do; reports those requests' latencies."""
    jobs = [p.split("=", 1) for p in pairs]
    upids = []
    latencies = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            if upids:
                q = urllib.parse.quote(upids[0], safe="")
                for path in ("/nodes/%s/tasks/%s/status" % (NODE, q), "/nodes/%s/tasks/%s/log" % (NODE, q)):
                    t = time.monotonic()
                    _req(port, "GET", path)
                    latencies.append(time.monotonic() - t)
            done.wait(0.02)  # two requests every 20 ms: 100 a second

    def one(u, n):
        upid = post(port, u, n, sha)
        upids.append(upid)
        return wait(port, upid)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    start = time.monotonic()
    statuses = _parallel(one, jobs)
    secs = time.monotonic() - start
    done.set()
    poller.join()
    lat = sorted(latencies) or [0.0]
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    return {"seconds": secs, "statuses": statuses, "polls": len(latencies),
            "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": lat[-1] * 1000}


def cmd_same(port, url, name, sha, count):
    start = time.monotonic()
    statuses = _parallel(lambda: wait(port, post(port, url, name, sha)), [()] * int(count))
    return {"seconds": time.monotonic() - start, "statuses": statuses}


# --- the cut origin ------------------------------------------------------------------------------

class CutOrigin:
    """Serves one file at any path. The first GET gets 200 with the full Content-Length but only
    half the body, then the connection is closed; later GETs honour `Range: bytes=N-` (206)."""

    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        st = os.stat(path)
        self.etag = '"bench-%x-%x"' % (st.st_size, int(st.st_mtime))
        self.lastmod = email.utils.formatdate(st.st_mtime, usegmt=True)
        self.sent = 0
        self.gets = 0
        self.log = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(60)
            head = b""
            while b"\r\n\r\n" not in head:
                b = conn.recv(4096)
                if not b:
                    return
                head += b
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            hdr = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                hdr[k.strip().lower()] = v.strip()
            start = 0
            rng = hdr.get("range", "")
            if_range = hdr.get("if-range", "")
            if rng.startswith("bytes=") and rng.endswith("-") and (
                    not if_range or if_range in (self.etag, self.lastmod)):
                try:
                    start = int(rng[6:-1])
                except ValueError:
                    start = 0
            start = min(start, self.size)
            common = ("ETag: %s\r\nLast-Modified: %s\r\nAccept-Ranges: bytes\r\n"
                      "Content-Type: application/octet-stream\r\nConnection: close\r\n"
                      % (self.etag, self.lastmod))
            if start:
                status = "206 Partial Content"
                common += "Content-Range: bytes %d-%d/%d\r\n" % (start, self.size - 1, self.size)
            else:
                status = "200 OK"
            conn.sendall(("HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n"
                          % (status, self.size - start, common)).encode())
            if method != "GET":
                return
            with self.lock:
                self.gets += 1
                first = self.gets == 1
                self.log.append(rng or "-")
            count = (self.size // 2) if first else (self.size - start)
            sent = 0
            with open(self.path, "rb") as f:
                while sent < count:
                    n = conn.sendfile(f, offset=start + sent, count=count - sent)
                    if not n:
                        break
                    sent += n
            with self.lock:
                self.sent += sent
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()

    def stop(self):
        self.sock.close()


def cmd_cut(port, path, name, sha):
    o = CutOrigin(path)
    try:
        start = time.monotonic()
        upid = post(port, "http://127.0.0.1:%d/cut.iso" % o.port, name, sha)
        status = wait(port, upid)
        secs = time.monotonic() - start
        time.sleep(0.2)
        with o.lock:
            return {"seconds": secs, "status": status, "bytes_sent": o.sent, "size": o.size,
                    "gets": o.gets, "ranges": o.log}
    finally:
        o.stop()


class _Sampler:
    """Peak VmRSS of `pid`, polled every 0.1 s while in use."""

    def __init__(self, pid):
        self.pid = int(pid)
        self.peak = proc_kib(self.pid, "VmRSS")
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, proc_kib(self.pid, "VmRSS"))
            self.done.wait(0.1)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.t.join()


def cmd_upload(port, path, name, pid):
    boundary = "benchboundary7f3a"
    head = ("--%s\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, boundary, name)).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    size = os.path.getsize(path)

    def body():
        yield head
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                yield chunk
        yield tail

    with _Sampler(pid) as sampler:
        start = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
        c.request("POST", "/api2/json/nodes/%s/storage/local/upload" % NODE, body=body(), headers={
            "Authorization": "PVEAPIToken=%s=%s" % (TOKEN, SECRET),
            "Content-Type": "multipart/form-data; boundary=" + boundary,
            "Content-Length": str(len(head) + size + len(tail)),
        })
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError("upload -> HTTP %s %s: %r" % (r.status, r.reason, data[:300]))
        status = wait(port, json.loads(data)["data"])
        secs = time.monotonic() - start
    return {"seconds": secs, "status": status, "rss_peak_kib": sampler.peak,
            "hwm_kib": proc_kib(int(pid), "VmHWM")}


def cmd_spool(port, directory):
    import hashlib
    import http.server

    count = [0]

    class Spool(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            count[0] += 1
            left = int(self.headers["Content-Length"])
            md5 = hashlib.md5()
            with open(os.path.join(directory, "pveupload-%d" % count[0]), "wb") as out:
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    md5.update(chunk)
                    left -= len(chunk)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Spool).serve_forever()


def dirty_during(*cmd):
    """Runs `cmd`; its seconds and the peak of Dirty in /proc/meminfo meanwhile."""
    dirty = [meminfo_kib("Dirty")]
    start = time.monotonic()
    p = subprocess.Popen(cmd)
    while p.poll() is None:
        dirty[0] = max(dirty[0], meminfo_kib("Dirty"))
        time.sleep(0.05)
    if p.returncode != 0:
        raise RuntimeError("%s failed with %s" % (cmd, p.returncode))
    return {"seconds": time.monotonic() - start, "dirty_peak_kib": dirty[0]}


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dirty-during":
        print(json.dumps(dirty_during(*args)))
        return
    fn = {"one": cmd_one, "many": cmd_many, "same": cmd_same, "cut": cmd_cut,
          "upload": cmd_upload, "spool": cmd_spool}[cmd]
    port = int(args[0])
    print(json.dumps(fn(port, *args[1:])))


if __name__ == "__main__":
    main()
