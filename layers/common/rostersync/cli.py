"""The ``rostersync`` command: the embedded default, on this machine, under moto."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rostersync.config import stack_settings
from rostersync.errors import RostersyncError
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


def print_outcome(
    outcome: SyncOutcome, report_path: Path, issues: list[dict[str, Any]], out: TextIO
) -> None:
    report = outcome.report or {}
    timings = report.get("timings_ms", {})
    for step in STEP_NAMES:
        if step in outcome.states:
            ms = timings.get(step.lower())
            took = f"{ms / 1000:6.2f} s" if isinstance(ms, int) else ""
            out.write(f"  ✓ {step:<10} {took}\n")
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
    mode: str = "full",
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
        review=review,  # type: ignore[arg-type]
        trigger="cli",
    )
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
