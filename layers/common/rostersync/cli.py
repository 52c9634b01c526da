"""The ``rostersync`` command: the embedded default, on this machine, under moto."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rostersync.config import stack_settings
from rostersync.errors import RostersyncError
from rostersync.models import ENTITY_ORDER, SyncMode
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.stage import ACTIONS
from rostersync.service import (
    SyncOutcome,
    default_state_dir,
    ensure_tenant,
    export_directory,
    start_sync,
    upload_bundle,
)
from rostersync.storage import keys

STEP_NAMES = ("Fetch", "Normalize", "Match", "Stage", "Commit")


@contextmanager
def local_stack(state_dir: Path | None) -> Iterator[tuple[Any, Deps]]:
    """The local runtime with the state kept in ``state_dir``, and its dependencies."""
    from rostersync.local.runtime import LocalCloud  # imports moto: only when needed

    with LocalCloud(state_dir) as cloud:
        # Step logs are for operators; the command prints its own progress and report.
        logger().setLevel(os.environ.get("ROSTERSYNC_LOG_LEVEL", "WARNING"))
        yield cloud, build_deps(stack_settings())


def _state_dir(args: argparse.Namespace) -> Path:
    path = Path(args.state) if args.state else default_state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _save_report_files(deps: Deps, outcome: SyncOutcome, tenant: str, state_dir: Path) -> Path:
    """Copy the run's report and CSV files next to the local state; return report.json."""
    folder = state_dir / "reports" / tenant / outcome.run_id
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "issues.csv", "actions.csv"):
        body = deps.store.get_bytes(keys.report_key(tenant, outcome.run_id, name))
        if body is not None:
            (folder / name).write_bytes(body)
    return folder / "report.json"


def _issues(deps: Deps, tenant: str, run_id: str) -> list[dict[str, Any]]:
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
    path: Path,
    state_dir: Path,
    *,
    mode: SyncMode = "full",
    review: bool = False,
    out: TextIO | None = None,
) -> tuple[SyncOutcome, Path]:
    """Upload a local bundle and sync it; print progress to ``out`` if given."""
    if ensure_tenant(deps, tenant, create=True) and out is not None:
        out.write(f"Tenant {tenant} created (first use).\n")
    run_id = keys.new_run_id()
    source_key = upload_bundle(deps, tenant, run_id, path)
    if out is not None:
        out.write(f"Syncing {path} → tenant {tenant}, run {run_id} ({mode})\n")
    outcome = start_sync(
        cloud,
        deps,
        tenant,
        source_key,
        run_id,
        mode=mode,
        review=review,
        trigger="cli",
    )
    if out is not None:
        print_steps(outcome, out)
    return outcome, _save_report_files(deps, outcome, tenant, state_dir)


def cmd_sync(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    path = Path(args.path)
    if not path.exists():
        sys.stderr.write(f"rostersync: {path} does not exist\n")
        return 1
    human = None if args.json else sys.stdout
    with local_stack(state_dir) as (cloud, deps):
        outcome, report_path = run_sync(
            cloud,
            deps,
            args.tenant,
            path,
            state_dir,
            mode="quick" if args.quick else "full",
            review=args.review,
            out=human,
        )
        issues = _issues(deps, args.tenant, outcome.run_id)
    if args.json:
        json.dump(
            {
                "run_id": outcome.run_id,
                "status": outcome.status,
                "counts": outcome.counts,
                "issues": issues,
                "report": str(report_path),
                "error": outcome.error,
            },
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        sys.stdout.write("\n")
    else:
        print_outcome(outcome, report_path, issues, sys.stdout)
    return outcome.exit_code


def cmd_directory_export(args: argparse.Namespace) -> int:
    with local_stack(_state_dir(args)) as (_cloud, deps):
        directory = export_directory(deps, args.tenant)
    if args.json:
        json.dump(directory, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        for entity, items in directory.items():
            active = sum(1 for i in items if i.get("status") == "active")
            sys.stdout.write(f"{entity:<20} {active:>8} active {len(items) - active:>8} archived\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rostersync.demo import run_demo

    return run_demo(
        state=Path(args.state) if args.state else None, students=args.students, out=sys.stdout
    )


def _emit(args: argparse.Namespace, value: Any, human: str) -> None:
    if getattr(args, "json", False):
        json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human if human.endswith("\n") else human + "\n")


def _who(args: argparse.Namespace) -> str:
    return str(getattr(args, "who", None) or os.environ.get("USER") or "cli")


def cmd_settings(args: argparse.Namespace) -> int:
    from rostersync.settings import SettingsError, apply_assignments
    from rostersync.tenants import load_tenant_settings, save_tenant_settings

    with local_stack(_state_dir(args)) as (_cloud, deps):
        ensure_tenant(deps, args.tenant, create=True)
        current = load_tenant_settings(deps, args.tenant)
        if args.settings_command == "set":
            try:
                updated = apply_assignments(current, args.assignments)
            except SettingsError as exc:
                for error in exc.errors:
                    sys.stderr.write(
                        f"rostersync: invalid setting {error['field']}: {error['message']}\n"
                    )
                return 1
            save_tenant_settings(deps, args.tenant, updated, who=_who(args))
            current = updated
        if args.settings_command == "history":
            history = deps.tenants.settings_history(args.tenant)
            lines = [
                f"{h['changed_at']} {h['changed_by']}: {', '.join(h['changed'])}" for h in history
            ]
            _emit(args, history, "\n".join(lines) or "no changes")
            return 0
    dump = current.model_dump(mode="json")
    _emit(args, dump, json.dumps(dump, indent=2))
    return 0


def _describe_action(action: dict[str, Any]) -> str:
    flag = "[x]" if action["included"] else ("[h]" if action.get("held") else "[ ]")
    diff = ", ".join(
        f"{name}: {before!r} → {after!r}"
        for name, (before, after) in (action.get("changes") or {}).items()
    )
    reason = f"  ({action['reason']})" if action.get("reason") else ""
    return f"{flag} {action['id']}  {action['action']:<10} {action['source_id']}  {diff}{reason}"


def cmd_review(args: argparse.Namespace) -> int:
    from rostersync.review import ActionFilter, list_actions

    with local_stack(_state_dir(args)) as (_cloud, deps):
        page = list_actions(
            deps,
            args.tenant,
            args.run,
            ActionFilter(
                entity=args.entity, action=args.action, offset=args.offset, limit=args.limit
            ),
        )
    lines = [_describe_action(a) for a in page.actions]
    lines.append(f"{page.offset + 1}-{page.offset + len(page.actions)} of {page.total} actions")
    _emit(args, page.model_dump(mode="json"), "\n".join(lines))
    return 0


def _selection(args: argparse.Namespace) -> Any:
    from rostersync.review import Selection

    all_of = []
    for item in args.all_of or []:
        entity, _, action = item.partition(":")
        all_of.append((entity, action))
    return Selection(action_ids=args.action_ids, all_of=all_of)


def cmd_include(args: argparse.Namespace) -> int:
    from rostersync.review import set_included

    included = args.command == "include"
    with local_stack(_state_dir(args)) as (_cloud, deps):
        changed = set_included(deps, args.tenant, args.run, _selection(args), included, _who(args))
    verb = "included" if included else "excluded"
    _emit(args, {"changed": changed}, f"{changed} actions {verb}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from rostersync.review import commit_run

    with local_stack(_state_dir(args)) as (_cloud, deps):
        report = commit_run(deps, args.tenant, args.run, _who(args))
    if args.json:
        _emit(args, report, "")
    else:
        sys.stdout.write(f"Run {args.run}: {report.get('status')}\n")
        print_counts(report.get("counts", {}), sys.stdout)
    return 0


def cmd_discard(args: argparse.Namespace) -> int:
    from rostersync.review import discard_run

    with local_stack(_state_dir(args)) as (_cloud, deps):
        discard_run(deps, args.tenant, args.run, _who(args))
    _emit(args, {"run_id": args.run, "status": "discarded"}, f"Run {args.run} discarded")
    return 0


def cmd_derived(args: argparse.Namespace) -> int:
    from rostersync.review import approve_held, undo_run

    make = undo_run if args.command == "undo" else approve_held
    with local_stack(_state_dir(args)) as (_cloud, deps):
        derived = make(deps, args.tenant, args.run, _who(args))
    if args.json:
        _emit(args, {"run_id": derived.run_id, "report": derived.report}, "")
    else:
        sys.stdout.write(f"Prepared run {derived.run_id} ({args.command} of {args.run}):\n")
        print_counts(derived.report.get("counts", {}), sys.stdout)
        sys.stdout.write(f"Review it with: rostersync review {derived.run_id}; then commit it.\n")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from rostersync.review import list_runs

    with local_stack(_state_dir(args)) as (_cloud, deps):
        runs = list_runs(deps, args.tenant, args.limit)
    lines = []
    for run in runs:
        totals = {
            a: sum(int(c.get(a, 0)) for c in (run.get("counts") or {}).values()) for a in ACTIONS
        }
        took = sum((run.get("timings_ms") or {}).values()) / 1000
        lines.append(
            f"{run['run_id']}  {run.get('status', '?'):<10} {run.get('trigger', '?'):<8} "
            f"{run.get('mode', '?'):<5} by {run.get('requested_by') or '-':<10} "
            + " ".join(f"{a}={n}" for a, n in totals.items())
            + f"  {took:.1f}s"
        )
    _emit(args, runs, "\n".join(lines) or "no runs")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rostersync.review import show_run

    with local_stack(_state_dir(args)) as (_cloud, deps):
        shown = show_run(deps, args.tenant, args.run)
    report = shown["report"] or {}
    human = [f"Run {args.run}: {shown['run'].get('status')} ({shown['run'].get('trigger')})"]
    if shown["run"].get("reason"):
        human.append(f"  reason: {shown['run']['reason']}")
    for trip in report.get("hold", []):
        human.append(f"  hold: {trip['message']}")
    for entity, row in (report.get("counts") or {}).items():
        if any(row.values()):
            human.append(f"  {entity}: " + ", ".join(f"{a} {n}" for a, n in row.items() if n))
    human.append(f"  row issues: {report.get('issues_total', 0)}")
    _emit(args, shown, "\n".join(human))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rostersync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", default="default", help="tenant id (default: default)")
        p.add_argument("--state", help="local state directory (default: see README)")
        p.add_argument("--json", action="store_true", help="print one JSON object")

    sync = sub.add_parser("sync", help="sync a OneRoster bundle (zip or folder) to commit")
    sync.add_argument("path")
    common(sync)
    sync.add_argument("--quick", action="store_true", help="apply only what the bundle carries")
    sync.add_argument("--review", action="store_true", help="stop at prepared; do not commit")
    sync.set_defaults(func=cmd_sync)

    directory = sub.add_parser("directory", help="the committed roster")
    dsub = directory.add_subparsers(dest="directory_command", required=True)
    export = dsub.add_parser("export", help="print the committed roster")
    common(export)
    export.set_defaults(func=cmd_directory_export)

    settings = sub.add_parser("settings", help="show or change the tenant's settings")
    ssub = settings.add_subparsers(dest="settings_command", required=True)
    show_settings = ssub.add_parser("show", help="print the settings")
    common(show_settings)
    set_settings = ssub.add_parser("set", help="set field=value (dotted names, JSON values)")
    set_settings.add_argument("assignments", nargs="+", metavar="FIELD=VALUE")
    set_settings.add_argument("--who", help="who makes the change (default: $USER)")
    common(set_settings)
    history = ssub.add_parser("history", help="every settings change, who and when")
    common(history)
    for p in (show_settings, set_settings, history):
        p.set_defaults(func=cmd_settings)

    review = sub.add_parser("review", help="list a prepared run's actions with their diffs")
    review.add_argument("run")
    review.add_argument("--entity", choices=[e.value for e in ENTITY_ORDER])
    review.add_argument("--action", choices=list(ACTIONS))
    review.add_argument("--offset", type=int, default=0)
    review.add_argument("--limit", type=int, default=50)
    common(review)
    review.set_defaults(func=cmd_review)

    for name, text in (("exclude", "untick actions"), ("include", "tick actions")):
        p = sub.add_parser(name, help=f"{text} of a prepared run")
        p.add_argument("run")
        p.add_argument("action_ids", nargs="*", metavar="ACTION_ID")
        p.add_argument("--all-of", action="append", metavar="ENTITY:ACTION")
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=cmd_include)

    for name, text, func in (
        ("commit", "apply a prepared run's included actions", cmd_commit),
        ("discard", "drop a prepared run", cmd_discard),
        ("undo", "prepare a run reversing a committed one", cmd_derived),
        ("approve", "prepare a run applying a held run's held actions", cmd_derived),
        ("show", "a run's report", cmd_show),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run")
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=func)

    runs = sub.add_parser("runs", help="the tenant's sync history")
    runs.add_argument("--limit", type=int, default=50)
    common(runs)
    runs.set_defaults(func=cmd_runs)

    demo = sub.add_parser("demo", help="generate a district and its next day; sync both")
    demo.add_argument("--state", help="state directory (default: a fresh temporary one)")
    demo.add_argument("--students", type=int, default=500)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RostersyncError as exc:
        sys.stderr.write(f"rostersync: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
