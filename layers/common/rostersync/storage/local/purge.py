"""Removing a tenant from the embedded store: every table item in its partitions, every
object under its prefixes, every event naming it. Nothing of the tenant is left; other
tenants' items, objects and events are untouched."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

try:  # POSIX; elsewhere the rewrite is not serialized with appends from other processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from rostersync.storage.keys import check_tenant
from rostersync.storage.local import LocalStore
from rostersync.storage.local.database import prefix_end


@dataclass(frozen=True)
class Purged:
    """How much of the tenant was removed."""

    items: int
    objects: int
    events: int


def purge_tenant(store: LocalStore, tenant: str) -> Purged:
    """Delete the tenant's items (partition ``{tenant}`` and ``{tenant}#…`` of every
    table), objects (``{area}/{tenant}/…`` of every bucket) and events."""
    tenant = check_tenant(tenant)
    database = store.database
    partitions = tenant + "#"

    def drop_items() -> int:
        with database.transaction() as tx:
            cursor = tx.execute(
                "DELETE FROM items WHERE pk = ? OR (pk >= ? AND pk < ?)",
                (tenant, partitions, prefix_end(partitions)),
            )
            return int(cursor.rowcount)

    items = database.run(drop_items)

    def tenant_objects() -> list[tuple[str, str]]:
        rows = database.connection().execute("SELECT bucket, key FROM objects").fetchall()
        return [
            (str(bucket), str(key))
            for bucket, key in rows
            if str(key).split("/", 2)[1:2] == [tenant]
        ]

    found = database.run(tenant_objects)
    for bucket, key in found:
        store.objects(bucket).delete(key)
    return Purged(items=items, objects=len(found), events=_drop_events(store, tenant))


def _drop_events(store: LocalStore, tenant: str) -> int:
    """Rewrite the event log without the tenant's events (under the appenders' lock)."""
    path = store.events.path
    if not path.is_file():
        return 0
    fd = os.open(path, os.O_RDWR)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as fh:
            lines = fh.readlines()
        kept: list[bytes] = []
        dropped = 0
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                kept.append(line)
                continue
            detail = event.get("detail") if isinstance(event, dict) else None
            if isinstance(detail, dict) and detail.get("tenant") == tenant:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            body = b"".join(kept)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, body)
            os.ftruncate(fd, len(body))
            os.fsync(fd)
        return dropped
    finally:
        os.close(fd)
