"""A local session of the command line and the demo: the local runtime opened on a state
directory, a bundle synced with its progress printed, the report kept beside the state.
Development and command-line code: not part of the Lambda layer."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rostersync.application.connect import sync_source
from rostersync.application.sync import (
    SyncOutcome,
    start_sync,
    upload_bundle,
)
from rostersync.changes import ACTION_KINDS as ACTIONS
from rostersync.config import stack_settings
from rostersync.models import Severity, SyncMode, severity_counts, severity_of, worst_first
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.report import write_actions_csv
from rostersync.records import RunUpdate
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

    def start(self) -> None:
        """Start the runtime now (say, while an upload is being prepared)."""
        self._session.cloud()


@contextmanager
def local_stack(state_dir: Path | None) -> Iterator[tuple[Any, Deps]]:
    """The local runtime with the state kept in ``state_dir``, and its dependencies."""
    from rostersync.local.runtime import LocalCloud, StoreSession

    log = logger()
    level = log.log_level
    # Step logs are for operators; the command prints its own progress, report and
    # failures (a step's failure is the run's, said in words, not as a log line).
    quiet = os.environ.get("ROSTERSYNC_LOG_LEVEL", "ERROR")
    if state_dir is None:
        with LocalCloud(state_dir) as cloud:
            log.setLevel(quiet)
            try:
                yield cloud, build_deps(stack_settings())
            finally:
                log.setLevel(level)
        return
    with StoreSession(state_dir) as session:
        log.setLevel(quiet)
        try:
            yield _CloudOnDemand(session), build_deps(stack_settings())
        finally:
            log.setLevel(level)  # the process logger outlives the session


def _save_report_files(deps: Deps, outcome: SyncOutcome, tenant: str, state_dir: Path) -> Path:
    """Copy the run's report and CSV files next to the local state; return report.json."""
    folder = state_dir / "reports" / tenant / outcome.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "issues.csv", "actions.csv"):
        key = keys.report_key(tenant, outcome.run_id, name)
        if deps.store.exists(key):
            deps.store.download_file(key, folder / name)  # streamed: it may be gigabytes
        elif name == "actions.csv" and deps.store.exists(keys.report_key(tenant, outcome.run_id)):
            # A committed run's report has no actions.csv of its own (the commit does not
            # spend a minute of an invocation on it at a million students): written here.
            with (folder / name).open("wb") as out:
                write_actions_csv(deps, tenant, outcome.run_id, out)
    return folder / "report.json"


def issues_of(deps: Deps, tenant: str, run_id: str) -> list[dict[str, Any]]:
    """The run's issues, worst first, each with its severity."""
    return [
        {
            **{k: issue.get(k) for k in ("file", "line", "column", "message", "action")},
            "severity": severity_of(issue).value,
        }
        for issue in worst_first(deps.store.iter_jsonl(keys.issues_key(tenant, run_id)))
    ]


def command_hint(words: str, tenant: str, state: Path | None = None) -> str:
    """A next step to type, with the tenant in use (and the state folder, if given)."""
    hint = f"rostersync {words} --tenant {tenant}"
    if state is not None:
        hint += f" --state {shlex.quote(str(state))}"
    return hint


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 row``, ``2 rows``."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


#: Issues below blocking shown in a sync's output (every blocking one is shown).
SHOWN_ISSUES = 5
#: Blocking issues shown at most (a bundle of unusable files lists each).
SHOWN_BLOCKING = 20


def print_counts(
    counts: dict[str, dict[str, int]],
    out: TextIO,
    adds: dict[str, dict[str, int]] | None = None,
) -> None:
    """The actions per entity; with ``adds`` (a report's), the adds split into new app
    records and links to existing ones."""
    if not adds:
        out.write(f"  {'entity':<20}" + "".join(f"{a:>12}" for a in ACTIONS) + "\n")
        for entity, row in counts.items():
            out.write(f"  {entity:<20}" + "".join(f"{row.get(a, 0):>12}" for a in ACTIONS) + "\n")
        return
    columns = ("add new", "add link", *(a for a in ACTIONS if a != "add"))
    out.write(f"  {'entity':<20}" + "".join(f"{c:>12}" for c in columns) + "\n")
    for entity, row in counts.items():
        split = adds.get(entity) or {}
        linked = int(split.get("linked", 0))
        cells = [int(row.get("add", 0)) - linked, linked] + [
            int(row.get(a, 0)) for a in ACTIONS if a != "add"
        ]
        out.write(f"  {entity:<20}" + "".join(f"{n:>12}" for n in cells) + "\n")
    out.write("  (add new: new app records; add link: source records linked to existing ones)\n")


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


def print_issues(issues: list[dict[str, Any]], csv_path: Path, out: TextIO) -> None:
    """Every blocking issue (to a limit), then the first few others, worst first."""
    if not issues:
        return
    counts = severity_counts(issues)
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    out.write(f"{plural(len(issues), 'issue')} ({summary}); all in {csv_path}\n")
    blocking = [i for i in issues if i["severity"] == Severity.BLOCKING.value]
    shown = (
        blocking[:SHOWN_BLOCKING]
        + [i for i in issues if i["severity"] != Severity.BLOCKING.value][:SHOWN_ISSUES]
    )
    for issue in shown:
        where = issue["file"] + (f":{issue['line']}" if issue.get("line") else "")
        column = f" [{issue['column']}]" if issue.get("column") else ""
        out.write(
            f"  {issue['severity'].upper():<8} {where}{column} {issue['message']}"
            f" → {issue['action']}\n"
        )
    left = len(issues) - len(shown)
    if left > 0:
        out.write(f"  … and {plural(left, 'more issue')} in {csv_path.name}\n")


def print_outcome(
    outcome: SyncOutcome,
    report_path: Path,
    issues: list[dict[str, Any]],
    out: TextIO,
    *,
    tenant: str = "default",
    state: Path | None = None,
) -> None:
    """The run's status, counts, issues worst first, and what to do next."""
    report = outcome.report or {}
    run = outcome.run_id
    if outcome.status == "failed":
        out.write(f"Run {run} FAILED: {outcome.error}\n")
        print_issues(issues, report_path.with_name("issues.csv"), out)
        return
    status = outcome.status
    if outcome.blocking:
        unusable = plural(outcome.blocking, "file or entity", "files or entities")
        status += f", but {unusable} unusable"
    out.write(f"Run {run}: {status}\n")
    if report.get("source_note"):
        out.write(f"  note: {report['source_note']}\n")
    print_counts(outcome.counts, out, report.get("adds"))
    for entity, refused in (report.get("refused") or {}).items():
        archives = plural(int(refused["archive"]), "archive")
        out.write(f"  ! {entity}: {archives} refused: {refused['reason']}\n")
    print_issues(issues, report_path.with_name("issues.csv"), out)
    out.write(f"Report: {report_path}\n")
    if outcome.status == "held":
        out.write("Held for an admin:\n")
        for trip in report.get("hold") or []:
            out.write(f"  - {trip['message']}\n")
        out.write(
            f"  Review the held actions: {command_hint(f'review {run}', tenant, state)}\n"
            f"  Apply them: {command_hint(f'approve {run}', tenant, state)}"
            " (prepares a run to commit)\n"
        )
    elif outcome.status == "prepared":
        for trip in report.get("hold") or []:
            out.write(f"  held: {trip['message']}\n")
        out.write(
            "Prepared, waiting for an admin:\n"
            f"  Review it: {command_hint(f'review {run}', tenant, state)}\n"
            f"  Apply it: {command_hint(f'commit {run}', tenant, state)}\n"
            f"  Or drop it: {command_hint(f'discard {run}', tenant, state)}\n"
        )


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
    create_tenant: bool = False,
) -> tuple[SyncOutcome, Path]:
    """Sync a local bundle (uploaded first), or without one the tenant's connected source
    (its inbox's newest bundle for OneRoster CSV); ``guardians`` adds a guardian file.
    An unknown tenant is created only in an empty state or with ``create_tenant``.
    Print progress to ``out`` if given."""
    from rostersync.application.tenants import open_tenant

    if open_tenant(deps, tenant, create=create_tenant) and out is not None:
        out.write(f"Tenant {tenant} created (first use).\n")
    run_id = keys.new_run_id()
    # moto and the state machine start while large files have their passwords emptied
    # in other processes.
    meanwhile = cloud.start if isinstance(cloud, _CloudOnDemand) else None
    source_key = None if path is None else upload_bundle(deps, tenant, run_id, path, meanwhile)
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
    if path is not None:
        # The run history and messages name the admin's own file, not its upload key.
        deps.runs.update(tenant, run_id, RunUpdate(source_name=str(path)))
        stored = (source_key or "").rstrip("/").rsplit("/", 1)[-1]
        if outcome.error and path.is_file() and stored and stored != path.name:
            outcome.error = outcome.error.replace(stored, path.name)
    if out is not None:
        print_steps(outcome, out)
    return outcome, _save_report_files(deps, outcome, tenant, state_dir)
