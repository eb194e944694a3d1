"""GET /nodes/{node}/query-url-metadata (pve-api.md §3)."""

import pytest

from helpers import JSON_CT, NODE, assert_error, assert_param_error

MiB = 1024 * 1024


def meta(api, url, **params):
    params["url"] = url
    return api.get("/nodes/%s/query-url-metadata" % NODE, params=params)


def ok_meta(api, url, **params):
    r = meta(api, url, **params)
    assert r.status_code == 200, (r.status_code, r.reason, r.text)
    assert r.headers["Content-Type"] == JSON_CT
    return r.json()["data"]


def test_filename_size_mimetype(shared_api, origin):
    d = ok_meta(shared_api, origin.file_url("small.iso"))
    assert d == {"filename": "small.iso", "size": 2 * MiB, "mimetype": "application/x-iso9660-image"}
    assert isinstance(d["size"], int)


def test_query_string_dropped_from_filename(shared_api, origin):
    d = ok_meta(shared_api, origin.file_url("small.iso") + "?token=abc&x=/y")
    assert d["filename"] == "small.iso", d
    assert d["size"] == 2 * MiB


def test_filename_from_content_disposition_quoted(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/disposition/small.iso"))
    assert d["filename"] == "from-disposition.iso", d
    assert d["size"] == 2 * MiB


def test_filename_from_content_disposition_unquoted(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/disposition-bare/small.iso"))
    assert d["filename"] == "bare-name.iso", d


def test_filename_from_original_url_through_redirect(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/rename-redirect/original.iso"))
    assert d["filename"] == "original.iso", d
    assert d["size"] == 2 * MiB
    assert d["mimetype"] == "application/x-iso9660-image"


def test_redirect_same_name(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/redirect/small.img"))
    assert d == {"filename": "small.img", "size": 2 * MiB, "mimetype": "application/octet-stream"}


def test_mimetype_charset_cut(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/charset/small.iso"))
    assert d["mimetype"] == "application/x-iso9660-image", d


def test_no_content_length_means_no_size(shared_api, origin):
    d = ok_meta(shared_api, origin.fault_url("/chunked/small.iso"))
    assert "size" not in d, d
    assert d["filename"] == "small.iso"
    assert d["mimetype"] == "application/octet-stream"


def test_zero_content_length_means_no_size(shared_api, origin):
    d = ok_meta(shared_api, origin.file_url("empty.iso"))
    assert "size" not in d, d
    assert d["filename"] == "empty.iso"


def test_no_filename_when_url_ends_in_slash(shared_api, origin):
    d = ok_meta(shared_api, origin.url("/emptyname/?file=x.iso"))
    assert d == {"size": 6, "mimetype": "text/plain"}, d


@pytest.mark.parametrize("code", [405, 501])
def test_head_refused_falls_back_to_ranged_get(shared_api, origin, code):
    before = len(origin.fault.requests)
    d = ok_meta(shared_api, origin.fault_url("/nohead%d/small.iso" % code))
    assert d["filename"] == "small.iso", d
    assert d["size"] == 2 * MiB, d
    reqs = origin.fault.requests[before:]
    assert any(m == "HEAD" for m, _, _ in reqs), reqs
    gets = [{k.lower(): v for k, v in h.items()} for m, _, h in reqs if m == "GET"]
    assert gets, reqs
    assert any(h.get("range") == "bytes=0-0" for h in gets), gets


def test_user_agent(shared_api, origin):
    before = len(origin.fault.requests)
    ok_meta(shared_api, origin.fault_url("/chunked/small.iso"))
    heads = [{k.lower(): v for k, v in h.items()} for m, _, h in origin.fault.requests[before:] if m == "HEAD"]
    assert heads and heads[0].get("user-agent") == "Proxmox VE", heads


def test_404(shared_api, origin):
    r = meta(shared_api, origin.url("/missing.iso"))
    assert_error(r, 500, "invalid server response: '404 Not Found'")


def test_connection_refused(shared_api):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = meta(shared_api, "http://127.0.0.1:%d/x.iso" % port)
    assert r.status_code == 500, (r.status_code, r.reason)
    assert r.reason.startswith("invalid server response: '"), r.reason


def test_bad_url(shared_api):
    r = meta(shared_api, "ftp://example.invalid/x.iso")
    assert_param_error(r, {"url": "value does not match the regex pattern"})


def test_missing_url(shared_api):
    r = shared_api.get("/nodes/%s/query-url-metadata" % NODE)
    assert_param_error(r, {"url": "property is missing and it is not optional"})


def test_verify_certificates_values(shared_api, origin):
    assert ok_meta(shared_api, origin.file_url("small.iso"), **{"verify-certificates": "0"})["filename"] == "small.iso"
    assert ok_meta(shared_api, origin.file_url("small.iso"), **{"verify-certificates": "1"})["filename"] == "small.iso"
    r = meta(shared_api, origin.file_url("small.iso"), **{"verify-certificates": "true"})
    assert_param_error(r, {"verify-certificates": "type check ('boolean') failed - got 'true'"})


def test_extjs_error_envelope(shared_daemon, origin):
    api = shared_daemon.api("root", fmt="extjs")
    r = meta(api, origin.url("/missing.iso"), _dc="123")
    assert r.status_code == 200
    body = r.json()
    assert body["success"] == 0 and body["status"] == 500, body
    assert body["message"].rstrip("\n") == "invalid server response: '404 Not Found'", body


def test_via_proxmoxer(shared_prox, origin):
    d = shared_prox.nodes(NODE)("query-url-metadata").get(url=origin.file_url("small.img"))
    assert d == {"filename": "small.img", "size": 2 * MiB, "mimetype": "application/octet-stream"}
