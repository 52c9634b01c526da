"""The committed state of a tenant: the baseline every run is diffed against.

A snapshot is one JSON-lines object per entity under ``state/{tenant}/{run}/``; the
pointer ``state/{tenant}/current.json`` names the run whose snapshot is current. Each
line is ``{source_system, source_id, target_id, status, hash, record}`` where ``status``
is ``active`` or ``archived`` and ``hash`` covers the record's content (not its metadata).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from rostersync.changes import content_of
from rostersync.models import Entity
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort

ACTIVE = "active"
ARCHIVED = "archived"


def content_hash(record: dict[str, Any]) -> str:
    """A stable digest of a record's content."""
    encoded = orjson.dumps(content_of(record), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


class BaselineEntry(NamedTuple):
    """A record of the baseline, by id only (a tuple: an index holds a million)."""

    target_id: str
    status: str
    hash: str


_KEY = itemgetter(0, 1)
_ENTRY = itemgetter(2, 3, 4)


def _batched(lines: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    part: list[bytes] = []
    for line in lines:
        part.append(line)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part


def current_baseline(store: ObjectStorePort, tenant: str) -> str | None:
    """The run id of the tenant's current committed snapshot, if any."""
    pointer = store.get_json(keys.state_pointer_key(tenant))
    return None if pointer is None else str(pointer["run_id"])


def iter_snapshot(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> Iterator[dict[str, Any]]:
    """Lines of an entity's snapshot (nothing before the first commit)."""
    if baseline_run is None:
        return iter(())
    return store.iter_jsonl(keys.state_key(tenant, baseline_run, entity))


def iter_snapshot_lines(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> Iterator[bytes]:
    """``iter_snapshot``'s lines unparsed."""
    if baseline_run is None:
        return iter(())
    return store.iter_lines(keys.state_key(tenant, baseline_run, entity))


def load_baseline_index(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> dict[tuple[str, str], BaselineEntry]:
    """(source system, source id) → target, status and hash; ids only, no bodies (read
    from the snapshot's index, or from the snapshot itself where it has none)."""
    index: dict[tuple[str, str], BaselineEntry] = {}
    if baseline_run is None:
        return index
    index_key = keys.state_index_key(tenant, baseline_run, entity)
    if store.exists(index_key):
        # Built in C (a NamedTuple's own constructor is a Python call per entry: seconds
        # at a million records).
        entry = partial(tuple.__new__, BaselineEntry)
        loads = orjson.loads
        for part in _batched(store.iter_lines(index_key), 10_000):
            lines = [loads(line) for line in part]
            index.update(
                zip(
                    map(_KEY, lines),
                    map(entry, map(_ENTRY, lines)),
                    strict=True,
                )
            )
        return index
    for line in iter_snapshot(store, tenant, baseline_run, entity):
        index[(line["source_system"], line["source_id"])] = BaselineEntry(
            line["target_id"], line["status"], line["hash"]
        )
    return index


def index_line(line: dict[str, Any]) -> list[str]:
    """A snapshot line's entry in the snapshot index."""
    return [
        line["source_system"],
        line["source_id"],
        line["target_id"],
        line["status"],
        line["hash"],
    ]
