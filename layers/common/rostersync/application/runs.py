"""Starting runs: the one path the CLI, the API, the inbox and the schedules share.

``begin_run`` checks the tenant, takes the tenant's run lock (one active run per tenant),
records the run and hands it to a ``RunLauncher``: Step Functions on AWS, the local
runtime here. A lock whose run has finished is released on the next attempt, so a run
that ended without releasing (a crash, a failed execution, a release that was
throttled) never blocks the tenant for longer than it takes to look.

A commit that stopped part-way (its Distributed Map or its finish failed for good, or
its process was killed) is never restarted and never left half-applied under a
*failed* label: the next start for the tenant resumes it on its plan first
(``resume_interrupted_commits``), then goes on.

A run is alive while it makes progress: every step notes ``progress.since`` on the run
as it starts (a Lambda step lasts 15 minutes at most). A run still *running* or
*committing* with no progress for ``STALE_SECONDS`` has lost its process: the next start
for the tenant marks it *failed* and takes the lock. The lock's own expiry,
``LOCK_SECONDS``, is as short: a lock nobody looks at frees itself within it; a lock
past its expiry whose run is still making progress is not taken over.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rostersync.errors import RostersyncError, UnknownTenant
from rostersync.models import SyncMode
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.processes import runner_gone
from rostersync.records import RunRecord, RunStatus, RunUpdate, Trigger, utc_now
from rostersync.sources.base import SourceSpec
from rostersync.sources.oneroster_csv import OneRosterCsvSpec
from rostersync.sources.registry import parse_spec
from rostersync.storage import keys
from rostersync.storage.ports import LocksPort

#: No progress for this long: the run's process has died (a step lasts 15 minutes at
#: most, and each step notes its start).
STALE_SECONDS = 30 * 60
LOCK_SECONDS = STALE_SECONDS


class RunInProgress(RostersyncError):
    """The tenant already has an active run."""

    def __init__(self, tenant: str, run_id: str) -> None:
        self.tenant = tenant
        self.run_id = run_id
        super().__init__(f"tenant {tenant} already has a run in progress: {run_id}")


class RunLauncher(Protocol):
    """Starts the state machine for a run without waiting for it."""

    def launch(self, run_input: dict[str, Any], *, name: str) -> None: ...


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    tenant: str
    source: SourceSpec

    @property
    def source_key(self) -> str:
        return self.source.describe()


def bundle_source(tenant: str, key: str) -> OneRosterCsvSpec:
    """The spec of a OneRoster bundle at ``key`` (under the tenant's inbox or uploads)."""
    return OneRosterCsvSpec(key=keys.check_source_key(tenant, key))


def run_source(run: RunRecord) -> SourceSpec | None:
    """The source spec a run record names (records before specs kept a bundle key)."""
    if run.source:
        return parse_spec(run.source)
    if run.source_key:
        return OneRosterCsvSpec(key=run.source_key)
    return None


def last_activity(run: RunRecord) -> datetime | None:
    """When the run last showed it was alive: its newest progress note or start."""
    since = run.progress.since if run.progress is not None else None
    moments = [m for m in (since, run.started_at, run.committing_at) if m is not None]
    return max(moments) if moments else None


def _runner_gone(run: RunRecord) -> bool:
    """The local process that ran the run's last step is no longer alive on this machine."""
    return runner_gone(run.progress.runner if run.progress is not None else None)


def is_stale(run: RunRecord, now: datetime) -> bool:
    """An active run with no progress for longer than ``STALE_SECONDS``, or whose local
    process is gone."""
    if not run.active:
        return False
    if _runner_gone(run):
        return True
    last = last_activity(run)
    return last is None or (now - last).total_seconds() > STALE_SECONDS


def fail_stale_run(deps: Deps, tenant: str, run: RunRecord) -> None:
    deps.runs.update(
        tenant,
        run.run_id,
        RunUpdate(
            status=RunStatus.FAILED,
            reason=f"its process stopped: no progress for over {STALE_SECONDS // 60} minutes",
            finished_at=utc_now(),
        ),
    )


#: How many of the newest runs are looked at for an interrupted commit.
_RECENT_RUNS = 10


def commit_began(run: RunRecord) -> bool:
    """The run's commit planned its chunks (items may have landed)."""
    return run.status is RunStatus.COMMITTING and run.commit is not None


def is_interrupted(run: RunRecord, now: datetime) -> bool:
    """A commit that began and stopped: its state machine noted the interruption, or
    its process died (no progress for ``STALE_SECONDS``)."""
    return commit_began(run) and (run.interrupted_at is not None or is_stale(run, now))


class CommitResuming(RunInProgress):
    """An interrupted commit of the tenant is being resumed; start again after it."""

    def __init__(self, tenant: str, run_id: str) -> None:
        super().__init__(tenant, run_id)
        self.args = (
            f"tenant {tenant}: resuming the interrupted commit of run {run_id}; "
            "start again when it has finished",
        )


def resume_interrupted_commits(
    deps: Deps, locks: LocksPort, launcher: RunLauncher, tenant: str
) -> list[str]:
    """Resume every interrupted commit of the tenant (oldest first), under its own lock.
    A launcher that waits (the command line) returns when the commit finished; one that
    does not (Step Functions) leaves it running: ``CommitResuming`` then says so."""
    now = datetime.now(UTC)
    resumed: list[str] = []
    for run in reversed(deps.runs.list(tenant, limit=_RECENT_RUNS)):
        run_id = run.run_id
        if not is_interrupted(run, now):
            continue
        spec = run_source(run)
        if spec is None:
            continue
        holder = locks.holder(tenant)
        if holder is not None and holder != run_id:
            _free_if_ended(deps, locks, tenant, holder)
        locks.acquire(tenant, run_id, int(time.time()), LOCK_SECONDS)
        attempt = (run.resumed or 0) + 1
        deps.runs.update(tenant, run_id, RunUpdate(resumed=attempt, interrupted_at=None))
        state = RunState(
            tenant=tenant,
            run_id=run_id,
            trigger=run.trigger or "cli",
            mode=run.mode or "full",
            operation="resume",
            source=spec,
            requested_by=run.requested_by,
        )
        launcher.launch(state.model_dump(mode="json"), name=f"{run_id}-resume-{attempt}")
        resumed.append(run_id)
        after = deps.runs.get(tenant, run_id)
        if after.active:
            if after.interrupted_at is not None:
                # Resumed and stopped again: the error is on the run; keep the tenant free
                # of new runs on an old state until it is resolved.
                locks.release(tenant, run_id)
            raise CommitResuming(tenant, run_id)
        locks.release(tenant, run_id)
    return resumed


def acquire_run_lock(deps: Deps, locks: LocksPort, tenant: str, run_id: str) -> None:
    """Take the tenant's lock or raise RunInProgress naming the active run. A lock
    whose run has ended is freed; an active run with no recent progress is marked
    failed first."""
    for _ in range(2):
        holder = locks.holder(tenant)
        if holder is not None and holder != run_id:
            _free_if_ended(deps, locks, tenant, holder)
        holder = locks.acquire(tenant, run_id, int(time.time()), LOCK_SECONDS)
        if holder is None:
            return
        _free_if_ended(deps, locks, tenant, holder)
    raise RunInProgress(tenant, locks.holder(tenant) or "unknown")


def _free_if_ended(deps: Deps, locks: LocksPort, tenant: str, holder: str) -> None:
    """Release ``holder``'s lock if its run has ended (or died); raise RunInProgress if
    it is alive."""
    try:
        run: RunRecord | None = deps.runs.get(tenant, holder)
    except RostersyncError:
        run = None
    if run is not None and run.active:
        now = datetime.now(UTC)
        if commit_began(run):
            if not is_interrupted(run, now):
                raise RunInProgress(tenant, holder)
            # Never failed half-applied: resume_interrupted_commits takes it up.
            locks.release(tenant, holder)
            return
        if not is_stale(run, now):
            raise RunInProgress(tenant, holder)
        fail_stale_run(deps, tenant, run)
    locks.release(tenant, holder)


def begin_run(
    deps: Deps,
    locks: LocksPort,
    launcher: RunLauncher,
    tenant: str,
    source: SourceSpec | str,
    *,
    trigger: Trigger,
    mode: SyncMode = "full",
    review: bool = False,
    requested_by: str | None = None,
    run_id: str | None = None,
) -> StartedRun:
    """Lock, record and launch a run of ``source`` (a spec, or a bundle's key) for
    ``tenant``."""
    if deps.tenants.get_meta(keys.check_tenant(tenant)) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    spec = bundle_source(tenant, source) if isinstance(source, str) else parse_spec(source)
    if isinstance(spec, OneRosterCsvSpec):
        keys.check_source_key(tenant, spec.key)
    run_id = run_id or keys.new_run_id()
    resume_interrupted_commits(deps, locks, launcher, tenant)
    acquire_run_lock(deps, locks, tenant, run_id)
    state = RunState(
        tenant=tenant,
        run_id=run_id,
        trigger=trigger,
        mode=mode,
        source=spec,
        requested_by=requested_by,
        review=review,
    )
    deps.runs.put(
        tenant,
        RunRecord(
            run_id=run_id,
            status=RunStatus.RUNNING,
            trigger=trigger,
            mode=mode,
            requested_by=requested_by,
            started_at=utc_now(),
            source_key=spec.describe(),
            source=spec.model_dump(mode="json"),
        ),
    )
    try:
        launcher.launch(state.model_dump(mode="json"), name=run_id)
    except Exception:
        deps.runs.update(
            tenant, run_id, RunUpdate(status=RunStatus.FAILED, reason="could not start")
        )
        locks.release(tenant, run_id)
        raise
    return StartedRun(run_id, tenant, spec)


def record_skipped_run(
    deps: Deps, tenant: str, *, trigger: Trigger, mode: SyncMode | None, reason: str
) -> str:
    """Keep a run that did not start (a schedule with nothing to sync, a tenant busy, a
    schedule that cannot be read) in the run history as *skipped*, with its reason, so
    the admin sees it where they see every run; return its run id."""
    run_id = keys.new_run_id()
    now = utc_now()
    deps.runs.put(
        keys.check_tenant(tenant),
        RunRecord(
            run_id=run_id,
            status=RunStatus.SKIPPED,
            trigger=trigger,
            mode=mode,
            started_at=now,
            finished_at=now,
            reason=reason,
        ),
    )
    return run_id


def failure_reason(raw: Any) -> str:
    """The readable part of a failure: Lambda's error JSON carries ``errorMessage``."""
    if not raw:
        return "unknown error"
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return str(raw)
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        kind = parsed.get("errorType")
        return f"{kind}: {parsed['errorMessage']}" if kind else str(parsed["errorMessage"])
    return str(raw)
