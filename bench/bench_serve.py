"""rostersync serve next to a synced district: start-up, a CLI command beside it, directory
pages and 20 concurrent clients.

With a state directory holding a synced district (the one bench_sync.py left for this
version of the code, else day 1 synced here through ``rostersync sync``): start
``rostersync serve --state DIR --api-port 0 --sftp-port 0`` and time until an
authenticated request answers; while it runs, time ``rostersync runs`` and ``rostersync
settings show`` for another tenant; time directory pages (100 records, filtered when the
API offers a filter) one after another; then 20 clients at once mixing the runs, settings
and directory routes (req/s, p50/p99 per route); last, how long serve takes to stop on
SIGTERM and its peak RSS. Tokens come from ``rostersync token`` (admin, for the tenant).

    .venv/bin/python bench/bench_serve.py [--students 100000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    CACHE,
    QUICK_STUDENTS,
    Table,
    ensure_district,
    machine,
    percentile,
    publish_state,
    rostersync_command,
    run_cli,
    run_json,
    synced_state_dir,
    target,
)

TENANT = "bench"
OTHER = "other"
PAGE = 100
DIRECTORY_ROUTE = "/tenants/{tenant}/directory/{entity}"
#: Filters tried on the directory route, first offered first: (parameter, value).
FILTERS = (("role", "student"), ("status", "active"), ("kind", "student"))
_API_LINE = re.compile(r"API\s+(http://127\.0\.0\.1:\d+)/?")

COLUMNS = (("students", 9), ("measure", -52), ("result", -50), ("target", -26))


def ensure_synced(students: int, timeout: float) -> Path:
    """A state directory with the district synced into tenant ``bench`` by this code."""
    state = synced_state_dir(students)
    if (state / "rostersync.sqlite3").is_file() or any(state.glob("*")):
        return state
    day1, _day2 = ensure_district(students)
    base = CACHE / str(students)
    work = Path(tempfile.mkdtemp(prefix="state-run-", dir=base))
    run = run_cli(
        ["sync", "--tenant", TENANT, "--state", str(work), "--json", str(day1)], timeout=timeout
    )
    if not run.ok:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"bench_serve: syncing {students} students failed: {run.failure()}")
    return publish_state(work, students)


def token(state: Path, tenant: str) -> str:
    run = run_cli(["token", "--tenant", tenant, "--state", str(state), "--ttl", "7200"])
    if not run.ok:
        raise SystemExit(f"bench_serve: rostersync token failed: {run.failure()}")
    return run.stdout.strip().splitlines()[-1]


@dataclass
class Served:
    """A running ``rostersync serve`` child and what it printed."""

    process: subprocess.Popen[bytes]
    started: float
    url: str | None = None
    lines: list[str] = field(default_factory=list)
    found: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            match = _API_LINE.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self.found.set()
        self.found.set()


def start_serve(state: Path, stderr: Any) -> Served:
    argv = [
        *rostersync_command(),
        "serve",
        "--state",
        str(state),
        "--api-port",
        "0",
        "--sftp-port",
        "0",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    served = Served(process, started)
    threading.Thread(target=served.read, name="serve-output", daemon=True).start()
    return served


def wait_until_answers(served: Served, headers: dict[str, str], limit: float) -> float | None:
    """Seconds from the start of ``serve`` until an authenticated request gets a 200."""
    deadline = served.started + limit
    if not served.found.wait(timeout=limit) or served.url is None:
        return None
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:
        while time.perf_counter() < deadline:
            if served.process.poll() is not None:
                return None
            try:
                if client.get(f"/tenants/{TENANT}/settings").status_code == 200:
                    return time.perf_counter() - served.started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    return None


def stop_serve(served: Served, limit: float) -> tuple[float, float, bool]:
    """SIGTERM; seconds until it exits and its peak RSS (MB); killed after ``limit``."""
    started = time.perf_counter()
    os.kill(served.process.pid, signal.SIGTERM)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        os.killpg(served.process.pid, signal.SIGKILL)

    timer = threading.Timer(limit, kill)
    timer.daemon = True
    timer.start()
    _pid, status, usage = os.wait4(served.process.pid, 0)
    timer.cancel()
    served.process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, killed.is_set()


def directory_filter(client: httpx.Client) -> tuple[str, str] | None:
    """The first filter of FILTERS the served OpenAPI document offers on the directory."""
    try:
        document = client.get("/openapi.json").json()
    except (httpx.HTTPError, ValueError):
        return None
    operation = (document.get("paths") or {}).get(DIRECTORY_ROUTE, {}).get("get", {})
    offered = {p.get("name") for p in operation.get("parameters") or []}
    return next(((name, value) for name, value in FILTERS if name in offered), None)


def directory_params(offset: int, chosen: tuple[str, str] | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": PAGE, "offset": offset}
    if chosen is not None:
        params[chosen[0]] = chosen[1]
    return params


@dataclass
class Sample:
    route: str
    ms: float
    status: int


def timed(client: httpx.Client, route: str, path: str, params: Any = None) -> Sample:
    started = time.perf_counter()
    try:
        status = client.get(path, params=params).status_code
    except httpx.HTTPError:
        status = 0
    return Sample(route, (time.perf_counter() - started) * 1000, status)


def latency(samples: list[Sample]) -> str:
    if not samples:
        return "no requests"
    ms = [s.ms for s in samples]
    failed = sum(1 for s in samples if s.status != 200)
    text = f"p50 {percentile(ms, 0.5):,.0f} ms, p99 {percentile(ms, 0.99):,.0f} ms, n={len(ms)}"
    return text + (f", {failed} not 200" if failed else "")


def mixed_load(
    url: str,
    headers: dict[str, str],
    clients: int,
    duration: float,
    request_for: Callable[[int, int], tuple[str, str, Any]],
) -> tuple[list[Sample], float]:
    """``clients`` threads, each with its own connection, requesting until ``duration``
    has passed (a request under way then is finished and counted)."""
    samples: list[Sample] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client_loop(index: int) -> None:
        mine: list[Sample] = []
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            ready.wait()
            turn = index
            while time.perf_counter() < deadline[0]:
                route, path, params = request_for(index, turn)
                mine.append(timed(client, route, path, params))
                turn += 1
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + duration
    ready.wait()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STUDENTS:,} students")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of mixed load")
    parser.add_argument("--pages", type=int, default=100, help="directory pages timed")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the sync")
    args = parser.parse_args()
    students = QUICK_STUDENTS if args.quick else args.students
    duration = min(args.duration, 2.0) if args.quick else args.duration
    pages = min(args.pages, 20) if args.quick else args.pages
    targets = students >= 100_000

    def goal(text: str, ok: bool) -> str:
        return target(text, ok if targets else None)

    state = ensure_synced(students, args.timeout)
    table = Table(
        f"rostersync serve next to a {students:,}-student tenant ({machine()})\nstate: {state}",
        COLUMNS,
    )
    table.header()
    run_cli(["tenants", "add", OTHER, "--state", str(state), "--json"])
    headers = {"Authorization": f"Bearer {token(state, TENANT)}"}
    alone = run_cli(["runs", "--tenant", OTHER, "--state", str(state), "--json"], timeout=600)
    table.row(
        students,
        f"CLI alone: runs --tenant {OTHER} (no serve)",
        f"{alone.seconds:.2f} s" if alone.ok else alone.failure(),
        "",
    )

    with tempfile.TemporaryFile() as serve_errors:
        served = start_serve(state, serve_errors)
        try:
            up = wait_until_answers(served, headers, limit=600)
            if up is None or served.url is None:
                serve_errors.seek(0)
                tail = serve_errors.read().decode("utf-8", "replace").strip().splitlines()
                table.row(students, "serve: up (answers a request)", "FAILED", "")
                table.note("stderr: " + (tail[-1][:200] if tail else "(none)"))
                return 1
            table.row(
                students, "serve: up (answers a request)", f"{up:.2f} s", goal("<= 5 s", up <= 5)
            )

            for name, command in (
                ("runs", ["runs", "--tenant", OTHER]),
                ("settings show", ["settings", "show", "--tenant", OTHER]),
            ):
                beside = run_cli([*command, "--state", str(state), "--json"], timeout=600)
                shown = f"{beside.seconds:.2f} s" if beside.ok else beside.failure()
                table.row(
                    students,
                    f"CLI beside serve: {name} --tenant {OTHER}",
                    shown,
                    goal("<= 2 s", beside.ok and beside.seconds <= 2),
                )
                if beside.ok and run_json(beside) is None:
                    table.note(f"{name}: printed no JSON")

            rng = random.Random(13)
            with httpx.Client(base_url=served.url, headers=headers, timeout=120) as client:
                chosen = directory_filter(client)
                page_samples: list[Sample] = []
                budget = time.perf_counter() + (10 if args.quick else 120)
                for _ in range(pages):
                    offset = rng.randrange(0, max(1, students - PAGE)) // PAGE * PAGE
                    page_samples.append(
                        timed(
                            client,
                            "directory",
                            f"/tenants/{TENANT}/directory/users",
                            directory_params(offset, chosen),
                        )
                    )
                    if time.perf_counter() > budget:
                        break
            filtered = f"{chosen[0]}={chosen[1]}" if chosen else "unfiltered"
            p99 = percentile([s.ms for s in page_samples], 0.99)
            table.row(
                students,
                f"directory page, {PAGE} users ({filtered})",
                latency(page_samples),
                goal("p99 <= 200 ms", p99 <= 200 and all(s.status == 200 for s in page_samples)),
            )
            table.note(
                "pages at random offsets, one after another"
                + ("" if chosen else "; the API documents no filter on the directory route")
            )

            routes = (
                ("runs", f"/tenants/{TENANT}/runs", {"limit": 20}),
                ("settings", f"/tenants/{TENANT}/settings", None),
                ("directory", f"/tenants/{TENANT}/directory/users", None),
            )
            picks = random.Random(29)

            def request_for(index: int, turn: int) -> tuple[str, str, Any]:
                route, path, params = routes[turn % len(routes)]
                if route == "directory":
                    offset = picks.randrange(0, max(1, students - PAGE)) // PAGE * PAGE
                    params = directory_params(offset, chosen)
                return route, path, params

            samples, wall = mixed_load(served.url, headers, args.clients, duration, request_for)
            fast = [s for s in samples if s.route != "directory"]
            fast_p99 = percentile([s.ms for s in fast], 0.99) if fast else float("inf")
            table.row(
                students,
                f"{args.clients} clients mixed: all routes",
                f"{len(samples) / wall:,.0f} req/s, " + latency(samples),
                "",
            )
            for route, _path, _params in routes:
                mine = [s for s in samples if s.route == route]
                check = ""
                if route != "directory":
                    check = goal("concurrent: p99 <= 200 ms", fast_p99 <= 200)
                table.row(students, f"{args.clients} clients mixed: {route}", latency(mine), check)
            table.note(
                f"{wall:.1f} s of load; concurrent = runs and settings answer within 200 ms "
                "(p99) while directory pages are being served"
            )
        finally:
            if served.process.poll() is None:
                took, peak, killed = stop_serve(served, limit=300)
                stopped = f"{took:.2f} s" + (" (killed)" if killed else "")
                table.row(students, "serve: stop on SIGTERM", stopped, "")
                table.row(students, "serve: peak RSS", f"{peak:,.0f} MB", "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
