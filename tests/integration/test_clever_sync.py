"""Clever syncs end to end: the local Clever server on 127.0.0.1, the token in the local
secret store that ``Deps.secrets`` reads, runs through the real state machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.sync import ensure_tenant, export_directory, start_sync
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps, reset_default_deps
from rostersync.settings import HoldThresholds, TenantSettings
from rostersync.sources.clever import CleverSource, CleverSpec
from rostersync.sources.http.retry import RetryPolicy
from rostersync.sources.registry import register_source
from rostersync.storage import keys
from rostersync.storage.secrets import LocalSecretStore
from tests.servers.clever import CleverServer, _student, sample_district

TOKEN = "clever-district-token-7c1d0a5e"


@pytest.fixture
def clever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """The local stack with a local secret store holding t1's token, a Clever server
    with a sample district (plus 20 more students), and a source that never sleeps."""
    secrets_file = tmp_path / "secrets.json"
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(secrets_file))
    local, deps = request.getfixturevalue("cloud")
    # The handlers' dependencies are built once per process: build them again, with
    # the secret store this test names, and again afterwards without it.
    reset_default_deps()
    request.addfinalizer(reset_default_deps)
    assert isinstance(deps.secrets, LocalSecretStore)
    ensure_tenant(deps, "t1", create=True)
    deps.secrets.put_secret("t1", "clever_token", TOKEN)
    data = sample_district()
    extra = [_student(f"stx{n:02d}", f"Kid{n}", "Extra", "sch1") for n in range(20)]
    data.load("users", *extra)
    data.collections["sections"]["sec1"]["students"] += [s["id"] for s in extra]
    slept: list[float] = []
    register_source(
        CleverSource(sleep=slept.append, jitter=lambda: 0.0, retry=RetryPolicy(attempts=4))
    )
    with CleverServer(data, token=TOKEN) as server:
        yield {"local": local, "deps": deps, "server": server, "slept": slept, "state": tmp_path}
    register_source(CleverSource())


def _sync(env: dict[str, Any], mode: str = "full") -> Any:
    spec = CleverSpec(base_url=env["server"].base_url, page_limit=4)
    return start_sync(
        env["local"], env["deps"], "t1", spec, keys.new_run_id(), mode=mode, trigger="api"
    )


def _hold_only_mass_changes(deps: Deps) -> None:
    """The sample district is small: a few changes are more than half of a kind."""
    settings = TenantSettings(hold=HoldThresholds(change_share=1.0))
    deps.tenants.put_settings(
        "t1",
        settings.model_dump(mode="json"),
        who="test",
        at="2025-01-01T00:00:00Z",
        changed=["hold"],
    )


def _users(deps: Deps) -> dict[str, dict[str, Any]]:
    return {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}


def _actions(deps: Deps, run_id: str, entity: Entity, kind: str) -> list[str]:
    return sorted(
        a["source_id"]
        for a in deps.store.iter_jsonl(keys.changes_key("t1", run_id, entity))
        if a["action"] == kind and a.get("included", True)
    )


def _stored_bytes(deps: Deps) -> Iterator[bytes]:
    """Every object in the bucket, and every file of the embedded store (its database
    with every table, its object files, its event log)."""
    for key in deps.store.list_keys(""):
        yield deps.store.get_bytes(key) or b""
    assert deps.settings.local_store_dir is not None
    for path in sorted(deps.settings.local_store_dir.rglob("*")):
        if path.is_file():
            yield path.read_bytes()


def test_full_sync_from_clever(clever, logs):
    """Given a tenant's Clever token in its secret store, when a full sync runs, then the
    district's roster is committed, the events cursor is kept with the commit, and the
    token is nowhere in the raw pages, the state or the logs."""
    deps = clever["deps"]
    clever["server"].data.put("users", clever["server"].data.collections["users"]["stu1"])
    outcome = _sync(clever)
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 29
    assert outcome.counts["orgs"]["add"] == 3 and outcome.counts["classes"]["add"] == 2
    assert outcome.counts["enrollments"]["add"] == 26
    assert outcome.report["source"] == "clever"
    users = _users(deps)
    assert users["con1"]["role"] == "parent" and users["stu1"]["role"] == "student"
    pointer = deps.store.get_json(keys.state_pointer_key("t1"))
    cursor = pointer["source_cursor"]
    assert cursor["kind"] == "clever"
    assert cursor["cursor"]["event_id"] == clever["server"].data.events[-1]["id"]
    raw = deps.store.list_keys(keys.raw_prefix("t1", outcome.run_id))
    assert any(k.endswith("users-00001.json") for k in raw)
    # The token: only in the secret store.
    token = TOKEN.encode()
    assert not [b for b in _stored_bytes(deps) if token in b]
    assert any("GET" in line or "HTTP Request" in line for line in logs.lines)
    assert any("step done" in line for line in logs.lines)
    assert not [line for line in logs.lines if TOKEN in line]
    secrets_file = clever["state"] / "secrets.json"
    assert token in secrets_file.read_bytes()


def test_quick_sync_applies_created_updated_and_deleted_events(clever):
    deps, data = clever["deps"], clever["server"].data
    _hold_only_mass_changes(deps)
    assert _sync(clever).status == "committed"
    ada = data.collections["users"]["stu1"]
    data.put("users", {**ada, "name": {"first": "Ada", "last": "King"}})
    data.put("users", _student("stu9", "Nova", "Quick", "sch2"))
    data.delete("users", "stx00")
    section = data.collections["sections"]["sec1"]
    students = [s for s in section["students"] if s not in {"stu2", "stx00"}] + ["stu9"]
    data.put("sections", {**section, "students": students})
    quick = _sync(clever, mode="quick")
    assert quick.status == "committed", (quick.error, quick.report.get("hold"))
    fetched = deps.store.get_json(keys.fetch_summary_key("t1", quick.run_id))
    assert fetched["mode"] == "quick" and fetched["counts"]["events"] == 4
    assert _actions(deps, quick.run_id, Entity.USERS, "add") == ["stu9"]
    assert _actions(deps, quick.run_id, Entity.USERS, "update") == ["stu1"]
    assert _actions(deps, quick.run_id, Entity.USERS, "archive") == ["stx00"]
    assert _actions(deps, quick.run_id, Entity.ENROLLMENTS, "archive") == [
        "sec1-stu2",
        "sec1-stx00",
    ]
    assert _actions(deps, quick.run_id, Entity.ENROLLMENTS, "add") == ["sec1-stu9"]
    users = _users(deps)
    assert users["stu1"]["family_name"] == "King"
    # Absences archive nothing in a quick run: everyone else is still there.
    assert users["stu3"]["status"] == "active"
    pointer = deps.store.get_json(keys.state_pointer_key("t1"))
    assert pointer["source_cursor"]["cursor"]["event_id"] == data.events[-1]["id"]


def test_a_stale_cursor_runs_a_full_sync(clever):
    deps, data = clever["deps"], clever["server"].data
    _hold_only_mass_changes(deps)
    data.put("users", data.collections["users"]["stu1"])
    assert _sync(clever).status == "committed"
    data.forget_events()  # the cursor's event has dropped off Clever's history
    data.unshare("users", "stx01")
    outcome = _sync(clever, mode="quick")
    assert outcome.status == "committed", outcome.error
    fetched = deps.store.get_json(keys.fetch_summary_key("t1", outcome.run_id))
    assert fetched["mode"] == "full" and "ran a full sync" in fetched["note"]
    # A full read again: the user no longer shared is archived.
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == ["stx01"]


def test_throttling_is_waited_out(clever):
    server = clever["server"]
    server.fail(429, times=2, path="/v3.0/users", headers={"Retry-After": "7"})
    server.fail(503, times=1, path="/v3.0/sections")
    outcome = _sync(clever)
    assert outcome.status == "committed", outcome.error
    assert clever["slept"].count(7.0) == 2
    assert outcome.counts["users"]["add"] == 29


def test_a_401_halfway_fails_the_run_and_commits_nothing(clever, logs):
    deps, server = clever["deps"], clever["server"]
    server.fail(401, path="/v3.0/users", after=2)  # the third page of users
    outcome = _sync(clever)
    assert outcome.status == "failed"
    assert "SourceAuthError" in (outcome.error or "") or "401" in (outcome.error or "")
    assert deps.store.get_json(keys.state_pointer_key("t1")) is None
    assert export_directory(deps, "t1")["users"] == []
    assert not [b for b in _stored_bytes(deps) if TOKEN.encode() in b]
    assert any("step failed" in line for line in logs.lines)
    assert not [line for line in logs.lines if TOKEN in line]


def test_an_empty_users_listing_archives_nobody(clever):
    deps, data = clever["deps"], clever["server"].data
    assert _sync(clever).status == "committed"
    for user_id in list(data.collections["users"]):
        data.unshare("users", user_id)
    outcome = _sync(clever)
    assert outcome.status in {"committed", "held"}, outcome.error
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == []
    assert all(u["status"] == "active" for u in _users(deps).values())
    assert len(_users(deps)) == 29
    # The run says why: the users listing is required and came back empty.
    holds = [h["check"] for h in outcome.report["hold"]]
    assert "required_file" in holds or outcome.report["refused"].get("users"), outcome.report


def test_unshared_is_archived_and_shared_again_is_reactivated(clever):
    deps, data = clever["deps"], clever["server"].data
    _hold_only_mass_changes(deps)
    assert _sync(clever).status == "committed"
    cleo = data.unshare("users", "stu3")
    gone = _sync(clever)
    assert gone.status == "committed", gone.error
    assert _actions(deps, gone.run_id, Entity.USERS, "archive") == ["stu3"]
    assert _users(deps)["stu3"]["status"] == "archived"
    data.load("users", cleo)
    back = _sync(clever)
    assert back.status == "committed", back.error
    assert _actions(deps, back.run_id, Entity.USERS, "reactivate") == ["stu3"]
    assert _users(deps)["stu3"]["status"] == "active"
