"""Password logins with proxmoxer (pve-api.md §6.3): a user made with `isolib user add`, a ticket
from POST /access/ticket, proxmoxer's own CSRF header on a real download-url through nginx, its
ticket renewal, and its AuthenticationError for a refused login."""

import subprocess

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError
from proxmoxer.backends.https import ProxmoxHTTPAuth
from proxmoxer.tools import Tasks

from helpers import NODE, SUBDIR, upid_fields

PASSWORD = "tick et+pass&word=1"


def user_add(daemon, userid, password, *extra):
    """`isolib user add` on the daemon's own config, the password on stdin as a script gives it."""
    out = subprocess.run(
        [str(daemon.binary), "user", "add", userid, "--config", str(daemon.config), *extra],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def password_prox(daemon, user, password):
    return ProxmoxAPI(
        "127.0.0.1",
        port=daemon.port,
        user=user,
        password=password,
        verify_ssl=False,
        timeout=30,
    )


def successful_logins(daemon, user):
    return daemon.log_text().count("successful auth for user '%s'" % user)


def test_password_login_then_download_with_proxmoxer(daemon, origin):
    # alice@pve exists in the fixture's user.cfg (Datastore rights on local, Sys.Audit and
    # Sys.Modify on /); this sets her password in shadow.cfg.
    assert user_add(daemon, "alice@pve", PASSWORD).strip() == "updated user alice@pve"
    shadow = (daemon.base / "state" / "shadow.cfg").read_text()
    assert shadow.startswith("alice:$5$") and PASSWORD not in shadow, shadow

    prox = password_prox(daemon, "alice@pve", PASSWORD)
    auth = prox._backend.auth
    assert isinstance(auth, ProxmoxHTTPAuth)
    ticket, csrf = auth.get_tokens()
    assert ticket.startswith("PVE:alice@pve:"), ticket
    assert csrf[:8] == ticket.split(":")[2], (ticket, csrf)
    assert prox.version.get()["version"]

    url = origin.file_url("small.iso")
    upid = prox.nodes(NODE).storage("local")("download-url").post(
        url=url,
        content="iso",
        filename="by-ticket.iso",
        checksum=origin.digest("small.iso", "sha256"),
        **{"checksum-algorithm": "sha256"},
    )
    assert upid_fields(upid)["user"] == "alice@pve", upid
    st = Tasks.blocking_status(prox, upid, timeout=90, polling_interval=0.2)
    assert st is not None and st["status"] == "stopped", st
    assert st["exitstatus"] == "OK", st
    dest = daemon.storage_path() / SUBDIR["iso"] / "by-ticket.iso"
    assert dest.read_bytes() == origin.data("small.iso")
    lines = [e["t"] for e in prox.nodes(NODE).tasks(upid).log.get(limit=0)]
    assert "calculating checksum...OK, checksum verified" in lines, lines


def test_proxmoxer_renews_its_ticket_with_the_ticket(daemon):
    user_add(daemon, "alice@pve", PASSWORD)
    prox = password_prox(daemon, "alice@pve", PASSWORD)
    auth = prox._backend.auth
    before = successful_logins(daemon, "alice@pve")
    assert before >= 1, daemon.log_text()[-2000:]
    # Pretend the ticket is an hour old: proxmoxer posts it as the password before the next call.
    auth.birth_time -= auth.renew_age
    assert prox.version.get()["version"]
    assert successful_logins(daemon, "alice@pve") == before + 1
    assert auth.get_tokens()[0].startswith("PVE:alice@pve:")
    # The renewed ticket and token still carry a POST.
    assert prox.nodes(NODE).storage("local")("download-url").post(
        url="http://127.0.0.1:9/none.iso", content="iso", filename="renewed.iso"
    ).startswith("UPID:")


def test_refused_logins_raise_authentication_error(daemon):
    user_add(daemon, "alice@pve", PASSWORD)
    with pytest.raises(AuthenticationError, match="code: 401"):
        password_prox(daemon, "alice@pve", PASSWORD + "x")
    with pytest.raises(AuthenticationError, match="code: 401"):
        password_prox(daemon, "nobody@pve", PASSWORD)
    # mallory@pve is disabled in user.cfg: the right password is not enough.
    user_add(daemon, "mallory@pve", PASSWORD)
    with pytest.raises(AuthenticationError, match="code: 401"):
        password_prox(daemon, "mallory@pve", PASSWORD)
    assert password_prox(daemon, "alice@pve", PASSWORD).version.get()["version"]
