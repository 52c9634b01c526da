"""The embedded store: the storage ports on this machine, durable and shared by processes.

```
{root}/
  rostersync.sqlite3     every table (WAL: -wal and -shm beside it) and the object index
  objects/              object bodies, one file per version, named by the key's hash
  tmp/                  objects being written
  events.jsonl          the event log, oldest first
```
Opening it reads nothing but the schema: start-up does not grow with the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rostersync.storage.local.database import Database
from rostersync.storage.local.events import EventLog
from rostersync.storage.local.objects import LocalObjectStore

DATABASE_FILE = "rostersync.sqlite3"
EVENTS_FILE = "events.jsonl"

__all__ = ["DATABASE_FILE", "EVENTS_FILE", "LocalStore", "open_local_store"]


@dataclass(frozen=True)
class LocalStore:
    """One state directory's database, objects and event log."""

    root: Path
    database: Database
    events: EventLog

    def objects(self, bucket: str) -> LocalObjectStore:
        return LocalObjectStore(self.database, self.root, bucket)


@lru_cache(maxsize=8)
def _open(root: Path) -> LocalStore:
    root.mkdir(parents=True, exist_ok=True)
    return LocalStore(root, Database(root / DATABASE_FILE), EventLog(root / EVENTS_FILE))


def open_local_store(root: Path) -> LocalStore:
    """The store in ``root`` (created if new); one per directory per process."""
    return _open(Path(root).resolve())
