"""Starting runs: the one path the CLI, the API, the inbox and the schedules share.

``begin_run`` checks the tenant, takes the tenant's run lock (one active run per tenant),
records the run and hands it to a ``RunLauncher``: Step Functions on AWS, the local
runtime here. A lock whose run has finished is released on the next attempt, so a run
that ended without releasing (a crash, a failed execution, a release that was
throttled) never blocks the tenant for longer than it takes to look.

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
from rostersync.pipeline.contracts import RunState, Trigger
from rostersync.pipeline.deps import Deps
from rostersync.sources.base import SourceSpec
from rostersync.sources.oneroster_csv import OneRosterCsvSpec
from rostersync.sources.registry import parse_spec
from rostersync.storage import keys
from rostersync.storage.ports import LocksPort

#: No progress for this long: the run's process has died (a step lasts 15 minutes at
#: most, and each step notes its start).
STALE_SECONDS = 30 * 60
LOCK_SECONDS = STALE_SECONDS
ACTIVE_STATUSES = frozenset({"running", "committing"})


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


def run_source(run: dict[str, Any]) -> SourceSpec | None:
    """The source spec a run record names (records before specs kept a bundle key)."""
    if run.get("source"):
        return parse_spec(run["source"])
    if run.get("source_key"):
        return OneRosterCsvSpec(key=str(run["source_key"]))
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def last_activity(run: dict[str, Any]) -> datetime | None:
    """When the run last showed it was alive: its newest progress note or start."""
    moments = []
    for value in (
        (run.get("progress") or {}).get("since"),
        run.get("started_at"),
        run.get("committing_at"),
    ):
        try:
            moments.append(datetime.fromisoformat(str(value)))
        except ValueError:
            continue
    return max(moments) if moments else None


def is_stale(run: dict[str, Any], now: datetime) -> bool:
    """An active run with no progress for longer than ``STALE_SECONDS``."""
    if run.get("status") not in ACTIVE_STATUSES:
        return False
    last = last_activity(run)
    return last is None or (now - last).total_seconds() > STALE_SECONDS


def fail_stale_run(deps: Deps, tenant: str, run: dict[str, Any], run_id: str) -> None:
    deps.runs.update(
        tenant,
        run_id,
        {
            "status": "failed",
            "reason": f"its process stopped: no progress for over {STALE_SECONDS // 60} minutes",
            "finished_at": _now(),
        },
    )


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
        run: dict[str, Any] | None = deps.runs.get(tenant, holder)
    except RostersyncError:
        run = None
    if run is not None and run.get("status") in ACTIVE_STATUSES:
        if not is_stale(run, datetime.now(UTC)):
            raise RunInProgress(tenant, holder)
        fail_stale_run(deps, tenant, run, holder)
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
        run_id,
        {
            "status": "running",
            "trigger": trigger,
            "mode": mode,
            "requested_by": requested_by,
            "started_at": _now(),
            "source_key": spec.describe(),
            "source": spec.model_dump(mode="json"),
        },
    )
    try:
        launcher.launch(state.model_dump(mode="json"), name=run_id)
    except Exception:
        deps.runs.update(tenant, run_id, {"status": "failed", "reason": "could not start"})
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
    now = _now()
    deps.runs.put(
        keys.check_tenant(tenant),
        run_id,
        {
            "status": "skipped",
            "trigger": trigger,
            "mode": mode,
            "requested_by": None,
            "started_at": now,
            "finished_at": now,
            "reason": reason,
        },
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
