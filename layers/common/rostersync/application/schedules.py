"""Each tenant's daily sync: an EventBridge Scheduler schedule on AWS, a thread locally.

``storage.scheduler.sync_schedule`` makes the Scheduler match the tenant's
``settings.schedule``: one schedule named ``rostersync-{tenant}`` in the stack's schedule
group, firing ``cron(MM HH * * ? *)`` in the tenant's time zone, its target the
ScheduledSyncFunction with ``{"tenant", "mode"}`` as input; no schedule when the
setting is cleared. ``scheduled_sync`` is what that function does: sync the tenant's
connected API source, or (OneRoster CSV) its newest complete inbox bundle. Scheduler
never fires under moto, so ``LocalScheduler`` reads every tenant's settings once a
minute and fires what is due, once per day (``rostersync serve``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError

from rostersync.application.connect import connected_api_source
from rostersync.application.inbox import bundle_mode, inbox_records, latest_complete_bundle
from rostersync.application.launch import RunStartDeps
from rostersync.application.runs import RunInProgress, begin_run, record_skipped_run
from rostersync.errors import RostersyncError
from rostersync.models import SyncMode
from rostersync.observability import logger
from rostersync.pipeline.tenant_settings import load_settings as load_tenant_settings
from rostersync.settings import Schedule
from rostersync.sources.base import SourceSpec
from rostersync.storage import keys
from rostersync.storage.scheduler import InvalidSchedule, sync_schedule

__all__ = ["InvalidSchedule", "LocalScheduler", "scheduled_sync", "sync_schedule"]

#: How often the local scheduler looks at the tenants' schedules.
LOCAL_INTERVAL_SECONDS = 60.0


# ------------------------------------------------------------------ firing a schedule


class ScheduledSyncEvent(BaseModel):
    """What a tenant's schedule sends to the ScheduledSyncFunction."""

    model_config = ConfigDict(extra="ignore")

    tenant: str
    mode: SyncMode | None = None


ScheduledStatus = Literal["started", "no_bundle", "busy", "unknown_tenant"]


class ScheduledSyncOutcome(BaseModel):
    """What firing a tenant's schedule did."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    status: ScheduledStatus
    bundle: str | None = None
    #: What the run syncs, as the run history shows it (``clever api.clever.com``).
    source: str | None = None
    run_id: str | None = None
    mode: SyncMode | None = None
    reason: str | None = None


def scheduled_sync(
    starting: RunStartDeps, tenant: str, mode: SyncMode | None = None
) -> ScheduledSyncOutcome:
    """Begin the tenant's scheduled run (trigger "schedule"): of its connected API source
    (Clever, ...), else of its newest complete inbox bundle (OneRoster CSV).

    ``mode`` defaults to the schedule's; a bundle whose manifest lists delta files is
    always synced quick. No bundle, or a run already going, is reported, not raised: the
    Scheduler would retry an error, and a retry would not find anything new.
    """
    deps = starting.deps
    if deps.tenants.get_meta(keys.check_tenant(tenant)) is None:
        return ScheduledSyncOutcome(tenant=tenant, status="unknown_tenant")
    if mode is None:
        schedule = load_tenant_settings(deps, tenant).schedule
        mode = schedule.mode if schedule is not None else "full"
    source: SourceSpec | str
    spec = connected_api_source(deps, tenant)
    bundle = None
    if spec is not None:
        source = spec
    else:
        bundle = latest_complete_bundle(deps, tenant)
        if bundle is None:
            reason = "no complete bundle in the inbox"
            run_id = record_skipped_run(deps, tenant, trigger="schedule", mode=mode, reason=reason)
            logger().info(
                "scheduled sync skipped",
                extra={"tenant": tenant, "run": run_id, "step": "schedule", "status": "no_bundle"},
            )
            return ScheduledSyncOutcome(
                tenant=tenant, status="no_bundle", reason=reason, run_id=run_id, mode=mode
            )
        source = bundle
        if bundle_mode(deps, tenant, bundle) == "quick":
            mode = "quick"
    try:
        started = begin_run(
            deps, starting.locks, starting.launcher, tenant, source, trigger="schedule", mode=mode
        )
    except RunInProgress as busy:
        reason = f"run {busy.run_id} is in progress"
        run_id = record_skipped_run(deps, tenant, trigger="schedule", mode=mode, reason=reason)
        logger().info(
            "scheduled sync skipped",
            extra={"tenant": tenant, "run": run_id, "step": "schedule", "status": "busy"},
        )
        return ScheduledSyncOutcome(
            tenant=tenant, status="busy", bundle=bundle, mode=mode, reason=reason, run_id=run_id
        )
    logger().info(
        "scheduled sync started",
        extra={
            "tenant": tenant,
            "run": started.run_id,
            "step": "schedule",
            "source": started.source_key,
        },
    )
    return ScheduledSyncOutcome(
        tenant=tenant,
        status="started",
        bundle=bundle,
        source=started.source_key,
        run_id=started.run_id,
        mode=mode,
    )


# ------------------------------------------------------------ the local scheduler


def _utc_now() -> datetime:
    return datetime.now(UTC)


def due_moment(schedule: Schedule, day: date) -> datetime:
    """The schedule's moment on ``day`` (a date in its own time zone), in UTC."""
    hour, minute = (int(part) for part in schedule.time.split(":"))
    local = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(schedule.timezone))
    return local.astimezone(UTC)


@dataclass
class LocalScheduler:
    """Fires the tenants' daily schedules in this process (Scheduler never fires locally).

    Each ``tick`` fires the schedules whose moment fell since the previous tick (the
    first tick looks back one interval), so a restart neither repeats nor catches up a
    day's run, and a tenant fires at most once per local day. ``clock`` returns an
    aware datetime; tests pass their own.
    """

    starting: RunStartDeps
    clock: Callable[[], datetime] = _utc_now
    interval: float = LOCAL_INTERVAL_SECONDS
    tenants: Callable[[], list[str]] | None = None

    def __post_init__(self) -> None:
        self._last_tick: datetime | None = None
        self._fired: dict[str, date] = {}
        #: Tenants whose schedule could not be read, and the (UTC) day that was recorded.
        self._unreadable: dict[str, date] = {}

    def _tenant_ids(self) -> list[str]:
        if self.tenants is not None:
            return self.tenants()
        return inbox_records(self.starting.deps).tenant_ids()

    def tick(self) -> list[ScheduledSyncOutcome]:
        """Fire what fell due since the previous tick; return what each firing did."""
        now = self.clock().astimezone(UTC)
        since = self._last_tick or now - timedelta(seconds=self.interval)
        self._last_tick = now
        fired: list[ScheduledSyncOutcome] = []
        for tenant in self._tenant_ids():
            try:
                schedule = load_tenant_settings(self.starting.deps, tenant).schedule
                if schedule is None:
                    continue
                day = self._due_day(schedule, since, now)
                if day is None or self._fired.get(tenant) == day:
                    continue
                self._fired[tenant] = day
                fired.append(scheduled_sync(self.starting, tenant, schedule.mode))
            except (ZoneInfoNotFoundError, ValueError) as exc:
                # Settings stored before they were checked (an unknown time zone): the
                # schedule cannot fire. Said once a day in the run history, not silently.
                self._skipped_unreadable(tenant, now, exc)
            except RostersyncError as exc:
                # One tenant's failure must not stop the others' schedules.
                logger().warning(
                    "scheduled sync failed",
                    extra={"tenant": tenant, "error_type": type(exc).__name__},
                )
        return fired

    def _skipped_unreadable(self, tenant: str, now: datetime, exc: Exception) -> None:
        logger().warning(
            "schedule skipped", extra={"tenant": tenant, "error_type": type(exc).__name__}
        )
        if self._unreadable.get(tenant) == now.date():
            return
        self._unreadable[tenant] = now.date()
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        try:
            record_skipped_run(
                self.starting.deps,
                tenant,
                trigger="schedule",
                mode=None,
                reason=f"the schedule cannot be read ({first}); fix it with settings set",
            )
        except RostersyncError:
            logger().warning("skipped schedule not recorded", extra={"tenant": tenant})

    @staticmethod
    def _due_day(schedule: Schedule, since: datetime, now: datetime) -> date | None:
        zone = ZoneInfo(schedule.timezone)
        days = {since.astimezone(zone).date(), now.astimezone(zone).date()}
        for day in sorted(days):
            if since < due_moment(schedule, day) <= now:
                return day
        return None

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(self.interval):
            self.tick()
