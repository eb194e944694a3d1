"""A real cluster of isolib daemons for the tests: each node in its own network namespace with its
own address, all on one bridge (in a namespace of its own, so the host's firewall never sees the
traffic), a directory standing in for /etc/pve that they share (`.members`, storage.cfg,
user.cfg, the keys that sign tickets, each node's certificate signed by a cluster CA, the lock
directory), and an origin in its own namespace that logs every request it serves.

Node-local storage is one path in storage.cfg, as in PVE; each daemon sees its own directory there
through a bind mount in its own mount namespace (`ip netns exec` gives it one). It is `data`, not
`local`: on a PVE node `local` is /var/lib/vz whatever storage.cfg says."""

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import requests

from conftest import SECRETS, TOKENS, USER_CFG, stop_process
from helpers import Api

PORT = 8006

ORIGIN_SERVER = r"""
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(sys.argv[3], "a") as f:
            f.write("%s %s\n" % (self.command, self.path))
http.server.ThreadingHTTPServer.daemon_threads = True
import functools
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), functools.partial(H, directory=sys.argv[4])).serve_forever()
"""


def sh(*cmd, check=True):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), out.stderr.strip()))
    return out


class Node:
    def __init__(self, cluster, name, ip):
        self.cluster = cluster
        self.name = name
        self.ip = ip
        self.ns = "%s-%s" % (cluster.tag, name)
        self.dir = cluster.base / name
        self.storage = self.dir / "data"
        self.state = self.dir / "state"
        self.config = self.dir / "isolib.toml"
        self.log_path = self.dir / "daemon.log"
        self.proc = None
        for d in (self.storage, self.state):
            d.mkdir(parents=True)

    def api(self, who="root"):
        return Api(PORT, TOKENS[who], SECRETS[who], host=self.ip)

    def start(self, timeout=20):
        c = self.cluster
        script = "mount --bind %s %s && exec %s serve --config %s" % (
            self.storage, c.local_mount, c.binary, self.config)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        api = self.api()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("node %s exited early:\n%s" % (self.name, self.log_text()[-4000:]))
            try:
                if api.get("/version", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("node %s not ready:\n%s" % (self.name, self.log_text()[-4000:]))

    def run(self, *cmd, env=None, timeout=120):
        """`cmd` on this node: in its network namespace, seeing its own storage."""
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, "sh", "-c", script, "sh", str(self.storage),
             str(self.cluster.local_mount), *cmd],
            capture_output=True, text=True, timeout=timeout, env=env)

    def kill(self):
        """SIGKILL: the node dies mid-whatever, as a crashed or powered-off host does."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)
            self.proc = None

    def link(self, up):
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "eth0", "up" if up else "down")

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Cluster:
    def __init__(self, binary, names=("n1", "n2", "n3"), node_config=""):
        self.binary = binary
        self.tag = "il%s" % uuid.uuid4().hex[:5]
        self.base = Path(tempfile.mkdtemp(prefix="isolib-cluster-")).resolve()
        self.net = "10.%d.%d" % (random.randint(64, 127), random.randint(0, 255))
        self.pve = self.base / "pve"
        self.local_mount = self.base / "data"
        self.pool = self.base / "pool"
        # One directory every node sees, without `shared 1`: known to be one by its identity.
        self.same = self.base / "same"
        for d in (self.local_mount, self.pool, self.same):
            d.mkdir()
        self.switch = "%s-sw" % self.tag
        self.namespaces = [self.switch]
        self.nodes = [Node(self, n, "%s.%d" % (self.net, i + 1)) for i, n in enumerate(names)]
        self.origin_ip = "%s.100" % self.net
        self.origin_ns = "%s-origin" % self.tag
        self.origin_root = self.base / "origin"
        self.origin_log = self.base / "origin.log"
        self.origin_root.mkdir()
        self.origin_proc = None
        self.node_config = node_config

    # --- the network -----------------------------------------------------------------------------
    def _port(self, ns, ip, index):
        """A namespace `ns` (made here) on the bridge as `ip`."""
        if ns != self.switch:
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
        host_if = "%sv%d" % (self.tag, index)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", host_if, "netns", self.switch)
        sw = ("ip", "netns", "exec", self.switch)
        sh(*sw, "ip", "link", "set", host_if, "master", "br0")
        sh(*sw, "ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", ns)
        sh(*inside, "ip", "addr", "add", ip + "/24", "dev", "eth0")
        sh(*inside, "ip", "link", "set", "eth0", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")

    def _network(self):
        sh("ip", "netns", "add", self.switch)
        sw = ("ip", "netns", "exec", self.switch)
        sh(*sw, "ip", "link", "add", "br0", "type", "bridge")
        sh(*sw, "ip", "link", "set", "br0", "up")
        # The test itself (this namespace) reaches every node through one more port.
        host_if, peer = "%sh" % self.tag, "%shp" % self.tag
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer, "netns", self.switch)
        sh(*sw, "ip", "link", "set", peer, "master", "br0")
        sh(*sw, "ip", "link", "set", peer, "up")
        sh("ip", "addr", "add", "%s.254/24" % self.net, "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        self.host_if = host_if
        for i, n in enumerate(self.nodes):
            self._port(n.ns, n.ip, i)
        self._port(self.origin_ns, self.origin_ip, 99)

    # --- the shared /etc/pve ---------------------------------------------------------------------
    def _pve(self):
        p = self.pve
        (p / "priv" / "lock").mkdir(parents=True)
        sh("openssl", "genrsa", "-out", str(p / "priv" / "authkey.key"), "2048")
        sh("openssl", "rsa", "-in", str(p / "priv" / "authkey.key"), "-pubout", "-out", str(p / "authkey.pub"))
        sh("openssl", "genrsa", "-out", str(p / "pve-www.key"), "2048")
        ca_key, ca = p / "priv" / "pve-root-ca.key", p / "pve-root-ca.pem"
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
           "-subj", "/CN=isolib test cluster CA", "-days", "2")
        members = {}
        for i, n in enumerate(self.nodes):
            d = p / "nodes" / n.name
            d.mkdir(parents=True)
            csr = self.base / ("%s.csr" % n.name)
            sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "pve-ssl.key"),
               "-out", str(csr), "-subj", "/CN=%s" % n.name)
            sh("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
               "-CAcreateserial", "-out", str(d / "pve-ssl.pem"), "-days", "2")
            members[n.name] = {"id": i + 1, "online": 1, "ip": n.ip}
        self.write_members(members)
        (p / "storage.cfg").write_text(
            "dir: data\n\tpath %s\n\tcontent iso,vztmpl,import\n\n"
            "dir: pool\n\tpath %s\n\tcontent iso\n\tshared 1\n\n"
            "dir: same\n\tpath %s\n\tcontent iso\n" % (self.local_mount, self.pool, self.same))
        (p / "user.cfg").write_text(USER_CFG + "acl:1:/storage/data:alice@pve:PVEDatastoreAdmin:\n")
        (p / "priv" / "token.cfg").write_text("".join("%s %s\n" % (TOKENS[k], SECRETS[k]) for k in TOKENS))
        for n in self.nodes:
            n.config.write_text(
                'node = "%s"\nlisten = "%s:%d"\nstate-dir = "%s"\npve-dir = "%s"\n'
                "auth-fail-delay = 0\naplinfo-interval = 0\n%s"
                % (n.name, n.ip, PORT, n.state, p, self.node_config))

    def write_members(self, nodelist):
        import json
        (self.pve / ".members").write_text(json.dumps({
            "nodename": self.nodes[0].name, "version": 1,
            "cluster": {"name": "isolib-test", "version": 1, "nodes": len(nodelist), "quorate": 1},
            "nodelist": nodelist}))

    # --- the origin ------------------------------------------------------------------------------
    def origin_url(self, name):
        return "http://%s/%s" % (self.origin_ip, name)

    def origin_gets(self, name):
        try:
            lines = self.origin_log.read_text().splitlines()
        except OSError:
            return 0
        return sum(1 for line in lines if line == "GET /%s" % name)

    def _origin(self):
        self.origin_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.origin_ns, "python3", "-c", ORIGIN_SERVER, self.origin_ip, "80",
             str(self.origin_log), str(self.origin_root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                requests.head("http://%s/" % self.origin_ip, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("origin did not start")

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self):
        self._network()
        self._pve()
        self._origin()
        for n in self.nodes:
            n.start()
        return self

    def stop(self, dump=False):
        for n in self.nodes:
            if dump:
                print("---- node %s ----\n%s" % (n.name, n.log_text()[-6000:]))
            n.stop()
        if self.origin_proc is not None:
            stop_process(self.origin_proc, signal.SIGTERM, timeout=5)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
