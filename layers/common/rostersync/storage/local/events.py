"""Events in the embedded store: an append-only JSON-lines log, one event a line, in the
shape an EventBridge rule's target receives (``id``, ``source``, ``detail-type``, ``time``,
``detail``, ...). A batch is one locked append, fsynced before ``publish`` returns."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere appends from several processes are not serialized.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from rostersync.storage.events import EVENT_SOURCE

#: The account and region an event names locally (no AWS account behind it).
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"
#: Events per append (and fsync).
APPEND_BATCH = 1_000


def bus_event(
    detail_type: str,
    detail: dict[str, Any],
    *,
    source: str = EVENT_SOURCE,
    account: str = LOCAL_ACCOUNT,
    region: str = LOCAL_REGION,
) -> dict[str, Any]:
    """An event as a rule's target receives it (the detail as JSON would carry it)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": json.loads(json.dumps(detail, default=str)),
    }


class EventLog:
    """The log file: appended by any process, read whole or line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        body = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A process killed mid-append left a torn line: end it, so it stays one
                # unreadable line instead of spoiling this batch's first event.
                body = b"\n" + body
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with self.path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line left by a killed process

    def read(self) -> list[dict[str, Any]]:
        return list(self)


class LocalEventPublisher:
    """``EventPublisher`` over the event log."""

    def __init__(self, log: EventLog, bus_name: str) -> None:
        self.log = log
        self.bus_name = bus_name

    def publish(self, events: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Append ``(detail_type, detail)`` pairs; return how many."""
        batch: list[dict[str, Any]] = []
        sent = 0
        for detail_type, detail in events:
            batch.append(bus_event(detail_type, detail))
            if len(batch) == APPEND_BATCH:
                self.log.append(batch)
                sent, batch = sent + len(batch), []
        self.log.append(batch)
        return sent + len(batch)

    def published_events(self) -> list[dict[str, Any]]:
        """Every event in the log, oldest first."""
        return self.log.read()
