"""Faults injected into a real sync (the state machine, the handlers, moto): a commit that
fails and is run again, a PutEvents answer lost after it succeeded, S3 slowing down, a
lock release throttled, a run whose process died. Nothing is published twice under a
new id, every committed run that changed something sends one ``run.committed``, and the
tenant is never left locked or a run left *running*."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ReadTimeoutError

from rostersync.application.runs import RunInProgress
from rostersync.application.sync import SyncOutcome
from rostersync.errors import FatalError, StorageUnavailable
from rostersync.local.session import run_sync
from rostersync.pipeline import commit as commit_module
from rostersync.pipeline.deps import Deps, locks_repository
from rostersync.records import RunProgress, RunRecord, RunStatus
from rostersync.storage.events import EventPublisher
from rostersync.storage.objects import ObjectStore, translate_aws_error
from rostersync.storage.tables import LocksRepository
from tests.bundles import ONEROSTER

LEPO = ONEROSTER / "lepo-en-1.1"
CHANGES = 62  # lepo's first sync: one change event per record


@pytest.fixture
def cloud(aws_cloud: tuple[Any, Deps]) -> tuple[Any, Deps]:
    """Faults are injected into the AWS adapters (S3, DynamoDB, EventBridge under moto)."""
    return aws_cloud


def sync(cloud: tuple[Any, Deps], tmp_path: Path, path: Path = LEPO) -> SyncOutcome:
    local, deps = cloud
    outcome, _ = run_sync(local, deps, "t1", path, tmp_path / "reports")
    return outcome


def change_events(cloud: tuple[Any, Deps]) -> list[dict[str, Any]]:
    return [e["detail"] for e in cloud[0].published_events() if "action_id" in e["detail"]]


def run_events(cloud: tuple[Any, Deps], kind: str) -> list[str]:
    return [e["detail"]["run_id"] for e in cloud[0].published_events() if e["detail-type"] == kind]


def test_a_commit_that_stops_part_way_is_resumed_by_the_next_start(cloud, tmp_path, monkeypatch):
    """Given a commit that fails for good after three PutEvents calls, then the run is
    *committing* (never *failed* half-applied) with the error kept; when the bundle is
    synced again, the next start first resumes the interrupted commit, which publishes
    only the changes not yet published and its run.committed, then the new run finds
    nothing to change (and, changing nothing, sends no event)."""
    calls = {"n": 0}
    real_send = EventPublisher._send

    def failing_send(self: EventPublisher, batch: list[Any]) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            raise FatalError("put events: AccessDeniedException")
        return real_send(self, batch)

    monkeypatch.setattr(EventPublisher, "_send", failing_send)
    first = sync(cloud, tmp_path)
    assert first.status == "interrupted"
    assert "AccessDeniedException" in (first.error or "")
    run = cloud[1].runs.get("t1", first.run_id)
    assert run.status == "committing" and run.interrupted_at
    assert len(change_events(cloud)) == 30
    assert run_events(cloud, "run.committed") == []

    monkeypatch.setattr(EventPublisher, "_send", real_send)
    second = sync(cloud, tmp_path)

    assert second.status == "committed", second.error
    assert cloud[1].runs.get("t1", first.run_id).status == "committed"
    events = change_events(cloud)
    ids = Counter(e["event_id"] for e in events)
    assert len(ids) == CHANGES and set(ids.values()) == {1}
    assert {e["run_id"] for e in events} == {first.run_id}
    assert run_events(cloud, "run.committed") == [first.run_id]
    assert sum(second.counts[e][a] for e in second.counts for a in second.counts[e]) == 0


def test_a_put_events_call_that_times_out_after_success_repeats_no_new_id(
    cloud, tmp_path, monkeypatch
):
    """Given PutEvents accepting a batch but its answer timing out, when the commit is
    retried, then any repeat carries the same event_id: the bus holds one copy per id."""
    calls = {"n": 0}
    real_send = EventPublisher._send

    def lost_answer(self: EventPublisher, batch: list[Any]) -> int:
        calls["n"] += 1
        sent = real_send(self, batch)
        if calls["n"] == 3:
            raise translate_aws_error(ReadTimeoutError(endpoint_url="events"), "put events")
        return sent

    monkeypatch.setattr(EventPublisher, "_send", lost_answer)
    outcome = sync(cloud, tmp_path)

    assert outcome.status == "committed", outcome.error
    events = change_events(cloud)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_id.setdefault(event["event_id"], []).append(event)
    assert len(by_id) == CHANGES
    for copies in by_id.values():
        assert len({(c["action_id"], c["target_id"]) for c in copies}) == 1
    assert run_events(cloud, "run.committed") == [outcome.run_id]


def test_a_retried_commit_sends_its_run_committed_once(cloud, tmp_path, monkeypatch):
    """Given the run.committed notification throttled once after the run was marked
    committed, when Step Functions retries the commit, then run.committed is sent once."""
    real_notify = commit_module.notify_run
    calls = {"n": 0}

    def throttled_notify(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageUnavailable("put events: ThrottlingException")
        real_notify(*args, **kwargs)

    monkeypatch.setattr(commit_module, "notify_run", throttled_notify)
    outcome = sync(cloud, tmp_path)

    assert outcome.status == "committed", outcome.error
    assert calls["n"] == 2
    assert run_events(cloud, "run.committed") == [outcome.run_id]
    assert len(change_events(cloud)) == CHANGES


def test_s3_slowing_down_on_an_upload_is_retried(cloud, tmp_path, monkeypatch):
    """Given S3 answering SlowDown to one multipart upload, when a run writes its files,
    then the error is transient (StorageUnavailable), the step is retried and the run
    commits."""
    real_upload = ObjectStore.upload_file
    calls = {"n": 0}

    def slow(self: ObjectStore, path: Path, key: str) -> None:
        calls["n"] += 1
        if calls["n"] == 12:
            # What boto3's transfer manager raises when an UploadPart got SlowDown.
            def throttled(*_: Any) -> None:
                raise S3UploadFailedError(
                    f"Failed to upload {path} to bucket/{key}: An error occurred (SlowDown) "
                    "when calling the UploadPart operation (reached max retries: 4): "
                    "Please reduce your request rate."
                )

            monkeypatch.setattr(self.client, "upload_file", throttled)
            try:
                return real_upload(self, path, key)
            finally:
                monkeypatch.undo()
                monkeypatch.setattr(ObjectStore, "upload_file", slow)
        return real_upload(self, path, key)

    monkeypatch.setattr(ObjectStore, "upload_file", slow)
    outcome = sync(cloud, tmp_path)

    assert calls["n"] > 12
    assert outcome.status == "committed", outcome.error
    assert len(change_events(cloud)) == CHANGES


def test_a_throttled_lock_release_leaves_the_tenant_free(cloud, tmp_path, monkeypatch):
    """Given the release of a finished run's lock throttled, when the next run starts,
    then it takes the lock (the run has ended) and commits."""
    real_release = LocksRepository.release
    calls = {"n": 0}

    def throttled(self: LocksRepository, tenant: str, run_id: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageUnavailable("release lock: ThrottlingException")
        real_release(self, tenant, run_id)

    monkeypatch.setattr(LocksRepository, "release", throttled)
    first = sync(cloud, tmp_path)
    assert first.status == "committed", first.error
    assert locks_repository(cloud[1].settings).holder("t1") == first.run_id

    second = sync(cloud, tmp_path)

    assert second.status == "committed", second.error
    assert locks_repository(cloud[1].settings).holder("t1") is None


def test_a_run_whose_process_died_is_marked_failed_by_the_next_start(cloud, tmp_path):
    """Given a run left *running* with its lock, no progress for hours, when the tenant's
    next run starts, then the dead run is marked failed and the new one commits."""
    deps = cloud[1]
    first = sync(cloud, tmp_path)
    assert first.status == "committed", first.error
    dead = "20200101T000000Z-deadbeef"
    hours_ago = datetime.now(UTC) - timedelta(hours=3)
    deps.runs.put(
        "t1",
        RunRecord(
            run_id=dead,
            status=RunStatus.RUNNING,
            started_at=hours_ago,
            progress=RunProgress(step="match", since=hours_ago),
        ),
    )
    locks = locks_repository(deps.settings)
    assert locks.acquire("t1", dead, int(datetime.now(UTC).timestamp()), 7200) is None

    second = sync(cloud, tmp_path)

    assert second.status == "committed", second.error
    run = deps.runs.get("t1", dead)
    assert run.status == "failed"
    assert "no progress" in (run.reason or "")


def test_a_live_run_keeps_its_lock(cloud, tmp_path):
    """Given a run *running* with recent progress, when another run starts, then it is
    refused (the live run is not taken for dead)."""
    deps = cloud[1]
    sync(cloud, tmp_path)
    live = "20200101T000000Z-0000feed"
    now = datetime.now(UTC)
    deps.runs.put("t1", RunRecord(run_id=live, status=RunStatus.RUNNING, started_at=now))
    locks = locks_repository(deps.settings)
    assert locks.acquire("t1", live, int(datetime.now(UTC).timestamp()), 60) is None

    with pytest.raises(RunInProgress):
        sync(cloud, tmp_path)

    assert deps.runs.get("t1", live).status == "running"
