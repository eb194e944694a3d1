"""End-to-end harness: a real nginx origin, a fault origin for what nginx can't do, and the real
isolib daemon (TLS, API tokens, PVE-format config files), all on 127.0.0.1 free ports."""

import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_origin import FaultOrigin  # noqa: E402
from helpers import ALGOS, NODE, Api, Gpg  # noqa: E402

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target/debug/isolib"

MiB = 1024 * 1024


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, cwd=None, stdout=None):
    subprocess.run(cmd, cwd=cwd, stdout=stdout, check=True, timeout=120)


def wait_port(port, timeout, proc=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited early with code %s" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s not listening on %d after %ss" % (what, port, timeout))


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# ------------------------------------------------------------------------------------------------
# origin: generated files + nginx + fault origin
# ------------------------------------------------------------------------------------------------

OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="appliance-disk1.vmdk" ovf:id="file1"/></References>
  <VirtualSystem ovf:id="appliance"><Name>appliance</Name></VirtualSystem>
</Envelope>
"""


def make_files(files: Path, work: Path):
    files.mkdir(parents=True)
    work.mkdir(parents=True)
    (files / "small.iso").write_bytes(os.urandom(2 * MiB))
    (files / "small.img").write_bytes(os.urandom(2 * MiB))
    (files / "other.iso").write_bytes(os.urandom(1 * MiB))
    (files / "big.iso").write_bytes(os.urandom(16 * MiB))
    (files / "empty.iso").write_bytes(b"")
    for ext, cmd in (
        ("gz", ["gzip", "-c", "-n"]),
        ("zst", ["zstd", "-q", "-c"]),
        ("bz2", ["bzip2", "-c"]),
        ("lzo", ["lzop", "-c"]),
        ("xz", ["xz", "-c"]),
    ):
        with open(files / ("small.iso." + ext), "wb") as out:
            run(cmd + [str(files / "small.iso")], stdout=out)
    # container template: a real tar of a few files
    src = work / "tmplsrc"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("template\n")
    (src / "etc" / "os-release").write_text('ID=isolibtest\nVERSION_ID="1"\n')
    (src / "README").write_bytes(os.urandom(4096).hex().encode())
    run(["tar", "-C", str(src), "-czf", str(files / "tmpl.tar.gz"), "."])
    run(["tar", "-C", str(src), "--zstd", "-cf", str(files / "tmpl.tar.zst"), "."])
    run(["tar", "-C", str(src), "-cf", str(files / "tmpl.tar"), "."])
    # disk images
    run(["qemu-img", "create", "-q", "-f", "qcow2", "disk.qcow2", "1M"], cwd=files)
    run(["qemu-img", "create", "-q", "-f", "raw", "disk.raw", "1M"], cwd=files)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M"], cwd=files)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "disk-backed.qcow2"], cwd=files)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file=%s" % (work / "datafile.data"),
         "datafile.qcow2", "1M"], cwd=files)
    # a hand-written VMDK descriptor whose one extent is a file of the host
    (files / "host-extent.vmdk").write_text(
        '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
        'createType="monolithicFlat"\n\nRW 1 FLAT "/etc/passwd" 0\n')
    # OVA: a tar with the .ovf first, then the disk; and one without any .ovf
    (work / "appliance.ovf").write_text(OVF)
    run(["qemu-img", "create", "-q", "-f", "vmdk", "appliance-disk1.vmdk", "1M"], cwd=work)
    run(["tar", "-cf", str(files / "appliance.ova"), "appliance.ovf", "appliance-disk1.vmdk"], cwd=work)
    run(["tar", "-cf", str(files / "noovf.ova"), "appliance-disk1.vmdk"], cwd=work)
    make_isos(files, work / "isotree")


# The volume id of osinfo-db's Debian 11 netinst media (a regex there: `Debian 11.\d+.\d+ amd64 n`).
DEBIAN_VOLUME_ID = "Debian 11.5.0 amd64 n"


def make_isos(files: Path, tree: Path):
    """Real ISO 9660 images made by xorriso: `debian-like.iso` boots BIOS and UEFI (El Torito),
    is isohybrid (MBR and GPT) and carries a volume id osinfo-db knows; `plain.iso` has none of
    it."""
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / "bios.img").write_bytes(os.urandom(2048))
    (tree / "boot" / "efi.img").write_bytes(bytes(64 * 1024))
    (tree / "README").write_bytes(os.urandom(256 * 1024))
    mbr = tree.parent / "mbr-template.bin"  # isohybrid wants a 432-byte boot code template
    mbr.write_bytes(bytes(432))
    quiet = {"stdout": subprocess.DEVNULL}
    run(["xorriso", "-report_about", "FAILURE", "-as", "mkisofs", "-o", str(files / "debian-like.iso"),
         "-V", DEBIAN_VOLUME_ID, "-sysid", "LINUX", "-publisher", "ISOLIB TESTS", "-A", "ISOLIB",
         "-isohybrid-mbr", str(mbr), "-b", "boot/bios.img", "-no-emul-boot", "-boot-load-size", "4",
         "-eltorito-alt-boot", "-e", "boot/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
         str(tree)], **quiet)
    run(["xorriso", "-report_about", "FAILURE", "-as", "mkisofs", "-o", str(files / "plain.iso"),
         "-V", "NOTHING KNOWN", str(tree)], **quiet)


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/nginx-access.log;
    log_format ranges '$uri $status "$http_range" "$http_if_range" $body_bytes_sent';
    # A mirror whose first connection (the one without Range) is slow.
    map $http_range $uneven_rate {{ "" 512k; default 16m; }}
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{
        application/x-iso9660-image iso;
        application/octet-stream img raw qcow2 vmdk ova lzo;
        application/gzip gz;
        application/zstd zst;
        application/x-bzip2 bz2;
        application/x-xz xz;
        application/x-tar tar;
        text/plain txt;
    }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 10;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {docroot};
        location /files/ {{ }}
        location /mirror/ {{ autoindex on; }}
        location ~ ^/redirect/(.+)$ {{ return 302 /files/$1; }}
        location ~ ^/rename-redirect/ {{ return 302 /files/small.iso; }}
        location /disposition/ {{
            alias {docroot}/files/;
            add_header Content-Disposition 'attachment; filename="from-disposition.iso"' always;
        }}
        location /disposition-bare/ {{
            alias {docroot}/files/;
            add_header Content-Disposition 'attachment; filename=bare-name.iso; size=1' always;
        }}
        location /charset/ {{
            alias {docroot}/files/;
            charset utf-8;
            charset_types application/x-iso9660-image;
        }}
        location = /missing.iso {{ return 404; }}
        location = /emptyname/ {{ default_type text/plain; return 200 "hello\n"; }}
        location /slow/ {{
            alias {docroot}/files/;
            limit_rate 256k;
        }}
        # A mirror that limits each connection's rate, with one log line per request.
        location /ranged/ {{
            alias {docroot}/files/;
            limit_rate 8m;
            access_log {tmp}/ranges.log ranges;
        }}
        location ~ ^/ranged-redirect/(.+)$ {{ return 302 /ranged/$1; }}
        location /uneven/ {{
            alias {docroot}/files/;
            limit_rate $uneven_rate;
            access_log {tmp}/ranges.log ranges;
        }}
        location /ranged-slow/ {{
            alias {docroot}/files/;
            limit_rate 512k;
            access_log {tmp}/ranges.log ranges;
        }}
    }}
}}
"""


class Origin:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.docroot = tmp / "docroot"
        self.files = self.docroot / "files"
        make_files(self.files, tmp / "work")
        self._data = {}
        self._digests = {}
        self.port = None
        self.proc = None
        self.fault = None

    # --- data --------------------------------------------------------------------------------
    def data(self, name):
        if name not in self._data:
            self._data[name] = (self.files / name).read_bytes()
        return self._data[name]

    def digest(self, name, algo):
        key = (name, algo)
        if key not in self._digests:
            self._digests[key] = hashlib.new(algo, self.data(name)).hexdigest()
        return self._digests[key]

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def file_url(self, name):
        return self.url("/files/" + name)

    def fault_url(self, path):
        return self.fault.base + path

    # --- servers -----------------------------------------------------------------------------
    def start(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.port = free_port()
        user = ""
        if os.geteuid() == 0:
            pw = pwd.getpwuid(0)
            user = "user %s %s;" % (pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name)
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, tmp=self.tmp, port=self.port, docroot=self.docroot))
        self.nginx_log = open(self.tmp / "nginx-stderr.log", "wb")
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.tmp), "-e", str(self.tmp / "nginx-error.log"), "-c", str(conf)],
            stdout=self.nginx_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port, 15, self.proc, "nginx")
            r = requests.head(self.file_url("small.iso"), timeout=10)
            assert r.status_code == 200, r
        except Exception:
            print((self.tmp / "nginx-stderr.log").read_text(errors="replace"))
            if (self.tmp / "nginx-error.log").exists():
                print((self.tmp / "nginx-error.log").read_text(errors="replace"))
            self.stop()
            raise
        self.fault = FaultOrigin(str(self.files)).start()
        return self

    def stop(self):
        if self.fault is not None:
            self.fault.stop()
            self.fault = None
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None


@pytest.fixture(scope="session")
def origin():
    tmp = Path(tempfile.mkdtemp(prefix="isolib-origin-")).resolve()
    o = Origin(tmp)
    o.start()
    yield o
    o.stop()
    shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# daemon
# ------------------------------------------------------------------------------------------------

def _secret():
    return str(uuid.uuid4())


# token name -> (tokenid, secret); one set for the whole session
TOKENS = {
    "root": "root@pam!admin",
    "alice": "alice@pve!full",  # privsep 0: alice's own rights (direct ACLs)
    "alice_sep": "alice@pve!sep",  # privsep 1, no ACL of its own
    "alice_sepds": "alice@pve!sepds",  # privsep 1, datastore ACL only (no Sys.*)
    "bob": "bob@pve!tok",  # rights through group dlgroup
    "carol": "carol@pve!tok",  # propagate 0 on /storage + AccessNetwork
    "dave": "dave@pve!tok",  # datastore + Sys.Audit on / but no Sys.Modify, no AccessNetwork
    "erin": "erin@pve!tok",  # datastore + Sys.AccessNetwork on /nodes/testnode
    "erin_old": "erin@pve!old",  # expired token
    "mallory": "mallory@pve!tok",  # disabled user
}
SECRETS = {k: _secret() for k in TOKENS}

USER_CFG = """\
user:root@pam:1:0:::root@localhost:::
token:root@pam!admin:0:0:superuser token:
user:alice@pve:1:0:Alice:Example:alice@example.invalid:direct ACLs::
token:alice@pve!full:0:0:no privilege separation:
token:alice@pve!sep:0:1:privsep without ACL:
token:alice@pve!sepds:0:1:privsep with datastore ACL only:
user:bob@pve:1:0:Bob:Example::rights via group::
token:bob@pve!tok:0:0::
user:carol@pve:1:0:Carol:Example::propagate 0 on /storage::
token:carol@pve!tok:0:0::
user:dave@pve:1:0:Dave:Example::Sys.Audit without Sys.Modify::
token:dave@pve!tok:0:0::
user:erin@pve:1:0:Erin:Example::Sys.AccessNetwork on the node::
token:erin@pve!tok:0:0::
token:erin@pve!old:1:0:expired token:
user:mallory@pve:0:0:Mallory:Example::disabled::
token:mallory@pve!tok:0:0::

group:dlgroup:bob@pve:download group:

role:NetAccess:Sys.AccessNetwork:
role:SysAuditModify:Sys.Audit,Sys.Modify:
role:SysAuditOnly:Sys.Audit:

acl:1:/:alice@pve:SysAuditModify:
acl:1:/:dave@pve:SysAuditOnly:
acl:0:/storage:carol@pve:PVEDatastoreAdmin:
acl:1:/storage/local:@dlgroup,alice@pve,dave@pve,erin@pve,alice@pve!sepds,mallory@pve:PVEDatastoreAdmin:
acl:1:/nodes/testnode:@dlgroup,carol@pve,erin@pve,mallory@pve:NetAccess:
"""

STORAGE_CFG = """\
dir: local
\tpath {tmp}/local
\tcontent iso,vztmpl,import

dir: isoonly
\tpath {tmp}/isoonly
\tcontent iso

dir: offline
\tdisable
\tpath {tmp}/offline
\tcontent iso

dir: othernode
\tpath {tmp}/othernode
\tcontent iso
\tnodes pve9

lvm: vg0
\tvgname vg0
\tcontent images

dir: notmounted
\tpath {tmp}/notmounted
\tcontent iso
\tis_mountpoint 1
"""


class Daemon:
    def __init__(self, base: Path, binary: Path):
        self.base = base
        self.binary = binary
        self.port = free_port()
        self.proc = None
        self.log_path = base / "daemon.log"
        self._log = None
        (base / "state").mkdir(parents=True, exist_ok=True)
        (base / "local").mkdir(exist_ok=True)
        (base / "isoonly").mkdir(exist_ok=True)
        self.config = base / "isolib.toml"
        self.config.write_text(
            'node = "%s"\n'
            'listen = "127.0.0.1:%d"\n'
            "tls = true\n"
            'state-dir = "%s"\n'
            'storage-cfg = "%s"\n'
            'user-cfg = "%s"\n'
            'token-cfg = "%s"\n'
            "auth-fail-delay = 0\n"
            % (NODE, self.port, base / "state", base / "storage.cfg", base / "user.cfg", base / "token.cfg")
        )
        (base / "storage.cfg").write_text(STORAGE_CFG.format(tmp=base))
        (base / "user.cfg").write_text(USER_CFG)
        (base / "token.cfg").write_text("".join("%s %s\n" % (TOKENS[k], SECRETS[k]) for k in TOKENS))

    # --- paths ---------------------------------------------------------------------------------
    def storage_path(self, storage="local"):
        return self.base / storage

    def api(self, who="root", fmt="json"):
        if who is None:
            return Api(self.port, fmt=fmt)
        return Api(self.port, TOKENS[who], SECRETS[who], fmt=fmt)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout=20):
        if not self.binary.exists():
            raise RuntimeError("isolib binary not found at %s (build it with `cargo build`)" % self.binary)
        self._log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--config", str(self.config)],
            cwd=str(self.base),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        api = self.api("root")
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail("daemon exited early with code %s" % self.proc.returncode)
            try:
                r = api.get("/version", timeout=2)
                if r.status_code == 200:
                    return self
                last = "HTTP %s %s" % (r.status_code, r.reason)
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        self._fail("daemon not ready after %ss (last: %s)" % (timeout, last))

    def _fail(self, msg):
        self.stop()
        print("---- isolib daemon output (%s) ----\n%s" % (self.log_path, self.log_text()))
        raise RuntimeError(msg)

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        return self.start()


def _binary():
    return Path(os.environ.get("ISOLIB_BIN") or DEFAULT_BIN)


def _daemon_fixture(request, tmp_prefix, prepare=None):
    """`prepare(daemon)` may add to its config files before it starts."""
    base = Path(tempfile.mkdtemp(prefix=tmp_prefix)).resolve()
    d = Daemon(base, _binary())
    if prepare is not None:
        prepare(d)
    try:
        d.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    yield d
    d.stop()
    failed = any(
        getattr(getattr(request.node, "rep_" + w, None), "failed", False) for w in ("setup", "call")
    )
    if failed:
        print("---- isolib daemon output (%s) ----\n%s" % (d.log_path, d.log_text()[-20000:]))
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon(request):
    """A fresh daemon with empty storages and state (function scope)."""
    yield from _daemon_fixture(request, "isolib-d-")


@pytest.fixture(scope="module")
def shared_daemon(request):
    """One daemon per test module, for tests that don't depend on storage/task state."""
    yield from _daemon_fixture(request, "isolib-m-")


@pytest.fixture
def api(daemon):
    return daemon.api("root")


@pytest.fixture(scope="module")
def shared_api(shared_daemon):
    return shared_daemon.api("root")


def make_prox(d):
    from proxmoxer import ProxmoxAPI

    user, token_name = TOKENS["root"].split("!")
    return ProxmoxAPI(
        "127.0.0.1",
        port=d.port,
        user=user,
        token_name=token_name,
        token_value=SECRETS["root"],
        verify_ssl=False,
        timeout=30,
    )


@pytest.fixture
def prox(daemon):
    return make_prox(daemon)


@pytest.fixture(scope="module")
def shared_prox(shared_daemon):
    return make_prox(shared_daemon)


@pytest.fixture
def algos():
    return list(ALGOS)


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    gpg = Gpg(tmp_path_factory.mktemp("gpg") / "home")
    debian = gpg.key("Test Debian CD signing key <debian@example.invalid>", "ed25519")
    fedora = gpg.key("Test Fedora <fedora@example.invalid>", "rsa2048")
    stranger = gpg.key("Somebody Else <else@example.invalid>", "ed25519")
    return gpg, debian, fedora, stranger
