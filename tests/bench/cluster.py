#!/usr/bin/env python3
"""On-demand benchmark of one fetch per cluster. Never run in CI; needs root (network namespaces).

    tests/.venv/bin/python tests/bench/cluster.py [--size-mib N] [--runs N]

Four daemons, each in its own network namespace on one bridge, with the test suite's harness
(tests/py/netcluster.py: a shared stand-in /etc/pve, an origin in a namespace of its own).
Measures, as ratios against anchors taken in the same run (medians of --runs, with ranges):
  - a peer copy n1 -> n2 (POST /cluster/isolib/ensure, request -> TASK OK: pinned TLS, sha256
    in the same pass, fsync, rename) against curl in n2's namespace fetching the same
    /files/... URL from n1 into n2's storage, then `sync`;
  - download-url with nodes=all on a 4-node cluster (one origin fetch, then three copies)
    against four download-url one after another, one per node, each from the origin, whose link
    is limited (--origin-mbit, default 800) as a mirror's on the internet is; the nodes' links
    are not.
Every node's storage is on this machine's one disk, so the copies of nodes=all share it."""

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "py"))

from conftest import SECRETS, TOKENS  # noqa: E402
from netcluster import PORT, Cluster  # noqa: E402


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S", time.gmtime()), msg), file=sys.stderr, flush=True)


def wait_ok(api, upid, timeout=1800):
    status = api.wait(upid, timeout)
    if status["exitstatus"] != "OK":
        raise RuntimeError("%s: %s\n%s" % (upid, status["exitstatus"], "\n".join(api.log_lines(upid))))


def remove(node, rel):
    """A volume and its record, gone from `node`'s storage."""
    (node.storage / rel).unlink(missing_ok=True)
    rec = node.storage / "template/iso/.isolib-catalog"
    if rec.is_dir():
        for f in rec.iterdir():
            if f.name.startswith(Path(rel).name):
                f.unlink()


def timed(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def median_range(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--origin-mbit", type=int, default=800,
                    help="the origin's link (tc tbf), as a mirror on the internet would be")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    root = HERE.parent.parent
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=root, check=True, stdout=sys.stderr)
    binary = root / "target" / "release" / "isolib"
    cluster = Cluster(binary, names=("n1", "n2", "n3", "n4"))
    try:
        cluster.start()
        subprocess.run(["ip", "netns", "exec", cluster.origin_ns, "tc", "qdisc", "add", "dev", "eth0", "root",
                        "tbf", "rate", "%dmbit" % args.origin_mbit, "burst", "1mb", "latency", "100ms"], check=True)
        n1, n2 = cluster.nodes[0], cluster.nodes[1]
        size = args.size_mib << 20
        log("making %d MiB of random data at the origin" % args.size_mib)
        with open(cluster.origin_root / "big.iso", "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        api1 = n1.api()
        wait_ok(api1, api1.start_download(storage="data", node="n1", url=cluster.origin_url("big.iso"),
                                          content="iso", filename="big.iso"))

        # --- peer copy against curl between the same two namespaces --------------------------
        copy_t, curl_t = [], []
        auth = "Authorization: PVEAPIToken=%s=%s" % (TOKENS["root"], SECRETS["root"])
        for run in range(args.runs):
            remove(n2, "template/iso/big.iso")
            subprocess.run(["sync"], check=True)
            api2 = n2.api()

            def copy():
                upid = api2.ok_data(api2.post("/cluster/isolib/ensure",
                                              data={"volume": "data:iso/big.iso", "nodes": "n2"}))
                wait_ok(api2, upid)
            copy_t.append(timed(copy))
            assert (n2.storage / "template/iso/big.iso").stat().st_size == size
            subprocess.run(["sync"], check=True)

            out = n2.storage / "curl.iso"
            url = "https://%s:%d/files/data/iso/big.iso" % (n1.ip, PORT)

            def curl():
                r = n2.run("sh", "-c", 'curl -ksf -H "$1" -o "$2/curl.iso" "$3" && sync', "sh", auth,
                           str(cluster.local_mount), url, timeout=1800)
                if r.returncode != 0:
                    raise RuntimeError(r)
            curl_t.append(timed(curl))
            assert out.stat().st_size == size
            out.unlink()
            log("run %d: copy %.3f s, curl %.3f s" % (run + 1, copy_t[-1], curl_t[-1]))

        # --- nodes=all against one download per node ------------------------------------------
        all_t, seq_t = [], []
        for run in range(args.runs):
            for n in cluster.nodes:
                remove(n, "template/iso/all.iso")
                remove(n, "template/iso/seq.iso")
            subprocess.run(["sync"], check=True)
            gets_before = cluster.origin_gets("big.iso")

            def spread():
                upid = api1.start_download(storage="data", node="n1", url=cluster.origin_url("big.iso"),
                                           content="iso", filename="all.iso", nodes="all")
                wait_ok(api1, upid)
            all_t.append(timed(spread))
            assert cluster.origin_gets("big.iso") == gets_before + 1
            subprocess.run(["sync"], check=True)

            def sequential():
                for n in cluster.nodes:
                    api = n.api()
                    wait_ok(api, api.start_download(storage="data", node=n.name, url=cluster.origin_url("big.iso"),
                                                    content="iso", filename="seq.iso"))
            seq_t.append(timed(sequential))
            digests = set()
            for n in cluster.nodes:
                h = hashlib.sha256()
                with open(n.storage / "template/iso/all.iso", "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                digests.add(h.hexdigest())
            assert len(digests) == 1, digests
            log("run %d: nodes=all %.3f s, four downloads %.3f s" % (run + 1, all_t[-1], seq_t[-1]))

        c, c_lo, c_hi = median_range(copy_t)
        k, k_lo, k_hi = median_range(curl_t)
        a, a_lo, a_hi = median_range(all_t)
        s, s_lo, s_hi = median_range(seq_t)
        print("\n%d MiB, %d runs, origin link %d Mbit/s, medians (ranges)\n"
              % (args.size_mib, args.runs, args.origin_mbit))
        print("| measurement | seconds | ratio | goal | met |")
        print("|---|---|---|---|---|")
        print("| peer copy n1 → n2, request → `TASK OK` | %.3f (%.3f–%.3f) | %.2fx curl's speed | ≥ 0.9x | %s |"
              % (c, c_lo, c_hi, k / c, "yes" if k / c >= 0.9 else "no"))
        print("| curl n1 → n2 storage, then `sync` (anchor) | %.3f (%.3f–%.3f) | 1.00 | — | — |" % (k, k_lo, k_hi))
        print("| download-url `nodes=all`, 4 nodes, one origin GET | %.3f (%.3f–%.3f) | %.2fx faster | (reported) | — |"
              % (a, a_lo, a_hi, s / a))
        print("| four download-url one after another, 4 origin GETs (anchor) | %.3f (%.3f–%.3f) | 1.00 | — | — |"
              % (s, s_lo, s_hi))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
