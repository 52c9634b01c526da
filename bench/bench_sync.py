"""Speed and memory of the sync core on generated districts.

For each size: generate day 1 and day 2 (1% changes), then under the local runtime run
fetch → normalize → match → stage → commit on day 1 and again on day 2, timing each
step, with rows/s and the process's peak RSS; beside it, the time pyarrow takes merely
to read the same files (the floor).

At 100k students the commit writes the snapshot only: moto's DynamoDB takes ~3,000
items/s, so writing a million directory items measures moto, not rostersync.

    .venv/bin/python bench/bench_sync.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("/tmp/rostersync-bench")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bundle_rows(folder: Path) -> int:
    return sum(
        max(0, sum(1 for _ in p.open("rb")) - 1)
        for p in folder.glob("*.csv")
        if p.name != "manifest.csv"
    )


def pyarrow_read_seconds(folder: Path) -> float:
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    for path in sorted(folder.glob("*.csv")):
        if path.name != "manifest.csv":
            pacsv.read_csv(path)
    return time.perf_counter() - started


def ensure_district(students: int) -> tuple[Path, Path]:
    from rostersync.generator import generate_district, mutate_next_day

    base = CACHE / str(students)
    day1, day2 = base / "day1", base / "day2"
    if not (day2 / "manifest.csv").exists():
        generate_district(day1, students=students, seed=1)
        mutate_next_day(day1, day2, seed=2, rate=0.01)
    return day1, day2


class _NullWriter:
    """Stands in for DynamoDB and EventBridge writers in the snapshot-only commit."""

    def put_many(self, tenant: str, entity: str, items: Iterable[Any]) -> int:
        return sum(1 for _ in items)

    def publish(self, events: Iterable[Any]) -> int:
        return sum(1 for _ in events)


def run_day(deps: Any, tenant: str, folder: Path, full_commit: bool) -> dict[str, float]:
    from rostersync.application.sync import upload_bundle
    from rostersync.pipeline.steps import run_step
    from rostersync.storage import keys

    run_id = keys.new_run_id()
    source = upload_bundle(deps, tenant, run_id, folder)
    deps.runs.put(tenant, run_id, {"status": "running", "trigger": "cli", "mode": "full"})
    state: dict[str, Any] = {"tenant": tenant, "run_id": run_id, "source": {"key": source}}
    timings: dict[str, float] = {}
    commit_deps = (
        deps
        if full_commit
        else replace(deps, directory=_NullWriter(), links=_NullWriter(), events=_NullWriter())
    )
    for step in ("fetch", "normalize", "match", "stage", "commit"):
        started = time.perf_counter()
        state = run_step(step, state, commit_deps if step == "commit" else deps)
        timings[step] = time.perf_counter() - started
        timings[f"{step}_rss"] = peak_rss_mb()
    timings["changes"] = sum(
        state["counts"]["stage"].get(k, 0) for k in ("add", "update", "archive", "reactivate")
    )
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "layers" / "common"))
    from rostersync.config import stack_settings
    from rostersync.local.runtime import LocalCloud
    from rostersync.observability import logger
    from rostersync.pipeline.deps import build_deps

    logger().setLevel("WARNING")
    header = ("students", "day", "rows", "step", "seconds", "rows/s", "peak MB")
    print("{:>9} {:>4} {:>9} {:<10} {:>8} {:>10} {:>8}".format(*header))
    for students in args.sizes:
        day1, day2 = ensure_district(students)
        rows = {1: bundle_rows(day1), 2: bundle_rows(day2)}
        floor = pyarrow_read_seconds(day1)
        with LocalCloud(None) as _cloud:
            deps = build_deps(stack_settings())
            tenant = f"bench-{students}"
            from rostersync.application.sync import ensure_tenant

            ensure_tenant(deps, tenant, create=True)
            full_commit = students <= 10_000
            for day, folder in ((1, day1), (2, day2)):
                t = run_day(deps, tenant, folder, full_commit)
                core = t["normalize"] + t["match"] + t["stage"]
                for step in ("fetch", "normalize", "match", "stage", "commit"):
                    label = step if step != "commit" or full_commit else "commit*"
                    print(
                        f"{students:>9} {day:>4} {rows[day]:>9} {label:<10} {t[step]:>8.2f} "
                        f"{rows[day] / t[step]:>10.0f} {t[step + '_rss']:>8.0f}"
                    )
                print(
                    f"{students:>9} {day:>4} {rows[day]:>9} {'CORE':<10} {core:>8.2f} "
                    f"{rows[day] / core:>10.0f}   "
                    f"(normalize+match+stage; {int(t['changes'])} changes)"
                )
        print(
            f"{students:>9}    - {rows[1]:>9} {'pyarrow':<10} {floor:>8.2f} "
            f"{rows[1] / floor:>10.0f}   (read every file: the floor)"
        )
    print("commit* = snapshot only (directory, links and events not written; see docstring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
