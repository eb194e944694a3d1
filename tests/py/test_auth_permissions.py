"""API-token authentication and the download-url permission matrix (pve-api.md §1.2, §5, §6)."""

import re

import pytest

from conftest import SECRETS, TOKENS
from helpers import NODE, Api, assert_nothing_new, tree, upid_fields

PERM_FAILED = "Permission check failed"
PERM_STORAGE = "Permission check failed (/storage/local, Datastore.AllocateTemplate)"


def assert_401(r, reason):
    assert r.status_code == 401, (r.status_code, r.reason, r.text)
    assert r.reason == reason
    assert r.content == b"", r.content


def assert_403(r, message):
    assert r.status_code == 403, (r.status_code, r.reason, r.text)
    assert r.reason == message
    body = r.json()
    assert body["data"] is None and body["message"] == message + "\n", body


def dl_params(origin, filename):
    return {"url": origin.file_url("small.iso"), "content": "iso", "filename": filename}


# --- authentication -----------------------------------------------------------------------------

def test_no_credentials(shared_daemon):
    assert_401(Api(shared_daemon.port).get("/version"), "No ticket")


def test_no_credentials_on_download_url(shared_daemon, origin):
    r = Api(shared_daemon.port).download_url(**dl_params(origin, "anon.iso"))
    assert_401(r, "No ticket")


def test_bad_secret(shared_daemon):
    api = Api(shared_daemon.port, TOKENS["root"], "00000000-0000-0000-0000-000000000000")
    assert_401(api.get("/version"), "Authentication failed!")


def test_unknown_token(shared_daemon):
    api = Api(shared_daemon.port, "root@pam!nosuchtoken", SECRETS["root"])
    assert_401(api.get("/version"), "Authentication failed!")


def test_secret_of_another_token(shared_daemon):
    api = Api(shared_daemon.port, TOKENS["root"], SECRETS["alice"])
    assert_401(api.get("/version"), "Authentication failed!")


def test_colon_separator_rejected(shared_daemon):
    api = Api(shared_daemon.port, auth_header="PVEAPIToken=%s:%s" % (TOKENS["root"], SECRETS["root"]))
    assert_401(api.get("/version"), "Authentication failed!")


def test_expired_token(shared_daemon):
    assert_401(shared_daemon.api("erin_old").get("/version"), "Authentication failed!")


def test_disabled_user(shared_daemon):
    assert_401(shared_daemon.api("mallory").get("/version"), "Authentication failed!")


def test_space_after_pveapitoken(shared_daemon):
    api = Api(shared_daemon.port, auth_header="PVEAPIToken %s=%s" % (TOKENS["root"], SECRETS["root"]))
    r = api.get("/version")
    assert r.status_code == 200, (r.status_code, r.reason)
    v = r.json()["data"]
    assert {"version", "release", "repoid"} <= set(v)


def test_version_shape(shared_api):
    v = shared_api.ok_data(shared_api.get("/version"))
    major, minor, patch = v["version"].split(".")[:3]
    assert major.isdigit() and minor.isdigit() and patch[0].isdigit(), v
    assert v["release"] == "%s.%s" % (major, minor)
    # PVE's schema types repoid as [0-9a-fA-F]{8,64}; schema-generated clients reject anything else.
    assert re.fullmatch(r"[0-9a-fA-F]{8,64}", v["repoid"]), v


def test_401_keeps_status_on_extjs(shared_daemon):
    r = Api(shared_daemon.port, fmt="extjs").get("/version")
    assert_401(r, "No ticket")


def test_every_token_authenticates(shared_daemon):
    for who in ("root", "alice", "alice_sep", "alice_sepds", "bob", "carol", "dave", "erin"):
        r = shared_daemon.api(who).get("/version")
        assert r.status_code == 200, (who, r.status_code, r.reason)


# --- permission matrix on download-url ------------------------------------------------------------

def test_root_token_allowed(shared_daemon, origin):
    api = shared_daemon.api("root")
    upid, st = api.run_download(**dl_params(origin, "perm-root.iso"))
    assert st["exitstatus"] == "OK"


@pytest.mark.parametrize("who,expect_user", [
    ("alice", "alice@pve!full"),   # direct ACLs: PVEDatastoreAdmin on /storage/local + Sys.Audit,Sys.Modify on /
    ("bob", "bob@pve!tok"),          # through group ACLs
    ("erin", "erin@pve!tok"),        # Sys.AccessNetwork on /nodes/testnode instead of Audit+Modify
])
def test_allowed(shared_daemon, origin, who, expect_user):
    api = shared_daemon.api(who)
    r = api.download_url(**dl_params(origin, "perm-%s.iso" % who))
    upid = api.ok_data(r)
    assert upid_fields(upid)["user"] == expect_user
    st = api.wait(upid)
    assert st["exitstatus"] == "OK", st
    assert st["user"] == expect_user.split("!")[0] and st["tokenid"] == expect_user.split("!")[1]
    assert (shared_daemon.storage_path() / ("template/iso/perm-%s.iso" % who)).read_bytes() == origin.data("small.iso")


@pytest.mark.parametrize("who,message", [
    # privsep token without ACLs of its own: the intersection has nothing on /storage/local
    ("alice_sep", PERM_STORAGE),
    # privsep token with the datastore ACL but no Sys.* rights: the `or` branch fails, no detail
    ("alice_sepds", PERM_FAILED),
    # propagate 0 on /storage does not reach /storage/local
    ("carol", PERM_STORAGE),
    # Sys.Audit without Sys.Modify on /, and no Sys.AccessNetwork
    ("dave", PERM_FAILED),
])
def test_denied(shared_daemon, origin, who, message):
    store = shared_daemon.storage_path()
    before = tree(store)
    r = shared_daemon.api(who).download_url(**dl_params(origin, "denied-%s.iso" % who))
    assert_403(r, message)
    assert_nothing_new(before, store)


@pytest.mark.parametrize("who,message", [("dave", PERM_FAILED), ("carol", PERM_STORAGE)])
def test_permission_checked_before_validation(shared_daemon, who, message):
    r = shared_daemon.api(who).download_url(url="ftp://x", content="bogus", foo="bar")
    assert_403(r, message)


def test_permission_on_other_storage(shared_daemon, origin):
    # alice's datastore rights are on /storage/local only
    r = shared_daemon.api("alice").download_url(storage="isoonly", **dl_params(origin, "other.iso"))
    assert_403(r, "Permission check failed (/storage/isoonly, Datastore.AllocateTemplate)")


def test_extjs_permission_error(shared_daemon, origin):
    r = shared_daemon.api("dave", fmt="extjs").download_url(**dl_params(origin, "x.iso"))
    assert r.status_code == 200
    body = r.json()
    assert body["success"] == 0 and body["status"] == 403, body
    assert body["message"].rstrip("\n") == PERM_FAILED


# --- query-url-metadata permissions ------------------------------------------------------------------

@pytest.mark.parametrize("who,status", [("root", 200), ("alice", 200), ("erin", 200), ("bob", 200),
                                        ("dave", 403), ("alice_sepds", 403)])
def test_query_url_metadata_permissions(shared_daemon, origin, who, status):
    r = shared_daemon.api(who).get("/nodes/%s/query-url-metadata" % NODE, params={"url": origin.file_url("small.iso")})
    assert r.status_code == status, (r.status_code, r.reason)
    if status == 403:
        assert_403(r, PERM_FAILED)
    else:
        assert r.json()["data"]["filename"] == "small.iso"


# --- task access ----------------------------------------------------------------------------------

def test_task_status_of_other_user_forbidden(shared_daemon, origin):
    root = shared_daemon.api("root")
    upid, _ = root.run_download(**dl_params(origin, "roots.iso"))
    r = shared_daemon.api("erin").get("/nodes/%s/tasks/%s/status" % (NODE, upid))
    assert_403(r, "Permission check failed (/nodes/%s, Sys.Audit)" % NODE)


def test_user_token_sees_own_task(shared_daemon, origin):
    erin = shared_daemon.api("erin")
    upid, st = erin.run_download(**dl_params(origin, "erins.iso"))
    assert st["exitstatus"] == "OK"
    assert erin.log_lines(upid)[-1] == "TASK OK"
