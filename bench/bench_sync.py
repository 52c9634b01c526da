"""rostersync sync as a user runs it, on generated districts, beside a DuckDB diff.

For each size: generate day 1 and day 2 (1% changes; cached under
/tmp/rostersync-bench/<students>/), then on a fresh state directory (the embedded store,
the local default) run ``rostersync sync --tenant bench --state DIR --json BUNDLE`` as a
child process for day 1, day 2 and day 2 again. Per run: the end-to-end wall time, the
peak RSS of that child, each step's time from the run's ``timings_ms`` (its report), rows/s,
and what it wrote, counted from the state directory (rows added, changed or removed per
table, events appended to the log; for the repeated day 2 every row written, identical
rewrites included, counted by SQLite triggers). Beside them the reference: DuckDB reading
the users and enrollments files of both days, hashing each row, joining on sourcedId and
classifying adds, updates and deletes; the ratio is core / reference, with
core = normalize + match + stage.

    .venv/bin/python bench/bench_sync.py [--sizes 10000 100000 1000000] [--quick] [--processes]

``--processes`` runs each Lambda invocation in a process of its own (``LOCAL_INVOKE=process``),
as Lambda does, so that each step's and each commit chunk's peak memory is its own (the
targets: every chunk <= 1 GB); each invocation then pays a process start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    CACHE,
    QUICK_STUDENTS,
    ChildRun,
    StateSnapshot,
    Table,
    WriteCounters,
    Written,
    app_items,
    bundle_rows,
    difference,
    ensure_district,
    event_types_after,
    is_app_facing,
    machine,
    megabytes,
    per_second,
    publish_state,
    run_cli,
    run_json,
    seconds,
    target,
)

TENANT = "bench"
CORE_STEPS = ("normalize", "match", "stage")
REFERENCE_FILES = ("users.csv", "enrollments.csv")

COLUMNS = (
    ("students", 9),
    ("run", -11),
    ("measure", -18),
    ("seconds", 8),
    ("rows/s", 10),
    ("peak MB", 8),
    ("written / compared", -36),
    ("target", -24),
)


# -- the reference -------------------------------------------------------------------

_DIFF = """
CREATE OR REPLACE TEMP TABLE changes AS
WITH before AS (
    SELECT sourcedId AS id, hash(t) AS h FROM read_csv(?, all_varchar = true, header = true) t
), after AS (
    SELECT sourcedId AS id, hash(t) AS h FROM read_csv(?, all_varchar = true, header = true) t
)
SELECT coalesce(after.id, before.id) AS id,
       CASE WHEN before.id IS NULL THEN 'add'
            WHEN after.id IS NULL THEN 'delete'
            ELSE 'update' END AS action
FROM before FULL OUTER JOIN after ON before.id = after.id
WHERE before.h IS DISTINCT FROM after.h
"""


def reference_diff(day1: Path, day2: Path) -> tuple[float, int, dict[str, dict[str, int]]]:
    """DuckDB's diff of users and enrollments, day 1 → day 2: seconds, rows read and the
    adds, updates and deletes it found per file."""
    import duckdb

    found: dict[str, dict[str, int]] = {}
    started = time.perf_counter()
    connection = duckdb.connect()
    for name in REFERENCE_FILES:
        connection.execute(_DIFF, [str(day1 / name), str(day2 / name)])
        found[name] = {
            action: int(n)
            for action, n in connection.execute(
                "SELECT action, count(*) FROM changes GROUP BY action"
            ).fetchall()
        }
    took = time.perf_counter() - started
    connection.close()
    rows = bundle_rows_of(day1, REFERENCE_FILES) + bundle_rows_of(day2, REFERENCE_FILES)
    return took, rows, found


def bundle_rows_of(folder: Path, names: tuple[str, ...]) -> int:
    total = 0
    for name in names:
        with (folder / name).open("rb") as lines:
            total += max(0, sum(1 for _ in lines) - 1)
    return total


# -- one run ---------------------------------------------------------------------------


def step_timings(run: ChildRun, state: Path) -> dict[str, float]:
    """Seconds per step: the run's ``timings_ms`` in its report (``sync --json`` names
    the report file), else in its run record (``rostersync runs --json``)."""
    shown = run_json(run) or {}
    timings: dict[str, Any] = {}
    report_path = shown.get("report")
    if report_path and Path(report_path).is_file():
        timings = json.loads(Path(report_path).read_text()).get("timings_ms") or {}
    if not timings:
        listed = run_json(
            run_cli(["runs", "--tenant", TENANT, "--state", str(state), "--json", "--limit", "5"])
        )
        for record in listed if isinstance(listed, list) else []:
            if record.get("run_id") == shown.get("run_id"):
                timings = record.get("timings_ms") or {}
    return {
        str(step): float(ms) / 1000 for step, ms in timings.items() if isinstance(ms, int | float)
    }


def run_report(run: ChildRun) -> dict[str, Any]:
    shown = run_json(run) or {}
    report_path = shown.get("report")
    if not report_path or not Path(report_path).is_file():
        return {}
    report = json.loads(Path(report_path).read_text())
    return report if isinstance(report, dict) else {}


def commit_chunks(run: ChildRun) -> list[dict[str, Any]]:
    """The commit's chunks (rows, ms, peak MB each) from the run's report."""
    chunks = run_report(run).get("chunks") or []
    return [c for c in chunks if isinstance(c, dict)]


def own_processes() -> bool:
    """Whether each Lambda invocation runs in a process of its own (``--processes``)."""
    return os.environ.get("LOCAL_INVOKE") == "process"


def describe_written(written: Written) -> str:
    shown = [f"{name} {written.total(name)}" for name in written.groups()]
    return ", ".join(shown) or "nothing"


def day_targets(students: int, run: str) -> tuple[float | None, float | None]:
    """(end-to-end seconds, peak MB) the issue's targets set for this size and run."""
    if students == 100_000:
        return (
            (60.0, 2048.0) if run == "day 1" else (15.0, None) if run == "day 2" else (None, None)
        )
    if students >= 1_000_000 and run == "day 1":
        return 15 * 60.0, None
    return None, None


def run_day(
    table: Table,
    students: int,
    run_name: str,
    folder: Path,
    state: Path,
    before: StateSnapshot,
    reference_seconds: float,
    timeout: float,
) -> tuple[bool, StateSnapshot]:
    rows = bundle_rows(folder)
    again = run_name == "day 2 again"
    counters = WriteCounters(state) if again else None
    if counters is not None:
        counters.install()
    run = run_cli(
        ["sync", "--tenant", TENANT, "--state", str(state), "--json", str(folder)], timeout=timeout
    )
    counted = counters.collect() if counters is not None else None
    after = StateSnapshot.take(state)
    written = difference(before, after)
    status = (run_json(run) or {}).get("status")
    if not run.ok or status not in {"committed", "held"}:
        table.row(
            students,
            run_name,
            "end to end",
            seconds(run.seconds),
            "",
            megabytes(run.peak_mb),
            f"FAILED ({status or run.failure()})",
        )
        if run.stderr.strip():
            table.note("stderr: " + run.stderr.strip().splitlines()[-1][:200])
        return False, after
    timings = step_timings(run, state)
    # Each step's peak memory is its own only when it had a process of its own.
    peaks = (run_report(run).get("peak_mb") or {}) if own_processes() else {}
    for step, took in timings.items():
        peak = peaks.get(step)
        table.row(
            students,
            run_name,
            step,
            seconds(took),
            per_second(rows, took),
            megabytes(peak) if peak else "",
            target("<= 1 GB", peak <= 1024) if peak and students >= 1_000_000 else "",
        )
    if all(step in timings for step in CORE_STEPS):
        core = sum(timings[step] for step in CORE_STEPS)
        ratio = core / reference_seconds if reference_seconds else None
        ok = None if students < 100_000 or ratio is None else ratio <= 3
        table.row(
            students,
            run_name,
            "core (n+m+s)",
            seconds(core),
            per_second(rows, core),
            "",
            f"{ratio:.1f} x the reference" if ratio is not None else "",
            target("<= 3 x reference", ok) if ok is not None else "",
        )
    chunks = commit_chunks(run)
    if chunks:
        slowest = max(float(c.get("ms", 0)) for c in chunks) / 1000
        peak = max(float(c.get("peak_mb", 0)) for c in chunks)
        fits = slowest <= 60 and peak <= 1024
        table.row(
            students,
            run_name,
            f"commit chunks ({len(chunks)})",
            seconds(slowest),
            "",
            megabytes(peak),
            "slowest chunk; largest chunk's own process"
            if own_processes()
            else "slowest chunk; peak of the process running them",
            target("<= 60 s and <= 1 GB", fits) if students >= 1_000_000 else "",
        )
    limit_s, limit_mb = day_targets(students, run_name)
    if again:
        assert counted is not None
        items = sum(n for name, n in counted.items() if is_app_facing(name))
        shown = f"items {items} (row writes), events {written.events}"
        if written.events:
            kinds = event_types_after(state, before.events)
            shown += " (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")"
        ok: bool | None = items == 0 and written.events == 0
        goal = target("0 items, 0 events", ok)
    else:
        shown = f"items {app_items(written)}, events {written.events}"
        checks = []
        if limit_s is not None:
            checks.append(run.seconds <= limit_s)
        if limit_mb is not None:
            checks.append(run.peak_mb <= limit_mb)
        ok = all(checks) if checks else None
        goal_text = " and ".join(
            text
            for text, limit in (
                (f"<= {limit_s:.0f} s" if limit_s else "", limit_s),
                (f"<= {limit_mb / 1024:.0f} GB" if limit_mb else "", limit_mb),
            )
            if limit
        )
        goal = target(goal_text, ok) if goal_text else ""
    table.row(
        students,
        run_name,
        "end to end",
        seconds(run.seconds),
        per_second(rows, run.seconds),
        megabytes(run.peak_mb),
        shown,
        goal,
    )
    if again:
        assert counted is not None
        rewrites = ", ".join(f"{n} {c}" for n, c in sorted(counted.items()) if c) or "none"
        table.note(f"row writes by table: {rewrites}; changed on disk: {describe_written(written)}")
    else:
        table.note(f"changed on disk: {describe_written(written)}")
    table.note(run.cpu())
    return True, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STUDENTS:,} students only")
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds per sync before it is killed"
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help="each Lambda invocation in a process of its own (LOCAL_INVOKE=process), as on "
        "Lambda: every step's and chunk's own peak memory, at the cost of a start each",
    )
    args = parser.parse_args()
    if args.processes:
        os.environ["LOCAL_INVOKE"] = "process"
    sizes = [QUICK_STUDENTS] if args.quick else args.sizes
    table = Table(
        f"rostersync sync through the CLI, embedded store ({machine()})", COLUMNS, out=sys.stdout
    )
    table.header()
    for students in sizes:
        day1, day2 = ensure_district(students)
        ref_seconds, ref_rows, found = reference_diff(day1, day2)
        compared = "; ".join(
            f"{name.removesuffix('.csv')} "
            + " ".join(
                f"{sign}{found[name].get(a, 0)}"
                for sign, a in (("+", "add"), ("~", "update"), ("-", "delete"))
            )
            for name in REFERENCE_FILES
        )
        table.row(
            students,
            "reference",
            "duckdb diff",
            seconds(ref_seconds),
            per_second(ref_rows, ref_seconds),
            "",
            compared,
        )
        base = CACHE / str(students)
        state = Path(tempfile.mkdtemp(prefix="state-run-", dir=base))
        snapshot = StateSnapshot.take(state)
        completed = True
        for run_name, folder in (("day 1", day1), ("day 2", day2), ("day 2 again", day2)):
            completed, snapshot = run_day(
                table, students, run_name, folder, state, snapshot, ref_seconds, args.timeout
            )
            if not completed:
                break
        if completed:
            publish_state(state, students)
        else:
            shutil.rmtree(state, ignore_errors=True)
    table.note(
        "core = normalize+match+stage; items = directory and link rows; peak MB = that "
        "sync child's peak RSS; reference: + add, ~ update, - delete; the repeated day 2 "
        "runs with write-counting triggers"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
