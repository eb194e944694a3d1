"""A tiny HTTP origin for the few behaviours nginx cannot produce.

Paths (all serve files from one directory):
  /nohead405/<name>  HEAD -> 405; GET honours `Range: bytes=a-b` (206 + Content-Range) or sends the whole file
  /nohead501/<name>  HEAD -> 501; GET as above
  /chunked/<name>    HEAD and GET without Content-Length; GET body sent with Transfer-Encoding: chunked
  /changing/<name>   the file changes after the first GET: that one gets the file with ETag "v1", every
                     later one its bytes reversed with ETag "v2"; `Range` is honoured unless `If-Range`
                     names the other version
  /flaky/<name>      ETag "f1" and ranges, but the first request with `Range` gets only half of its
                     body before the connection closes

Binds 127.0.0.1 only; runs in a daemon thread; `stop()` shuts it down.
"""

import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-origin/1"
    timeout = 30  # per-connection socket timeout

    def log_message(self, fmt, *args):  # keep pytest output clean; keep a record for debugging
        self.server.log.append("%s %s" % (self.address_string(), fmt % args))

    def _resolve(self):
        parts = self.path.split("?", 1)[0].split("/")
        if len(parts) != 3 or parts[0] != "":
            return None, None
        mode, name = parts[1], parts[2]
        if "/" in name or name.startswith("."):
            return mode, None
        path = os.path.join(self.server.docroot, name)
        if not os.path.isfile(path):
            return mode, None
        return mode, path

    def _not_found(self):
        body = b"not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, code):
        body = b"no HEAD here\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", "GET")
        self.end_headers()
        # HEAD response: no body

    def do_HEAD(self):
        self.server.requests.append(("HEAD", self.path, dict(self.headers)))
        mode, path = self._resolve()
        if mode == "nohead405":
            return self._refuse(405)
        if mode == "nohead501":
            return self._refuse(501)
        if path is None or mode != "chunked":
            return self._not_found()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def do_GET(self):
        self.server.requests.append(("GET", self.path, dict(self.headers)))
        mode, path = self._resolve()
        if path is None or mode not in ("nohead405", "nohead501", "chunked", "changing", "flaky"):
            return self._not_found()
        with open(path, "rb") as f:
            data = f.read()
        if mode == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = 64 * 1024
            for i in range(0, len(data), step):
                chunk = data[i : i + step]
                self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        total = len(data)
        rng = self.headers.get("Range")
        extra = {}
        if mode == "changing":
            with self.server.lock:
                first = path not in self.server.changed
                self.server.changed.add(path)
            etag = '"v1"' if first else '"v2"'
            if not first:
                data = data[::-1]
            if self.headers.get("If-Range", etag) != etag:
                rng = None
            extra = {"ETag": etag}
        cut = False
        if mode == "flaky":
            extra = {"ETag": '"f1"'}
            if rng:
                with self.server.lock:
                    cut = path not in self.server.cut
                    self.server.cut.add(path)
        m = RANGE_RE.match(rng.strip()) if rng else None
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else total - 1
            end = min(end, total - 1)
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % total)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, total))
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra.items():
                self.send_header(k, v)
            if cut:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if cut else body)
            if cut:
                self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(total))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class FaultOrigin:
    def __init__(self, docroot):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.docroot = docroot
        self.httpd.requests = []
        self.httpd.log = []
        self.httpd.changed = set()
        self.httpd.cut = set()
        self.httpd.lock = threading.Lock()
        self.port = self.httpd.server_address[1]
        self.base = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def requests(self):
        return self.httpd.requests

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
