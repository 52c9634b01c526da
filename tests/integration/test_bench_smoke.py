"""The benchmarks run, quickly: ``bench_sync.py --quick`` and ``bench_serve.py --quick``
print their tables with figures in them (speed is not asserted here: these are
benchmarks, not timed tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, cache: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-u", str(ROOT / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ROSTERSYNC_BENCH_CACHE": str(cache)},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _row(output: str, *cells: str) -> str:
    """The one table line holding every cell, in order."""
    pattern = re.compile(r"\s+".join(re.escape(c) for c in cells))
    found = [line for line in output.splitlines() if pattern.search(line)]
    assert len(found) == 1, f"no single row with {cells}:\n{output}"
    return found[0]


def _number(line: str, label: str) -> int:
    match = re.search(rf"{label} (\d+)", line)
    assert match, f"no '{label} N' in {line!r}"
    return int(match.group(1))


def test_the_benchmarks_print_their_tables(tmp_path: Path) -> None:
    synced = _run("bench_sync.py", tmp_path)
    assert "rostersync sync through the CLI" in synced
    reference = _row(synced, "1000", "reference", "duckdb diff")
    assert re.search(r"users \+[1-9]\d* ~\d+ -[1-9]", reference), reference
    for run in ("day 1", "day 2", "day 2 again"):
        for measure in ("normalize", "match", "stage", "core (n+m+s)"):
            _row(synced, "1000", run, measure)
    first = _row(synced, "1000", "day 1", "end to end")
    # The counts come from the state directory: a first sync writes the whole roster.
    assert _number(first, "items") > 0 and _number(first, "events") > 0, first
    second = _row(synced, "1000", "day 2", "end to end")
    assert 0 < _number(second, "items") < _number(first, "items"), second
    again = _row(synced, "1000", "day 2 again", "end to end")
    _number(again, "items")
    assert "0 items, 0 events" in again
    # The district and the synced state are kept for the next run (and bench_serve).
    assert (tmp_path / "1000" / "day2" / "manifest.csv").is_file()
    assert list((tmp_path / "1000").glob("state-*"))

    served = _run("bench_serve.py", tmp_path)
    assert "rostersync serve next to a 1,000-student tenant" in served
    assert re.search(r"serve: up \(answers a request\)\s+\d+\.\d+ s", served), served
    for command in ("runs", "settings show"):
        assert re.search(rf"CLI beside serve: {command} --tenant other\s+\d+\.\d+ s", served)
    assert re.search(r"directory page, 100 users .*p50 [\d,]+ ms, p99 [\d,]+ ms", served), served
    assert re.search(r"20 clients mixed: all routes\s+[\d,]+ req/s", served), served
    for route in ("runs", "settings", "directory"):
        line = _row(served, f"20 clients mixed: {route}")
        assert "not 200" not in line, line
    assert re.search(r"serve: stop on SIGTERM\s+\d+\.\d+ s", served), served
