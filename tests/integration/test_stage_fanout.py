"""The stage fanned out over the real Distributed Map (the ASL under moto, the handlers
in-process, the embedded store), its entities in parts by a hash of the source id,
stages what the same district staged in one piece stages: day after day the same change
files (as sets of lines), counts, holds, issues, snapshots, directory and links. A part
run again after it finished changes nothing; a part cut short is redone cleanly."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from rostersync.application.sync import ensure_tenant
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.local.session import run_sync
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.snapshot import iter_snapshot_lines
from rostersync.pipeline.stage_fanout import _load_plan as load_plan
from rostersync.pipeline.stage_fanout import done_key, part_keys, run_part
from rostersync.pipeline.stage_partition import _part as part_expression
from rostersync.pipeline.stage_partition import part_of_id
from rostersync.settings import TenantSettings
from rostersync.storage import keys

from .days import directory_and_links, inline_and_fanned, rewrite_csv, sync_days, three_days

TENANT = "district"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three days, then a fourth on which a third of the users leave (a hold)."""
    root = tmp_path_factory.mktemp("district")
    folders = three_days(root)
    shutil.copytree(root / "day3", root / "day4")
    seen = {"n": 0}

    def leave(row: dict[str, str]) -> dict[str, str] | None:
        seen["n"] += 1
        return None if seen["n"] % 3 == 0 else row

    rewrite_csv(root / "day4", "users.csv", leave)
    return [*folders, root / "day4"]


def _lines(deps: Deps, key: str) -> list[bytes]:
    return [line for line in deps.store.iter_lines(key) if line.strip()]


def _day(deps: Deps, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    changes = {e.value: _lines(deps, keys.changes_key(TENANT, run_id, e)) for e in ENTITY_ORDER}
    summary = deps.store.get_json(keys.change_summary_key(TENANT, run_id)) or {}
    kept = directory_and_links(deps, TENANT)
    snapshot = {
        e.value: sorted(iter_snapshot_lines(deps.store, TENANT, run_id, e)) for e in ENTITY_ORDER
    }
    return {
        # As sets: the parts write an entity's records in another order.
        "changes": {entity: sorted(lines) for entity, lines in changes.items()},
        "lines": {entity: len(lines) for entity, lines in changes.items()},
        "summary": {
            k: v for k, v in summary.items() if k not in {"stage_parts", "baseline_run_id"}
        },
        "report": {
            k: report.get(k)
            for k in ("status", "counts", "refused", "hold", "held", "issues_total", "adds")
        },
        "issues": report.get("issues_by_severity"),
        **kept,
        "snapshot": snapshot,
    }


def _sync_days(state: Path, days: list[Path]) -> dict[str, Any]:
    return sync_days(state, TENANT, days, _day)


@pytest.fixture(scope="module")
def synced(
    tmp_path_factory: pytest.TempPathFactory, days: list[Path]
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The days synced with the stage in one piece, then in parts (at most 4 an
    entity, of about 40 records each)."""
    return inline_and_fanned(
        tmp_path_factory,
        lambda state: _sync_days(state, days),
        {"STAGE_PART_RECORDS": "40", "STAGE_MAX_PARTS": "4", "STAGE_CONCURRENCY": "3"},
    )


def test_a_fanned_out_stage_stages_what_the_inline_one_does(synced):
    inline, fanned, _ = synced

    for states in inline["states"]:
        assert "StageParts" not in states and "FinishStage" not in states
    for number, states in enumerate(fanned["states"], start=1):
        assert "StageParts" in states and "FinishStage" in states, number
        # One stage task per entity split into parts (the last goes on to the end).
        parts = fanned["reports"][number - 1]["stage_parts"]
        split = {p["entity"] for p in parts if p["part"] != p["entity"]}
        last = ENTITY_ORDER[-1].value
        assert len(split) >= 2, parts
        assert states.count("Stage") == 1 + len(split - {last}), (number, split)
        # The enrollments wait for the users and classes where archives can cascade.
        assert ("StageDependentParts" in states) == (number > 1), number
    for number, (one, other) in enumerate(zip(inline["days"], fanned["days"], strict=True), 1):
        for name in one:
            assert other[name] == one[name], (number, name)
    statuses = [report["status"] for report in inline["reports"]]
    assert statuses[:3] == ["committed"] * 3
    assert statuses[3] != "committed" and inline["days"][3]["report"]["hold"], "day 4 holds"
    day2 = inline["days"][1]["summary"]["counts"]
    assert day2["users"]["update"] and day2["users"]["archive"], "day 2 changes users"
    day3 = inline["days"][2]["changes"]["enrollments"]
    assert any(b'"cascade_of"' in line for line in day3), "day 3 cascades archives"


def test_a_stage_in_parts_reads_baselines_kept_in_parts(synced, days, tmp_path, monkeypatch):
    """Given every day's snapshots committed in parts (lists of part files, each with
    its index), a stage in parts, its cascades and the next commit read them as they read
    a whole snapshot: every day equals the inline run's."""
    from rostersync.pipeline import commit as commit_module
    from rostersync.pipeline.snapshot import snapshot_files

    inline, _, _ = synced
    for name, value in {
        "STAGE_PART_RECORDS": "40",
        "STAGE_MAX_PARTS": "4",
        "COMMIT_INLINE_ACTIONS": "20",
        "COMMIT_CHUNK_ACTIONS": "60",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", 30)
    listed: list[str] = []

    def day(deps: Deps, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
        for entity in ENTITY_ORDER:
            files = snapshot_files(deps.store, TENANT, run_id, entity)
            if files is not None and files.listed and len(files.bodies) > 1:
                listed.append(f"{run_id}/{entity.value}")
        return _day(deps, run_id, report)

    stack_settings.cache_clear()
    try:
        parted = sync_days(tmp_path / "state", TENANT, days, day)
    finally:
        stack_settings.cache_clear()
    assert len({name.split("/")[0] for name in listed}) >= 3, listed
    for number, (one, other) in enumerate(zip(inline["days"], parted["days"], strict=True), 1):
        for name in one:
            assert other[name] == one[name], (number, name)


def test_every_part_reports_its_rows_time_and_memory(synced):
    _, fanned, _ = synced

    for report in fanned["reports"]:
        parts = report["stage_parts"]
        users = [p for p in parts if p["entity"] == "users"]
        enrollments = [p for p in parts if p["entity"] == "enrollments"]
        assert len(users) == len(enrollments) == 4
        assert len({p["part"] for p in parts}) == len(parts)
        assert all(p["rows"] >= 0 and p["ms"] >= 0 and p["peak_mb"] > 0 for p in parts)
        lines = report["counts"]  # every change line of the parts is in the change file
        assert sum(p["rows"] for p in users) >= sum(lines["users"].values())


def test_a_part_run_again_changes_nothing_and_a_part_cut_short_is_redone(
    synced, days, monkeypatch, request
):
    _, fanned, state = synced
    request.addfinalizer(stack_settings.cache_clear)  # after the environment is undone
    # Day 2 again, for review: a baseline, updates, archives, kept at prepared (a
    # committed run's stage parts are deleted with the commit).
    monkeypatch.setenv("STAGE_PART_RECORDS", "40")
    monkeypatch.setenv("STAGE_MAX_PARTS", "4")
    stack_settings.cache_clear()
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        outcome, _ = run_sync(cloud, deps, TENANT, days[1], state / "reports", review=True)
        assert outcome.status == "prepared", outcome.error
        run_id = outcome.run_id
        committed = fanned["runs"][0]
        assert not deps.store.list_keys(keys.run_prefix(TENANT, committed) + "stage/")
        prefix = keys.run_prefix(TENANT, run_id) + "stage/"
        listed = deps.store.list_keys(keys.run_prefix(TENANT, run_id))
        (plan_object,) = [k for k in listed if k.startswith(prefix) and k.endswith("/plan.json")]
        attempt = plan_object.removeprefix(prefix).split("/")[0]
        plan = load_plan(deps, TENANT, run_id, attempt)
        users = [p for p in plan.parts if p.entity.value == "users"]
        assert len(users) == 4
        part = users[1]
        changes_key, _ = part_keys(TENANT, run_id, attempt, part)
        before = deps.store.get_bytes(changes_key)
        marker = deps.store.get_json(done_key(TENANT, run_id, attempt, part.id))
        assert before and marker is not None

        again = run_part(deps, plan, part)

        assert again == marker
        assert deps.store.get_bytes(changes_key) == before
        for line in _lines(deps, changes_key):
            assert part_of_id(orjson.loads(line)["source_id"], part.parts) == part.part

        # The part cut short: its change part half written, no marker (the embedded
        # store's own delete: the port has none). Run again, it writes the whole part.
        deps.store.put_bytes(changes_key, before[: len(before) // 2])
        deps.store.delete(done_key(TENANT, run_id, attempt, part.id))  # type: ignore[attr-defined]

        redone = run_part(deps, plan, part)

        assert deps.store.get_bytes(changes_key) == before
        assert redone["rows"] == marker["rows"]
        assert redone["outcome"] == marker["outcome"]
        assert deps.store.get_json(done_key(TENANT, run_id, attempt, part.id)) == redone


@pytest.mark.parametrize("parts", [2, 3, 4, 7, 64])
def test_python_and_duckdb_put_a_source_id_in_the_same_part(parts):
    """A part's rows are chosen in DuckDB and its cascaded archives in Python: both by
    ``md5(source id) mod parts``, the same number for every id (unicode ones too)."""
    ids = [f"{n:05d}-é-{n * 7919}" for n in range(500)] + ["", "日本語", "a'b"]
    con = duckdb.connect()
    # The expression the parts' queries use, with nothing forced to part 0.
    found = con.execute(
        f"SELECT source_id, {part_expression('false')}"
        " FROM unnest($ids::VARCHAR[]) AS t(source_id)",
        {"ids": ids, "parts": parts},
    ).fetchall()

    assert {i: int(p) for i, p in found} == {i: part_of_id(i, parts) for i in ids}
    assert len({part_of_id(i, parts) for i in ids}) == parts


def _sync_without_archives(state: Path, days: list[Path]) -> list[dict[str, Any]]:
    """Days 1 and 2 for a tenant whose settings sync no archives (they stay unticked)."""
    out = []
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, TENANT, create=True)
        settings = TenantSettings(changes_to_sync=["add", "update"])
        deps.tenants.put_settings(
            TENANT, settings.model_dump(mode="json"), who="test", at="t", changed=["changes"]
        )
        for folder in days[:2]:
            outcome, _ = run_sync(cloud, deps, TENANT, folder, state / "reports")
            assert outcome.status == "committed", outcome.error
            out.append(_day(deps, outcome.run_id, outcome.report or {}) | {"s": outcome.states})
    return out


def test_settings_untick_the_same_actions_of_a_stage_in_parts(tmp_path, days, monkeypatch):
    """The tenant's settings are applied to the joined change files as to a change file
    staged whole: day 2's archives are unticked alike, and nothing else."""
    inline = _sync_without_archives(tmp_path / "inline", days)
    monkeypatch.setenv("STAGE_PART_RECORDS", "40")
    monkeypatch.setenv("STAGE_MAX_PARTS", "4")
    fanned = _sync_without_archives(tmp_path / "fanned", days)

    assert "StageParts" in fanned[1]["s"] and "StageParts" not in inline[1]["s"]
    for one, other in zip(inline, fanned, strict=True):
        for name in ("changes", "summary", "report", "directory", "snapshot"):
            assert other[name] == one[name], name
    unticked = [
        orjson.loads(line)
        for line in fanned[1]["changes"]["users"]
        if b'"action":"archive"' in line
    ]
    assert unticked and not any(action["included"] for action in unticked)


def _day2_prepared(cloud: LocalCloud, deps: Deps, state: Path, days: list[Path]) -> Any:
    """Day 1 committed, then day 2 staged for review: its outcome."""
    ensure_tenant(deps, TENANT, create=True)
    first, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
    assert first.status == "committed", first.error
    prepared, _ = run_sync(cloud, deps, TENANT, days[1], state / "reports", review=True)
    assert prepared.status == "prepared", prepared.error
    return prepared


def _restaged(state: Path, days: list[Path]) -> dict[str, Any]:
    """Day 1 committed, day 2 staged for review, one of its user actions unticked by an
    admin, then the run re-staged through the state machine (as a match decision
    does): the states it went through and the run before and after."""
    from rostersync.application.review import (
        Selection,
        iter_actions,
        request_restage,
        set_included,
    )
    from rostersync.application.sync import WaitingLauncher

    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        prepared = _day2_prepared(cloud, deps, state, days)
        run_id = prepared.run_id
        # The same actions, whatever order the parts wrote: two users unticked by one
        # admin, an enrollment by another.
        users, enrollments = (
            sorted(
                (a for a in iter_actions(deps, TENANT, run_id) if a["entity"] == entity),
                key=lambda a: a["source_id"],
            )
            for entity in ("users", "enrollments")
        )
        unticked = users[0]
        ann = [unticked["id"], users[1]["id"]]
        set_included(deps, TENANT, run_id, Selection(action_ids=ann), False, "ann")
        bob = [enrollments[0]["id"]]
        set_included(deps, TENANT, run_id, Selection(action_ids=bob), False, "bob")
        before = _day(deps, run_id, {})
        launcher = WaitingLauncher(cloud)
        request_restage(deps, launcher, TENANT, run_id)
        assert launcher.execution is not None
        after = _day(deps, run_id, {})
        actions = {a["id"]: a for a in iter_actions(deps, TENANT, run_id)}
        return {
            "states": launcher.execution.states,
            "status": deps.runs.get(TENANT, run_id).status.value,
            "before": before,
            "after": after,
            "unticked": actions[unticked["id"]],
            "by": {i: (actions[i]["included"], actions[i]["decided_by"]) for i in ann + bob},
        }


def test_a_restage_runs_the_stage_fanned_out_and_keeps_the_admins_unticks(
    tmp_path, days, monkeypatch
):
    """A re-stage is the sync's match and stage (in parts for a district that needs
    them: each part an invocation of its own), between the Review function's first task
    and its last, which puts back what the admin unticked. In parts or in one piece,
    the re-staged run is the one staged before, the untick included."""
    inline = _restaged(tmp_path / "inline", days)
    monkeypatch.setenv("STAGE_PART_RECORDS", "40")
    monkeypatch.setenv("STAGE_MAX_PARTS", "4")
    stack_settings.cache_clear()
    try:
        fanned = _restaged(tmp_path / "fanned", days)
    finally:
        stack_settings.cache_clear()

    def undated(changes: dict[str, list[bytes]]) -> dict[str, list[dict[str, Any]]]:
        # The moment of a decision is not the change: the untick is put back anew.
        return {
            entity: sorted(
                (
                    {k: v for k, v in orjson.loads(line).items() if k != "decided_at"}
                    for line in lines
                ),
                key=orjson.dumps,
            )
            for entity, lines in changes.items()
        }

    for run in (inline, fanned):
        run["before"]["changes"] = undated(run["before"]["changes"])
        run["after"]["changes"] = undated(run["after"]["changes"])
        states = run["states"]
        assert states[:3] == ["Route", "Restage", "Match"], states
        assert states[-3:] == ["MarkRestaged", "Restaged", "Prepared"], states
        assert run["status"] == "prepared"
        assert run["unticked"]["included"] is False and run["unticked"]["decided_by"] == "ann"
        assert sorted(run["by"].values()) == [(False, "ann"), (False, "ann"), (False, "bob")]
        for name in ("changes", "summary", "directory", "snapshot"):
            assert run["after"][name] == run["before"][name], name
    assert "StageParts" in fanned["states"] and "StageParts" not in inline["states"]
    assert fanned["after"]["changes"] == inline["after"]["changes"]


def test_a_restage_that_fails_in_the_shared_steps_leaves_the_run_prepared(tmp_path, days):
    """The match and stage steps fail a sync; a re-stage that fails in them leaves its
    run prepared, with the error kept for the admin (not failed: it is still there to
    review). A run's normalized records gone is such a failure, never an entity read as
    empty (every one of its records archived)."""
    from rostersync.application.review import request_restage
    from rostersync.application.sync import WaitingLauncher

    state = tmp_path / "state"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        prepared = _day2_prepared(cloud, deps, state, days)
        # The run's normalized users gone: the match cannot read them.
        for key in deps.store.list_keys(keys.run_prefix(TENANT, prepared.run_id) + "normalized/"):
            if "/users." in key:
                deps.store.delete(key)  # type: ignore[attr-defined]
        launcher = WaitingLauncher(cloud)
        request_restage(deps, launcher, TENANT, prepared.run_id)

        assert launcher.execution is not None
        states = launcher.execution.states
        assert "Match" in states and "StageFailed" in states and "BackToPrepared" in states
        assert "RecordFailure" not in states
        run = deps.runs.get(TENANT, prepared.run_id)
        assert run.status.value == "prepared" and run.last_error == "RunStateError"
        assert "no normalized users" in str(run.last_error_reason)
