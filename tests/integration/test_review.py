"""The admin's side: review, untick, commit, hold, undo, history, settings."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from rostersync.application import review
from rostersync.application.reports import actions_csv
from rostersync.application.review import (
    ActionFilter,
    Selection,
    discard_run,
    iter_actions,
    list_actions,
    list_runs,
    set_included,
    show_run,
)
from rostersync.application.sync import (
    commit_prepared,
    export_directory,
    prepare_approval,
    prepare_undo,
)
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.changes import empty_counts
from rostersync.errors import RunStateError, StaleBaseline
from rostersync.models import Entity
from rostersync.pipeline.change_lines import ChangeLines, noted_lines
from rostersync.records import RunStatus, RunUpdate
from rostersync.settings import SettingsError, TenantSettings, apply_assignments
from rostersync.storage import keys
from tests.bundles import ONEROSTER, Row, copy_bundle, edit_rows
from tests.integration.test_pipeline import sync

LEPO = ONEROSTER / "lepo-en-1.1"


def set_settings(cloud: tuple[Any, Any], *assignments: str) -> TenantSettings:
    deps = cloud[1]
    from rostersync.application.sync import ensure_tenant

    ensure_tenant(deps, "t1", create=True)
    updated = apply_assignments(load_tenant_settings(deps, "t1"), list(assignments))
    save_tenant_settings(deps, "t1", updated, who="admin@district")
    return updated


def comparable(directory: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The directory without the bookkeeping of which run last wrote each item."""
    return {
        entity: sorted(
            ({k: v for k, v in item.items() if k != "run_id"} for item in items),
            key=lambda i: i["target_id"],
        )
        for entity, items in directory.items()
    }


def renamed_copy(tmp_path: Path, name: str, changes: dict[str, dict[str, str]]) -> Path:
    day = copy_bundle(LEPO, tmp_path / name)

    def change(rows: list[Row]) -> list[Row]:
        for row in rows:
            row.update(changes.get(row["sourcedId"], {}))
        return rows

    edit_rows(day / "users.csv", change)
    return day


def test_unticked_actions_are_not_applied_and_stay_in_the_report(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    day2 = renamed_copy(
        tmp_path, "day2", {"us0003": {"familyName": "Three"}, "us0004": {"familyName": "Four"}}
    )
    prepared = sync(cloud, day2, tmp_path, review=True)
    assert prepared.status == "prepared"
    deps = cloud[1]
    page = list_actions(deps, "t1", prepared.run_id, ActionFilter(entity=Entity.USERS))
    assert page.total == 2
    skip = next(a for a in page.actions if a["source_id"] == "us0004")

    set_included(deps, "t1", prepared.run_id, Selection(action_ids=[skip["id"]]), False, "admin")
    report = commit_prepared(cloud[0], deps, "t1", prepared.run_id, "admin")

    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users["us0003"]["family_name"] == "Three"
    assert users["us0004"]["family_name"] == "FN 04"
    assert report["counts"]["users"]["update"] == 1
    assert report["excluded"]["users"]["update"] == 1
    excluded = list_actions(deps, "t1", prepared.run_id, ActionFilter(included=False)).actions
    assert [a["id"] for a in excluded] == [skip["id"]]
    assert excluded[0]["reason"] == "excluded by admin"
    # The actions.csv an admin downloads says so, and the report counts what was applied.
    rows = list(csv.DictReader(io.StringIO(actions_csv(deps, "t1", prepared.run_id))))
    shown = {row["source_id"]: row["included"] for row in rows if row["entity"] == "users"}
    assert shown == {"us0003": "True", "us0004": "False"}


def test_a_commit_keeps_the_report_files_of_an_unchanged_change_set(cloud, tmp_path):
    """The commit's report reuses issues.csv when the issues were not written since the
    stage's report; neither writes an actions.csv (a first sync's has a line per
    record: the API writes the one an admin downloads)."""
    prepared = sync(cloud, LEPO, tmp_path, review=True)
    deps = cloud[1]
    issues = keys.report_key("t1", prepared.run_id, "issues.csv")
    before = deps.store.version(issues)
    assert before is not None
    commit_prepared(cloud[0], deps, "t1", prepared.run_id, "admin")
    assert deps.store.version(issues) == before
    assert not deps.store.exists(keys.report_key("t1", prepared.run_id, "actions.csv"))


def test_unknown_action_ids_are_an_error(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    prepared = sync(
        cloud, renamed_copy(tmp_path, "d2", {"us0003": {"familyName": "X"}}), tmp_path, review=True
    )
    with pytest.raises(RunStateError, match="no such action"):
        set_included(
            cloud[1], "t1", prepared.run_id, Selection(action_ids=["users-update-0"]), False, "a"
        )


def test_a_held_run_applies_adds_and_updates_and_archives_nothing_until_approved(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def half_gone(rows: list[Row]) -> list[Row]:
        kept = rows[:10]
        kept[0]["familyName"] = "Updated"
        kept.append({**rows[0], "sourcedId": "us0500", "givenName": "Newcomer"})
        return kept

    edit_rows(day2 / "users.csv", half_gone)
    held = sync(cloud, day2, tmp_path)

    assert held.status == "held"
    assert held.exit_code == 3  # held: waiting for an admin
    assert any(
        t["check"] == "archive_share" and t["entity"] == "users" for t in held.report["hold"]
    )
    assert held.counts["users"] == {"add": 1, "update": 1, "archive": 0, "reactivate": 0}
    assert held.report["held"]["users"] == 10
    deps = cloud[1]
    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users["us0500"]["status"] == "active"
    assert users["us0001"]["family_name"] == "Updated"
    assert sum(u["status"] == "archived" for u in users.values()) == 0

    approval = prepare_approval(cloud[0], deps, "t1", held.run_id, "admin")
    commit_prepared(cloud[0], deps, "t1", approval.run_id, "admin")

    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert sum(u["status"] == "archived" for u in users.values()) == 10
    assert show_run(deps, "t1", held.run_id).run.status == "approved"


def test_a_missing_required_file_holds_the_run(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")
    (day2 / "enrollments.csv").unlink()
    outcome = sync(cloud, day2, tmp_path)
    assert outcome.status in {"held", "committed"}
    assert any(
        t["check"] == "required_file" and t["entity"] == "enrollments"
        for t in outcome.report["hold"]
    )
    enrollments = export_directory(cloud[1], "t1")["enrollments"]
    assert {e["status"] for e in enrollments} == {"active"}


def test_apply_safe_changes_off_holds_everything(cloud, tmp_path):
    set_settings(cloud, "hold.apply_safe_changes=false")
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")
    edit_rows(day2 / "users.csv", lambda rows: [{**rows[0], "familyName": "Changed"}, *rows[1:8]])
    outcome = sync(cloud, day2, tmp_path)
    assert outcome.status == "prepared"
    users = {u["source_id"]: u for u in export_directory(cloud[1], "t1")["users"]}
    assert users["us0001"]["family_name"] == "FN 01"


def test_undo_restores_the_directory(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    deps = cloud[1]
    before = comparable(export_directory(deps, "t1"))
    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def change(rows: list[Row]) -> list[Row]:
        rows = [r for r in rows if r["sourcedId"] != "us0020"]
        rows[2]["familyName"] = "Renamed"
        rows.append({**rows[0], "sourcedId": "us0700", "givenName": "Added"})
        return rows

    edit_rows(day2 / "users.csv", change)
    second = sync(cloud, day2, tmp_path)
    assert second.status == "committed"

    undo = prepare_undo(cloud[0], deps, "t1", second.run_id, "admin")
    assert undo.report["counts"]["users"] == {"add": 0, "update": 1, "archive": 1, "reactivate": 1}
    commit_prepared(cloud[0], deps, "t1", undo.run_id, "admin")

    after = comparable(export_directory(deps, "t1"))
    added = [u for u in after["users"] if u["source_id"] == "us0700"]
    assert [u["status"] for u in added] == ["archived"]
    after["users"] = [u for u in after["users"] if u["source_id"] != "us0700"]
    assert after == before


def test_blank_values_are_ignored_when_the_setting_says_so(cloud, tmp_path):
    set_settings(cloud, "blank_values=ignore")
    sync(cloud, LEPO, tmp_path)
    day2 = renamed_copy(tmp_path, "d2", {"us0003": {"email": "", "familyName": "New"}})
    sync(cloud, day2, tmp_path)
    users = {u["source_id"]: u for u in export_directory(cloud[1], "t1")["users"]}
    assert users["us0003"]["email"] == "user03@sample-u.ac.jp"
    assert users["us0003"]["family_name"] == "New"


def test_blank_values_replace_by_default(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    sync(cloud, renamed_copy(tmp_path, "d2", {"us0003": {"email": ""}}), tmp_path)
    users = {u["source_id"]: u for u in export_directory(cloud[1], "t1")["users"]}
    assert users["us0003"].get("email") is None


def test_contact_details_edited_in_the_app_are_kept(cloud, tmp_path):
    from rostersync.application.directory import record_app_edit

    sync(cloud, LEPO, tmp_path)
    deps = cloud[1]
    target = next(u for u in export_directory(deps, "t1")["users"] if u["source_id"] == "us0003")
    record_app_edit(
        deps, "t1", "users", target["target_id"], {"email": "app@school.example"}, "app"
    )

    sync(
        cloud,
        renamed_copy(tmp_path, "d2", {"us0003": {"email": "sis@x.example", "familyName": "N"}}),
        tmp_path,
    )

    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users["us0003"]["email"] == "app@school.example"
    assert users["us0003"]["family_name"] == "N"


def test_class_renames_are_ignored_after_the_first_sync(cloud, tmp_path):
    set_settings(cloud, "ignore_class_renames=true")
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def rename(rows: list[Row]) -> list[Row]:
        rows[0]["title"] = "A new title"
        rows[0]["location"] = "Room 9"
        return rows

    edit_rows(day2 / "classes.csv", rename)
    outcome = sync(cloud, day2, tmp_path)
    classes = {c["source_id"]: c for c in export_directory(cloud[1], "t1")["classes"]}
    assert classes["cl0001"]["title"] == "Introduction to Information Processing"
    assert classes["cl0001"]["location"] == "Room 9"
    assert outcome.counts["classes"]["update"] == 1


def test_two_prepared_runs_the_second_is_refused_after_the_first_commits(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    deps = cloud[1]
    a = sync(
        cloud, renamed_copy(tmp_path, "a", {"us0003": {"familyName": "A"}}), tmp_path, review=True
    )
    b = sync(
        cloud, renamed_copy(tmp_path, "b", {"us0004": {"familyName": "B"}}), tmp_path, review=True
    )
    commit_prepared(cloud[0], deps, "t1", a.run_id, "admin")
    with pytest.raises(StaleBaseline, match="stage it again"):
        commit_prepared(cloud[0], deps, "t1", b.run_id, "admin")
    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users["us0004"]["family_name"] == "FN 04"


def test_discarded_runs_apply_nothing_and_show_in_history(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    deps = cloud[1]
    prepared = sync(
        cloud, renamed_copy(tmp_path, "d", {"us0003": {"familyName": "D"}}), tmp_path, review=True
    )
    discard_run(deps, "t1", prepared.run_id, "admin")
    with pytest.raises(RunStateError):
        commit_prepared(cloud[0], deps, "t1", prepared.run_id, "admin")
    runs = list_runs(deps, "t1")
    assert [r.status for r in runs] == ["discarded", "committed"]
    assert runs[1].counts is not None and runs[1].counts["users"]["add"] == 20
    assert runs[1].trigger == "cli"


def test_settings_validation_names_the_field():
    with pytest.raises(SettingsError) as info:
        apply_assignments(TenantSettings(), ["hold.archive_share=1.5"])
    assert info.value.errors[0]["field"] == "hold.archive_share"
    with pytest.raises(SettingsError) as info:
        apply_assignments(TenantSettings(), ["no_such_option=1"])
    assert info.value.errors[0]["field"] == "no_such_option"
    with pytest.raises(SettingsError) as info:
        apply_assignments(TenantSettings(), ["schedule.time=25:00"])
    assert info.value.errors[0]["field"] == "schedule.time"
    ok = apply_assignments(TenantSettings(), ["schedule.time=06:30", "auto_commit=false"])
    assert ok.schedule is not None and ok.schedule.time == "06:30" and not ok.auto_commit


def test_settings_changes_are_kept_with_who_and_when(cloud):
    set_settings(cloud, "auto_commit=false")
    set_settings(cloud, "blank_values=ignore")
    history = cloud[1].tenants.settings_history("t1")
    assert [h["changed"] for h in history] == [["auto_commit"], ["blank_values"]]
    assert {h["changed_by"] for h in history} == {"admin@district"}


def test_auto_commit_off_prepares_the_run(cloud, tmp_path):
    set_settings(cloud, "auto_commit=false")
    outcome = sync(cloud, LEPO, tmp_path)
    assert outcome.status == "prepared"
    assert export_directory(cloud[1], "t1")["users"] == []


def test_two_source_schools_mapped_to_one_app_school_are_merged(cloud, tmp_path):
    from rostersync.generator import generate_district
    from tests.bundles import read_rows

    folder = tmp_path / "d"
    generate_district(folder, students=60, seed=4, schools=2)
    schools = [o["sourcedId"] for o in read_rows(folder / "orgs.csv")[1] if o["type"] == "school"]
    mapping = {school: "app-school-1" for school in schools}
    import json

    set_settings(cloud, f"schools.mapping={json.dumps(mapping)}")
    outcome = sync(cloud, folder, tmp_path)

    orgs = export_directory(cloud[1], "t1")["orgs"]
    merged = [o for o in orgs if o["target_id"] == "app-school-1"]
    assert len(merged) == 1 and merged[0]["source_id"] in schools
    assert outcome.counts["orgs"]["add"] == len(orgs) == 2  # the district and one school


def test_class_filters_keep_only_homerooms_and_their_enrollments(cloud, tmp_path):
    from rostersync.generator import generate_district

    folder = tmp_path / "d"
    generate_district(folder, students=60, seed=4)
    set_settings(cloud, "class_filters.homerooms_only=true")
    sync(cloud, folder, tmp_path)
    directory = export_directory(cloud[1], "t1")
    classes = {c["source_id"]: c for c in directory["classes"]}
    assert classes and {c["class_type"] for c in classes.values()} == {"homeroom"}
    assert {e["class_source_id"] for e in directory["enrollments"]} <= set(classes)


def test_matching_thresholds_are_per_tenant_and_validated():
    with pytest.raises(SettingsError) as info:
        apply_assignments(TenantSettings(), ["people_thresholds.suggest=0.95"])
    assert info.value.errors[0]["field"] == "people_thresholds"
    stricter = apply_assignments(TenantSettings(), ["people_thresholds.auto=0.9"])
    assert stricter.people_thresholds.auto == 0.9


def test_a_commit_waits_for_no_one_but_never_overlaps_a_running_sync(cloud, tmp_path):
    from rostersync.application.runs import RunInProgress, begin_run
    from rostersync.errors import RostersyncError
    from rostersync.pipeline.deps import locks_repository
    from rostersync.storage import keys

    sync(cloud, LEPO, tmp_path)
    deps = cloud[1]
    prepared = sync(
        cloud, renamed_copy(tmp_path, "p", {"us0003": {"familyName": "P"}}), tmp_path, review=True
    )

    class Idle:
        def launch(self, run_input: dict[str, Any], *, name: str) -> None:
            """Leaves the run 'running', as a sync still going."""

    running = begin_run(
        deps,
        locks_repository(deps.settings),
        Idle(),
        "t1",
        keys.uploads_prefix("t1", prepared.run_id),
        trigger="api",
    )
    with pytest.raises(RunInProgress) as info:
        commit_prepared(cloud[0], deps, "t1", prepared.run_id, "admin")
    assert info.value.run_id == running.run_id
    assert show_run(deps, "t1", prepared.run_id).run.status == "prepared"
    deps.runs.update("t1", running.run_id, RunUpdate(status=RunStatus.FAILED))
    commit_prepared(cloud[0], deps, "t1", prepared.run_id, "admin")
    assert show_run(deps, "t1", prepared.run_id).run.status == "committed"
    assert isinstance(info.value, RostersyncError)


def test_a_schedule_in_an_unknown_time_zone_is_refused_with_the_field_named():
    with pytest.raises(SettingsError) as refused:
        apply_assignments(
            TenantSettings(), ['schedule={"time": "06:30", "timezone": "Mars/Olympus_Mons"}']
        )
    assert "schedule.timezone" in str(refused.value)
    assert "not a time zone" in str(refused.value)
    kept = apply_assignments(
        TenantSettings(), ['schedule={"time": "06:30", "timezone": "Europe/London"}']
    )
    assert kept.schedule is not None and kept.schedule.timezone == "Europe/London"


def test_an_untick_rewrites_only_its_line_and_copies_the_others_as_they_are(cloud, tmp_path):
    """The change file is streamed, not loaded: the unticked action's line is written
    anew, every other line is the same bytes, and an id not in the run is still an
    error (the file left as it was)."""
    prepared = sync(cloud, LEPO, tmp_path, review=True)
    deps = cloud[1]
    key = keys.changes_key("t1", prepared.run_id, Entity.USERS)
    before = list(deps.store.iter_lines(key))
    target = list_actions(deps, "t1", prepared.run_id, ActionFilter(entity=Entity.USERS)).actions[1]

    assert (
        set_included(
            deps, "t1", prepared.run_id, Selection(action_ids=[target["id"]]), False, "ann"
        )
        == 1
    )

    after = list(deps.store.iter_lines(key))
    assert len(after) == len(before)
    differing = [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(differing) == 1 and target["id"].encode() in after[differing[0]]
    version = deps.store.version(key)
    with pytest.raises(RunStateError):
        set_included(
            deps, "t1", prepared.run_id, Selection(action_ids=["users-add-0000"]), False, "ann"
        )
    assert deps.store.version(key) == version


def _noted_afresh(deps: Any, key: str) -> ChangeLines:
    afresh = ChangeLines()
    for line in deps.store.iter_lines(key):
        afresh.add(line + b"\n", orjson.loads(line))
    return afresh


def _recounted(deps: Any, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    counts: dict[str, dict[str, int]] = {e.value: empty_counts() for e in Entity}
    excluded: dict[str, dict[str, int]] = {e.value: empty_counts() for e in Entity}
    for action in iter_actions(deps, "t1", run_id):
        bucket = counts if action["included"] else excluded
        bucket[action["entity"]][action["action"]] += 1
    return counts, excluded


def test_ticks_and_unticks_keep_the_counts_and_the_noted_lines_of_the_change_file(cloud, tmp_path):
    """After unticks and ticks, the change summary's counts and what stage noted of the
    change file (line starts, included lines that are not adds, linked adds) are those
    of the file as it now is, without reading it again; the commit applies what is
    ticked."""
    sync(cloud, LEPO, tmp_path)
    day2 = renamed_copy(
        tmp_path,
        "day2",
        {n: {"familyName": f"Renamed {n}"} for n in ("us0003", "us0004", "us0005")},
    )
    prepared = sync(cloud, day2, tmp_path, review=True)
    deps, run_id = cloud[1], prepared.run_id
    key = keys.changes_key("t1", run_id, Entity.USERS)
    lines_key = keys.change_lines_key("t1", run_id, Entity.USERS)
    summary_key = keys.change_summary_key("t1", run_id)
    staged = deps.store.get_json(summary_key)
    assert (staged["counts"], staged["excluded"]) == _recounted(deps, run_id)
    updates = list_actions(deps, "t1", run_id, ActionFilter(entity=Entity.USERS)).actions
    assert len(updates) == 3

    def select(ids: list[str], included: bool) -> int:
        return set_included(deps, "t1", run_id, Selection(action_ids=ids), included, "ann")

    assert select([updates[0]["id"], updates[2]["id"]], False) == 2
    assert select([updates[2]["id"]], True) == 1
    assert select([updates[2]["id"]], True) == 0  # already ticked: nothing rewritten

    summary = deps.store.get_json(summary_key)
    assert (summary["counts"], summary["excluded"]) == _recounted(deps, run_id)
    assert summary["counts"]["users"]["update"] == 2
    assert summary["excluded"]["users"]["update"] == 1
    noted = noted_lines(deps.store, key, lines_key)
    assert noted is not None and noted == _noted_afresh(deps, key)
    assert noted.included == 2 and len(noted.others) == 2

    report = commit_prepared(cloud[0], deps, "t1", run_id, "ann")
    assert report["counts"]["users"]["update"] == 2
    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    families = {n: users[n]["family_name"] for n in ("us0003", "us0004", "us0005")}
    unticked = updates[0]["source_id"]
    assert families == {n: ("FN 0" + n[-1] if n == unticked else f"Renamed {n}") for n in families}


def test_a_few_ids_found_by_search_rewrite_the_file_as_reading_it_line_by_line_does(
    cloud, tmp_path
):
    """A click's few ids are searched for in the change file and only their lines are
    written anew: the file, what is noted of it and the counts are those the line-by-line
    rewrite gives (the same change made again by it, on the file as it was); an id that
    appears in the file other than at a line's start is no hit, and an id not found on a
    line of its own leaves the work to the line-by-line read."""
    prepared = sync(cloud, LEPO, tmp_path, review=True)
    deps, run_id = cloud[1], prepared.run_id
    key = keys.changes_key("t1", run_id, Entity.USERS)
    lines_key = keys.change_lines_key("t1", run_id, Entity.USERS)
    original = deps.store.get_bytes(key)
    noted = noted_lines(deps.store, key, lines_key)
    summary_key = keys.change_summary_key("t1", run_id)
    summary = deps.store.get_json(summary_key)
    assert original is not None and noted is not None
    users = list_actions(deps, "t1", run_id, ActionFilter(entity=Entity.USERS, limit=1000)).actions
    assert len(users) >= 10
    # The first line, one in the middle and the last: the copies between and around.
    chosen = [users[0]["id"], users[len(users) // 2]["id"], users[-1]["id"]]

    def stamp_free(body: bytes) -> list[dict[str, Any]]:
        rows = [orjson.loads(line) for line in body.splitlines()]
        for row in rows:
            row.pop("decided_at", None)
        return rows

    def restore() -> None:
        deps.store.put_json(summary_key, summary)
        deps.store.put_bytes(key, original)
        version = deps.store.version(key)
        assert version is not None
        deps.store.put_bytes(lines_key, noted.encode(version))

    counted: dict[str, Any] = {}
    for path in ("search", "lines"):
        restore()
        if path == "lines":
            review._FOUND_BY_SEARCH, kept = 0, review._FOUND_BY_SEARCH
        try:
            assert set_included(deps, "t1", run_id, Selection(action_ids=chosen), False, "ann") == 3
        finally:
            if path == "lines":
                review._FOUND_BY_SEARCH = kept
        body = deps.store.get_bytes(key)
        assert body is not None
        counted[path] = (
            stamp_free(body),
            noted_lines(deps.store, key, lines_key),
            deps.store.get_json(summary_key),
        )
        assert counted[path][1] == _noted_afresh(deps, key)
    assert counted["search"] == counted["lines"]
    unticked = [row["id"] for row in counted["search"][0] if not row["included"]]
    assert sorted(unticked) == sorted(chosen)

    # The search reads only the hits' lines: a line no reader could parse is copied.
    restore()
    lines = original.splitlines(keepends=True)
    lines[3] = b"not a line stage writes\n"
    damaged = b"".join(lines)
    deps.store.put_bytes(key, damaged)
    renoted = ChangeLines()
    for n, line in enumerate(damaged.splitlines(keepends=True)):
        renoted.add(line, orjson.loads(original.splitlines()[n]))
    deps.store.put_bytes(lines_key, renoted.encode(deps.store.version(key) or ""))
    assert (
        set_included(deps, "t1", run_id, Selection(action_ids=[users[9]["id"]]), False, "ann") == 1
    )
    assert (deps.store.get_bytes(key) or b"").splitlines()[3] == b"not a line stage writes"

    # An id met inside another line (a reason quoting it) is not that action's line.
    restore()
    lines = original.splitlines(keepends=True)
    quoting = orjson.loads(lines[1])
    quoting["reason"] = '{"id":"' + users[5]["id"] + '"'
    lines[1] = orjson.dumps(quoting) + b"\n"
    edited = b"".join(lines)
    deps.store.put_bytes(key, edited)
    relined = ChangeLines()
    for line in edited.splitlines(keepends=True):
        relined.add(line, orjson.loads(line))
    deps.store.put_bytes(lines_key, relined.encode(deps.store.version(key) or ""))
    assert (
        set_included(deps, "t1", run_id, Selection(action_ids=[users[5]["id"]]), False, "ann") == 1
    )
    rows = {row["id"]: row for row in stamp_free(deps.store.get_bytes(key) or b"")}
    assert rows[users[5]["id"]]["included"] is False
    assert rows[quoting["id"]]["included"] == quoting["included"]
    assert noted_lines(deps.store, key, lines_key) == _noted_afresh(deps, key)

    # An action whose line does not start with its id is found by reading line by line.
    lines = (deps.store.get_bytes(key) or b"").splitlines(keepends=True)
    moved = orjson.loads(lines[7])
    lines[7] = orjson.dumps({"entity": moved["entity"], **moved}) + b"\n"
    assert not lines[7].startswith(b'{"id"')
    deps.store.put_bytes(key, b"".join(lines))
    assert set_included(deps, "t1", run_id, Selection(action_ids=[moved["id"]]), False, "ann") == 1
    rows = {row["id"]: row for row in stamp_free(deps.store.get_bytes(key) or b"")}
    assert rows[moved["id"]]["included"] is False
