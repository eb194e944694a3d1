"""download-url parameter validation and synchronous errors, with raw form-encoded requests."""

import pytest

from helpers import (
    JSON_CT,
    NODE,
    PARAM_FAIL,
    assert_error,
    assert_nothing_new,
    assert_param_error,
    tree,
    upid_fields,
)


@pytest.fixture(scope="module")
def base(origin):
    return {"url": origin.file_url("small.iso"), "content": "iso", "filename": "v.iso"}


def with_(base, **kw):
    d = dict(base)
    for k, v in kw.items():
        k = k.replace("_", "-")
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


SHA = "a" * 64

# (id, changes to the valid base params, expected `errors`) -- pve-api.md §1.4
ROWS = [
    ("missing-filename", {"filename": None},
     {"filename": "property is missing and it is not optional"}),
    ("missing-url", {"url": None},
     {"url": "property is missing and it is not optional"}),
    ("missing-content", {"content": None},
     {"content": "property is missing and it is not optional"}),
    ("unknown-param", {"foo": "bar"},
     {"foo": "property is not defined in schema and the schema does not allow additional properties"}),
    ("url-ftp", {"url": "ftp://x"},
     {"url": "value does not match the regex pattern"}),
    ("url-uppercase-scheme", {"url": "HTTPS://example.invalid/x.iso"},
     {"url": "value does not match the regex pattern"}),
    ("filename-300", {"filename": "a" * 296 + ".iso"},
     {"filename": "value may only be 255 characters long"}),
    ("content-images", {"content": "images"},
     {"content": "value 'images' does not have a value in the enumeration 'iso, vztmpl, import'"}),
    ("content-foo", {"content": "foo"},
     {"content": "invalid format - invalid content type 'foo'\n"}),
    ("checksum-without-algorithm", {"checksum": SHA},
     {"checksum-algorithm": "missing property required by 'checksum'"}),
    ("algorithm-without-checksum", {"checksum-algorithm": "sha256"},
     {"checksum": "missing property required by 'checksum-algorithm'"}),
    ("algorithm-sha3", {"checksum": SHA, "checksum-algorithm": "sha3"},
     {"checksum-algorithm": "value 'sha3' does not have a value in the enumeration 'md5, sha1, sha224, sha256, sha384, sha512'"}),
    ("verify-certificates-true", {"verify-certificates": "true"},
     {"verify-certificates": "type check ('boolean') failed - got 'true'"}),
    ("verify-certificates-yes", {"verify-certificates": "yes"},
     {"verify-certificates": "type check ('boolean') failed - got 'yes'"}),
    ("node-conflict", {"node": "othernode"},
     {"node": "duplicate parameter (already defined in URI) with conflicting values!"}),
    ("storage-conflict", {"storage": "isoonly"},
     {"storage": "duplicate parameter (already defined in URI) with conflicting values!"}),
]


@pytest.mark.parametrize("changes,errors", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_validation_row(shared_daemon, shared_api, base, changes, errors):
    store = shared_daemon.storage_path()
    before = tree(store)
    # Posted directly: download_url() would take `node`/`storage` as path parts, and these
    # rows need them in the body next to the path values.
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE, data=with_(base, **changes))
    assert_param_error(r, errors)
    assert_nothing_new(before, store)


def test_validation_same_key_twice(shared_api, base):
    data = [(k, v) for k, v in base.items() if k != "filename"] + [("filename", "a.iso"), ("filename", "b.iso")]
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE, data=data)
    assert_param_error(r, {"filename": "type check ('string') failed - got ARRAY"})


def test_validation_several_errors_at_once(shared_api, base):
    r = shared_api.download_url(**with_(base, filename=None, url="ftp://x", foo="1"))
    assert_param_error(r, {
        "filename": "property is missing and it is not optional",
        "url": "value does not match the regex pattern",
        "foo": "property is not defined in schema and the schema does not allow additional properties",
    })


def test_validation_filename_255_passes_validation(shared_api, base):
    # 255 characters pass the schema; (in PVE the task log name would then be too long: not tested)
    r = shared_api.download_url(**with_(base, filename="b" * 251 + ".iso"))
    assert r.status_code != 400, (r.status_code, r.reason, r.text)


def test_validation_long_filename_downloads(shared_api, base):
    name = "c" * 150 + ".iso"
    r = shared_api.download_url(**with_(base, filename=name))
    upid = shared_api.ok_data(r)
    assert upid_fields(upid)["id"] == name
    assert shared_api.wait(upid)["exitstatus"] == "OK"


def test_validation_storage_id_too_short(shared_api, base):
    r = shared_api.post("/nodes/%s/storage/x/download-url" % NODE, data=base)
    assert r.status_code == 400, (r.status_code, r.reason, r.text)
    assert r.reason == PARAM_FAIL
    errors = r.json()["errors"]
    assert list(errors) == ["storage"], errors
    assert "storage ID 'x' cannot be shorter than 2 characters" in errors["storage"], errors


def test_redundant_storage_and_node_in_body_accepted(shared_api, base):
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE,
                        data=with_(base, filename="redundant.iso", storage="local", node=NODE))
    upid = shared_api.ok_data(r)
    assert shared_api.wait(upid)["exitstatus"] == "OK"


def test_json_body_accepted(shared_api, base):
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE,
                        json=with_(base, filename="jsonbody.iso", **{"verify-certificates": True}))
    upid = shared_api.ok_data(r)
    assert shared_api.wait(upid)["exitstatus"] == "OK"


def test_query_string_params_accepted(shared_api, base):
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE, params=with_(base, filename="query.iso"))
    upid = shared_api.ok_data(r)
    assert upid_fields(upid)["id"] == "query.iso"
    assert shared_api.wait(upid)["exitstatus"] == "OK"


def test_dc_cache_buster_ignored(shared_api, base):
    r = shared_api.download_url(_dc="1732629474123", **with_(base, filename="dc.iso"))
    upid = shared_api.ok_data(r)
    assert shared_api.wait(upid)["exitstatus"] == "OK"


# --- synchronous 500s (pve-api.md §1.3) ---------------------------------------------------------

SYNC = [
    ("nope", {}, "storage 'nope' does not exist"),
    ("offline", {}, "storage 'offline' is disabled"),
    ("othernode", {}, "storage 'othernode' is not available on node 'testnode'"),
    ("vg0", {}, "can't upload to storage type 'lvm', not a file based storage!"),
    ("isoonly", {"content": "vztmpl", "filename": "tmpl.tar.gz"},
     "storage 'isoonly' is not configured for content-type 'vztmpl'"),
    ("isoonly", {"content": "import", "filename": "disk.qcow2"},
     "storage 'isoonly' is not configured for content-type 'import'"),
    # the content-type check comes before the filename check
    ("isoonly", {"content": "vztmpl", "filename": "wrong.iso"},
     "storage 'isoonly' is not configured for content-type 'vztmpl'"),
]


def test_unmounted_mountpoint_storage(shared_daemon, shared_api, base):
    store = shared_daemon.storage_path("notmounted")
    before = tree(store)
    r = shared_api.download_url(storage="notmounted", **with_(base, filename="nm.iso"))
    assert_error(r, 500, "unable to activate storage 'notmounted' - directory is expected to be a mount point "
                         "but is not mounted: '%s'" % store)
    assert_nothing_new(before, store)


@pytest.mark.parametrize("storage,changes,message", SYNC, ids=["%s-%d" % (s[0], i) for i, s in enumerate(SYNC)])
def test_synchronous_storage_errors(shared_daemon, shared_api, base, storage, changes, message):
    store = shared_daemon.storage_path()
    before = tree(store)
    r = shared_api.download_url(storage=storage, **with_(base, **changes))
    assert_error(r, 500, message)
    assert_nothing_new(before, store)


# --- extensions -----------------------------------------------------------------------------------

EXT_BAD = [
    ("iso", "x.txt", {"filename": "wrong file extension"}),
    ("iso", "x.iso.gz", {"filename": "wrong file extension"}),
    ("iso", "noext", {"filename": "wrong file extension"}),
    ("vztmpl", "x.tgz", {"filename": "wrong file extension"}),
    ("vztmpl", "x.tar.lzo", {"filename": "wrong file extension"}),
    ("vztmpl", "x.iso", {"filename": "wrong file extension"}),
    ("import", "x.ovf", {"filename": "invalid filename or wrong extension"}),
    ("import", "X.QCOW2", {"filename": "invalid filename or wrong extension"}),
    ("import", "x.vdi", {"filename": "invalid filename or wrong extension"}),
    ("import", "x.iso", {"filename": "invalid filename or wrong extension"}),
]


@pytest.mark.parametrize("content,filename,errors", EXT_BAD, ids=["%s-%s" % (c, f) for c, f, _ in EXT_BAD])
def test_bad_extension(shared_daemon, shared_api, base, content, filename, errors):
    store = shared_daemon.storage_path()
    before = tree(store)
    r = shared_api.download_url(**with_(base, content=content, filename=filename))
    assert_param_error(r, errors)
    assert_nothing_new(before, store)


EXT_GOOD = [
    ("iso", "small.iso", "UPPER.ISO", "template/iso/UPPER.ISO"),
    ("iso", "small.img", "Mixed.Img", "template/iso/Mixed.Img"),
    ("vztmpl", "tmpl.tar", "plain.tar", "template/cache/plain.tar"),
    ("vztmpl", "tmpl.tar.gz", "UP.TAR.GZ", "template/cache/UP.TAR.GZ"),
    # '+' and '=' are in the import regex, but normalisation has already turned them into '_'
    ("import", "disk.raw", "a+b=c_d-e.raw", "import/a_b_c_d-e.raw"),
]


@pytest.mark.parametrize("src,content_filename,rel", [((c, s), f, r) for c, s, f, r in EXT_GOOD],
                         ids=[f for _, _, f, _ in EXT_GOOD])
def test_good_extension(shared_daemon, shared_api, origin, src, content_filename, rel):
    content, source = src
    r = shared_api.download_url(url=origin.file_url(source), content=content, filename=content_filename)
    upid = shared_api.ok_data(r)
    assert shared_api.wait(upid)["exitstatus"] == "OK"
    assert (shared_daemon.storage_path() / rel).read_bytes() == origin.data(source)


# --- filename normalisation ------------------------------------------------------------------------

NORM = [
    ("my file.iso", "my_file.iso"),
    ("a/b\\c.iso", "c.iso"),
    ("ümlaut€.iso", None),  # every non-[a-zA-Z0-9_.-] character becomes '_' (per character)
    ("x.iso\n", "x.iso"),
]


@pytest.mark.parametrize("given,expected", NORM, ids=["space", "slashes", "unicode", "newline"])
def test_filename_normalisation(shared_daemon, shared_api, origin, given, expected):
    if expected is None:
        # PVE's tr/ works on characters of the decoded (UTF-8) string
        expected = "".join(c if (c.isascii() and (c.isalnum() or c in "_.-")) else "_" for c in given)
    r = shared_api.download_url(url=origin.file_url("small.iso"), content="iso", filename=given)
    upid = shared_api.ok_data(r)
    assert upid_fields(upid)["id"] == expected
    st = shared_api.wait(upid)
    assert st["exitstatus"] == "OK", st
    dest = shared_daemon.storage_path() / "template/iso" / expected
    assert dest.read_bytes() == origin.data("small.iso")
    assert shared_api.log_lines(upid)[0] == "downloading %s to %s" % (origin.file_url("small.iso"), dest)


def test_normalised_name_with_bad_extension(shared_api, base):
    # 'x.iso/evil' normalises to 'evil', which has no valid extension
    r = shared_api.download_url(**with_(base, filename="x.iso/evil"))
    assert_param_error(r, {"filename": "wrong file extension"})


# --- envelope and headers -----------------------------------------------------------------------------

def test_success_envelope_and_headers(shared_api, base):
    r = shared_api.download_url(**with_(base, filename="envelope.iso"))
    assert r.status_code == 200
    assert r.reason == "OK"
    assert r.headers["Content-Type"] == JSON_CT
    body = r.json()
    assert list(body) == ["data"], body
    f = upid_fields(body["data"])
    assert f["type"] == "download" and f["id"] == "envelope.iso" and f["user"] == "root@pam!admin"
    assert shared_api.wait(body["data"])["exitstatus"] == "OK"


def test_extjs_validation_error(shared_daemon, base):
    api = shared_daemon.api("root", fmt="extjs")
    r = api.download_url(**with_(base, filename=None))
    assert r.status_code == 200, (r.status_code, r.reason)
    assert r.headers["Content-Type"] == JSON_CT
    body = r.json()
    assert body["success"] == 0, body
    assert body["status"] == 400, body
    assert body["data"] is None, body
    assert body["errors"] == {"filename": "property is missing and it is not optional"}, body
    assert body["message"].rstrip("\n") == PARAM_FAIL, body


def test_extjs_handler_error(shared_daemon, base):
    api = shared_daemon.api("root", fmt="extjs")
    r = api.download_url(storage="nope", **base)
    assert r.status_code == 200, (r.status_code, r.reason)
    body = r.json()
    assert body["success"] == 0 and body["status"] == 500, body
    assert body["message"].rstrip("\n") == "storage 'nope' does not exist", body


def test_extjs_success(shared_daemon, base):
    api = shared_daemon.api("root", fmt="extjs")
    r = api.download_url(**with_(base, filename="extjs.iso"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == JSON_CT
    body = r.json()
    assert body["success"] == 1, body
    assert upid_fields(body["data"])["id"] == "extjs.iso"
    assert shared_daemon.api("root").wait(body["data"])["exitstatus"] == "OK"


def test_unknown_node_is_an_error(shared_daemon, shared_api, base):
    store = shared_daemon.storage_path()
    before = tree(store)
    r = shared_api.download_url(node="othernode", **with_(base, filename="othernode.iso"))
    assert 400 <= r.status_code < 600 and r.status_code != 401, (r.status_code, r.reason)
    assert r.headers.get("Content-Type") == JSON_CT
    assert r.json()["data"] is None
    assert_nothing_new(before, store)


def test_unknown_route_is_501(shared_api):
    r = shared_api.get("/nodes/%s/bogus" % NODE)
    assert r.status_code == 501, (r.status_code, r.reason)
    assert r.reason == "Method 'GET /nodes/%s/bogus' not implemented" % NODE


def test_get_on_download_url_is_501(shared_api):
    r = shared_api.get("/nodes/%s/storage/local/download-url" % NODE)
    assert r.status_code == 501, (r.status_code, r.reason)
    assert r.reason == "Method 'GET /nodes/%s/storage/local/download-url' not implemented" % NODE


def test_query_string_wins_over_body(shared_api, base):
    r = shared_api.post("/nodes/%s/storage/local/download-url" % NODE,
                        params={"filename": "fromquery.iso"}, data=with_(base, filename="frombody.iso"))
    upid = shared_api.ok_data(r)
    assert upid_fields(upid)["id"] == "fromquery.iso"
    assert shared_api.wait(upid)["exitstatus"] == "OK"


def test_head_method_is_501(shared_api):
    r = shared_api.request("HEAD", "/version")
    assert r.status_code == 501, (r.status_code, r.reason)
    assert r.reason == "method 'HEAD' not available"


def test_unknown_format_is_501(shared_daemon):
    r = shared_daemon.api("root", fmt="yaml").get("/version")
    assert r.status_code == 501, (r.status_code, r.reason)
    assert r.reason.startswith("no formatter for uri ") and r.reason.endswith(", yaml"), r.reason


def test_standard_response_headers(shared_api):
    r = shared_api.get("/version")
    assert r.status_code == 200
    h = r.headers
    assert h["Content-Type"] == JSON_CT
    assert h.get("Cache-Control") == "max-age=0", h
    assert h.get("Pragma") == "no-cache", h
    # PVE sets Expires = Date; both must at least be valid HTTP dates (equality is not asserted:
    # the two may be produced in different seconds)
    from email.utils import parsedate_to_datetime
    assert parsedate_to_datetime(h["Expires"]) and parsedate_to_datetime(h["Date"]), h
