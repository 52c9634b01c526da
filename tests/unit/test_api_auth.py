"""The admin API's rules that need no server: who may call what, tokens, patches, patterns."""

from __future__ import annotations

import re
import stat

import pytest

from rostersync.api.auth import AuthError, authorize, claims_of, principal_from_claims
from rostersync.api.models import RUN_ID_PATTERN, TENANT_PATTERN
from rostersync.api.tenant_routes import merge_patch
from rostersync.api.tokens import (
    InvalidToken,
    TokenVerifier,
    issue_token,
    secret_path,
    verify_token,
)
from rostersync.errors import InvalidKey
from rostersync.storage import keys


def claims(tenant: str | None = "t1", role: str = "admin") -> dict[str, str]:
    found = {"custom:role": role, "sub": "someone"}
    if tenant is not None:
        found["custom:tenant"] = tenant
    return found


@pytest.mark.parametrize(
    ("method", "path", "given", "status"),
    [
        ("GET", "/tenants/t1/settings", None, 401),
        ("GET", "/tenants/t1/settings", {"custom:tenant": "t1"}, 401),  # no role
        ("GET", "/tenants/t1/settings", claims(role="owner"), 401),
        ("GET", "/tenants/t1/settings", claims(tenant=None), 401),
        ("GET", "/tenants/t1/settings", claims(tenant="Not Valid"), 401),
        ("GET", "/tenants/t2/settings", claims(), 403),
        ("GET", "/tenants/t1%2F..%2Ft2/settings", claims(), 403),
        ("POST", "/tenants", claims(), 403),
        ("POST", "/tenants/", claims(), 403),
        ("PUT", "/tenants/t1/settings", claims(role="viewer"), 403),
        ("POST", "/tenants/t1/runs", claims(role="viewer"), 403),
        ("DELETE", "/tenants/t1/runs", claims(role="viewer"), 403),
    ],
)
def test_requests_are_refused_before_routing(method, path, given, status):
    with pytest.raises(AuthError) as refused:
        authorize(method, path, given)
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("method", "path", "given"),
    [
        ("GET", "/tenants/t1/settings", claims(role="viewer")),
        ("POST", "/tenants/t1/runs/x/commit", claims()),
        ("GET", "/tenants/any-tenant/runs", claims(tenant=None, role="platform")),
        ("POST", "/tenants", claims(tenant=None, role="platform")),
        ("GET", "/unknown", claims()),  # the router answers 404
    ],
)
def test_allowed_requests_name_their_caller(method, path, given):
    principal = authorize(method, path, given)
    assert principal.role == given["custom:role"]
    assert principal.who == "someone"


def test_the_caller_is_named_by_email_then_user_name_then_subject():
    assert principal_from_claims({**claims(), "email": "a@b.org"}).who == "a@b.org"
    assert principal_from_claims({**claims(), "cognito:username": "u1"}).who == "u1"
    with pytest.raises(AuthError):
        principal_from_claims({"custom:role": "admin", "custom:tenant": "t1"})


def test_claims_are_read_where_the_cognito_authorizer_puts_them():
    event = {"requestContext": {"authorizer": {"claims": claims()}}}
    assert claims_of(event) == claims()
    assert claims_of({"requestContext": {"authorizer": {}}}) is None
    assert claims_of({}) is None


def test_tokens_round_trip_and_the_secret_is_private(tmp_path):
    token = issue_token(tmp_path, "t1", "viewer", 60, subject="ada@school.org")

    verified = verify_token(tmp_path, token)

    assert verified["custom:tenant"] == "t1"
    assert verified["custom:role"] == "viewer"
    assert verified["sub"] == "ada@school.org"
    assert stat.S_IMODE(secret_path(tmp_path).stat().st_mode) == 0o600


def test_tokens_from_another_state_directory_or_tampered_are_refused(tmp_path):
    mine = issue_token(tmp_path / "a", "t1", "admin", 60)
    theirs = issue_token(tmp_path / "b", "t1", "admin", 60)
    header, payload, signature = mine.split(".")

    with pytest.raises(InvalidToken):
        verify_token(tmp_path / "a", theirs)
    with pytest.raises(InvalidToken):
        verify_token(tmp_path / "a", f"{header}.{payload}.{signature[::-1]}")
    with pytest.raises(InvalidToken):
        verify_token(tmp_path / "a", "garbage")
    with pytest.raises(InvalidToken):  # no secret: no token was ever issued there
        verify_token(tmp_path / "c", mine)


def test_a_secret_others_can_read_is_refused(tmp_path):
    issue_token(tmp_path, "t1", "admin", 60)
    secret_path(tmp_path).chmod(0o644)
    with pytest.raises(InvalidToken, match="chmod 600"):
        TokenVerifier(tmp_path)


def test_token_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError):
        issue_token(tmp_path, "t1", "owner", 60)
    with pytest.raises(ValueError):
        issue_token(tmp_path, None, "admin", 60)
    with pytest.raises(ValueError):
        issue_token(tmp_path, "t1", "admin", 0)
    with pytest.raises(InvalidKey):
        issue_token(tmp_path, "../t2", "admin", 60)
    assert issue_token(tmp_path, None, "platform", 60)


def test_merge_patch_follows_rfc_7396():
    current = {"a": 1, "hold": {"share": 0.1, "count": None}, "list": [1, 2]}

    patched = merge_patch(current, {"hold": {"count": 5}, "a": None, "list": [3], "new": {}})

    assert patched == {"hold": {"share": 0.1, "count": 5}, "list": [3], "new": {}}
    assert current["a"] == 1  # the input is left alone


@pytest.mark.parametrize(
    "tenant", ["t1", "a", "district-9", "x" * 63, "T1", "-t", "t-", "x" * 64, "t_1", ""]
)
def test_the_documented_tenant_pattern_is_the_key_rule(tenant):
    try:
        keys.check_tenant(tenant)
        valid = True
    except InvalidKey:
        valid = False
    assert bool(re.match(TENANT_PATTERN, tenant)) == valid


@pytest.mark.parametrize(
    "run_id",
    ["20261123T103200Z-1a2b3c4d", "20260101T000000Z-00000000", "20261123T103200Z-1A2B3C4D", "x"],
)
def test_the_documented_run_pattern_is_the_key_rule(run_id):
    try:
        keys.check_run_id(run_id)
        valid = True
    except InvalidKey:
        valid = False
    assert bool(re.match(RUN_ID_PATTERN, run_id)) == valid
