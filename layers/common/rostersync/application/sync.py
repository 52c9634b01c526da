"""Operations behind the CLI and the API: start a sync, read its outcome, export the
directory. Typed inputs and outputs; no printing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rostersync.application.runs import failure_reason
from rostersync.changes import ACTION_KINDS as ACTIONS
from rostersync.errors import RunStateError, StorageUnavailable, UnknownTenant
from rostersync.models import ENTITY_ORDER, SEVERITY_ORDER, Severity, SyncMode
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps, locks_repository
from rostersync.records import RunStatus, Trigger
from rostersync.sources.base import SourceSpec
from rostersync.storage import keys

if TYPE_CHECKING:
    from rostersync.application.review import DerivedRun


class ExecutionOutcome(Protocol):
    status: str
    error: str | None
    cause: str | None
    states: list[str]


class RunStarter(Protocol):
    """Starts the state machine for one run (the local runtime or Step Functions)."""

    def start_run(self, run_input: dict[str, Any], *, name: str) -> ExecutionOutcome: ...


@dataclass
class SyncOutcome:
    run_id: str
    status: str
    report: dict[str, Any] | None
    error: str | None = None
    states: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{entity: {add, update, archive, reactivate}}`` for every entity."""
        found = (self.report or {}).get("counts", {})
        return {
            entity.value: {a: int(found.get(entity.value, {}).get(a, 0)) for a in ACTIONS}
            for entity in ENTITY_ORDER
        }

    @property
    def severities(self) -> dict[str, int]:
        """The run's issue counts by severity, worst first."""
        return issue_severities(self.report)

    @property
    def blocking(self) -> int:
        return self.severities.get(Severity.BLOCKING.value, 0)

    @property
    def waiting(self) -> bool:
        """Held, or prepared: the run waits for an admin's decision."""
        return self.status in {"prepared", "held"}

    @property
    def exit_code(self) -> int:
        """``EXIT_FAILED`` (1) failed, or a file or entity unusable; ``EXIT_WAITING`` (3)
        held or prepared, waiting for an admin; ``EXIT_ISSUES`` (2) applied with row- or
        field-level issues (or archives refused); ``EXIT_CLEAN`` (0) otherwise (notes
        only)."""
        if self.status not in {"committed", "prepared", "held"} or self.blocking:
            return EXIT_FAILED
        if self.waiting:
            return EXIT_WAITING
        severities = self.severities
        if (
            severities.get(Severity.ROW.value)
            or severities.get(Severity.FIELD.value)
            or (self.report or {}).get("refused")
        ):
            return EXIT_ISSUES
        return EXIT_CLEAN


#: The exit codes of ``rostersync sync`` (and of the commands that run a sync).
EXIT_CLEAN, EXIT_FAILED, EXIT_ISSUES, EXIT_WAITING = 0, 1, 2, 3


def issue_severities(report: dict[str, Any] | None) -> dict[str, int]:
    """``{severity: count}`` of a report, worst first (a report written before severities
    counts its issues as row-level)."""
    report = report or {}
    found = report.get("issues_by_severity")
    if isinstance(found, dict):
        return {s.value: int(found.get(s.value, 0)) for s in SEVERITY_ORDER}
    counts = {s.value: 0 for s in SEVERITY_ORDER}
    counts[Severity.ROW.value] = int(report.get("issues_total") or 0)
    return counts


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def ensure_tenant(deps: Deps, tenant: str, *, create: bool) -> bool:
    """True if the tenant was created now; raises UnknownTenant if absent and not created."""
    keys.check_tenant(tenant)
    if deps.tenants.get_meta(tenant) is not None:
        return False
    if not create:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    deps.tenants.put_meta(tenant, {"created_at": _now(), "status": "active"})
    return True


def upload_bundle(
    deps: Deps,
    tenant: str,
    run_id: str,
    path: Path,
    meanwhile: Callable[[], None] | None = None,
) -> str:
    """Put a local bundle (zip or folder) under ``uploads/{tenant}/{run}/``, its secret
    columns emptied; return the source key the fetch step reads (a zip keeps its name).
    ``meanwhile`` runs while large files are being stripped in other processes."""
    from rostersync.application.inbox import acceptable_name
    from rostersync.application.no_secrets import store_all_without_secrets

    prefix = keys.uploads_prefix(tenant, run_id)
    if path.is_file():
        # Under the file's own name (as the inbox would take it): messages about the zip
        # name the admin's file.
        key = prefix + (acceptable_name(path.name) or "bundle.zip")
        store_all_without_secrets(deps.store, [(path, key)], meanwhile)
        return key
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a zip file nor a folder")
    files = [
        (child, prefix + keys.check_file_name(child.name))
        for child in sorted(path.iterdir())
        if child.is_file() and not child.name.startswith(".")
    ]
    store_all_without_secrets(deps.store, files, meanwhile)
    return prefix


class WaitingLauncher:
    """Launches through a ``RunStarter`` and waits for the end (the command line, the
    demo, tests): the same execution as on AWS, only watched to its end."""

    def __init__(self, starter: RunStarter) -> None:
        self.starter = starter
        self.execution: ExecutionOutcome | None = None

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self.execution = self.starter.start_run(run_input, name=name)


def start_sync(
    starter: RunStarter,
    deps: Deps,
    tenant: str,
    source: SourceSpec | str,
    run_id: str,
    *,
    mode: SyncMode = "full",
    review: bool = False,
    trigger: Trigger = "cli",
    requested_by: str | None = None,
) -> SyncOutcome:
    """Start a run the way every trigger does (lock, record, launch), wait for it, and
    return its outcome and report."""
    from rostersync.application.runs import begin_run

    locks = locks_repository(deps.settings)
    launcher = WaitingLauncher(starter)
    begin_run(
        deps,
        locks,
        launcher,
        tenant,
        source,
        trigger=trigger,
        mode=mode,
        review=review,
        requested_by=requested_by,
        run_id=run_id,
    )
    try:
        locks.release(tenant, run_id)
    except StorageUnavailable:
        # The run has ended: the next start frees its lock (and the expiry would).
        logger().warning("run lock not released", extra={"tenant": tenant, "run": run_id})
    execution = launcher.execution
    if execution is None:  # begin_run returns only after launching
        raise RuntimeError(f"run {run_id} was not launched")
    run = deps.runs.get(tenant, run_id)
    report = deps.store.get_json(keys.report_key(tenant, run_id))
    status = run.status.value
    error = None
    if execution.status != "SUCCEEDED" and run.status is RunStatus.COMMITTING:
        # Stopped part-way through its commit: the next start resumes it.
        status = "interrupted"
        error = failure_reason(run.last_error_reason or execution.cause or execution.error)
    elif execution.status != "SUCCEEDED" or run.status is RunStatus.FAILED:
        status = "failed"
        error = failure_reason(run.reason or execution.cause or execution.error)
    return SyncOutcome(run_id, status, report, error, list(execution.states))


def export_directory(deps: Deps, tenant: str) -> dict[str, list[dict[str, Any]]]:
    """The committed roster: ``{entity: [{source_id, target_id, status, ...fields}]}``."""
    keys.check_tenant(tenant)
    out: dict[str, list[dict[str, Any]]] = {}
    for entity in ENTITY_ORDER:
        items = list(deps.directory.iter_entity(tenant, entity.value))
        items.sort(key=lambda i: (i.source_system or "", i.source_id or ""))
        out[entity.value] = [item.flat() for item in items]
    return out


def commit_prepared(
    starter: RunStarter, deps: Deps, tenant: str, run_id: str, who: str
) -> dict[str, Any]:
    """Commit a prepared run through the state machine and wait for it; return the
    report (the command line and the demo; the API answers 202 instead)."""
    from rostersync.application.review import request_commit

    launcher = WaitingLauncher(starter)
    request_commit(deps, locks_repository(deps.settings), launcher, tenant, run_id, who)
    raise_if_failed(launcher, deps, tenant, run_id)
    return dict(deps.store.get_json(keys.report_key(tenant, run_id)) or {})


def raise_if_failed(launcher: WaitingLauncher, deps: Deps, tenant: str, run_id: str) -> None:
    """Raise RunStateError if the execution a waiting launcher ran failed."""
    execution = launcher.execution
    if execution is not None and execution.status != "SUCCEEDED":
        run = deps.runs.get(tenant, run_id)
        reason = failure_reason(run.last_error_reason or run.reason or execution.cause)
        raise RunStateError(f"run {run_id}: {reason}")


def prepare_undo(starter: RunStarter, deps: Deps, tenant: str, run_id: str, who: str) -> DerivedRun:
    """Prepare a run undoing ``run_id`` through the state machine and wait for it."""
    from rostersync.application.review import request_undo

    return _derived(
        starter,
        deps,
        tenant,
        who,
        lambda launcher: request_undo(deps, launcher, tenant, run_id, who),
    )


def prepare_approval(
    starter: RunStarter, deps: Deps, tenant: str, run_id: str, who: str
) -> DerivedRun:
    """Prepare a run carrying a held run's held actions and wait for it."""
    from rostersync.application.review import request_approve

    return _derived(
        starter,
        deps,
        tenant,
        who,
        lambda launcher: request_approve(deps, launcher, tenant, run_id, who),
    )


def _derived(
    starter: RunStarter,
    deps: Deps,
    tenant: str,
    who: str,
    request: Callable[[WaitingLauncher], str],
) -> DerivedRun:
    from rostersync.application.review import DerivedRun

    launcher = WaitingLauncher(starter)
    new_run = request(launcher)
    raise_if_failed(launcher, deps, tenant, new_run)
    return DerivedRun(new_run, dict(deps.store.get_json(keys.report_key(tenant, new_run)) or {}))
