"""Daily schedules: the Scheduler schedule follows the tenant's settings; locally, the
scheduler thread fires a due schedule once (with an injected clock)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.launch import RunStartDeps
from rostersync.application.schedules import LocalScheduler, scheduled_sync, sync_schedule
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import save_tenant_settings
from rostersync.cli import main
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import Deps, build_deps, locks_repository
from rostersync.records import RunStatus, RunUpdate
from rostersync.settings import Schedule, TenantSettings

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"


class RecordingLauncher:
    def __init__(self) -> None:
        self.launched: list[dict[str, Any]] = []

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self.launched.append(run_input)


class Clock:
    """A settable clock for the scheduler."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def starting(cloud: tuple[Any, Deps]) -> Iterator[tuple[RunStartDeps, RecordingLauncher]]:
    local, deps = cloud
    ensure_tenant(deps, "t1", create=True)
    launcher = RecordingLauncher()
    locks = locks_repository(deps.settings, local.names.tables["LocksTable"])
    yield RunStartDeps(deps, locks, launcher), launcher


def test_setting_a_schedule_creates_updates_and_deletes_the_scheduler_schedule(
    cloud: tuple[Any, Deps],
) -> None:
    local, _ = cloud
    scheduler = local.client("scheduler")
    group = local.environment["SCHEDULE_GROUP"]
    daily = TenantSettings(schedule=Schedule(time="06:30", timezone="Europe/London"))

    assert sync_schedule(None, "t1", daily) == "created"
    found = scheduler.get_schedule(Name="rostersync-t1", GroupName=group)
    assert found["ScheduleExpression"] == "cron(30 6 * * ? *)"
    assert found["ScheduleExpressionTimezone"] == "Europe/London"
    assert found["Target"]["Arn"] == local.environment["SCHEDULED_SYNC_FUNCTION_ARN"]
    assert found["Target"]["Arn"].endswith(local.names.functions["ScheduledSyncFunction"])
    assert json.loads(found["Target"]["Input"]) == {"tenant": "t1", "mode": "full"}
    assert sync_schedule(None, "t1", daily) == "unchanged"

    later = TenantSettings(schedule=Schedule(time="07:00", timezone="UTC", mode="quick"))
    assert sync_schedule(None, "t1", later) == "updated"
    found = scheduler.get_schedule(Name="rostersync-t1", GroupName=group)
    assert (found["ScheduleExpression"], found["ScheduleExpressionTimezone"]) == (
        "cron(0 7 * * ? *)",
        "UTC",
    )

    assert sync_schedule(None, "t1", TenantSettings()) == "deleted"
    assert sync_schedule(None, "t1", TenantSettings()) == "absent"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name="rostersync-t1", GroupName=group)


def test_the_local_scheduler_fires_a_due_schedule_once_a_day(starting: Any) -> None:
    start, launcher = starting
    deps = start.deps
    deps.store.put_bytes("inbox/t1/drop/oneroster.zip", (LEPO / "oneroster.zip").read_bytes())
    save_tenant_settings(
        deps, "t1", TenantSettings(schedule=Schedule(time="08:00", timezone="UTC")), who="test"
    )
    clock = Clock(datetime(2026, 3, 2, 7, 59, 30, tzinfo=UTC))
    scheduler = LocalScheduler(start, clock=clock, interval=60)

    assert scheduler.tick() == []
    clock.now += timedelta(seconds=50)  # 08:00:20
    (fired,) = scheduler.tick()
    clock.now += timedelta(seconds=60)
    assert scheduler.tick() == []

    assert (fired.status, fired.bundle) == ("started", "inbox/t1/drop/oneroster.zip")
    (run_input,) = launcher.launched
    assert run_input["trigger"] == "schedule"
    assert run_input["source"]["key"] == "inbox/t1/drop/oneroster.zip"

    # The run ends; the next day at 08:00 it fires again, once.
    deps.runs.update("t1", fired.run_id or "", RunUpdate(status=RunStatus.COMMITTED))
    clock.now += timedelta(days=1) - timedelta(seconds=50)  # next day 08:00:30
    assert [o.status for o in scheduler.tick()] == ["started"]
    assert len(launcher.launched) == 2


def test_the_scheduler_thread_fires_at_the_due_time_once(starting: Any) -> None:
    start, launcher = starting
    deps = start.deps
    deps.store.put_bytes("inbox/t1/drop/oneroster.zip", (LEPO / "oneroster.zip").read_bytes())
    save_tenant_settings(
        deps,
        "t1",
        TenantSettings(schedule=Schedule(time="18:15", timezone="America/New_York")),
        who="test",
    )
    # 18:14:58 in New York (EST, UTC-5).
    clock = Clock(datetime(2026, 1, 15, 23, 14, 58, tzinfo=UTC))
    scheduler = LocalScheduler(start, clock=clock, interval=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        assert launcher.launched == []
        clock.now += timedelta(seconds=3)
        deadline = time.monotonic() + 5
        while not launcher.launched and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # many more ticks: still one run
    finally:
        stop.set()
        thread.join(5)

    assert len(launcher.launched) == 1
    assert launcher.launched[0]["trigger"] == "schedule"


def test_a_schedule_with_no_bundle_or_a_busy_tenant_starts_nothing(starting: Any) -> None:
    start, launcher = starting

    assert scheduled_sync(start, "t1").status == "no_bundle"
    assert scheduled_sync(start, "nobody").status == "unknown_tenant"

    start.deps.store.put_bytes("inbox/t1/z/oneroster.zip", (LEPO / "oneroster.zip").read_bytes())
    first = scheduled_sync(start, "t1")
    second = scheduled_sync(start, "t1")

    assert (first.status, second.status) == ("started", "busy")
    assert len(launcher.launched) == 1


def test_the_scheduled_sync_function_handles_the_schedule_input(cloud: tuple[Any, Deps]) -> None:
    local, deps = cloud
    ensure_tenant(deps, "t1", create=True)

    response = local.client("lambda").invoke(
        FunctionName=local.names.functions["ScheduledSyncFunction"],
        Payload=json.dumps({"tenant": "t1", "mode": "full"}),
    )

    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    assert (body["tenant"], body["status"]) == ("t1", "no_bundle")


def test_a_skipped_schedule_is_in_the_run_history_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a schedule with no bundle to sync, then a busy tenant, when each fires, then
    each is a *skipped* run in the history, with its reason, as ``runs`` shows it."""
    state = tmp_path / "state"
    with LocalCloud(state) as local:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, "t1", create=True)
        locks = locks_repository(deps.settings, local.names.tables["LocksTable"])
        start = RunStartDeps(deps, locks, RecordingLauncher())
        nothing = scheduled_sync(start, "t1")
        deps.store.put_bytes("inbox/t1/z/oneroster.zip", (LEPO / "oneroster.zip").read_bytes())
        started = scheduled_sync(start, "t1")
        busy = scheduled_sync(start, "t1")
        runs = {r.run_id: r for r in deps.runs.list("t1")}

    assert runs[nothing.run_id or ""].status == "skipped"
    assert runs[nothing.run_id or ""].reason == "no complete bundle in the inbox"
    assert runs[busy.run_id or ""].status == "skipped"
    assert runs[busy.run_id or ""].reason == f"run {started.run_id} is in progress"
    assert runs[started.run_id or ""].status == "running"

    capsys.readouterr()
    assert main(["runs", "--tenant", "t1", "--state", str(state)]) == 0
    shown = capsys.readouterr().out
    assert "skipped: no complete bundle in the inbox" in shown
    assert f"skipped: run {started.run_id} is in progress" in shown


def test_a_schedule_that_cannot_be_read_is_recorded_skipped_once_a_day(starting: Any) -> None:
    """Given settings stored with a time zone the scheduler cannot resolve (kept from
    before schedules were checked), when the scheduler ticks every minute, then one
    skipped run a day says why, instead of a log line a minute."""
    start, launcher = starting
    settings = TenantSettings(schedule=Schedule(time="08:00")).model_dump(mode="json")
    settings["schedule"]["timezone"] = "Mars/Olympus_Mons"
    start.deps.tenants.put_settings("t1", settings, who="old", at="2026-01-01", changed=[])
    clock = Clock(datetime(2026, 3, 2, 7, 0, tzinfo=UTC))
    scheduler = LocalScheduler(start, clock=clock, interval=60)

    for _ in range(5):
        assert scheduler.tick() == []
        clock.now += timedelta(minutes=1)
    clock.now += timedelta(days=1)
    scheduler.tick()

    skipped = [r for r in start.deps.runs.list("t1") if r.status == "skipped"]
    assert len(skipped) == 2
    assert all("Mars/Olympus_Mons" in (r.reason or "") for r in skipped)
    assert all("settings set" in (r.reason or "") for r in skipped)
    assert launcher.launched == []
