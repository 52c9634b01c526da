"""Assembly syncs end to end: the local Assembly server on 127.0.0.1, the school's access
(and refresh) token in the local secret store, runs through the real state machine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from rostersync.application.sync import ensure_tenant, export_directory, start_sync
from rostersync.models import ENTITY_ORDER, Entity, validate_record
from rostersync.pipeline.deps import Deps, reset_default_deps
from rostersync.settings import HoldThresholds, TenantSettings
from rostersync.sources.assembly import AssemblySource, AssemblySpec
from rostersync.sources.http.retry import RetryPolicy
from rostersync.sources.registry import register_source
from rostersync.storage import keys
from rostersync.storage.secrets import LocalSecretStore
from tests.servers.assembly import AssemblyServer, upn_of

ACCESS = "assembly-access-7d2c90aa"
REFRESH = "assembly-refresh-41be07f3"
APP_SECRET = "assembly-app-secret-0c5d"


@pytest.fixture
def assembly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(tmp_path / "secrets.json"))
    local, deps = request.getfixturevalue("cloud")
    reset_default_deps()
    request.addfinalizer(reset_default_deps)
    assert isinstance(deps.secrets, LocalSecretStore)
    ensure_tenant(deps, "t1", create=True)
    deps.secrets.put_secret("t1", "assembly_access_token", ACCESS)
    deps.secrets.put_secret("t1", "assembly_refresh_token", REFRESH)
    deps.secrets.put_secret("t1", "assembly_client_secret", APP_SECRET)
    slept: list[float] = []
    register_source(
        AssemblySource(sleep=slept.append, jitter=lambda: 0.0, retry=RetryPolicy(attempts=4))
    )
    server = AssemblyServer(
        token=ACCESS, refresh_token=REFRESH, client_id="app-1", client_secret=APP_SECRET
    )
    with server:
        yield {"local": local, "deps": deps, "server": server, "slept": slept}
    register_source(AssemblySource())


def _sync(env: dict[str, Any], mode: str = "full") -> Any:
    server = env["server"]
    spec = AssemblySpec(
        base_url=server.base_url, token_url=server.token_url, client_id="app-1", per_page=4
    )
    return start_sync(
        env["local"], env["deps"], "t1", spec, keys.new_run_id(), mode=mode, trigger="api"
    )


def _hold_only_mass_changes(deps: Deps) -> None:
    settings = TenantSettings(hold=HoldThresholds(change_share=1.0))
    deps.tenants.put_settings(
        "t1",
        settings.model_dump(mode="json"),
        who="test",
        at="2025-01-01T00:00:00Z",
        changed=["hold"],
    )


def _actions(deps: Deps, run_id: str, entity: Entity, kind: str) -> list[str]:
    return sorted(
        a["source_id"]
        for a in deps.store.iter_jsonl(keys.changes_key("t1", run_id, entity))
        if a["action"] == kind and a.get("included", True)
    )


def _directory(deps: Deps, entity: str) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: r for r in export_directory(deps, "t1")[entity]}


def _validate_normalized(deps: Deps, run_id: str) -> int:
    count = 0
    for entity in ENTITY_ORDER:
        for record in deps.store.iter_jsonl(keys.normalized_key("t1", run_id, entity)):
            validate_record(entity, record)
            count += 1
    return count


def _stored_bytes(deps: Deps) -> Iterator[bytes]:
    for key in deps.store.list_keys(""):
        yield deps.store.get_bytes(key) or b""
    dynamodb = boto3.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            yield repr(page["Items"]).encode()


def _kept_since(deps: Deps) -> datetime:
    """The moment the last commit's cursor keeps (its fetch's start)."""
    pointer = deps.store.get_json(keys.state_pointer_key("t1"))
    return datetime.fromisoformat(pointer["source_cursor"]["cursor"]["since"])


def test_full_sync_from_assembly(assembly, logs):
    """Given a school's access token, when a full sync runs, then the school, students
    keyed on Assembly's id (UPN, former UPN, ULN, MIS id and PAN as identifiers), staff,
    teaching and registration groups with their members are committed."""
    deps, server = assembly["deps"], assembly["server"]
    outcome = _sync(assembly)
    assert outcome.status == "committed", outcome.error
    counts = outcome.counts
    assert counts["orgs"]["add"] == 1 and counts["users"]["add"] == 24
    assert counts["classes"]["add"] == 5 and counts["demographics"]["add"] == 20
    # 3 teaching groups of 6 students and a teacher, 2 registration groups of 10 and one.
    assert counts["enrollments"]["add"] == 3 * 7 + 2 * 11
    assert _validate_normalized(deps, outcome.run_id) == 1 + 24 + 5 + 43 + 20
    users = _directory(deps, "users")
    ids = {i["type"]: i["identifier"] for i in users["student-5003"]["user_ids"]}
    assert ids["upn"] == upn_of(3) and ids["former_upn"] == upn_of(903)
    assert {"uln", "mis_id", "pan", "assembly_id"} <= set(ids)
    assert users["student-5004"]["preferred_given_name"] == "Izzy"
    assert users["staff-303"]["role"] == "administrator" and users["staff-300"]["role"] == "teacher"
    classes = _directory(deps, "classes")
    assert classes["rg-40"]["class_type"] == "homeroom" and classes["tg-40"]["subjects"] == [
        "Mathematics"
    ]
    enrollments = _directory(deps, "enrollments")
    assert "tg-42-student-5010" in enrollments  # read from /teaching_groups/42/students
    assert any(p == "/teaching_groups/42/students" for p, _, _ in server.requests)
    assert all(h["accept"].endswith("version=1.1") for _, _, h in server.requests)
    for secret in (ACCESS, REFRESH, APP_SECRET):
        assert not [b for b in _stored_bytes(deps) if secret.encode() in b]
        assert not [line for line in logs.lines if secret in line]


def test_quick_sync_sends_if_modified_since_and_reads_leavers(assembly):
    deps, server = assembly["deps"], assembly["server"]
    _hold_only_mass_changes(deps)
    assert _sync(assembly).status == "committed"
    kept = _kept_since(deps)
    later = datetime.now(UTC) + timedelta(minutes=30)
    student = server.data.records["students"][5001]
    server.data.put("students", {**student, "legal_last_name": "Moved"}, later)
    server.data.leave(5002, later)
    server.requests.clear()
    quick = _sync(assembly, mode="quick")
    assert quick.status == "committed", (quick.error, quick.report.get("hold"))
    sent = {h.get("if-modified-since") for p, _, h in server.requests if p != "/school/status"}
    assert len(sent) == 1
    (header,) = sent
    moment = parsedate_to_datetime(header)
    assert moment == (kept - timedelta(minutes=5)).replace(microsecond=0)
    assert _actions(deps, quick.run_id, Entity.USERS, "update") == ["student-5001"]
    assert _actions(deps, quick.run_id, Entity.USERS, "archive") == ["student-5002"]
    users = _directory(deps, "users")
    assert users["student-5001"]["family_name"] == "Moved"
    assert users["student-5003"]["status"] == "active"


def test_an_expired_access_token_is_refreshed(assembly):
    server = assembly["server"]
    server.token = "issued-after-ours"  # the stored access token has expired
    outcome = _sync(assembly)
    assert outcome.status == "committed", outcome.error
    assert server.refreshes == 1
    assert _sync(assembly).status == "committed"
    assert server.refreshes == 1  # the refreshed token is kept for the process


def test_a_refused_token_fails_the_run_and_commits_nothing(assembly, logs):
    deps, server = assembly["deps"], assembly["server"]
    server.token = "revoked"
    server.refresh_token = "revoked-too"
    outcome = _sync(assembly)
    assert outcome.status == "failed"
    assert "SourceAuthError" in (outcome.error or "") or "401" in (outcome.error or "")
    assert deps.store.get_json(keys.state_pointer_key("t1")) is None
    assert export_directory(deps, "t1")["users"] == []
    assert not [line for line in logs.lines if REFRESH in line or ACCESS in line]


def test_a_503_then_success(assembly):
    server = assembly["server"]
    server.fail(503, path="/students", after=1)
    server.fail(429, path="/staff_members", headers={"Retry-After": "2"})
    outcome = _sync(assembly)
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 24
    assert 2.0 in assembly["slept"]


def test_a_listing_that_shifts_under_paging_is_deduplicated(assembly):
    deps, server = assembly["deps"], assembly["server"]
    newcomer = {**server.data.records["students"][5000], "id": 4999, "legal_first_name": "New"}
    server.shift("students", newcomer, after_pages=1)
    outcome = _sync(assembly)
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 25
    firsts = [q for p, q, _ in server.requests if p == "/students" and q.get("page") == "1"]
    assert len(firsts) == 2
    normalized = list(
        deps.store.iter_jsonl(keys.normalized_key("t1", outcome.run_id, Entity.USERS))
    )
    ids = [r["source_id"] for r in normalized]
    assert len(ids) == len(set(ids)) == 25


def test_leavers_are_archived_by_a_full_sync(assembly):
    deps, server = assembly["deps"], assembly["server"]
    _hold_only_mass_changes(deps)
    assert _sync(assembly).status == "committed"
    server.data.leave(5019, datetime.now(UTC))
    outcome = _sync(assembly)
    assert outcome.status == "committed", outcome.error
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == ["student-5019"]
    assert _directory(deps, "users")["student-5019"]["status"] == "archived"
