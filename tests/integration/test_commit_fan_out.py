"""The commit fanned out over the real Distributed Map (the ASL under moto, the handlers
in-process, the embedded store) gives the same directory, links, snapshot and events as
the same district committed inline; and a commit cut part-way is resumed, not redone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rostersync.application.sync import ensure_tenant
from rostersync.config import stack_settings
from rostersync.generator import generate_district, mutate_next_day
from rostersync.local.runtime import LocalCloud
from rostersync.local.session import run_sync
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline import commit as commit_module
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.snapshot import iter_snapshot
from rostersync.settings import TenantSettings
from rostersync.storage import keys
from tests.integration.days import directory_and_links

TENANT = "district"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("district")
    generate_district(root / "day1", students=80, seed=3)
    mutate_next_day(root / "day1", root / "day2", seed=4, rate=0.05)
    return root / "day1", root / "day2"


def _state_of(deps: Deps, run_id: str) -> dict[str, Any]:
    kept = directory_and_links(deps, TENANT)
    snapshot = {
        e.value: sorted(
            iter_snapshot(deps.store, TENANT, run_id, e),
            key=lambda line: (line["source_system"], line["source_id"]),
        )
        for e in ENTITY_ORDER
    }
    return {**kept, "snapshot": snapshot}


def _events(cloud: LocalCloud) -> list[tuple[str, str, str]]:
    """Change events by what they say (their ids name the runs, which differ)."""
    return sorted(
        (e["detail-type"], e["detail"]["action_id"], e["detail"]["target_id"])
        for e in cloud.published_events()
        if "action_id" in e["detail"]
    )


def _new_tenant(deps: Deps) -> None:
    ensure_tenant(deps, TENANT, create=True)
    # Every change as an event, however many: runs are compared event by event.
    settings = TenantSettings(change_events_limit=None)
    deps.tenants.put_settings(
        TENANT,
        settings.model_dump(mode="json"),
        who="test",
        at="t",
        changed=["change_events_limit"],
    )


def _two_days(state: Path, days: tuple[Path, Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        _new_tenant(deps)
        for number, folder in enumerate(days, start=1):
            outcome, _ = run_sync(cloud, deps, TENANT, folder, state / "reports")
            assert outcome.status == "committed", outcome.error
            out[f"day{number}"] = _state_of(deps, outcome.run_id)
            out[f"states{number}"] = outcome.states
            out[f"report{number}"] = outcome.report
        out["events"] = _events(cloud)
    return out


def test_a_fanned_out_commit_equals_the_inline_one(tmp_path, days, monkeypatch):
    inline = _two_days(tmp_path / "inline", days)
    monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
    monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
    fanned = _two_days(tmp_path / "fanned", days)

    assert "ApplyChunks" not in inline["states1"]
    assert "ApplyChunks" in fanned["states1"]
    chunks = fanned["report1"]["chunks"]
    adds = [c for c in chunks if "-adds-" in c["chunk"]]
    assert len(adds) > len(ENTITY_ORDER), "several parts for the larger entities"
    assert all(c["rows"] <= 150 and c["ms"] >= 0 and c["peak_mb"] > 0 for c in adds)
    for day in ("day1", "day2"):
        assert fanned[day] == inline[day], day
    assert inline["day2"]["directory"] != inline["day1"]["directory"]
    assert fanned["events"] == inline["events"]
    assert len(fanned["events"]) == len(set(fanned["events"]))


def test_a_snapshot_made_in_parts_equals_the_one_made_whole(tmp_path, days, monkeypatch):
    """Given entities larger than a snapshot part, their snapshots are made by a base
    chunk (the baseline with the day's updates, archives and re-links applied) and a
    chunk per part of the added records (read a block at a time), joined by the finish:
    the directory, links, snapshots and events equal those of the inline commit, on
    day 1 and on day 2."""
    inline = _two_days(tmp_path / "inline", days)
    monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
    monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
    monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", 25)
    monkeypatch.setattr(commit_module, "_RANGE_BLOCK", 97)  # lines across reads
    parted = _two_days(tmp_path / "parted", days)

    for report in ("report1", "report2"):
        chunks = [c["chunk"] for c in parted[report]["chunks"]]
        assert "enrollments-snapshot-base" in chunks, (report, chunks)
        assert "enrollments-snapshot" not in chunks
        parts = [c for c in parted[report]["chunks"] if "-snapshot-0" in c["chunk"]]
        assert len(parts) > 2 and all(c["rows"] <= 25 for c in parts), report
    for day in ("day1", "day2"):
        assert parted[day] == inline[day], day
    assert parted["events"] == inline["events"]


def test_a_commit_cut_after_some_chunks_is_resumed_and_skips_them(tmp_path, days, monkeypatch):
    """Given a fanned-out commit whose enrollment chunks fail for good, the run stays
    *committing* with the chunks done so far marked; the next start resumes it, applies
    only the chunks not done, and the result equals an uninterrupted commit."""
    monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
    monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
    clean = _two_days(tmp_path / "clean", (days[0],))

    real_apply = commit_module.apply_chunk
    applied: list[tuple[str, str]] = []
    healed = {"yes": False}

    def cut(deps: Deps, tenant: str, run_id: str, chunk: Any) -> dict[str, Any]:
        if chunk.id.startswith("enrollments-adds") and not healed["yes"]:
            raise commit_module.RunStateError("the disk went away")
        done = deps.store.exists(commit_module._done_key(tenant, run_id, chunk.id))
        marker = real_apply(deps, tenant, run_id, chunk)
        if not done:  # applied now, not skipped
            applied.append((run_id, chunk.id))
        return marker

    monkeypatch.setattr(commit_module, "apply_chunk", cut)
    state = tmp_path / "cut"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        _new_tenant(deps)
        first, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert first.status == "interrupted", (" ".join(first.states), len(applied))
        run = deps.runs.get(TENANT, first.run_id)
        assert run.status == "committing" and run.interrupted_at
        assert keys.state_pointer_key(TENANT) not in deps.store.list_keys(f"state/{TENANT}/")
        done_before = list(applied)
        marked = deps.store.list_keys(keys.run_prefix(TENANT, first.run_id) + "commit/done/")
        assert len(marked) == len(done_before), (marked, done_before)
        assert done_before and all(not c.startswith("enrollments-adds") for _, c in done_before)

        healed["yes"] = True
        second, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")

        assert second.status == "committed", second.error
        assert deps.runs.get(TENANT, first.run_id).status == "committed"
        resumed = [chunk for run, chunk in applied[len(done_before) :] if run == first.run_id]
        assert not {c for _, c in done_before} & set(resumed), "done chunks are skipped"
        assert sorted([c for _, c in done_before] + resumed) == sorted(
            c["chunk"] for c in clean["report1"]["chunks"]
        )
        assert _state_of(deps, first.run_id) == clean["day1"]


def _late_part(chunk_id: str) -> bool:
    """An enrollments snapshot part after the first two."""
    return chunk_id.startswith("enrollments-snapshot-0") and int(chunk_id[-5:]) >= 2


def test_a_commit_cut_between_snapshot_parts_is_resumed_to_the_same_snapshot(
    tmp_path, days, monkeypatch
):
    """Given a snapshot made in parts whose later parts fail for good, the run stays
    *committing* with no snapshot of its own; resumed, it applies only the chunks not
    done, and the joined snapshot equals an uninterrupted commit's."""
    monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
    monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
    monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", 25)
    clean = _two_days(tmp_path / "clean", (days[0],))

    real_apply = commit_module.apply_chunk
    healed = {"yes": False}
    applied: list[tuple[str, str]] = []

    def cut(deps: Deps, tenant: str, run_id: str, chunk: Any) -> dict[str, Any]:
        if _late_part(chunk.id) and not healed["yes"]:
            raise commit_module.RunStateError("the disk went away")
        done = deps.store.exists(commit_module._done_key(tenant, run_id, chunk.id))
        if healed["yes"] and not done:
            applied.append((run_id, chunk.id))
        return real_apply(deps, tenant, run_id, chunk)

    monkeypatch.setattr(commit_module, "apply_chunk", cut)
    state = tmp_path / "cut"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        _new_tenant(deps)
        first, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert first.status == "interrupted"
        assert not deps.store.exists(keys.state_key(TENANT, first.run_id, Entity.ENROLLMENTS))
        assert not deps.store.exists(keys.state_parts_key(TENANT, first.run_id, Entity.ENROLLMENTS))
        prefix = keys.run_prefix(TENANT, first.run_id) + "commit/done/"
        done_before = {
            key.removeprefix(prefix).removesuffix(".json") for key in deps.store.list_keys(prefix)
        }
        assert "enrollments-snapshot-00000" in done_before, sorted(done_before)

        healed["yes"] = True
        second, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert second.status == "committed", second.error
        resumed = [chunk for run, chunk in applied if run == first.run_id]
        assert not done_before & set(resumed), "done chunks are skipped"
        assert any(_late_part(c) for c in resumed), resumed
        assert _state_of(deps, first.run_id) == clean["day1"]


def test_a_re_sync_with_no_change_writes_no_item_and_sends_no_event(tmp_path, days):
    state = tmp_path / "state"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        _new_tenant(deps)
        first, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert first.status == "committed", first.error
        published = len(cloud.published_events())

        again, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")

        assert again.status == "committed", again.error
        assert sum(n for row in again.counts.values() for n in row.values()) == 0
        for entity in ENTITY_ORDER:
            for item in deps.directory.iter_entity(TENANT, entity.value):
                assert item.run_id == first.run_id, entity
            for link in deps.links.iter_entity(TENANT, entity.value):
                assert link["run_id"] == first.run_id, entity
        # Nothing changed: no event at all (the run is in the history).
        assert cloud.published_events()[published:] == []
        assert all(c["rows"] == 0 for c in again.report["chunks"])
        assert (
            _state_of(deps, again.run_id)["snapshot"] == _state_of(deps, first.run_id)["snapshot"]
        )

        # A tenant that asks for it hears of unchanged runs too.
        announce = TenantSettings(announce_unchanged_runs=True)
        deps.tenants.put_settings(
            TENANT, announce.model_dump(mode="json"), who="t", at="t", changed=["x"]
        )
        third, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        after = cloud.published_events()[published:]
        assert [(e["detail-type"], e["detail"]["run_id"]) for e in after] == [
            ("run.committed", third.run_id)
        ]


def test_above_the_change_events_limit_run_committed_names_the_change_files(tmp_path, days):
    state = tmp_path / "state"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, TENANT, create=True)
        settings = TenantSettings(change_events_limit=100)
        deps.tenants.put_settings(
            TENANT, settings.model_dump(mode="json"), who="t", at="t", changed=["x"]
        )
        first, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        unlimited = TenantSettings(change_events_limit=None)
        deps.tenants.put_settings(
            TENANT, unlimited.model_dump(mode="json"), who="t", at="t", changed=["x"]
        )
        second, _ = run_sync(cloud, deps, TENANT, days[1], state / "reports")

        events = cloud.published_events()
        changes = [e for e in events if "action_id" in e["detail"]]
        committed = {
            e["detail"]["run_id"]: e["detail"]
            for e in events
            if e["detail-type"] == "run.committed"
        }
        total = sum(n for row in first.counts.values() for n in row.values())
        assert total > 100
        assert committed[first.run_id]["change_events"] is False
        files = committed[first.run_id]["change_files"]
        lines = [a for key in files for a in deps.store.iter_jsonl(key) if a["included"]]
        assert len(lines) == total
        assert {e["detail"]["run_id"] for e in changes} <= {second.run_id}
        changed = sum(n for row in second.counts.values() for n in row.values())
        assert committed[second.run_id]["change_events"] is True
        assert "change_files" not in committed[second.run_id]
        assert len(changes) == changed > 0


def test_a_snapshot_made_in_parts_is_kept_as_its_parts_and_a_finish_again_keeps_it(
    tmp_path, days, monkeypatch
):
    """A snapshot made in parts is kept as the list of its parts, nothing copied: no
    whole object, one part per chunk that wrote lines, each with its index, in the plan's
    order. A finish that runs again after the state moved (the run cut before it was
    marked committed) gives the same list; a re-sync with no change copies the parts
    (links in the embedded store) and reads the same snapshot."""
    from rostersync.pipeline.contracts import RunState
    from rostersync.pipeline.snapshot import snapshot_files, snapshot_parts
    from rostersync.records import RunStatus, RunUpdate
    from rostersync.sources.oneroster_csv import OneRosterCsvSpec

    monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
    monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
    monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", 25)
    state = tmp_path / "state"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        _new_tenant(deps)
        outcome, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert outcome.status == "committed", outcome.error
        written = [
            c["chunk"]
            for c in outcome.report["chunks"]
            if c["chunk"].startswith("enrollments-snapshot-") and c["rows"]
        ]
        assert len(written) > 2, written
        entity = Entity.ENROLLMENTS
        assert not deps.store.exists(keys.state_key(TENANT, outcome.run_id, entity))
        files = snapshot_files(deps.store, TENANT, outcome.run_id, entity)
        assert files is not None and files.listed and files.indexes is not None
        assert [body.rsplit("/", 1)[1] for body in files.bodies] == [
            f"{chunk}.jsonl" for chunk in written
        ]
        for body, index in snapshot_parts(deps.store, TENANT, outcome.run_id, entity):
            assert index is not None
            assert len(list(deps.store.iter_lines(body))) == len(list(deps.store.iter_lines(index)))
        assert (
            deps.store.list_keys(keys.run_prefix(TENANT, outcome.run_id) + "commit/snapshot/") == []
        )
        kept = _state_of(deps, outcome.run_id)
        assert sum(1 for _ in kept["snapshot"]["enrollments"]) == sum(
            c["rows"] for c in outcome.report["chunks"] if c["chunk"] in written
        )

        # As if cut after the state pointer moved, before the run was marked committed.
        deps.runs.update(TENANT, outcome.run_id, RunUpdate(status=RunStatus.COMMITTING))
        again = RunState(tenant=TENANT, run_id=outcome.run_id, source=OneRosterCsvSpec(key="x"))
        assert commit_module.finish_commit(again, deps).status == "committed"
        assert snapshot_files(deps.store, TENANT, outcome.run_id, entity) == files
        assert _state_of(deps, outcome.run_id) == kept

        same, _ = run_sync(cloud, deps, TENANT, days[0], state / "reports")
        assert same.status in {"committed", "no_changes"}, same.error
        pointer = deps.store.get_json(keys.state_pointer_key(TENANT)) or {}
        if pointer["run_id"] != outcome.run_id:
            # The same parts listed again, nothing copied.
            listed = snapshot_files(deps.store, TENANT, pointer["run_id"], entity)
            assert listed is not None and listed.bodies == files.bodies
            assert listed.indexes == files.indexes
        assert _state_of(deps, pointer["run_id"])["snapshot"] == kept["snapshot"]
