"""The connected source over the API: PUT and GET /tenants/{t}/source (secrets
write-only, masked when read), tenant isolation and roles, and Sync now from the
connected Clever source with no source_key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rostersync.storage.secrets import LocalSecretStore
from tests.integration.test_api import Api, api, wait_for_status
from tests.servers.clever import CleverServer, sample_district

__all__ = ["api"]

TOKEN = "clever-api-token-0f3e9a2d77"


@pytest.fixture(scope="module")
def clever() -> Iterator[CleverServer]:
    with CleverServer(sample_district(), token=TOKEN) as server:
        yield server


def _connect(api: Api, tenant: str, clever: CleverServer, token: str = TOKEN) -> dict:
    response = api.http.put(
        f"/tenants/{tenant}/source",
        headers=api.token(tenant),
        json={
            "kind": "clever",
            "settings": {"base_url": clever.base_url},
            "secrets": {"token": token},
        },
    )
    assert response.status_code == 200, response.text
    assert token not in response.text
    return dict(response.json())


def test_put_stores_the_token_in_the_secret_store_and_get_masks_it(api, clever):
    tenant = api.tenant("src1")
    before = api.http.get(f"/tenants/{tenant}/source", headers=api.token(tenant, "viewer"))
    assert before.status_code == 200
    assert before.json()["kind"] == "oneroster_csv"

    body = _connect(api, tenant, clever)

    assert body["kind"] == "clever"
    assert body["secrets"] == {"token": "set"}
    assert body["check"]["ok"] is True
    assert body["settings"]["base_url"] == clever.base_url
    shown = api.http.get(f"/tenants/{tenant}/source", headers=api.token(tenant, "viewer"))
    assert shown.status_code == 200
    assert shown.json()["secrets"] == {"token": "set"}
    assert TOKEN not in shown.text
    assert isinstance(api.deps.secrets, LocalSecretStore)
    assert api.deps.secrets.get_secret(tenant, "clever_token") == TOKEN
    assert TOKEN not in repr(api.deps.tenants.get_source(tenant))


def test_a_refused_token_is_stored_but_the_check_says_so(api, clever):
    tenant = api.tenant("src2")
    body = _connect(api, tenant, clever, token="wrong-token-value")
    assert body["check"]["ok"] is False
    assert "refused" in body["check"]["message"]


def test_bad_connections_are_422_naming_the_field(api, clever):
    tenant = api.tenant("src3")
    headers = api.token(tenant)
    cases = [
        ({"kind": "nosuch"}, "kind"),
        ({"kind": "clever"}, "secrets.token"),
        ({"kind": "clever", "secrets": {"token": "x", "pin": "y"}}, "secrets.pin"),
        ({"kind": "clever", "settings": {"base_url": "http://x.example"}}, "base_url"),
        ({"kind": "oneroster_csv", "settings": {"key": "inbox/src3/a.zip"}}, "key"),
    ]
    for body, field in cases:
        response = api.http.put(f"/tenants/{tenant}/source", headers=headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.text


def test_only_an_admin_of_the_tenant_connects_and_only_its_users_read(api, clever):
    own = api.tenant("src4")
    other = api.tenant("src5")
    body = {
        "kind": "clever",
        "settings": {"base_url": clever.base_url},
        "secrets": {"token": TOKEN},
    }

    viewer_put = api.http.put(f"/tenants/{own}/source", headers=api.token(own, "viewer"), json=body)
    across_put = api.http.put(f"/tenants/{other}/source", headers=api.token(own), json=body)
    across_get = api.http.get(f"/tenants/{other}/source", headers=api.token(own))
    missing = api.http.get("/tenants/nosuch9/source", headers=api.token(own))

    assert viewer_put.status_code == 403
    assert across_put.status_code == 403
    assert across_get.status_code == 403
    assert missing.status_code == 403
    assert api.deps.secrets.get_secret(other, "clever_token") is None


def test_sync_now_without_a_source_key_fetches_from_the_connected_source(api, clever):
    tenant = api.tenant("src6")
    headers = api.token(tenant)
    empty = api.http.post(f"/tenants/{tenant}/runs", headers=headers, json={})
    assert empty.status_code == 409
    assert "connect a source" in empty.json()["error"]

    _connect(api, tenant, clever)
    started = api.http.post(f"/tenants/{tenant}/runs", headers=headers, json={"mode": "full"})

    assert started.status_code == 202, started.text
    finished = wait_for_status(api, tenant, started.json()["run_id"])
    assert finished["run"]["status"] == "committed", finished
    assert finished["run"]["source"]["kind"] == "clever"
    users = api.http.get(f"/tenants/{tenant}/directory/users", headers=headers).json()["items"]
    assert {"stu1", "tch1", "con1"} <= {u["source_id"] for u in users}
