"""``kill -9`` of a command-line sync in the middle of its commit, then the next sync:
the interrupted commit is resumed (not restarted, not labelled failed), nothing it had
written is lost or doubled, the tenant's lock is free, and the new run goes on."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rostersync.generator import generate_district

TENANT = "killed"


def _cli(state: Path, *args: str, env: dict[str, str]) -> list[str]:
    return [sys.executable, "-m", "rostersync.cli", *args, "--state", str(state)]


def _chunks_done(state: Path) -> int:
    database = state / "rostersync.sqlite3"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(
                "SELECT count(*) FROM objects WHERE key LIKE ?",
                (f"runs/{TENANT}/%/commit/done/%",),
            ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0])


def _runs(state: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    shown = subprocess.run(
        _cli(state, "runs", "--tenant", TENANT, "--json", env=env),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    value: list[dict[str, Any]] = json.loads(shown.stdout)
    return value


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle") / "day1"
    generate_district(folder, students=50, seed=5)
    return folder


def test_a_sync_killed_mid_commit_is_resumed_by_the_next_sync(tmp_path, bundle):
    state = tmp_path / "state"
    env = {
        **os.environ,
        # Many small chunks, fanned out: the commit is long enough to be cut.
        "COMMIT_INLINE_ACTIONS": "10",
        "COMMIT_CHUNK_ACTIONS": "25",
    }
    first = subprocess.Popen(
        _cli(state, "sync", "--tenant", TENANT, str(bundle), env=env),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while _chunks_done(state) < 2:
        assert first.poll() is None, "the sync ended before its commit could be cut"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # The killed process's folder for temporary files (the engines' spill files) is left.
    left = [p.name for p in (state / "scratch").iterdir()]
    assert any(name.split("+")[-1].startswith(f"{first.pid}-") for name in left), left
    cut = _runs(state, env)
    assert [r["status"] for r in cut] == ["committing"]

    second = subprocess.run(
        _cli(state, "sync", "--tenant", TENANT, str(bundle), env=env),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert second.returncode in (0, 2), second.stdout + second.stderr
    # The next start gave it back; each command gives back its own as it stops.
    assert list((state / "scratch").iterdir()) == []
    runs = {r["run_id"]: r for r in _runs(state, env)}
    assert runs[cut[0]["run_id"]]["status"] == "committed"
    assert runs[cut[0]["run_id"]].get("resumed") == 1
    newest = max(runs)
    assert newest != cut[0]["run_id"] and runs[newest]["status"] == "committed"
    exported = subprocess.run(
        _cli(state, "directory", "export", "--tenant", TENANT, "--json", env=env),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    directory = json.loads(exported.stdout)
    users = directory["users"]
    assert len({u["target_id"] for u in users}) == len(users)
    source_rows = sum(1 for _ in (bundle / "users.csv").open(encoding="utf-8")) - 1
    assert len(users) == source_rows
