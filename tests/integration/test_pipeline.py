"""The real state machine, the real handlers, moto: from a bundle to a committed roster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rostersync.application.sync import SyncOutcome, export_directory
from rostersync.errors import StorageUnavailable
from rostersync.local.session import run_sync
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys
from rostersync.storage.events import EventPublisher
from tests.bundles import ONEROSTER, Row, copy_bundle, edit_rows, read_rows

LEPO = ONEROSTER / "lepo-en-1.1"
ACTION_KINDS = ("add", "update", "archive", "reactivate")


def sync(cloud: tuple[Any, Deps], path: Path, tmp_path: Path, **kwargs: Any) -> SyncOutcome:
    local, deps = cloud
    outcome, _ = run_sync(local, deps, "t1", path, tmp_path / "reports", **kwargs)
    return outcome


def nonzero(outcome: SyncOutcome) -> dict[str, dict[str, int]]:
    return {
        entity: {kind: n for kind, n in row.items() if n}
        for entity, row in outcome.counts.items()
        if any(row.values())
    }


def changes(deps: Deps, run_id: str, entity: str) -> list[dict[str, Any]]:
    from rostersync.models import Entity

    return list(deps.store.iter_jsonl(keys.changes_key("t1", run_id, Entity(entity))))


def test_first_sync_commits_every_record_to_the_directory(cloud, tmp_path):
    """Given the lepo bundle, when it is synced, then the directory holds every record."""
    outcome = sync(cloud, LEPO, tmp_path)

    assert outcome.status == "committed", outcome.error
    assert outcome.states[-1] == "Committed"
    assert nonzero(outcome) == {
        "orgs": {"add": 1},
        "academic_sessions": {"add": 4},
        "courses": {"add": 2},
        "classes": {"add": 5},
        "users": {"add": 20},
        "enrollments": {"add": 30},
    }
    directory = export_directory(cloud[1], "t1")
    assert len(directory["users"]) == 20
    assert {u["status"] for u in directory["users"]} == {"active"}
    assert all(u["target_id"] and u["source_id"] for u in directory["users"])
    run = cloud[1].runs.get("t1", outcome.run_id)
    assert run.status == "committed"
    assert run.counts is not None and run.counts["users"]["add"] == 20
    events = cloud[0].published_events()
    changes_published = [e for e in events if not e["detail-type"].startswith("run.")]
    assert len(changes_published) == 62
    assert {e["detail-type"] for e in changes_published} >= {"user.created", "enrollment.created"}
    runs = [e for e in events if e["detail-type"].startswith("run.")]
    assert [(e["detail-type"], e["detail"]["counts"]["add"]) for e in runs] == [
        ("run.committed", 62)
    ]
    assert "given_name" not in str(events)  # events carry ids, never names


def test_second_sync_of_a_changed_bundle_shows_only_the_changes(cloud, tmp_path):
    """Given a committed bundle, when a copy with one user removed, one renamed and one
    added is synced, then exactly one archive, one update with its diff and one add."""
    first = sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def change(rows: list[Row]) -> list[Row]:
        rows = [r for r in rows if r["sourcedId"] != "us0020"]
        for row in rows:
            if row["sourcedId"] == "us0003":
                row["familyName"] = "Renamed"
        rows.append({**rows[0], "sourcedId": "us9999", "username": "new", "givenName": "New"})
        return rows

    edit_rows(day2 / "users.csv", change)
    second = sync(cloud, day2, tmp_path)

    assert second.status == "committed", second.error
    # us0020's enrollment follows it (a cascade): an enrollment never outlives its user.
    assert nonzero(second) == {
        "users": {"add": 1, "update": 1, "archive": 1},
        "enrollments": {"archive": 1},
    }
    actions = {a["action"]: a for a in changes(cloud[1], second.run_id, "users")}
    assert actions["update"]["source_id"] == "us0003"
    assert actions["update"]["changes"] == {"family_name": ["FN 03", "Renamed"]}
    assert actions["archive"]["source_id"] == "us0020"
    assert actions["add"]["source_id"] == "us9999"
    users = {u["source_id"]: u for u in export_directory(cloud[1], "t1")["users"]}
    assert users["us0020"]["status"] == "archived"
    assert users["us0003"]["family_name"] == "Renamed"
    assert users["us9999"]["status"] == "active"
    # The same app identity survives the update.
    first_users = changes(cloud[1], first.run_id, "users")
    first_target = next(a["target_id"] for a in first_users if a["source_id"] == "us0003")
    assert users["us0003"]["target_id"] == first_target


def test_header_only_users_file_archives_nobody_and_says_why(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")
    edit_rows(day2 / "users.csv", lambda rows: [])

    outcome = sync(cloud, day2, tmp_path)

    assert outcome.status == "committed"
    assert outcome.counts["users"]["archive"] == 0
    assert "users.csv has no rows" in outcome.report["refused"]["users"]["reason"]
    assert outcome.exit_code == 2
    users = export_directory(cloud[1], "t1")["users"]
    assert {u["status"] for u in users} == {"active"}


def test_mass_archive_above_the_share_is_held(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")
    edit_rows(day2 / "users.csv", lambda rows: rows[:15])  # 5 of 20 gone: 25% > 10%

    outcome = sync(cloud, day2, tmp_path)

    assert outcome.status == "held"
    assert outcome.counts["users"]["archive"] == 0
    trip = next(t for t in outcome.report["hold"] if t["check"] == "archive_share")
    assert trip["entity"] == "users" and trip["measured"] == 0.25 and trip["threshold"] == 0.1
    assert trip["message"] == "5 of 20 active users would be archived (25%, limit 10%)"
    archived = [a for a in changes(cloud[1], outcome.run_id, "users") if a["action"] == "archive"]
    assert len(archived) == 5 and not any(a["included"] for a in archived)
    assert all(a["held"] for a in archived)
    assert {u["status"] for u in export_directory(cloud[1], "t1")["users"]} == {"active"}


def test_resync_of_the_same_bundle_changes_nothing(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    again = sync(cloud, LEPO, tmp_path)
    assert again.status == "committed"
    assert nonzero(again) == {}


def test_an_archived_user_who_returns_is_reactivated_not_duplicated(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    gone = copy_bundle(LEPO, tmp_path / "gone")
    edit_rows(gone / "users.csv", lambda rows: [r for r in rows if r["sourcedId"] != "us0005"])
    sync(cloud, gone, tmp_path)

    back = sync(cloud, LEPO, tmp_path)

    assert back.counts["users"] == {"add": 0, "update": 0, "archive": 0, "reactivate": 1}
    users = [u for u in export_directory(cloud[1], "t1")["users"] if u["source_id"] == "us0005"]
    assert len(users) == 1 and users[0]["status"] == "active"


def test_delta_bundle_applies_only_its_rows(cloud, tmp_path):
    sync(cloud, LEPO, tmp_path)
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / "manifest.csv").write_text(
        "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.users,delta\n"
        "file.orgs,absent\nfile.academicSessions,absent\nfile.courses,absent\n"
        "file.classes,absent\nfile.enrollments,absent\n"
    )
    header = (LEPO / "users.csv").read_text().splitlines()[0]
    (delta / "users.csv").write_text(
        header + '\n"us0002","tobedeleted","2026-11-02","true","or0001","student","user02","",'
        '"GN 02","FN 02","","","","","","","","","",""\n'
        '"us0100","active","2026-11-02","true","or0001","student","user100","",'
        '"GN 100","FN 100","","","","","","","","","",""\n'
    )

    outcome = sync(cloud, delta, tmp_path)

    assert outcome.status == "committed", outcome.error
    assert nonzero(outcome) == {"users": {"add": 1, "archive": 1}, "enrollments": {"archive": 1}}


def test_a_retried_commit_doubles_nothing(aws_cloud, tmp_path, monkeypatch):
    """EventBridge fails once in the middle of the commit; Step Functions retries the
    commit, which resumes: every change event is published exactly once (the AWS
    adapters, under moto)."""
    cloud = aws_cloud
    calls = {"n": 0}
    real_send = EventPublisher._send

    def flaky_send(self: EventPublisher, batch: list[Any]) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            raise StorageUnavailable("put events: ThrottlingException")
        return real_send(self, batch)

    monkeypatch.setattr(EventPublisher, "_send", flaky_send)
    outcome = sync(cloud, LEPO, tmp_path)

    assert outcome.status == "committed", outcome.error
    # 62 change events take 7 PutEvents calls, the run notification one more; the failed
    # 4th call makes it 9: the commit was retried and resumed after its checkpoint.
    assert calls["n"] == 9
    events = cloud[0].published_events()
    action_ids = [e["detail"]["action_id"] for e in events if "action_id" in e["detail"]]
    assert len(action_ids) == 62 == len(set(action_ids))
    assert len(export_directory(cloud[1], "t1")["enrollments"]) == 30


def test_a_failing_step_records_the_run_as_failed_with_its_reason(cloud, tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"this is not a zip file")

    outcome = sync(cloud, broken, tmp_path)

    assert outcome.status == "failed"
    assert outcome.exit_code == 1
    run = cloud[1].runs.get("t1", outcome.run_id)
    assert run.status == "failed"
    assert "not a readable zip" in (run.reason or "")
    failed = [e for e in cloud[0].published_events() if e["detail-type"] == "run.failed"]
    assert [e["detail"]["run_id"] for e in failed] == [outcome.run_id]
    assert failed[0]["detail"]["error"] == "BundleError"
    assert export_directory(cloud[1], "t1")["users"] == []


@pytest.mark.parametrize(
    "bundle",
    [
        "moodle-full-1.1",
        "moodle-minimal-1.1",
        "oat-sa-1.1",
        "lepo-en-1.1",
        "lepo-en-1.1/oneroster.zip",
    ],
)
def test_every_shared_bundle_syncs_with_its_problems_listed(cloud, tmp_path, bundle):
    outcome = sync(cloud, ONEROSTER / bundle, tmp_path)
    assert outcome.status == "committed", outcome.error
    report = outcome.report
    assert report["issues_total"] == len(
        list(cloud[1].store.iter_jsonl(keys.issues_key("t1", outcome.run_id)))
    )
    body = cloud[1].store.get_bytes(keys.report_key("t1", outcome.run_id, "issues.csv"))
    assert body is not None and b"Password1-" not in body
    if bundle.startswith(("moodle", "oat")):
        assert report["issues_total"] > 0
    severities = report["issues_by_severity"]
    assert sum(severities.values()) == report["issues_total"]
    # Row- or field-level issues exit 2; notes alone exit 0.
    assert outcome.exit_code == (2 if severities["row"] or severities["field"] else 0)
    assert bundle != "moodle-full-1.1" or outcome.exit_code == 2


def test_archives_cascade_to_enrollments_and_reactivation_brings_them_back(cloud, tmp_path):
    """Given a committed bundle, when a student leaves users.csv (its enrollments still
    listed) and a class turns tobedeleted, then their enrollments are archived in the
    same run, as cascades; when both come back, so do the enrollments."""
    deps = cloud[1]
    sync(cloud, LEPO, tmp_path)
    _, enrollment_rows = read_rows(LEPO / "enrollments.csv")
    student = next(r["userSourcedId"] for r in enrollment_rows if r["role"] == "student")
    klass = next(r["classSourcedId"] for r in enrollment_rows if r["userSourcedId"] != student)
    theirs = {r["sourcedId"] for r in enrollment_rows if r["userSourcedId"] == student}
    of_class = {r["sourcedId"] for r in enrollment_rows if r["classSourcedId"] == klass}

    day2 = copy_bundle(LEPO, tmp_path / "day2")
    edit_rows(day2 / "users.csv", lambda rows: [r for r in rows if r["sourcedId"] != student])

    def class_deleted(rows: list[Row]) -> list[Row]:
        for row in rows:
            if row["sourcedId"] == klass:
                row["status"] = "tobedeleted"
        return rows

    edit_rows(day2 / "classes.csv", class_deleted)
    second = sync(cloud, day2, tmp_path)
    assert second.status in {"committed", "held"}, second.error
    archives = {
        a["source_id"]: a
        for a in changes(deps, second.run_id, "enrollments")
        if a["action"] == "archive"
    }
    assert theirs | of_class <= set(archives)
    assert all(archives[e]["included"] or archives[e]["held"] for e in theirs | of_class)
    assert archives[next(iter(theirs))]["cascade_of"] == f"user {student} archived"
    assert archives[next(iter(of_class - theirs))]["cascade_of"] == f"class {klass} archived"
    if second.status == "committed":
        active = {
            e["source_id"]
            for e in export_directory(deps, "t1")["enrollments"]
            if e["status"] == "active"
        }
        assert not (theirs | of_class) & active

        third = sync(cloud, LEPO, tmp_path)
        assert third.status == "committed", third.error
        back = {
            e["source_id"]
            for e in export_directory(deps, "t1")["enrollments"]
            if e["status"] == "active"
        }
        assert theirs | of_class <= back
