"""Plain helpers shared by the end-to-end tests (no fixtures here: see conftest.py)."""

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import requests
from proxmoxer.tools import Tasks

NODE = "testnode"
JSON_CT = "application/json;charset=UTF-8"
PARAM_FAIL = "Parameter verification failed."

# content subdirectories a dir storage may create on activation
CONTENT_SUBDIRS = {"template", "template/iso", "template/cache", "import"}
SUBDIR = {"iso": "template/iso", "vztmpl": "template/cache", "import": "import"}

ALGOS = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]


class Api:
    """Raw HTTP access to the daemon with `requests` (form-encoded bodies, TLS verify off)."""

    def __init__(self, port, tokenid=None, secret=None, fmt="json", auth_header=None, host="127.0.0.1"):
        self.port = port
        self.host = host
        self.fmt = fmt
        self.base = "https://%s:%d/api2/%s" % (host, port, fmt)
        self.s = requests.Session()
        self.s.verify = False
        if auth_header is not None:
            self.s.headers["Authorization"] = auth_header
        elif tokenid is not None:
            self.s.headers["Authorization"] = "PVEAPIToken=%s=%s" % (tokenid, secret)

    def with_format(self, fmt):
        other = Api(self.port, fmt=fmt, host=self.host)
        other.s.headers.update(self.s.headers)
        return other

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        kw["verify"] = False  # per request: a CA-bundle variable in the environment would override the session's
        return self.s.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def download_url(self, storage="local", node=NODE, **params):
        return self.post("/nodes/%s/storage/%s/download-url" % (node, storage), data=params)

    def ok_data(self, resp):
        assert resp.status_code == 200, "HTTP %s %r: %s" % (resp.status_code, resp.reason, resp.text[:500])
        return resp.json()["data"]

    def status(self, upid):
        r = self.get("/nodes/%s/tasks/%s/status" % (upid_node(upid), upid))
        return self.ok_data(r)

    def log(self, upid, **params):
        params.setdefault("limit", 0)
        r = self.get("/nodes/%s/tasks/%s/log" % (upid_node(upid), upid), params=params)
        return self.ok_data(r)

    def log_lines(self, upid):
        return [e["t"] for e in self.log(upid)]

    def wait(self, upid, timeout=90):
        return wait_task(self, upid, timeout)

    def start_download(self, storage="local", **params):
        r = self.download_url(storage=storage, **params)
        upid = self.ok_data(r)
        assert isinstance(upid, str) and upid.startswith("UPID:"), upid
        return upid

    def run_download(self, storage="local", timeout=90, **params):
        upid = self.start_download(storage=storage, **params)
        return upid, self.wait(upid, timeout)


def upid_node(upid):
    return upid.split(":")[1]


def upid_fields(upid):
    parts = upid.split(":")
    assert len(parts) == 9 and parts[0] == "UPID" and parts[8] == "", upid
    return {
        "node": parts[1],
        "pid": int(parts[2], 16),
        "pstart": int(parts[3], 16),
        "starttime": int(parts[4], 16),
        "type": parts[5],
        "id": parts[6],
        "user": parts[7],
    }


def enc(s):
    return quote(s, safe="")


def wait_task(api, upid, timeout=90):
    """Poll the task status until it is stopped; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = api.status(upid)
        if last.get("status") == "stopped":
            return last
        time.sleep(0.1)
    raise AssertionError("task %s did not stop within %ss, last status %r" % (upid, timeout, last))


def wait_until(pred, timeout=30, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def tree(root):
    """Every entry below root (hidden ones included): relpath -> 'd' | 'f' | 'l' | 'o'."""
    out = {}
    root = str(root)
    if not os.path.exists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = "l"
            elif os.path.isdir(full):
                out[rel] = "d"
            elif os.path.isfile(full):
                out[rel] = "f"
            else:
                out[rel] = "o"
    return out


def new_entries(before, after):
    """Entries that appeared: every file, link or special file, hidden ones included.
    New directories are ignored (content subdirs are created on activation, and the daemon may keep
    a resume-state directory); any file inside them is reported."""
    added = {k: v for k, v in after.items() if k not in before}
    return {k: v for k, v in added.items() if v != "d"}


def assert_nothing_new(before, root):
    after = tree(root)
    added = new_entries(before, after)
    assert added == {}, "storage %s holds new entries after a failed task: %r" % (root, added)
    removed = sorted(set(before) - set(after))
    assert removed == [], "entries vanished: %r" % removed


def record_rel(rel):
    """Where the catalog keeps the record of the volume file at `rel`."""
    head, name = os.path.split(rel)
    return os.path.join(head, ".isolib-catalog", name + ".json")


def assert_only_new(before, root, expected_rel):
    """The volumes `expected_rel` appeared, each with its catalog record, and nothing else."""
    after = tree(root)
    added = new_entries(before, after)
    want = {rel: "f" for rel in expected_rel}
    want.update({record_rel(rel): "f" for rel in expected_rel})
    assert added == want, "new entries: %r" % added


def assert_error(resp, status, message, errors=None, fmt="json"):
    """An API error: status line reason = first line of message; JSON body with data null + message (+ errors)."""
    assert resp.status_code == status, "HTTP %s %r: %s" % (resp.status_code, resp.reason, resp.text[:500])
    assert resp.reason == message.split("\n")[0], "reason %r != %r" % (resp.reason, message)
    assert resp.headers.get("Content-Type") == JSON_CT
    body = resp.json()
    assert body.get("data", "missing") is None, body
    assert body.get("message") == message + "\n", body
    if errors is None:
        assert "errors" not in body or not body["errors"], body
    else:
        assert body.get("errors") == errors, body
    return body


def assert_param_error(resp, errors):
    return assert_error(resp, 400, PARAM_FAIL, errors)


def wait_file(path, timeout=30):
    return wait_until(lambda: Path(path).exists(), timeout=timeout, what="file %s" % path)


def blocking(prox, upid, timeout=90):
    st = Tasks.blocking_status(prox, upid, timeout=timeout, polling_interval=0.2)
    assert st is not None, "task %s did not finish within %ss" % (upid, timeout)
    assert st["status"] == "stopped"
    return st


def post_download(prox, storage="local", **params):
    # proxmoxer drops None values; the dash-named keys need a dict
    return prox.nodes(NODE).storage(storage)("download-url").post(**params)


class Gpg:
    """A throwaway GnuPG home with keys made here: nothing of the machine's own."""

    def __init__(self, home):
        self.home = home
        home.mkdir(mode=0o700)

    def run(self, *args, data=None):
        out = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode",
                              "loopback", "--passphrase", "", *args], input=data, capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout

    def key(self, uid, algo):
        self.run("--quick-gen-key", uid, algo, "sign", "never")
        listing = self.run("--with-colons", "--list-keys", uid).decode()
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def export(self, fpr, armor):
        return self.run(*(["--armor"] if armor else []), "--export", fpr)

    def sign(self, fpr, path, how):
        args = {"detached": ["--detach-sign"], "armored": ["--armor", "--detach-sign"],
                "clear": ["--clearsign"]}[how]
        self.run("--local-user", fpr, *args, "--output", str(path) + {"detached": ".sign", "armored": ".gpg",
                                                                       "clear": ".clear"}[how], str(path))
        return str(path) + {"detached": ".sign", "armored": ".gpg", "clear": ".clear"}[how]


def install_keyring(state_dir, gpg, name, fprs, armor):
    """The daemon's keyring `name` (its default `keyrings` directory) with the keys `fprs`."""
    d = Path(state_dir) / "keyrings"
    d.mkdir(parents=True, exist_ok=True)
    (d / (name + ".pgp")).write_bytes(b"".join(gpg.export(f, armor) for f in fprs))
