"""File arrival under inbox/{tenant}/: complete bundles start one run, partial ones none,
bad keys are rejected and reported (in-process, under the local stack)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from rostersync.application.inbox import (
    handle_event,
    handle_object_created,
    latest_complete_bundle,
    object_created_event,
    rejected_keys,
)
from rostersync.application.launch import RunStartDeps
from rostersync.application.sync import ensure_tenant
from rostersync.pipeline.deps import Deps, locks_repository
from rostersync.records import RunStatus, RunUpdate

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"
BULK_FILES = [
    "academicSessions.csv",
    "classes.csv",
    "courses.csv",
    "enrollments.csv",
    "orgs.csv",
    "users.csv",
]


class RecordingLauncher:
    """Records launches; the runs stay "running" (so the tenant's lock stays held)."""

    def __init__(self) -> None:
        self.launched: list[dict[str, Any]] = []

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self.launched.append(run_input)


@pytest.fixture
def inbox(cloud: tuple[Any, Deps]) -> Iterator[tuple[Any, RunStartDeps, RecordingLauncher]]:
    local, deps = cloud
    ensure_tenant(deps, "t1", create=True)
    launcher = RecordingLauncher()
    locks = locks_repository(deps.settings, local.names.tables["LocksTable"])
    yield local, RunStartDeps(deps, locks, launcher), launcher


def drop(starting: RunStartDeps, key: str, body: bytes) -> Any:
    """Put an object in the bucket and handle its arrival, as the InboxFunction would."""
    starting.deps.store.put_bytes(key, body)
    return handle_object_created(starting, key)


def drop_file(starting: RunStartDeps, folder: str, name: str) -> Any:
    return drop(starting, f"{folder}{name}", (LEPO / name).read_bytes())


def rejected_events(local: Any) -> list[dict[str, Any]]:
    return [e["detail"] for e in local.published_events() if e["detail-type"] == "inbox.rejected"]


def test_a_complete_zip_starts_one_run(inbox: Any) -> None:
    _, starting, launcher = inbox
    key = "inbox/t1/2024-09-01/oneroster.zip"

    outcome = drop(starting, key, (LEPO / "oneroster.zip").read_bytes())
    again = handle_object_created(starting, key)  # a re-delivered event

    assert outcome.status == "started"
    assert (outcome.bundle, outcome.mode) == (key, "full")
    assert again.status == "already_started"
    assert again.run_id == outcome.run_id
    (run_input,) = launcher.launched
    assert run_input["source"]["key"] == key
    assert run_input["trigger"] == "inbox"
    assert run_input["run_id"] == outcome.run_id
    run = starting.deps.runs.get("t1", outcome.run_id)
    assert (run.trigger, run.source_key, run.status) == ("inbox", key, "running")


def test_loose_files_start_one_run_when_the_last_listed_file_arrives(inbox: Any) -> None:
    _, starting, launcher = inbox
    folder = "inbox/t1/drop/"

    partial = [drop_file(starting, folder, name) for name in ["manifest.csv", *BULK_FILES[:2]]]

    assert [o.status for o in partial] == ["waiting"] * 3
    assert "users.csv" in (partial[-1].reason or "")
    assert launcher.launched == []

    rest = [drop_file(starting, folder, name) for name in BULK_FILES[2:]]

    assert [o.status for o in rest] == ["waiting", "waiting", "waiting", "started"]
    (run_input,) = launcher.launched
    assert run_input["source"]["key"] == folder
    assert run_input["mode"] == "full"

    late = drop(starting, folder + "demographics.csv", b"sourcedId,status\n")

    assert late.status == "already_started"
    assert late.run_id == rest[-1].run_id
    assert len(launcher.launched) == 1


def test_the_manifest_may_arrive_last(inbox: Any) -> None:
    _, starting, launcher = inbox
    folder = "inbox/t1/manifest-last/"

    outcomes = [drop_file(starting, folder, name) for name in [*BULK_FILES, "manifest.csv"]]

    assert [o.status for o in outcomes] == ["waiting"] * 6 + ["started"]
    assert "manifest.csv" in (outcomes[0].reason or "")
    assert len(launcher.launched) == 1


def test_a_manifest_listing_a_delta_file_makes_a_quick_run(inbox: Any) -> None:
    _, starting, launcher = inbox
    folder = "inbox/t1/delta/"
    manifest = b'"propertyName","value"\n"file.users","delta"\n"file.orgs","absent"\n'

    first = drop(starting, folder + "manifest.csv", manifest)
    second = drop_file(starting, folder, "users.csv")

    assert first.status == "waiting"
    assert (second.status, second.mode) == ("started", "quick")
    assert launcher.launched[0]["mode"] == "quick"


def test_bad_keys_and_files_are_rejected_reported_and_never_processed(inbox: Any) -> None:
    local, starting, launcher = inbox
    cases = {
        "inbox/ghost/bundle.zip": (None, "unknown tenant"),
        "inbox/t1/../t2/users.csv": ("t1", "outside a tenant's inbox"),
        "inbox/t1/setup.exe": ("t1", "not a bundle file"),
        "inbox/t1/日本.csv": ("t1", "characters other than"),
        "inbox/t1/fake.zip": ("t1", "not a readable zip"),
        "elsewhere/t1/users.csv": (None, "outside a tenant's inbox"),
    }

    outcomes = {key: drop(starting, key, b"MZ not a roster") for key in cases}

    for key, (tenant, reason) in cases.items():
        assert outcomes[key].status == "rejected", key
        assert outcomes[key].tenant == tenant, key
        assert reason in (outcomes[key].reason or ""), key
    assert launcher.launched == []
    listed = {r["key"]: r["reason"] for r in rejected_keys(starting.deps, "t1")}
    assert set(listed) == {key for key, (tenant, _) in cases.items() if tenant == "t1"}
    events = rejected_events(local)
    assert {e["key"] for e in events} == set(cases)
    assert all(set(e) == {"tenant", "key", "reason"} for e in events)  # never content
    assert all("MZ" not in json.dumps(e) for e in events)


def test_a_rejected_file_moves_to_the_rejected_folder_with_its_reason(inbox: Any) -> None:
    """Given files the inbox cannot take, when they arrive, then each leaves the inbox's
    listing for ``rejected/``, a reason file beside it, and nothing there is ever taken
    for a bundle (not on arrival, not as the newest bundle)."""
    _, starting, launcher = inbox
    objects = starting.deps.inbox_objects

    exe = drop(starting, "inbox/t1/setup.exe", b"MZ")
    fake = drop(starting, "inbox/t1/drop/fake.zip", b"PK not really")
    odd = drop(starting, "inbox/t1/日本.csv", b"a,b\n")

    assert exe.moved_to == "inbox/t1/rejected/setup.exe"
    assert fake.moved_to == "inbox/t1/rejected/drop/fake.zip"
    assert odd.moved_to is not None and odd.moved_to.startswith("inbox/t1/rejected/unnamed-")
    assert odd.moved_to.endswith(".csv")
    left = {item.key for item in objects.list_all("inbox/t1/")}
    assert {key for key in left if not key.startswith("inbox/t1/rejected/")} == set()
    assert {"inbox/t1/rejected/setup.exe", "inbox/t1/rejected/drop/fake.zip"} <= left
    assert odd.moved_to + ".reason.txt" in left
    reason = starting.deps.store.get_bytes("inbox/t1/rejected/drop/fake.zip.reason.txt")
    assert reason is not None
    assert reason.decode().startswith("fake.zip was not synced: not a readable zip file.")

    # What arrives in rejected/ (the moves' own events on AWS) is left alone.
    again = handle_object_created(starting, "inbox/t1/rejected/drop/fake.zip")
    assert (again.status, again.reason) == ("ignored", "in the rejected folder")
    zipped = (LEPO / "oneroster.zip").read_bytes()
    starting.deps.store.put_bytes("inbox/t1/rejected/old/bundle.zip", zipped)
    assert latest_complete_bundle(starting.deps, "t1") is None
    assert launcher.launched == []


def test_a_file_named_like_a_copy_is_renamed_and_synced(inbox: Any) -> None:
    """Given ``my bundle (1).zip`` (a browser's name for a second download), when it
    arrives, then it is renamed ``my_bundle_1.zip`` and starts its run."""
    _, starting, launcher = inbox
    zipped = (LEPO / "oneroster.zip").read_bytes()

    outcome = drop(starting, "inbox/t1/my bundle (1).zip", zipped)

    assert outcome.status == "started", outcome
    assert outcome.moved_to == "inbox/t1/my_bundle_1.zip"
    (run_input,) = launcher.launched
    assert run_input["source"]["key"] == "inbox/t1/my_bundle_1.zip"
    left = {item.key for item in starting.deps.inbox_objects.list_all("inbox/t1/")}
    assert left == {"inbox/t1/my_bundle_1.zip"}


def test_a_zip_without_roster_files_is_rejected(inbox: Any, tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday.jpg", b"\xff\xd8")

    outcome = drop(inbox[1], "inbox/t1/photos.zip", path.read_bytes())

    assert outcome.status == "rejected"
    assert "neither manifest.csv nor a OneRoster CSV" in (outcome.reason or "")


def test_a_bundle_arriving_while_a_run_is_active_is_deferred_then_retried(inbox: Any) -> None:
    local, starting, launcher = inbox
    first = drop(starting, "inbox/t1/a/oneroster.zip", (LEPO / "oneroster.zip").read_bytes())
    folder = "inbox/t1/b/"

    outcomes = [drop_file(starting, folder, name) for name in ["manifest.csv", *BULK_FILES]]

    assert first.status == "started"
    assert outcomes[-1].status == "deferred"
    assert first.run_id in (outcomes[-1].reason or "")
    assert len(launcher.launched) == 1
    assert latest_complete_bundle(starting.deps, "t1") == folder
    deferred = [e for e in local.published_events() if e["detail-type"] == "inbox.deferred"]
    assert deferred[-1]["detail"]["bundle"] == folder

    # The active run ends; the next file for the deferred bundle starts it.
    starting.deps.runs.update("t1", first.run_id, RunUpdate(status=RunStatus.COMMITTED))
    retried = drop(starting, folder + "notes.csv", b"a,b\n")

    assert retried.status == "started"
    assert [r["source"]["key"] for r in launcher.launched] == ["inbox/t1/a/oneroster.zip", folder]


def test_a_folder_used_again_waits_for_the_new_files(inbox: Any) -> None:
    _, starting, launcher = inbox
    folder = "inbox/t1/daily/"
    for name in ["manifest.csv", *BULK_FILES]:
        drop_file(starting, folder, name)
    run_id = launcher.launched[0]["run_id"]
    starting.deps.runs.update("t1", run_id, RunUpdate(status=RunStatus.COMMITTED))

    # The next drop replaces the manifest first: yesterday's CSVs do not complete it.
    manifest = (LEPO / "manifest.csv").read_bytes() + b"\n"
    waiting = drop(starting, folder + "manifest.csv", manifest)
    # Each file changed a little (a real next day changes some and not others).
    rest = [
        drop(starting, folder + name, (LEPO / name).read_bytes() + b"\n") for name in BULK_FILES
    ]

    assert waiting.status == "waiting"
    assert [o.status for o in rest] == ["waiting"] * 5 + ["started"]
    assert len(launcher.launched) == 2


def test_latest_complete_bundle_skips_partial_folders(inbox: Any) -> None:
    _, starting, _ = inbox
    zip_key = "inbox/t1/old/oneroster.zip"
    starting.deps.store.put_bytes(zip_key, (LEPO / "oneroster.zip").read_bytes())

    assert latest_complete_bundle(starting.deps, "t1") == zip_key

    starting.deps.store.put_bytes("inbox/t1/new/manifest.csv", (LEPO / "manifest.csv").read_bytes())
    starting.deps.store.put_bytes("inbox/t1/new/users.csv", (LEPO / "users.csv").read_bytes())

    assert latest_complete_bundle(starting.deps, "t1") == zip_key
    assert latest_complete_bundle(starting.deps, "t1-none") is None


def test_events_of_both_shapes_are_decoded(inbox: Any) -> None:
    _, starting, launcher = inbox
    bucket = starting.deps.store.bucket
    key = "inbox/t1/zips/oneroster.zip"
    starting.deps.store.put_bytes(key, (LEPO / "oneroster.zip").read_bytes())
    notification = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
            },
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "another"}, "object": {"key": "inbox/t1/x.zip"}},
            },
        ]
    }

    bridged = handle_event(object_created_event(bucket, key), starting)
    notified = handle_event(notification, starting)

    assert [o.status for o in bridged.outcomes] == ["started"]
    assert [(o.key, o.status) for o in notified.outcomes] == [
        (key, "already_started"),
        ("inbox/t1/x.zip", "ignored"),
    ]
    assert len(launcher.launched) == 1


def test_the_inbox_function_handles_an_event(inbox: Any) -> None:
    local, starting, _ = inbox
    key = "inbox/t1/readme.txt"
    starting.deps.store.put_bytes(key, b"hello")
    event = object_created_event(starting.deps.store.bucket, key)

    response = local.client("lambda").invoke(
        FunctionName=local.names.functions["InboxFunction"], Payload=json.dumps(event)
    )

    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    assert body["outcomes"][0]["status"] == "rejected"
    assert body["outcomes"][0]["reason"] == "not a bundle file (.csv or .zip)"


def test_the_inbox_function_starts_the_state_machine_for_a_complete_bundle(inbox: Any) -> None:
    local, starting, _ = inbox
    key = "inbox/t1/via-lambda/oneroster.zip"
    starting.deps.store.put_bytes(key, (LEPO / "oneroster.zip").read_bytes())
    event = object_created_event(starting.deps.store.bucket, key)

    response = local.client("lambda").invoke(
        FunctionName=local.names.functions["InboxFunction"], Payload=json.dumps(event)
    )
    (outcome,) = json.loads(response["Payload"].read())["outcomes"]
    machine = local.names.state_machine_arn
    execution = machine.replace(":stateMachine:", ":execution:") + ":" + outcome["run_id"]
    result = local.wait_for(execution, timeout=120)

    assert outcome["status"] == "started"
    assert result.succeeded, result.cause
    run = starting.deps.runs.get("t1", outcome["run_id"])
    assert (run.status, run.trigger, run.source_key) == ("committed", "inbox", key)


def test_the_inbox_reads_a_manifest_as_normalize_does():
    """One manifest parser: a manifest exported with ';' and a BOM, a repeated property
    (the first wins) and a header row are read the same by the inbox's completeness check
    as by the reader."""
    from rostersync.application.inbox import parse_manifest

    body = (
        "\ufeffpropertyName;value\r\n"
        "file.users;bulk\r\n"
        "file.users;absent\r\n"
        "file.enrollments;DELTA\r\n"
        "source.systemName;SIS\r\n"
    ).encode()
    assert parse_manifest(body) == {"users.csv": "bulk", "enrollments.csv": "delta"}
