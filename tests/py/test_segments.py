"""Segmented downloads (`connections`): several connections to a real nginx that limits each
connection's rate, each fetching its segment into place; the digest still computed in one pass;
every connection carrying the first answer's validator; per-segment resume after kill -9; a file
that changes between the connections never spliced."""

import hashlib
import json
import os
import re
import signal

import pytest
from conftest import _daemon_fixture
from helpers import SUBDIR, wait_until

STAGING = ".isolib-partial"
LINE = re.compile(r'^(\S+) (\d+) "([^"]*)" "([^"]*)" (\d+)$')


def ranges_log(origin, name):
    """The nginx requests for `name` under the ranged locations: (status, range, if-range, bytes)."""
    path = origin.tmp / "ranges.log"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        m = LINE.match(line)
        if m and m.group(1).endswith("/" + name):
            # nginx writes "-" for a missing header and escapes quotes as \x22.
            rng, if_range = (v.replace("\\x22", '"') if v != "-" else "" for v in m.group(3, 4))
            out.append((int(m.group(2)), rng, if_range, int(m.group(5))))
    return out


def etag_of(origin, path):
    import requests

    return requests.head(origin.url(path), timeout=10).headers["ETag"]


def staging(daemon):
    return daemon.storage_path() / STAGING


def no_leftovers(daemon):
    """Files in the storage's staging directory, and partial files anywhere in the storage."""
    left = sorted(os.listdir(staging(daemon))) if staging(daemon).exists() else []
    for root, _, files in os.walk(daemon.storage_path()):
        left += [f for f in files if f.endswith((".part", ".tmp"))]
    return left


def download_ok(api, url, filename, connections=4):
    """Downloads `url` over `connections`; the task's log lines, after it ended OK."""
    extra = {} if connections is None else {"connections": connections}
    upid, status = api.run_download(url=url, content="iso", filename=filename, **extra)
    lines = api.log_lines(upid)
    assert status["exitstatus"] == "OK", lines
    return lines


def test_four_connections_fetch_one_segment_each_and_verify_once(daemon, origin):
    api = daemon.api()
    name = "big.iso"
    before = len(ranges_log(origin, name))
    upid, status = api.run_download(
        url=origin.url("/ranged/" + name), content="iso", filename="seg.iso", connections=4,
        checksum=origin.digest(name, "sha256"), **{"checksum-algorithm": "sha256"})
    lines = api.log_lines(upid)
    assert status["exitstatus"] == "OK", lines
    assert "fetching 4 segments over as many connections" in lines
    assert lines.count("calculating checksum...OK, checksum verified") == 1
    stored = daemon.storage_path() / SUBDIR["iso"] / "seg.iso"
    assert stored.read_bytes() == origin.data(name)

    seen = ranges_log(origin, name)[before:]
    etag = etag_of(origin, "/ranged/" + name)
    first = [r for r in seen if r[1] == ""]
    assert len(first) == 1 and first[0][0] == 200, seen
    parts = sorted((r for r in seen if r[1]), key=lambda r: int(r[1][6:].split("-")[0]))
    assert len(parts) == 3, seen
    size = len(origin.data(name))
    segment = size // 4
    # Each asks for exactly its segment, of the first answer's version.
    assert [r[1] for r in parts] == [
        "bytes=%d-%d" % (i * segment, (i + 1) * segment - 1) for i in (1, 2, 3)], parts
    assert all(r[0] == 206 and r[2] == etag and r[3] == segment for r in parts), parts
    assert no_leftovers(daemon) == []


def test_connections_ask_where_the_redirect_led(daemon, origin):
    """A mirror redirector could send each connection elsewhere: the segments are asked for at
    the first answer's URL, and the redirect is followed once."""
    name = "big.iso"
    before = len(ranges_log(origin, name))
    access = origin.tmp / "nginx-access.log"
    redirects = lambda: access.read_text().count("GET /ranged-redirect/%s " % name)  # noqa: E731
    hops = redirects()
    lines = download_ok(daemon.api(), origin.url("/ranged-redirect/" + name), "redirected.iso")
    assert "fetching 4 segments over as many connections" in lines
    seen = ranges_log(origin, name)[before:]
    assert sorted(r[0] for r in seen) == [200, 206, 206, 206], seen
    wait_until(lambda: redirects() > hops, timeout=10, what="nginx's access log line")
    assert redirects() == hops + 1
    stored = daemon.storage_path() / SUBDIR["iso"] / "redirected.iso"
    assert stored.read_bytes() == origin.data(name)


def test_a_free_connection_takes_over_half_of_a_slow_one(daemon, origin):
    """The first connection is slow (512 KiB/s, the others 16 MiB/s): when the others are done,
    one of them takes over the second half of what the slow one has left, asking for exactly
    that range of the same version."""
    name = "big.iso"
    before = len(ranges_log(origin, name))
    lines = download_ok(daemon.api(), origin.url("/uneven/" + name), "uneven.iso")
    segment = len(origin.data(name)) // 4
    splits = [re.match(r"^segment (\d+) split at byte (\d+): bytes (\d+)-(\d+) go to a connection that is free$",
                       line) for line in lines]
    splits = [m for m in splits if m]
    assert splits and all(m.group(1) == "1" for m in splits), lines
    assert 0 < int(splits[0].group(2)) < segment and int(splits[0].group(4)) == segment - 1, lines
    seen = ranges_log(origin, name)[before:]
    etag = etag_of(origin, "/uneven/" + name)
    for m in splits:
        taken = [r for r in seen if r[1] == "bytes=%s-%s" % (m.group(3), m.group(4))]
        assert len(taken) == 1 and taken[0][0] == 206 and taken[0][2] == etag, (m.group(0), seen)
    assert len(seen) == 4 + len(splits), seen
    stored = daemon.storage_path() / SUBDIR["iso"] / "uneven.iso"
    assert stored.read_bytes() == origin.data(name)
    assert no_leftovers(daemon) == []


def test_one_connection_is_the_default(daemon, origin):
    api = daemon.api()
    name = "big.iso"
    before = len(ranges_log(origin, name))
    upid, status = api.run_download(url=origin.url("/ranged/" + name), content="iso", filename="one.iso")
    assert status["exitstatus"] == "OK"
    lines = api.log_lines(upid)
    assert not any("segments" in line for line in lines), lines
    assert [r[1] for r in ranges_log(origin, name)[before:]] == [""]


@pytest.fixture
def four_daemon(request):
    """A daemon whose `connections` setting is 4."""
    def prepare(d):
        with open(d.config, "a") as f:
            f.write("connections = 4\n")
    yield from _daemon_fixture(request, "isolib-seg-", prepare)


def test_the_connections_setting_is_the_default_a_request_can_lower(four_daemon, origin):
    name = "big.iso"
    api = four_daemon.api()
    before = len(ranges_log(origin, name))
    lines = download_ok(api, origin.url("/ranged/" + name), "setting.iso", connections=None)
    assert "fetching 4 segments over as many connections" in lines
    assert len(ranges_log(origin, name)) - before == 4
    lines = download_ok(api, origin.url("/ranged/" + name), "one.iso", connections=1)
    assert not any("segments" in line for line in lines), lines
    assert len(ranges_log(origin, name)) - before == 5


def test_an_origin_without_ranges_gets_one_connection(daemon, origin):
    """The fault origin's /chunked/ answers without a length: one connection, and the log says why."""
    lines = download_ok(daemon.api(), origin.fault_url("/chunked/big.iso"), "chunked.iso")
    assert "the origin does not announce byte ranges; using one connection" in lines
    assert (daemon.storage_path() / SUBDIR["iso"] / "chunked.iso").read_bytes() == origin.data("big.iso")


def test_connections_out_of_range_is_refused(daemon, origin):
    api = daemon.api()
    for bad in ("0", "17", "two"):
        r = api.download_url(url=origin.file_url("small.iso"), content="iso", filename="x.iso", connections=bad)
        assert r.status_code == 400, (bad, r.text)
        assert "connections" in r.json()["errors"], r.text
    assert not (daemon.storage_path() / SUBDIR["iso"] / "x.iso").exists()


def test_a_file_that_changes_between_connections_is_never_spliced(daemon, origin):
    """The first answer is version v1; the segments' requests carry If-Range "v1" and get the
    whole of v2 instead: the download starts over with one connection and stores v2 whole."""
    lines = download_ok(daemon.api(), origin.fault_url("/changing/big.iso"), "changing.iso")
    assert "fetching 4 segments over as many connections" in lines
    assert any(line.startswith('the file changed at the origin (validator "v2" instead of "v1")')
               and line.endswith("; using one connection") for line in lines), lines
    stored = (daemon.storage_path() / SUBDIR["iso"] / "changing.iso").read_bytes()
    assert stored == origin.data("big.iso")[::-1]
    asked = [{k.lower(): v for k, v in h.items()}.get("if-range")
             for m, p, h in origin.fault.requests if p == "/changing/big.iso"]
    # The first request, then each segment's (and any split's) of v1, then one from zero.
    assert asked[0] is None and asked[-1] is None and len(asked) >= 5, asked
    assert set(asked[1:-1]) == {'"v1"'}, asked
    assert no_leftovers(daemon) == []


def test_a_broken_connection_goes_on_from_its_own_bytes(daemon, origin):
    """The first segment request closes after half its body: that segment retries from the
    bytes it has, with the same validator; no other segment is asked for again."""
    lines = download_ok(daemon.api(), origin.fault_url("/flaky/big.iso"), "flaky.iso")
    failed = [line for line in lines if re.match(
        r"^segment \d \(bytes \d+-\d+\): transfer failed after \d+ bytes: .*; retry 1 of 5 in 1s$", line)]
    assert len(failed) == 1, lines
    n, start, end, after = map(int, re.match(
        r"^segment (\d) \(bytes (\d+)-(\d+)\): transfer failed after (\d+) bytes", failed[0]).groups())
    asked = [{k.lower(): v for k, v in h.items()} for m, p, h in origin.fault.requests if p == "/flaky/big.iso"]
    ranges = [h.get("range") for h in asked]
    splits = [line for line in lines if " split at byte " in line]
    # The first request, one per other segment, the retry, and one per split of a segment by
    # a connection that was free (the broken one's rest may go to one during its backoff).
    assert len(asked) == 4 + 1 + len(splits), (ranges, splits)
    assert ranges.count("bytes=%d-%d" % (start, end)) == 1 and 0 < after < end - start + 1, ranges
    again = [r for r in ranges if r and r.startswith("bytes=%d-" % (start + after))]
    assert len(again) == 1, ranges
    assert all(h.get("if-range") == '"f1"' for h in asked[1:]), asked
    stored = (daemon.storage_path() / SUBDIR["iso"] / "flaky.iso").read_bytes()
    assert stored == origin.data("big.iso")


def test_segments_resume_after_kill9(daemon, origin):
    """Killed while four connections run at 512 KiB/s each: asked again, each segment goes on
    from its own bytes on disk, as the resume state recorded them."""
    api = daemon.api()
    name = "big.iso"
    url = origin.url("/ranged-slow/" + name)
    upid = api.start_download(url=url, content="iso", filename="resumed.iso", connections=4)

    def state():
        for f in os.listdir(staging(daemon)) if staging(daemon).exists() else []:
            if f.startswith("resumed.iso.") and f.endswith(".json"):
                try:
                    return json.loads((staging(daemon) / f).read_text())
                except (OSError, ValueError):
                    return None
        return None

    wait_until(lambda: (state() or {}).get("segments") and
               sum(1 for s in state()["segments"] if s["synced"] > 0) >= 3,
               timeout=30, what="three segments with synced bytes")
    os.killpg(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    recorded = state()["segments"]
    assert len(recorded) == 4 and all(s["synced"] < s["end"] - s["start"] for s in recorded), recorded
    before = len(ranges_log(origin, name))
    daemon.stop()
    daemon.start()
    assert api.status(upid)["exitstatus"] != "OK"
    upid, status = api.run_download(url=url, content="iso", filename="resumed.iso", timeout=60)
    lines = api.log_lines(upid)
    assert status["exitstatus"] == "OK", lines
    on_disk = sum(s["synced"] for s in recorded)
    assert "resuming 4 segments from %d bytes already on disk" % on_disk in lines, lines
    asked = sorted(r[1] for r in ranges_log(origin, name)[before:])
    expected = sorted("bytes=%d-%d" % (s["start"] + s["synced"], s["end"] - 1) for s in recorded)
    # Each segment from its own bytes on disk; a connection that is free may split one more.
    splits = [line for line in lines if " split at byte " in line]
    assert set(expected) <= set(asked) and len(asked) == len(expected) + len(splits), (asked, expected)
    data = (daemon.storage_path() / SUBDIR["iso"] / "resumed.iso").read_bytes()
    assert hashlib.sha256(data).hexdigest() == origin.digest(name, "sha256")
    assert no_leftovers(daemon) == []
