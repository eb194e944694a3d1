"""PVE's upload endpoint with the clients that use it: curl -F, proxmoxer, the web UI's form
(a ticket and no CSRF token, as PVE allows for uploads only) and Packer's Go client, byte for
byte. The body streams into the storage, hashed on the way; a failed or cut upload leaves
nothing behind."""

import hashlib
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from helpers import NODE, assert_error, assert_nothing_new, assert_only_new, record_rel, tree, wait_until
from test_tickets import PASSWORD, user_add

UPLOAD = "/nodes/%s/storage/local/upload" % NODE


def url(daemon, path=UPLOAD, query=""):
    return "https://127.0.0.1:%d/api2/json%s%s" % (daemon.port, path, query)


def curl(daemon, *args, who="root"):
    from conftest import SECRETS, TOKENS

    out = subprocess.run(
        ["curl", "-sk", "-H", "Authorization: PVEAPIToken=%s=%s" % (TOKENS[who], SECRETS[who]), *args],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def task_lines(api, upid):
    api.wait(upid)
    return api.log_lines(upid)


def test_curl_form_upload_streams_into_place_with_pves_log(daemon, origin):
    api = daemon.api("root")
    src = origin.files / "debian-like.iso"
    store = daemon.storage_path()
    before = tree(store)
    sha256 = hashlib.sha256(src.read_bytes()).hexdigest()
    body = curl(daemon, "-F", "content=iso", "-F", "checksum-algorithm=sha256", "-F", "checksum=" + sha256.upper(),
                "-F", "filename=@%s;filename=my image.iso" % src, url(daemon))
    upid = json.loads(body)["data"]
    assert upid.startswith("UPID:%s:" % NODE) and ":imgcopy::root@pam!admin:" in upid
    lines = task_lines(api, upid)
    dest = store / "template/iso/my_image.iso"
    assert lines[0].startswith("starting file import from: %s/.isolib-partial/my_image.iso." % store)
    assert lines[1:] == [
        "calculating checksum...OK, checksum verified",
        "target node: %s" % NODE,
        "target file: %s" % dest,
        "file size is: %d" % src.stat().st_size,
        lines[5],
        "finished file import successfully",
        "TASK OK",
    ], lines
    assert lines[5].startswith("renaming ") and lines[5].endswith(" to %s (on storage 'local')" % dest)
    assert dest.read_bytes() == src.read_bytes()
    assert_only_new(before, store, ["template/iso/my_image.iso"])
    record = json.loads((store / record_rel("template/iso/my_image.iso")).read_text())
    assert record["sha256"] == sha256
    assert record["checksum"] == {"algorithm": "sha256", "value": sha256}
    assert record["source"]["origin"] == "upload" and record["source"]["upid"] == upid
    assert record["iso"]["boot"] == {"bios": True, "uefi": True}
    assert record["os"]["id"] == "debian11"


def test_proxmoxer_upload(daemon, prox, origin):
    src = origin.files / "disk.qcow2"
    with open(src, "rb") as f:
        upid = prox.nodes(NODE).storage("local").upload.post(content="import", filename=f)
    from proxmoxer.tools import Tasks

    status = Tasks.blocking_status(prox, upid, timeout=60)
    assert status["exitstatus"] == "OK", status
    dest = daemon.storage_path() / "import/disk.qcow2"
    assert dest.read_bytes() == src.read_bytes()
    info = daemon.api("root").ok_data(
        daemon.api("root").get("/nodes/%s/storage/local/content/local:import%%2Fdisk.qcow2" % NODE))
    assert info["image"] == {"format": "qcow2", "virtual-size": 1024 * 1024}
    assert info["format"] == "qcow2" and info["size"] == 1024 * 1024


def multipart(boundary, parts, newline=b"\r\n"):
    """A body as a client writes it: (headers, payload) per part, then the closing delimiter."""
    out = b""
    for headers, payload in parts:
        out += b"--" + boundary + newline + newline.join(headers) + newline + newline + payload + newline
    return out + b"--" + boundary + b"--" + newline


def connect(daemon):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", daemon.port), timeout=30))


def request_head(daemon, path, headers):
    head = "POST /api2/json%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, daemon.port)
    return (head + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n").encode()


def raw_post(daemon, path, headers, body):
    """One HTTPS request written by hand. Returns (status, body)."""
    with connect(daemon) as s:
        s.sendall(request_head(daemon, path, headers) + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def token_header():
    from conftest import SECRETS, TOKENS

    return ("Authorization", "PVEAPIToken=%s=%s" % (TOKENS["root"], SECRETS["root"]))


def test_the_web_uis_form_with_a_ticket_and_no_csrf_token(daemon, origin):
    user_add(daemon, "alice@pve", PASSWORD)
    api = daemon.api(None)
    login = api.ok_data(api.post("/access/ticket", data={"username": "alice@pve", "password": PASSWORD}))
    src = origin.files / "plain.iso"
    boundary = b"----WebKitFormBoundaryq3Vn1pR4Ly8cTz0F"
    body = multipart(boundary, [
        ([b'Content-Disposition: form-data; name="content"'], b"iso"),
        ([b'Content-Disposition: form-data; name="filename"; filename="plain.iso"',
          b"Content-Type: application/x-cd-image"], src.read_bytes()),
    ])
    status, answer = raw_post(daemon, UPLOAD, [
        ("Cookie", "PVEAuthCookie=" + login["ticket"]),
        ("Content-Type", "multipart/form-data; boundary=" + boundary.decode()),
        ("Content-Length", str(len(body))),
    ], body)
    assert status == 200, answer
    upid = json.loads(answer)["data"]
    assert ":alice@pve:" in upid
    assert task_lines(daemon.api("root"), upid)[-1] == "TASK OK"
    assert (daemon.storage_path() / "template/iso/plain.iso").read_bytes() == src.read_bytes()


def test_packers_go_client_bytes(daemon, origin):
    """proxmox-api-go's Upload: Go's multipart.Writer writes `content`, then the file, with CRLF line ends."""
    src = origin.files / "small.iso"
    boundary = b"3f1c0b8e2a5d4c6f9e7a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4"
    body = multipart(boundary, [
        ([b'Content-Disposition: form-data; name="content"'], b"iso"),
        ([b'Content-Disposition: form-data; name="filename"; filename="small.iso"',
          b"Content-Type: application/octet-stream"], src.read_bytes()),
    ])
    status, answer = raw_post(daemon, UPLOAD, [
        token_header(),
        ("Content-Type", "multipart/form-data; boundary=" + boundary.decode()),
        ("Content-Length", str(len(body))),
        ("Accept-Encoding", "gzip"),
        ("User-Agent", "Go-http-client/1.1"),
    ], body)
    assert status == 200, answer
    upid = json.loads(answer)["data"]
    assert task_lines(daemon.api("root"), upid)[-1] == "TASK OK"
    assert (daemon.storage_path() / "template/iso/small.iso").read_bytes() == src.read_bytes()


def test_a_checksum_mismatch_fails_the_task_and_leaves_nothing(daemon, origin):
    api = daemon.api("root")
    store = daemon.storage_path()
    before = tree(store)
    src = origin.files / "small.iso"
    got = hashlib.md5(src.read_bytes()).hexdigest()
    body = curl(daemon, "-F", "content=iso", "-F", "checksum-algorithm=md5", "-F", "checksum=" + "0" * 32,
                "-F", "filename=@%s" % src, url(daemon))
    upid = json.loads(body)["data"]
    lines = task_lines(api, upid)
    assert lines[1:] == [
        "calculating checksum...",
        "TASK ERROR: checksum mismatch: got '%s' != expect '%s'" % (got, "0" * 32),
    ], lines
    assert_nothing_new(before, store)


def test_refusals_come_before_the_body_and_leave_nothing(daemon, origin):
    store = daemon.storage_path()
    before = tree(store)
    src = origin.files / "small.iso"
    body = curl(daemon, "-F", "content=iso", "-F", "file=@%s" % src, url(daemon))
    assert b"wrong field name 'file' for file upload, expected 'filename'" in body
    body = json.loads(curl(daemon, "-F", "content=iso", "-F", "filename=@%s;filename=x.txt" % src, url(daemon)))
    assert body["errors"] == {"filename": "wrong file extension"}
    body = json.loads(curl(daemon, "-F", "content=vztmpl", "-F", "filename=@%s;filename=t.tar.gz" % src,
                           url(daemon, "/nodes/%s/storage/isoonly/upload" % NODE)))
    assert body["message"] == "storage 'isoonly' does not support 'vztmpl' content\n"
    # Not a form: a request like any other, whose body is too big for one.
    out = curl(daemon, "--http1.1", "-w", "%{http_code}", "-H", "Content-Type: application/octet-stream",
               "--data-binary", "@%s" % src, url(daemon))
    assert out.endswith(b"501"), out
    # No file part: PVE's handler has no file to import.
    body = json.loads(curl(daemon, "-F", "content=iso", url(daemon, query="?filename=x.iso")))
    assert body["message"] == "missing temporary file name\n", body
    out = curl(daemon, "-w", "%{http_code}", "-F", "content=iso", "-F", "filename=@%s" % src,
               url(daemon, query="?tmpfilename=/var/tmp/pveupload-00"))
    assert out.endswith(b"501"), out
    # dave has no Datastore.AllocateTemplate on isoonly: refused before the body is read
    r = daemon.api("dave").post("/nodes/%s/storage/isoonly/upload" % NODE, files={"filename": ("a.iso", b"x")},
                                data={"content": "iso"})
    assert r.status_code == 403, r.text
    assert_nothing_new(before, store)
    assert_nothing_new({}, daemon.storage_path("isoonly"))


def test_a_cut_upload_leaves_nothing_behind(daemon, origin):
    store = daemon.storage_path()
    before = tree(store)
    boundary = b"cutcutcut"
    data = os.urandom(4 * 1024 * 1024)
    body = multipart(boundary, [
        ([b'Content-Disposition: form-data; name="content"'], b"iso"),
        ([b'Content-Disposition: form-data; name="filename"; filename="cut.iso"'], data),
    ])
    intake = lambda: [k for k in tree(store) if k.endswith(".intake")]  # noqa: E731
    with connect(daemon) as s:
        s.sendall(request_head(daemon, UPLOAD, [
            token_header(),
            ("Content-Type", "multipart/form-data; boundary=" + boundary.decode()),
            ("Content-Length", str(len(body))),
        ]) + body[: len(body) // 2])
        # The bytes go straight into the storage's staging directory, not to /var/tmp.
        wait_until(intake, timeout=30, what="the upload's temp file")
        assert intake()[0].startswith(".isolib-partial/cut.iso.")
    # The body broke off; its temp file goes with it.
    wait_until(lambda: not intake(), timeout=30, what="the temp file to go")
    time.sleep(0.5)
    assert_nothing_new(before, store)
    assert daemon.api("root").get("/version").status_code == 200
