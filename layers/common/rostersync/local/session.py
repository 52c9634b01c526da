"""A local session of the command line and the demo: the local runtime opened on a state
directory, a bundle synced with its progress printed, the report kept beside the state.
Development and command-line code: not part of the Lambda layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rostersync.application.connect import sync_source
from rostersync.application.sync import (
    SyncOutcome,
    ensure_tenant,
    start_sync,
    upload_bundle,
)
from rostersync.changes import ACTION_KINDS as ACTIONS
from rostersync.config import stack_settings
from rostersync.models import SyncMode
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.sources.base import GuardianFileRef
from rostersync.storage import keys


def default_state_dir() -> Path:
    """Where local state lives unless ``--state`` says otherwise: ``$ROSTERSYNC_STATE``,
    else ``$XDG_DATA_HOME/rostersync``, else ``~/.local/share/rostersync``."""
    explicit = os.environ.get("ROSTERSYNC_STATE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rostersync"


STEP_NAMES = ("Fetch", "Normalize", "Match", "Stage", "Commit")


class _CloudOnDemand:
    """The local runtime, started the first time a command uses it: commands that only
    read or write the store never start moto or the state machine."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session.cloud(), name)


@contextmanager
def local_stack(state_dir: Path | None) -> Iterator[tuple[Any, Deps]]:
    """The local runtime with the state kept in ``state_dir``, and its dependencies."""
    from rostersync.local.runtime import LocalCloud, StoreSession

    log = logger()
    level = log.log_level
    if state_dir is None:
        with LocalCloud(state_dir) as cloud:
            log.setLevel(os.environ.get("ROSTERSYNC_LOG_LEVEL", "WARNING"))
            try:
                yield cloud, build_deps(stack_settings())
            finally:
                log.setLevel(level)
        return
    with StoreSession(state_dir) as session:
        # Step logs are for operators; the command prints its own progress and report.
        log.setLevel(os.environ.get("ROSTERSYNC_LOG_LEVEL", "WARNING"))
        try:
            yield _CloudOnDemand(session), build_deps(stack_settings())
        finally:
            log.setLevel(level)  # the process logger outlives the session


def _save_report_files(deps: Deps, outcome: SyncOutcome, tenant: str, state_dir: Path) -> Path:
    """Copy the run's report and CSV files next to the local state; return report.json."""
    folder = state_dir / "reports" / tenant / outcome.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "issues.csv", "actions.csv"):
        body = deps.store.get_bytes(keys.report_key(tenant, outcome.run_id, name))
        if body is not None:
            (folder / name).write_bytes(body)
    return folder / "report.json"


def issues_of(deps: Deps, tenant: str, run_id: str) -> list[dict[str, Any]]:
    return [
        {k: issue.get(k) for k in ("file", "line", "column", "message", "action")}
        for issue in deps.store.iter_jsonl(keys.issues_key(tenant, run_id))
    ]


def print_counts(counts: dict[str, dict[str, int]], out: TextIO) -> None:
    out.write(f"  {'entity':<20}" + "".join(f"{a:>12}" for a in ACTIONS) + "\n")
    for entity, row in counts.items():
        out.write(f"  {entity:<20}" + "".join(f"{row.get(a, 0):>12}" for a in ACTIONS) + "\n")


def print_steps(outcome: SyncOutcome, out: TextIO) -> None:
    """One line per step the execution went through, with its time."""
    timings = (outcome.report or {}).get("timings_ms", {})
    for step in STEP_NAMES:
        if step in outcome.states:
            ms = timings.get(step.lower())
            took = f"{ms / 1000:6.2f} s" if isinstance(ms, int) else ""
            out.write(f"  ✓ {step:<10} {took}\n")
    if "RecordFailure" in outcome.states:
        out.write("  ✗ failed\n")


def print_outcome(
    outcome: SyncOutcome, report_path: Path, issues: list[dict[str, Any]], out: TextIO
) -> None:
    report = outcome.report or {}
    if outcome.status == "failed":
        out.write(f"Run {outcome.run_id} FAILED: {outcome.error}\n")
        return
    out.write(f"Run {outcome.run_id}: {outcome.status}\n")
    if report.get("source_note"):
        out.write(f"  note: {report['source_note']}\n")
    print_counts(outcome.counts, out)
    for entity, refused in (report.get("refused") or {}).items():
        out.write(f"  ! {entity}: {refused['archive']} archives refused: {refused['reason']}\n")
    if issues:
        csv_path = report_path.with_name("issues.csv")
        out.write(f"Row issues: {len(issues)} (first {min(5, len(issues))}; all in {csv_path})\n")
        for issue in issues[:5]:
            where = f"{issue['file']}:{issue.get('line') or '-'}"
            column = f" [{issue['column']}]" if issue.get("column") else ""
            out.write(f"  {where}{column} {issue['message']} → {issue['action']}\n")
    out.write(f"Report: {report_path}\n")


def run_sync(
    cloud: Any,
    deps: Deps,
    tenant: str,
    path: Path | None,
    state_dir: Path,
    *,
    mode: SyncMode = "full",
    review: bool = False,
    out: TextIO | None = None,
    guardians: Path | None = None,
    guardians_complete: bool = False,
) -> tuple[SyncOutcome, Path]:
    """Sync a local bundle (uploaded first), or without one the tenant's connected source
    (its inbox's newest bundle for OneRoster CSV); ``guardians`` adds a guardian file.
    Print progress to ``out`` if given."""
    if ensure_tenant(deps, tenant, create=True) and out is not None:
        out.write(f"Tenant {tenant} created (first use).\n")
    run_id = keys.new_run_id()
    source_key = None if path is None else upload_bundle(deps, tenant, run_id, path)
    ref = None
    if guardians is not None:
        key = keys.guardian_upload_key(tenant, run_id)
        deps.store.upload_file(guardians, key)
        ref = GuardianFileRef(key=key, name=guardians.name, complete=guardians_complete)
    spec = sync_source(deps, tenant, source_key, guardians=ref)
    if out is not None:
        shown = path if path is not None else spec.describe()
        with_guardians = f" with guardians from {guardians}" if guardians is not None else ""
        out.write(f"Syncing {shown}{with_guardians} → tenant {tenant}, run {run_id} ({mode})\n")
    outcome = start_sync(
        cloud,
        deps,
        tenant,
        spec,
        run_id,
        mode=mode,
        review=review,
        trigger="cli",
        requested_by=os.environ.get("USER") or "cli",
    )
    if out is not None:
        print_steps(outcome, out)
    return outcome, _save_report_files(deps, outcome, tenant, state_dir)
