"""What the benchmarks share: generated districts, the ``rostersync`` command run as a
child process (its wall time and its own peak RSS), what a run wrote into a state
directory, targets and the printed table.

Nothing here imports the pipeline: the benchmarks measure rostersync as a user runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ROSTERSYNC_BENCH_CACHE", "/tmp/rostersync-bench"))
QUICK_STUDENTS = 1_000
#: Files that are not data rows of a bundle.
_NOT_DATA = {"manifest.csv"}
#: What a state directory's event log is called (the embedded store's layout).
EVENT_LOG_NAMES = ("events.jsonl",)
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: The table the write counters keep their counts in (removed with them).
_COUNTER_TABLE = "bench_write_counts"
_TRIGGER_PREFIX = "bench_count_"


# -- districts -----------------------------------------------------------------------


def _generator_fingerprint() -> str:
    import rostersync.generator as generator

    return hashlib.sha256(Path(generator.__file__).read_bytes()).hexdigest()[:16]


def ensure_district(students: int) -> tuple[Path, Path]:
    """Day 1 and day 2 (1% changes) of a generated district, cached under
    ``CACHE/<students>/`` and made again when the generator changes."""
    from rostersync.generator import generate_district, mutate_next_day

    base = CACHE / str(students)
    day1, day2 = base / "day1", base / "day2"
    stamp = base / "generator.stamp"
    fingerprint = _generator_fingerprint()
    complete = (day2 / "manifest.csv").is_file()
    if complete and not stamp.is_file():
        stamp.write_text(fingerprint + "\n")  # made before stamps were kept: adopted
    if complete and stamp.read_text().strip() == fingerprint:
        return day1, day2
    base.mkdir(parents=True, exist_ok=True)
    # Made aside and moved into place: a reader never sees half a bundle.
    work = Path(tempfile.mkdtemp(prefix="generating-", dir=base))
    try:
        generate_district(work / "day1", students=students, seed=1)
        mutate_next_day(work / "day1", work / "day2", seed=2, rate=0.01)
        for name in ("day1", "day2"):
            if (base / name).exists():
                shutil.rmtree(base / name)
            (work / name).rename(base / name)
        stamp.write_text(fingerprint + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return day1, day2


def data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.csv") if p.name not in _NOT_DATA)


def bundle_rows(folder: Path) -> int:
    """Data rows of a bundle (every CSV but the manifest, headers not counted)."""
    total = 0
    for path in data_files(folder):
        with path.open("rb") as lines:
            total += max(0, sum(1 for _ in lines) - 1)
    return total


def code_fingerprint() -> str:
    """A hash of the installed rostersync package's files: a state directory synced by one
    version of the code is reused only by that version."""
    import rostersync

    package = Path(rostersync.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def synced_state_dir(students: int) -> Path:
    """Where a state directory holding day 1 of ``students`` is kept for bench_serve."""
    return CACHE / str(students) / f"state-{code_fingerprint()}"


#: Kept states of other code versions (and runs left by a killed benchmark) are removed
#: when this old: a 100k state takes gigabytes.
STALE_STATE_SECONDS = 2 * 3600


def publish_state(work: Path, students: int) -> Path:
    """Move a freshly synced state directory to where bench_serve looks for it; remove
    the stale ones of earlier code versions."""
    target = synced_state_dir(students)
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    now = time.time()
    for other in target.parent.glob("state-*"):
        if other != target and now - other.stat().st_mtime > STALE_STATE_SECONDS:
            shutil.rmtree(other, ignore_errors=True)
    return target


# -- the command as a child process --------------------------------------------------


def rostersync_command() -> list[str]:
    """The ``rostersync`` console script of this environment."""
    beside = Path(sys.executable).parent / "rostersync"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("rostersync")
    if found:
        return [found]
    return [sys.executable, "-m", "rostersync.cli"]


@dataclass
class ChildRun:
    argv: list[str]
    returncode: int
    seconds: float
    peak_mb: float
    stdout: str
    stderr: str
    timed_out: bool = False
    #: CPU seconds in user and system mode and minor page faults (``wait4``: the child
    #: and its reaped descendants). System time high beside user time is the host's
    #: memory and files (see docs/benchmarks.md, "a host whose memory is slow to touch").
    user_s: float = 0.0
    system_s: float = 0.0
    minor_faults: int = 0

    def cpu(self) -> str:
        return (
            f"cpu {self.user_s:.1f} s user, {self.system_s:.1f} s system, "
            f"{self.minor_faults:,} minor page faults"
        )

    @property
    def ok(self) -> bool:
        """Done: 0, or 2 (``sync``: completed with row issues to look at)."""
        return self.returncode in {0, 2} and not self.timed_out

    def failure(self) -> str:
        if self.timed_out:
            return "timed out"
        tail = (self.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"exit {self.returncode}: {tail[:160]}"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_cli(args: Sequence[str], *, timeout: float | None = None) -> ChildRun:
    """Run ``rostersync ARGS`` and wait for it: its wall time and the peak RSS of that child
    (``wait4`` of its pid: the child's own figure, or its largest reaped descendant's),
    killed with its process group after ``timeout`` seconds."""
    argv = [*rostersync_command(), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        timer = None
        timed_out = threading.Event()
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                _kill_group(child.pid)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            _pid, status, usage = os.wait4(child.pid, 0)
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            argv=argv,
            returncode=child.returncode,
            seconds=seconds,
            peak_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            timed_out=timed_out.is_set(),
            user_s=usage.ru_utime,
            system_s=usage.ru_stime,
            minor_faults=usage.ru_minflt,
        )


def run_json(run: ChildRun) -> Any:
    """The JSON object a ``--json`` command printed (None if it printed none)."""
    text = run.stdout.strip()
    start = text.find("{") if not text.startswith("[") else 0
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return None


# -- what a run wrote into a state directory -----------------------------------------


def sqlite_files(state: Path) -> list[Path]:
    """The SQLite databases of a state directory (its top level and one below)."""
    found = []
    for path in sorted([*state.glob("*"), *state.glob("*/*")]):
        if path.is_file() and path.suffix not in {".jsonl", ".json"}:
            try:
                with path.open("rb") as head:
                    if head.read(16) == _SQLITE_MAGIC:
                        found.append(path)
            except OSError:
                continue
    return found


def _tables(connection: sqlite3.Connection) -> list[tuple[str, list[str], list[str]]]:
    """``(table, primary-key columns, other columns)`` of every table but SQLite's own."""
    tables = []
    for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ):
        if name == _COUNTER_TABLE:
            continue
        info = connection.execute(f'PRAGMA table_info("{name}")').fetchall()
        keys = [c[1] for c in sorted((c for c in info if c[5]), key=lambda c: c[5])]
        if not keys:  # keyed by a unique index rather than a primary key
            keys = _unique_key(connection, name)
        others = [c[1] for c in info if c[1] not in keys]
        tables.append((name, keys, others))
    return tables


def _unique_key(connection: sqlite3.Connection, table: str) -> list[str]:
    """The columns of a table's first unique index (in index order), if it has one."""
    for index in connection.execute(f'PRAGMA index_list("{table}")').fetchall():
        if index[2] and not index[4]:  # unique, and not partial
            columns = connection.execute(f'PRAGMA index_info("{index[1]}")').fetchall()
            return [c[2] for c in sorted(columns, key=lambda c: c[0])]
    return []


def _group_column(keys: list[str]) -> str | None:
    """A table keyed by (table name or bucket, ...) is counted per value of its first key."""
    return keys[0] if len(keys) >= 2 else None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)


def _event_logs(state: Path) -> list[Path]:
    logs = [state / name for name in EVENT_LOG_NAMES]
    return [p for p in [*logs, *sorted((state / "events").rglob("*.jsonl"))] if p.is_file()]


def event_count(state: Path) -> int:
    """Events in the state directory's append-only log (one a line)."""
    total = 0
    for path in _event_logs(state):
        with path.open("rb") as lines:
            total += sum(1 for line in lines if line.strip())
    return total


def event_types_after(state: Path, skip: int, limit: int = 20) -> dict[str, int]:
    """The detail types of the events after the first ``skip`` (at most ``limit`` read)."""
    types: dict[str, int] = {}
    seen = 0
    for path in _event_logs(state):
        with path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                seen += 1
                if seen <= skip:
                    continue
                if seen > skip + limit:
                    return types
                try:
                    kind = str(json.loads(line).get("detail-type", "?"))
                except (json.JSONDecodeError, AttributeError):
                    kind = "?"
                types[kind] = types.get(kind, 0) + 1
    return types


class _Hashes:
    """The rows of one table (group): key hashes, sorted, and their content hashes."""

    def __init__(self) -> None:
        self._keys: array[int] = array("q")
        self._values: array[int] = array("q")
        self.keys: Any = None
        self.values: Any = None

    def add(self, key: object, value: object) -> None:
        self._keys.append(hash(key))
        self._values.append(hash(value))

    def freeze(self) -> None:
        import numpy as np

        keys = np.frombuffer(self._keys, dtype=np.int64)
        values = np.frombuffer(self._values, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys, self.values = keys[order], values[order]
        self._keys, self._values = array("q"), array("q")


@dataclass
class StateSnapshot:
    """Every row of every table (as hashes, per group), every file and the event count of
    a state directory. Hashes are this process's: compare snapshots of one process only."""

    rows: dict[str, _Hashes] = field(default_factory=dict)
    events: int = 0

    def _bucket(self, name: str) -> _Hashes:
        return self.rows.setdefault(name, _Hashes())

    @classmethod
    def take(cls, state: Path) -> StateSnapshot:
        snap = cls(events=event_count(state))
        databases = sqlite_files(state)
        for database in databases:
            connection = _connect_read_only(database)
            try:
                for table, keys, others in _tables(connection):
                    group = _group_column(keys)
                    key_columns = [k for k in keys if k != group] or others[:1]
                    selected = ([group] if group else []) + key_columns + others
                    columns = ", ".join(f'"{c}"' for c in selected)
                    width = len(key_columns)
                    for row in connection.execute(f'SELECT {columns} FROM "{table}"'):
                        if group:
                            name, row = f"{table}:{row[0]}", row[1:]
                        else:
                            name = table
                        snap._bucket(name).add(row[:width], row[width:])
            finally:
                connection.close()
        files = snap._bucket("files")
        skipped = tuple(d.name for d in databases)
        for path in state.rglob("*"):
            if not path.is_file() or path.name.startswith(skipped):
                continue
            if path.name in EVENT_LOG_NAMES:
                continue
            stat = path.stat()
            files.add(str(path.relative_to(state)), (stat.st_size, stat.st_mtime_ns))
        for hashes in snap.rows.values():
            hashes.freeze()
        return snap


@dataclass
class Written:
    """What a run changed in a state directory, per table (and table group)."""

    added: dict[str, int]
    changed: dict[str, int]
    removed: dict[str, int]
    events: int

    def total(self, name: str) -> int:
        return self.added.get(name, 0) + self.changed.get(name, 0) + self.removed.get(name, 0)

    def groups(self) -> list[str]:
        return sorted(n for n in {*self.added, *self.changed, *self.removed} if self.total(n))


def difference(before: StateSnapshot, after: StateSnapshot) -> Written:
    """Rows added, changed (another content under the same key) and removed."""
    import numpy as np

    added: dict[str, int] = {}
    changed: dict[str, int] = {}
    removed: dict[str, int] = {}
    empty = _Hashes()
    empty.freeze()
    for name in {*before.rows, *after.rows}:
        old, new = before.rows.get(name, empty), after.rows.get(name, empty)
        if len(old.keys) == 0:
            added[name] = len(new.keys)
            continue
        at = np.minimum(np.searchsorted(old.keys, new.keys), len(old.keys) - 1)
        found = old.keys[at] == new.keys
        added[name] = int((~found).sum())
        changed[name] = int((found & (old.values[at] != new.values)).sum())
        removed[name] = len(old.keys) - int(found.sum())
    return Written(added, changed, removed, after.events - before.events)


def is_app_facing(name: str) -> bool:
    """Directory items and identity links: what the app reads (the rest is run
    bookkeeping, objects and files)."""
    lowered = name.lower()
    return "directory" in lowered or "link" in lowered


def app_items(written: Written) -> int:
    return sum(written.total(n) for n in written.groups() if is_app_facing(n))


def other_items(written: Written) -> dict[str, int]:
    return {n: written.total(n) for n in written.groups() if not is_app_facing(n)}


class WriteCounters:
    """Triggers counting every row a process inserts, updates or deletes in a state
    directory's databases, identical rewrites included (which a before/after comparison
    cannot see). They cost a little per write: installed for the no-change run only."""

    def __init__(self, state: Path) -> None:
        self.databases = sqlite_files(state)

    def install(self) -> None:
        for database in self.databases:
            connection = sqlite3.connect(database, timeout=60, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {_COUNTER_TABLE} (tbl TEXT NOT NULL, "
                    "grp TEXT NOT NULL, op TEXT NOT NULL, n INTEGER NOT NULL, "
                    "PRIMARY KEY (tbl, grp, op))"
                )
                for table, keys, _others in _tables(connection):
                    group = _group_column(keys)
                    for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
                        value = f'{row}."{group}"' if group else "''"
                        connection.execute(
                            f'CREATE TRIGGER IF NOT EXISTS "{_TRIGGER_PREFIX}{table}_{op}" '
                            f'AFTER {op} ON "{table}" BEGIN '
                            f"INSERT INTO {_COUNTER_TABLE} VALUES ('{table}', {value}, "
                            f"'{op.lower()}', 1) ON CONFLICT (tbl, grp, op) "
                            "DO UPDATE SET n = n + 1; END"
                        )
                connection.execute("COMMIT")
            finally:
                connection.close()

    def collect(self) -> dict[str, int]:
        """Rows written per table (group), then the triggers and their table removed."""
        counts: dict[str, int] = {}
        for database in self.databases:
            connection = sqlite3.connect(database, timeout=60, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                for table, grp, _op, n in connection.execute(
                    f"SELECT tbl, grp, op, n FROM {_COUNTER_TABLE}"
                ).fetchall():
                    name = f"{table}:{grp}" if grp else table
                    counts[name] = counts.get(name, 0) + int(n)
                triggers = connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?",
                    (f"{_TRIGGER_PREFIX}%",),
                ).fetchall()
                for (trigger,) in triggers:
                    connection.execute(f'DROP TRIGGER "{trigger}"')
                connection.execute(f"DROP TABLE {_COUNTER_TABLE}")
                connection.execute("COMMIT")
            finally:
                connection.close()
        return counts


def machine() -> str:
    """Cores, Python, the commit and the load average now: what the figures depend on."""
    commit = "?"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, commit {commit}, load {load}"


# -- targets and tables --------------------------------------------------------------


def mark(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "MISS")


def target(text: str, ok: bool | None) -> str:
    return f"{text} {mark(ok)}".strip() if ok is not None else text


@dataclass
class Table:
    """A fixed-width table printed a row at a time (long benchmarks show progress)."""

    title: str
    columns: Sequence[tuple[str, int]]  # (heading, width); negative width: left-aligned
    out: Any = sys.stdout
    _started: bool = False

    def _line(self, values: Iterable[object]) -> str:
        cells = []
        for (_, width), value in zip(self.columns, values, strict=False):
            text = "" if value is None else str(value)
            cells.append(text.ljust(-width) if width < 0 else text.rjust(width))
        return "  ".join(cells).rstrip()

    def header(self) -> None:
        self.out.write(f"\n{self.title}\n")
        self.out.write(self._line(h for h, _ in self.columns) + "\n")
        self.out.write(self._line("-" * abs(w) for _, w in self.columns) + "\n")
        self.out.flush()
        self._started = True

    def row(self, *values: object) -> None:
        if not self._started:
            self.header()
        self.out.write(self._line(values) + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        if not self._started:
            self.header()
        self.out.write(f"  {text}\n")
        self.out.flush()


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def per_second(count: float, took: float | None) -> str:
    if not took:
        return "-"
    return f"{count / took:,.0f}"


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(len(ordered), rank) - 1]
