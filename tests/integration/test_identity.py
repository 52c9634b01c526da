"""Connecting an app that already has teachers, students and classes to its SIS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rostersync.application.matching import (
    confirm_keys,
    confirm_match,
    import_app_records,
    link_manually,
    list_match_decisions,
    mark_adhoc,
    propose_tenant_keys,
    reject_match,
)
from rostersync.application.sync import (
    WaitingLauncher,
    commit_prepared,
    ensure_tenant,
    export_directory,
)
from rostersync.existing_app import ExistingApp, build_existing_app
from rostersync.generator import generate_district
from rostersync.storage import keys
from tests.bundles import Row, edit_rows, read_rows
from tests.integration.test_pipeline import sync


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExistingApp]:
    folder = tmp_path_factory.mktemp("district")
    generate_district(folder / "day1", students=120, seed=7)
    app = build_existing_app(folder / "day1", folder / "app.csv", seed=5, typo_share=0.15)
    return folder / "day1", app


def connect(cloud: Any, district: tuple[Path, ExistingApp], tmp_path: Path) -> Any:
    bundle, app = district
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    result = import_app_records(deps, "t1", app.path.read_text(), "admin")
    assert result["issues"] == []
    return sync(cloud, bundle, tmp_path, review=True)


def by_source(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: r for r in rows}


def test_teachers_link_by_key_students_auto_match_and_no_auto_match_is_wrong(
    cloud, district, tmp_path
):
    bundle, app = district
    run = connect(cloud, district, tmp_path)
    decisions = list_match_decisions(cloud[1], "t1", run_id=run.run_id)
    truth = {source: app_id for app_id, source in app.truth.items() if source}

    keyed = [d for d in decisions if d["tier"] == "key"]
    autos = [d for d in decisions if d["tier"] == "auto"]
    teachers = [u for u in read_rows(bundle / "users.csv")[1] if u["role"] == "teacher"]
    assert len(keyed) == len(teachers)  # every teacher, by email
    assert all(truth[d["source_id"]] == d["target_id"] for d in keyed + autos)
    exact = [a for a, s in app.truth.items() if s and a not in app.typos and a.startswith("app-0")]
    student_autos = [d for d in autos if d["entity"] == "users"]
    assert len(student_autos) >= 0.9 * (len(exact) - len(teachers))
    # Students missing from the app are created as new; none is linked to someone else.
    actions = run.report["counts"]["users"]
    assert actions["add"] > 0
    linked_targets = [d["target_id"] for d in keyed + autos if d["entity"] == "users"]
    assert len(linked_targets) == len(set(linked_targets))
    assert not set(app.app_only) & set(linked_targets)


def test_classes_connect_through_their_linked_teacher(cloud, district, tmp_path):
    _bundle, app = district
    run = connect(cloud, district, tmp_path)
    classes = [
        d
        for d in list_match_decisions(cloud[1], "t1", run_id=run.run_id)
        if d["entity"] == "classes"
    ]
    app_classes = {a: s for a, s in app.truth.items() if a.startswith("app-class")}
    assert classes, "homerooms should be matched"
    assert all(
        app_classes[d["target_id"]] == d["source_id"] for d in classes if d["tier"] == "auto"
    )
    assert sum(d["tier"] == "auto" for d in classes) == len(app_classes)


def test_classes_are_not_connected_without_a_linked_teacher(cloud, district, tmp_path):
    bundle, app = district
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    # The app's teachers are left out: nothing links them, so no class may connect.
    text = app.path.read_text().splitlines()
    kept = [line for line in text if ",teacher," not in line]
    import_app_records(deps, "t1", "\n".join(kept) + "\n", "admin")
    run = sync(cloud, bundle, tmp_path, review=True)
    decisions = list_match_decisions(deps, "t1", run_id=run.run_id)
    assert not [d for d in decisions if d["entity"] == "classes" and d["tier"] == "auto"]


def test_suggestions_wait_confirmed_links_commit_and_survive_the_next_sync(
    cloud, district, tmp_path
):
    bundle, _app = district
    run = connect(cloud, district, tmp_path)
    deps = cloud[1]
    suggested = [
        d for d in list_match_decisions(deps, "t1", run_id=run.run_id) if d["tier"] == "suggested"
    ]
    assert suggested, "typos should give suggestions"
    first = suggested[0]
    assert first["target_id"] and first["agreed"]
    # A suggested record gets no action until decided.
    from rostersync.application.review import ActionFilter, list_actions

    actions = list_actions(deps, "t1", run.run_id, ActionFilter(entity="users", limit=1000)).actions
    assert first["source_id"] not in {a["source_id"] for a in actions}

    result = confirm_match(
        deps, "t1", "users", first["source_id"], "admin", launcher=WaitingLauncher(cloud[0])
    )
    assert result["restaged_run"] == run.run_id
    actions = list_actions(deps, "t1", run.run_id, ActionFilter(entity="users", limit=1000)).actions
    linked = next(a for a in actions if a["source_id"] == first["source_id"])
    assert linked["target_id"] == first["target_id"] and linked["tier"] == "manual"
    commit_prepared(cloud[0], deps, "t1", run.run_id, "admin")

    again = sync(cloud, bundle, tmp_path)
    assert again.status == "committed"
    assert sum(again.counts["users"].values()) <= len(suggested)  # only pending suggestions move
    users = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users[first["source_id"]]["target_id"] == first["target_id"]


def test_a_rejected_pair_is_never_suggested_again(cloud, district, tmp_path):
    run = connect(cloud, district, tmp_path)
    deps = cloud[1]
    suggested = [
        d for d in list_match_decisions(deps, "t1", run_id=run.run_id) if d["tier"] == "suggested"
    ]
    pair = suggested[0]
    reject_match(
        deps,
        "t1",
        "users",
        pair["source_id"],
        pair["target_id"],
        "admin",
        launcher=WaitingLauncher(cloud[0]),
    )
    after = by_source(list_match_decisions(deps, "t1", run_id=run.run_id))
    assert after.get(pair["source_id"], {}).get("target_id") != pair["target_id"]


def test_two_source_records_wanting_one_app_record_are_not_auto_matched(cloud, district, tmp_path):
    bundle, app = district
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    _header, users = read_rows(bundle / "users.csv")
    student = next(u for u in users if u["role"] == "student")
    import_app_records(deps, "t1", app.path.read_text(), "admin")
    twin = Path(tmp_path / "twin")
    from tests.bundles import copy_bundle

    copy_bundle(bundle, twin)
    edit_rows(
        twin / "users.csv",
        lambda rows: [*rows, {**student, "sourcedId": "twin-1", "username": "t"}],
    )
    edit_rows(
        twin / "demographics.csv",
        lambda rows: [
            *rows,
            {
                **next(r for r in rows if r["sourcedId"] == student["sourcedId"]),
                "sourcedId": "twin-1",
            },
        ],
    )
    run = sync(cloud, twin, tmp_path, review=True)
    decisions = by_source(list_match_decisions(deps, "t1", run_id=run.run_id))
    for source in (student["sourcedId"], "twin-1"):
        assert decisions.get(source, {}).get("tier") != "auto"


def test_a_changed_source_id_relinks_instead_of_duplicating(cloud, tmp_path):
    folder = tmp_path / "d"
    generate_district(folder, students=60, seed=11)
    first = sync(cloud, folder, tmp_path)
    assert first.status == "committed"
    deps = cloud[1]
    before = {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}
    _, users = read_rows(folder / "users.csv")
    student = next(u for u in users if u["role"] == "student")

    def new_id(rows: list[Row]) -> list[Row]:
        for row in rows:
            if row["sourcedId"] == student["sourcedId"]:
                row["sourcedId"] = "reissued-id-1"
            if row.get("userSourcedId") == student["sourcedId"]:
                row["userSourcedId"] = "reissued-id-1"
            if student["sourcedId"] in row.get("agentSourcedIds", ""):
                row["agentSourcedIds"] = row["agentSourcedIds"].replace(
                    student["sourcedId"], "reissued-id-1"
                )
        return rows

    for name in ("users.csv", "enrollments.csv", "demographics.csv"):
        edit_rows(folder / name, new_id)
    second = sync(cloud, folder, tmp_path)

    assert second.status in {"committed", "held"}
    users = export_directory(deps, "t1")["users"]
    mine = [u for u in users if u["target_id"] == before[student["sourcedId"]]["target_id"]]
    assert (
        len(mine) == 1 and mine[0]["source_id"] == "reissued-id-1" and mine[0]["status"] == "active"
    )
    assert second.counts["users"]["add"] == 0


def test_key_discovery_proposes_the_shared_identifier(cloud, tmp_path):
    folder = tmp_path / "d"
    generate_district(folder, students=60, seed=3)
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    _, users = read_rows(folder / "users.csv")
    lines = ["app_id,kind,given_name,family_name,id:student_number,id:locker"]
    for n, u in enumerate(u for u in users if u["role"] == "student"):
        lines.append(f"a{n},student,{u['givenName']},{u['familyName']},{u['identifier']},{n:05d}")
    import_app_records(deps, "t1", "\n".join(lines) + "\n", "admin")
    sync(cloud, folder, tmp_path, review=True)

    proposals = [
        p for p in propose_tenant_keys(deps, "t1") if p["kind"] == "student" and p["strong"]
    ]
    assert [(p["source_field"], p["app_field"]) for p in proposals][:1] == [
        ("identifier", "student_number")
    ]
    stored = confirm_keys(deps, "t1", "student", ["identifier:student_number"], "admin")
    assert stored["keys"] == [["identifier", "student_number", False]]


def test_import_reports_bad_rows(cloud):
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    text = (
        "app_id,kind,given_name,family_name,birth_date\n"
        "a1,student,Ann,Lee,2015-02-30\n"
        ",student,Bo,Li,\n"
        "a3,alien,X,Y,\n"
        "a4,student,,Z,\n"
        "a5,student,Ok,Fine,3/4/2015\n"
        "a5,student,Dup,Row,\n"
    )
    result = import_app_records(deps, "t1", text, "admin")
    # A bad birth date drops the date, not the record.
    assert result["imported"] == 2
    assert [(i["line"], i["column"], i["action"]) for i in result["issues"]] == [
        (2, "birth_date", "field dropped"),
        (3, "app_id", "row skipped"),
        (4, "kind", "row skipped"),
        (5, "given_name", "row skipped"),
        (7, "app_id", "row skipped"),
    ]
    people = {r["app_id"]: r for r in deps.store.iter_jsonl(keys.app_records_key("t1", "people"))}
    assert set(people) == {"a1", "a5"}
    assert people["a1"]["birth_date"] is None and people["a1"]["given_name"] == "Ann"


def test_app_records_with_no_source_can_be_kept_or_archived(cloud, district, tmp_path):
    _bundle, app = district
    connect(cloud, district, tmp_path)
    deps = cloud[1]
    kept, archived = app.app_only[0], app.app_only[1]
    mark_adhoc(deps, "t1", "users", kept, True, "admin")
    mark_adhoc(deps, "t1", "users", archived, False, "admin")
    users = {u["target_id"]: u for u in export_directory(deps, "t1")["users"]}
    assert users[kept]["status"] == "active" and users[kept]["adhoc"] is True
    assert users[archived]["status"] == "archived"


def test_a_manual_link_is_used(cloud, district, tmp_path):
    _bundle, app = district
    run = connect(cloud, district, tmp_path)
    deps = cloud[1]
    source = app.sis_only[0]
    link_manually(
        deps, "t1", "users", source, app.app_only[0], "admin", launcher=WaitingLauncher(cloud[0])
    )
    from rostersync.application.review import ActionFilter, list_actions

    actions = list_actions(deps, "t1", run.run_id, ActionFilter(entity="users", limit=1000)).actions
    action = next(a for a in actions if a["source_id"] == source)
    assert action["target_id"] == app.app_only[0] and action["tier"] == "manual"


def test_match_keys_in_the_settings_are_the_keys_matching_uses(cloud, tmp_path):
    """Given app students whose names all differ from the SIS's, when the tenant's
    settings name the shared identifier as the students' key (directly, or by confirming
    the proposal), then the next staging links every student by that key."""
    from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
    from rostersync.settings import apply_assignments

    folder = tmp_path / "d"
    generate_district(folder, students=40, seed=4)
    deps = cloud[1]
    ensure_tenant(deps, "t1", create=True)
    _, users = read_rows(folder / "users.csv")
    students = [u for u in users if u["role"] == "student"]
    lines = ["app_id,kind,given_name,family_name,id:student_number"]
    for n, u in enumerate(students):
        lines.append(f"a{n},student,Renamed{n},Person{n},{u['identifier']}")
    import_app_records(deps, "t1", "\n".join(lines) + "\n", "admin")

    before = sync(cloud, folder, tmp_path, review=True)
    tiers = [d["tier"] for d in list_match_decisions(deps, "t1", run_id=before.run_id)]
    assert tiers.count("key") < len(students)  # staff only: nothing links the students

    settings = apply_assignments(
        load_tenant_settings(deps, "t1"), ['match_keys.students=["identifier:student_number"]']
    )
    save_tenant_settings(deps, "t1", settings, who="admin")
    after = sync(cloud, folder, tmp_path, review=True)
    keyed = {
        d["source_id"]
        for d in list_match_decisions(deps, "t1", run_id=after.run_id)
        if d["tier"] == "key"
    }
    assert {u["sourcedId"] for u in students} <= keyed

    confirm_keys(deps, "t1", "student", ["identifier:student_number:strip"], "admin")
    stored = load_tenant_settings(deps, "t1").match_keys.students
    assert stored == ["identifier:student_number:strip"]
    assert deps.tenants.settings_history("t1")[-1]["changed"] == ["match_keys.students"]


def test_a_manual_link_is_checked(cloud, district, tmp_path):
    """A link to an app record that does not exist, or from a student to a teacher's
    record, is refused with the reason; nothing is recorded."""
    from rostersync.application.matching import MatchDecisionError

    _bundle, app = district
    connect(cloud, district, tmp_path)
    deps = cloud[1]
    student = app.sis_only[0]
    teacher = next(
        u["target_id"]
        for u in export_directory(deps, "t1")["users"]
        if u.get("role") == "teacher" and u["source_system"] != "oneroster"
    )
    launcher = WaitingLauncher(cloud[0])
    with pytest.raises(MatchDecisionError, match="no app users record"):
        link_manually(deps, "t1", "users", student, "app-nobody", "admin", launcher=launcher)
    with pytest.raises(MatchDecisionError, match="never crosses kinds"):
        link_manually(deps, "t1", "users", student, teacher, "admin", launcher=launcher)
    assert not [d for d in list_match_decisions(deps, "t1") if d["tier"] == "manual"]
