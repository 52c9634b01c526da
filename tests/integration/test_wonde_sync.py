"""Wonde syncs end to end: the local Wonde server (the recorded Testing School) on
127.0.0.1, the school's token in the local secret store, runs through the real state
machine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from rostersync.application.sync import ensure_tenant, export_directory, start_sync
from rostersync.models import ENTITY_ORDER, Entity, validate_record
from rostersync.pipeline.deps import Deps, reset_default_deps
from rostersync.settings import HoldThresholds, TenantSettings
from rostersync.sources.http.retry import RetryPolicy
from rostersync.sources.registry import register_source
from rostersync.sources.wonde import WondeSource, WondeSpec
from rostersync.storage import keys
from rostersync.storage.secrets import LocalSecretStore
from tests.servers.wonde import WondeServer, upn_of

TOKEN = "wonde-school-token-3f9a61c2e8"


@pytest.fixture
def wonde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(tmp_path / "secrets.json"))
    local, deps = request.getfixturevalue("cloud")
    reset_default_deps()
    request.addfinalizer(reset_default_deps)
    assert isinstance(deps.secrets, LocalSecretStore)
    ensure_tenant(deps, "t1", create=True)
    deps.secrets.put_secret("t1", "wonde_token", TOKEN)
    slept: list[float] = []
    register_source(
        WondeSource(sleep=slept.append, jitter=lambda: 0.0, retry=RetryPolicy(attempts=4))
    )
    with WondeServer(token=TOKEN) as server:
        yield {"local": local, "deps": deps, "server": server, "slept": slept}
    register_source(WondeSource())


def _sync(env: dict[str, Any], mode: str = "full") -> Any:
    server = env["server"]
    spec = WondeSpec(school_id=server.school_id, base_url=server.base_url, per_page=7)
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


def _users(deps: Deps) -> dict[str, dict[str, Any]]:
    return {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}


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


def test_full_sync_from_wonde(wonde, logs):
    """Given a school's token in the secret store, when a full sync runs, then the
    school, its students (UPN, MIS id, Wonde's upi apart), staff, contacts as guardians
    and classes with their enrollments are committed; the token is nowhere else."""
    deps, server = wonde["deps"], wonde["server"]
    outcome = _sync(wonde)
    assert outcome.status == "committed", outcome.error
    counts = outcome.counts
    assert counts["orgs"]["add"] == 1 and counts["classes"]["add"] == 8
    assert counts["users"]["add"] == 48 and counts["enrollments"]["add"] == 48
    assert outcome.report["source"] == "wonde"
    assert _validate_normalized(deps, outcome.run_id) == 1 + 8 + 48 + 48
    users = _users(deps)
    first = next(iter(server.data.students))
    ids = {i["type"]: i["identifier"] for i in users[first]["user_ids"]}
    assert ids["upn"] == upn_of(0) and ids["mis_id"] == server.data.students[first]["mis_id"]
    assert ids["wonde_upi"] == server.data.students[first]["upi"] != ids["upn"]
    assert users[first]["agent_source_ids"] == ["C9000"]
    assert users["C9000"]["role"] == "parent" and len(users["C9000"]["agent_source_ids"]) == 2
    assert {u["role"] for u in users.values()} >= {"student", "teacher", "parent", "guardian"}
    includes = {q.get("include") for p, q in server.requests if p.endswith("/students")}
    assert includes == {"education_details,contact_details,contacts"}
    assert not [b for b in _stored_bytes(deps) if TOKEN.encode() in b]
    assert not [line for line in logs.lines if TOKEN in line]


def test_quick_sync_reads_updated_after_and_deletions(wonde):
    deps, server = wonde["deps"], wonde["server"]
    _hold_only_mass_changes(deps)
    assert _sync(wonde).status == "committed"
    kept = _kept_since(deps)
    later = datetime.now(UTC) + timedelta(minutes=30)
    student_ids = list(server.data.students)
    server.data.touch("students", student_ids[2], later, surname="Renamed")
    server.data.delete("students", student_ids[3], later)
    server.requests.clear()
    quick = _sync(wonde, mode="quick")
    assert quick.status == "committed", (quick.error, quick.report.get("hold"))
    sent = {q.get("updated_after") for p, q in server.requests if not p.endswith(server.school_id)}
    assert len(sent) == 1
    (after,) = sent
    moment = datetime.strptime(after, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert moment == (kept - timedelta(minutes=5)).replace(microsecond=0)
    assert any(p.endswith("/deletions") for p, _ in server.requests)
    assert _actions(deps, quick.run_id, Entity.USERS, "update") == [student_ids[2]]
    assert _actions(deps, quick.run_id, Entity.USERS, "archive") == [student_ids[3]]
    users = _users(deps)
    assert users[student_ids[2]]["family_name"] == "Renamed"
    assert users[student_ids[4]]["status"] == "active"


def test_a_refused_token_fails_the_run_and_commits_nothing(wonde, logs):
    deps, server = wonde["deps"], wonde["server"]
    server.token = "revoked-by-the-school"
    outcome = _sync(wonde)
    assert outcome.status == "failed"
    assert "SourceAuthError" in (outcome.error or "") or "401" in (outcome.error or "")
    assert deps.store.get_json(keys.state_pointer_key("t1")) is None
    assert export_directory(deps, "t1")["users"] == []
    assert not [line for line in logs.lines if TOKEN in line]


def test_a_503_then_success(wonde):
    server = wonde["server"]
    server.fail(503, path="/students", after=1)
    server.fail(429, path="/classes", headers={"Retry-After": "4"})
    outcome = _sync(wonde)
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 48
    assert 4.0 in wonde["slept"]


def test_a_listing_that_shifts_under_paging_is_deduplicated(wonde):
    deps, server = wonde["deps"], wonde["server"]
    newcomer = server.data.student(next(iter(server.data.students)), {"education_details"})
    newcomer = {**newcomer, "id": "A000000001", "forename": "Newcomer"}
    server.shift("students", newcomer, after_pages=1)
    outcome = _sync(wonde)
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 49
    pages = [q for p, q in server.requests if p.endswith("/students")]
    assert sum(1 for q in pages if "page" not in q) == 2  # listed twice
    normalized = list(
        deps.store.iter_jsonl(keys.normalized_key("t1", outcome.run_id, Entity.USERS))
    )
    ids = [r["source_id"] for r in normalized]
    assert len(ids) == len(set(ids)) == 49


def test_people_gone_from_a_full_listing_are_archived(wonde):
    deps, server = wonde["deps"], wonde["server"]
    _hold_only_mass_changes(deps)
    assert _sync(wonde).status == "committed"
    gone = list(server.data.employees)[-1]
    server.data.delete("employees", gone, datetime.now(UTC))
    outcome = _sync(wonde)
    assert outcome.status == "committed", outcome.error
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == [gone]
    assert _users(deps)[gone]["status"] == "archived"


def test_contacts_refused_by_the_tokens_scopes_archive_nobody(wonde):
    """A 403 on /contacts is a scope the school did not grant: students and staff still
    sync, and no absence of a person is trusted that run."""
    deps, server = wonde["deps"], wonde["server"]
    _hold_only_mass_changes(deps)
    assert _sync(wonde).status == "committed"
    gone = list(server.data.employees)[-1]
    server.data.delete("employees", gone, datetime.now(UTC))
    student = next(iter(server.data.students))
    server.data.touch("students", student, datetime.now(UTC), surname="Scoped")
    server.fail(403, path="/contacts")
    outcome = _sync(wonde)
    assert outcome.status == "committed", outcome.error
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == []
    users = _users(deps)
    assert users[gone]["status"] == "active" and users["C9000"]["status"] == "active"
    assert users[student]["family_name"] == "Scoped"
    assert users[student]["agent_source_ids"] == ["C9000"]  # links kept, unchecked


def test_a_school_synced_without_contacts(wonde):
    server = wonde["server"]
    spec = WondeSpec(
        school_id=server.school_id, base_url=server.base_url, per_page=7, contacts=False
    )
    outcome = start_sync(
        wonde["local"], wonde["deps"], "t1", spec, keys.new_run_id(), trigger="api"
    )
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 42
    assert not [p for p, _ in server.requests if p.endswith("/contacts")]
    includes = {q.get("include") for p, q in server.requests if p.endswith("/students")}
    assert includes == {"education_details,contact_details"}
    assert all(u["agent_source_ids"] == [] for u in _users(wonde["deps"]).values())
