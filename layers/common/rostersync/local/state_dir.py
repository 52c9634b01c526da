"""The local runtime's state on disk, saved so that an interrupted save loses nothing.

```
state_dir/
  .lock                     held (flock) while a runtime uses the directory
  s3/<key>                  object bodies; the file's mtime is the object's LastModified
  s3-metadata.json          {key: headers} for objects whose metadata is not the default
  dynamodb/<LogicalId>.jsonl  one item per line, DynamoDB JSON (binary as base64)
  events.jsonl              every event put on the stack's bus, oldest first
  .pending/                 a save in progress
```
A template with several buckets keeps each in ``s3-<LogicalId>/`` instead of ``s3/``.
Other files in the directory (reports the CLI writes, for instance) are left alone.

Keys become paths segment by segment: each segment is percent-encoded (so ``..``, ``:``
or ``\\`` cannot escape or confuse the folder), an empty segment (``inbox/t1/``, a folder
marker) is written ``%-``, and an object whose path is also a folder of other objects
gets a trailing ``%``. Neither form can come out of percent-encoding, so decoding is exact.

Saving is a small journal: the new snapshot is built in ``.pending/`` (unchanged objects
are hard links to the current files, so only what changed is written), then a ``COMMIT``
marker is written atomically, then the parts are renamed into place and the new events
appended. Interrupted before the marker, the old state is intact and ``.pending`` is
discarded on the next start; interrupted after it, the next start finishes the save.
This protects against an interrupted process, not against power loss (no fsync per file).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

try:  # POSIX only; elsewhere two runtimes on one directory are not detected.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

PENDING = ".pending"
COMMIT = "COMMIT"
NEW_EVENTS = "events.new.jsonl"
EVENTS = "events.jsonl"
TABLES = "dynamodb"
_SAFE = " -_.~+,=@()!$&;'"
_EMPTY_SEGMENT = "%-"
_FOLDER_CLASH = "%"


class StateDirError(Exception):
    """The state directory is in use, or holds something unreadable."""


# ---------------------------------------------------------------------- key <-> path


def _encode_segment(segment: str) -> str:
    if segment == "":
        return _EMPTY_SEGMENT
    if segment in {".", ".."}:
        return segment.replace(".", "%2E")
    return quote(segment, safe=_SAFE)


def _decode_segment(segment: str) -> str:
    if segment.endswith(_FOLDER_CLASH) and segment != _FOLDER_CLASH:
        segment = segment[: -len(_FOLDER_CLASH)]
    if segment == _EMPTY_SEGMENT:
        return ""
    return unquote(segment)


def object_paths(keys: Iterable[str]) -> dict[str, str]:
    """Relative file paths for a set of keys (the set matters: see folder clashes)."""
    encoded = {key: [_encode_segment(part) for part in key.split("/")] for key in keys}
    folders = {
        "/".join(parts[:depth]) for parts in encoded.values() for depth in range(1, len(parts))
    }
    paths: dict[str, str] = {}
    for key, parts in encoded.items():
        path = "/".join(parts)
        paths[key] = path + _FOLDER_CLASH if path in folders else path
    return paths


def key_of(relative: str) -> str:
    """The key a relative path written by ``object_paths`` stands for."""
    return "/".join(_decode_segment(part) for part in relative.split("/"))


# -------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class ObjectToSave:
    key: str
    metadata: dict[str, str]
    mtime: float
    #: The current file holding the same bytes, if the object did not change.
    unchanged_file: Path | None
    read: Callable[[], bytes]


@dataclass(frozen=True)
class StoredFile:
    key: str
    path: Path
    mtime: float


class StateDir:
    """One state directory: lock, recovery, reading and journaled saving."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock_file: IO[str] | None = None

    # -- lifetime

    def acquire(self) -> None:
        """Lock the directory for this process and finish or discard an interrupted save."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = (self.root / ".lock").open("a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                lock.close()
                raise StateDirError(
                    f"{self.root} is in use by {holder}; one local runtime per state directory"
                ) from exc
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock_file = lock
        self.recover()

    def release(self) -> None:
        if self._lock_file is not None:
            if fcntl is not None:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def recover(self) -> None:
        pending = self.root / PENDING
        if (pending / COMMIT).is_file():
            self._apply(pending)
        elif pending.exists():
            shutil.rmtree(pending)

    # -- reading

    @staticmethod
    def bucket_part(logical_id: str, bucket_count: int) -> str:
        return "s3" if bucket_count == 1 else f"s3-{logical_id}"

    def object_files(self, part: str) -> Iterator[StoredFile]:
        folder = self.root / part
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                relative = path.relative_to(folder).as_posix()
                yield StoredFile(key_of(relative), path, path.stat().st_mtime)

    def object_metadata(self, part: str) -> dict[str, dict[str, str]]:
        path = self.root / f"{part}-metadata.json"
        if not path.is_file():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def table_ids(self) -> list[str]:
        folder = self.root / TABLES
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []

    def items(self, logical_id: str) -> Iterator[dict[str, Any]]:
        path = self.root / TABLES / f"{logical_id}.jsonl"
        if not path.is_file():
            return
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StateDirError(f"{path}:{number}: not a JSON item: {exc}") from exc

    def events(self) -> list[dict[str, Any]]:
        path = self.root / EVENTS
        if not path.is_file():
            return []
        events: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # only a torn last line can be unreadable; it is rewritten
        return events

    # -- saving

    def save(
        self,
        buckets: Mapping[str, Iterable[ObjectToSave]],
        tables: Mapping[str, Iterable[dict[str, Any]]],
        new_events: list[dict[str, Any]],
    ) -> None:
        """Replace the saved buckets and tables, and append ``new_events``, as one step."""
        pending = self.root / PENDING
        if pending.exists():
            shutil.rmtree(pending)
        pending.mkdir()
        for part, objects in buckets.items():
            self._stage_bucket(pending, part, list(objects))
        self._stage_tables(pending, tables)
        with (pending / NEW_EVENTS).open("w", encoding="utf-8") as out:
            for event in new_events:
                out.write(json.dumps(event, separators=(",", ":")) + "\n")
        events_file = self.root / EVENTS
        commit = {"events_size": events_file.stat().st_size if events_file.exists() else 0}
        _write_atomically(pending / COMMIT, json.dumps(commit))
        self._apply(pending)

    def _stage_bucket(self, pending: Path, part: str, objects: list[ObjectToSave]) -> None:
        folder = pending / part
        folder.mkdir()
        paths = object_paths(obj.key for obj in objects)
        metadata: dict[str, dict[str, str]] = {}
        for obj in objects:
            target = folder / paths[obj.key]
            target.parent.mkdir(parents=True, exist_ok=True)
            if obj.unchanged_file is not None and _link_or_copy(obj.unchanged_file, target):
                pass
            else:
                target.write_bytes(obj.read())
                os.utime(target, (obj.mtime, obj.mtime))
            if obj.metadata:
                metadata[obj.key] = obj.metadata
        (pending / f"{part}-metadata.json").write_text(
            json.dumps(metadata, sort_keys=True, indent=0), encoding="utf-8"
        )

    def _stage_tables(self, pending: Path, tables: Mapping[str, Iterable[dict[str, Any]]]) -> None:
        folder = pending / TABLES
        folder.mkdir()
        for logical_id, items in tables.items():
            with (folder / f"{logical_id}.jsonl").open("w", encoding="utf-8") as out:
                for item in items:
                    out.write(json.dumps(item, separators=(",", ":"), sort_keys=True) + "\n")
        # Tables saved earlier but absent from the template now are carried over, not lost.
        for orphan in self.table_ids():
            if orphan not in tables:
                _link_or_copy(self.root / TABLES / f"{orphan}.jsonl", folder / f"{orphan}.jsonl")

    def _apply(self, pending: Path) -> None:
        """Move a committed snapshot into place; safe to repeat after an interruption."""
        commit = json.loads((pending / COMMIT).read_text(encoding="utf-8"))
        for entry in sorted(pending.iterdir()):
            if entry.name in {COMMIT, NEW_EVENTS} or entry.name.startswith("old-"):
                continue
            current = self.root / entry.name
            if entry.is_dir():
                if current.exists():
                    current.rename(pending / f"old-{entry.name}")
                entry.rename(current)
            else:
                os.replace(entry, current)
        new_events = pending / NEW_EVENTS
        if new_events.exists():
            with (self.root / EVENTS).open("ab") as out:
                out.truncate(int(commit["events_size"]))  # drop a half-done earlier append
                out.seek(0, os.SEEK_END)
                with new_events.open("rb") as source:
                    shutil.copyfileobj(source, out)
        shutil.rmtree(pending)


def _link_or_copy(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:
        try:
            shutil.copy2(source, target)
        except OSError:
            return False
    return True


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
