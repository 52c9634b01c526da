"""SFTP users over the API: an admin adds, rotates and removes them (a generated
password returned once, a public key), a viewer only lists, and a tenant never sees,
rotates or removes another tenant's users. A generated password logs in with a real
SFTP client against the local drop box."""

from __future__ import annotations

import asyncio
import json

import asyncssh

from rostersync.application.inbox import inbox_objects
from rostersync.local.sftp import USERS_FILE, SftpDropBox, sftp_users_of
from tests.integration.test_api import Api, api

__all__ = ["api"]


def _key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()


def _users(api: Api, tenant: str, role: str = "admin") -> list[dict]:
    response = api.http.get(f"/tenants/{tenant}/sftp-users", headers=api.token(tenant, role))
    assert response.status_code == 200, response.text
    return list(response.json()["users"])


def test_admin_adds_rotates_and_removes_a_user(api):
    tenant = api.tenant("sftp-a")
    assert _users(api, tenant) == []

    added = api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "sftpa-drop", "generate_password": True},
    )
    assert added.status_code == 201, added.text
    first = added.json()["password"]
    assert isinstance(first, str) and len(first) >= 24
    shown = {"username": "sftpa-drop", "has_password": True, "public_keys": 0}
    assert added.json()["user"] == shown
    stored = (api.state / USERS_FILE).read_text()
    assert first not in stored
    assert _users(api, tenant) == [shown]
    assert first not in json.dumps(_users(api, tenant))

    again = api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "sftpa-drop", "generate_password": True},
    )
    assert again.status_code == 409, again.text

    rotated = api.http.post(
        f"/tenants/{tenant}/sftp-users/sftpa-drop/rotate",
        headers=api.token(tenant),
        json={"generate_password": True, "public_key": _key()},
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["password"]
    assert second and second != first
    assert rotated.json()["user"]["public_keys"] == 1

    removed = api.http.delete(f"/tenants/{tenant}/sftp-users/sftpa-drop", headers=api.token(tenant))
    assert removed.status_code == 200, removed.text
    assert _users(api, tenant) == []
    assert sftp_users_of(api.state, tenant) == []
    gone = api.http.delete(f"/tenants/{tenant}/sftp-users/sftpa-drop", headers=api.token(tenant))
    assert gone.status_code == 404


def test_a_generated_password_logs_in_and_the_rotated_one_replaces_it(api):
    tenant = api.tenant("sftp-login")
    first = api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "login-drop", "generate_password": True},
    ).json()["password"]
    second = api.http.post(
        f"/tenants/{tenant}/sftp-users/login-drop/rotate",
        headers=api.token(tenant),
        json={"generate_password": True},
    ).json()["password"]

    box = SftpDropBox(api.state, inbox_objects(api.deps), lambda key: None)
    port = box.start("127.0.0.1", 0)
    try:

        async def listing(password: str) -> list[str]:
            async with (
                asyncssh.connect(
                    "127.0.0.1",
                    port,
                    username="login-drop",
                    password=password,
                    known_hosts=None,
                    client_keys=None,
                ) as conn,
                conn.start_sftp_client() as sftp,
            ):
                return list(await sftp.listdir("/"))

        assert isinstance(asyncio.run(listing(second)), list)
        try:
            asyncio.run(listing(first))
        except asyncssh.PermissionDenied:
            pass
        else:
            raise AssertionError("the rotated-out password still logs in")
    finally:
        box.stop()


def test_bad_input_is_refused_with_a_message(api):
    tenant = api.tenant("sftp-bad")
    nothing = api.http.post(
        f"/tenants/{tenant}/sftp-users", headers=api.token(tenant), json={"username": "bad-none"}
    )
    assert nothing.status_code == 400
    assert "public key" in nothing.json()["error"]
    not_a_key = api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "bad-key", "public_key": "ssh-ed25519 not-base64"},
    )
    assert not_a_key.status_code == 400
    assert "public key" in not_a_key.json()["error"]
    bad_name = api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "../etc", "generate_password": True},
    )
    assert bad_name.status_code == 422
    assert _users(api, tenant) == []


def test_a_viewer_lists_but_cannot_change(api):
    tenant = api.tenant("sftp-v")
    api.http.post(
        f"/tenants/{tenant}/sftp-users",
        headers=api.token(tenant),
        json={"username": "sftpv-drop", "public_key": _key()},
    ).raise_for_status()
    assert [u["username"] for u in _users(api, tenant, "viewer")] == ["sftpv-drop"]
    viewer = api.token(tenant, "viewer")
    for response in (
        api.http.post(
            f"/tenants/{tenant}/sftp-users",
            headers=viewer,
            json={"username": "sftpv-other", "generate_password": True},
        ),
        api.http.post(
            f"/tenants/{tenant}/sftp-users/sftpv-drop/rotate",
            headers=viewer,
            json={"generate_password": True},
        ),
        api.http.delete(f"/tenants/{tenant}/sftp-users/sftpv-drop", headers=viewer),
    ):
        assert response.status_code == 403, response.text
    assert [(u.username, u.has_password) for u in sftp_users_of(api.state, tenant)] == [
        ("sftpv-drop", False)
    ]


def test_another_tenants_users_are_never_listed_or_touched(api):
    mine, theirs = api.tenant("sftp-mine"), api.tenant("sftp-theirs")
    api.http.post(
        f"/tenants/{theirs}/sftp-users",
        headers=api.token(theirs),
        json={"username": "theirs-drop", "generate_password": True},
    ).raise_for_status()
    assert _users(api, mine) == []
    mine_token = api.token(mine)
    assert api.http.get(f"/tenants/{theirs}/sftp-users", headers=mine_token).status_code == 403
    rotate = api.http.post(
        f"/tenants/{mine}/sftp-users/theirs-drop/rotate",
        headers=mine_token,
        json={"generate_password": True},
    )
    assert rotate.status_code == 404
    remove = api.http.delete(f"/tenants/{mine}/sftp-users/theirs-drop", headers=mine_token)
    assert remove.status_code == 404
    taken = api.http.post(
        f"/tenants/{mine}/sftp-users",
        headers=mine_token,
        json={"username": "theirs-drop", "generate_password": True},
    )
    assert taken.status_code == 409
    assert theirs not in taken.text
    assert [u["username"] for u in _users(api, theirs)] == ["theirs-drop"]
    assert _users(api, mine) == []
