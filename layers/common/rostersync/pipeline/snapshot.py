"""The committed state of a tenant: the baseline every run is diffed against.

A snapshot is, per entity under ``state/{tenant}/{run}/``, one JSON-lines object (made
whole by one commit chunk) or a list of parts (``{entity}.parts.json``, made by several
chunks side by side: at a million students a joined copy would be gigabytes written
again for nothing); each body has an index beside it, line for line.

A list of parts may end with a *top* layer (``top``: its last part): the lines a later
commit changed or added, over parts made by an earlier one. A key's line is then the
top's if the top has it, else the earlier parts' (which hold each key once, as the top
does): a daily sync that changes 1% of a district writes that 1% and lists the
earlier run's files again, instead of copying them (``pipeline.commit``). Readers take
the layers through ``iter_snapshot_lines``, ``iter_index_lines``, ``live_pairs``,
``load_baseline_index`` and, in the engine, ``layered_sql``. The pointer
``state/{tenant}/current.json`` names the run whose snapshot is current. Each line is
``{source_system, source_id, target_id, status, hash, record}`` where ``status`` is
``active`` or ``archived`` and ``hash`` covers the record's content (not its metadata).
Readers take a snapshot through ``snapshot_files``, whichever way it was made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

import orjson

from rostersync.changes import content_of
from rostersync.errors import FatalError
from rostersync.models import Entity
from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort

ACTIVE = "active"
ARCHIVED = "archived"
#: The fields of a snapshot line that are its key (for ``layered_sql`` over its bodies).
BODY_KEY = ("source_system", "source_id")


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


class SnapshotFiles(NamedTuple):
    """Where an entity's committed snapshot is: its bodies and, line for line, their
    indexes (``None`` for a snapshot kept without one), in reading order."""

    bodies: tuple[str, ...]
    indexes: tuple[str, ...] | None
    #: Changes whenever the snapshot does (the index's version, or the parts list's).
    version: str | None
    #: Kept in parts (a list of them), not whole.
    listed: bool = False
    #: How many of the last parts are the top layer (0 or 1; see the module).
    top: int = 0

    def parts(self) -> list[tuple[str, str | None]]:
        """The (body, index) pairs, in order (one for a whole snapshot), the top's last."""
        indexes: Iterable[str | None] = self.indexes or [None] * len(self.bodies)
        return list(zip(self.bodies, indexes, strict=True))

    def base_parts(self) -> list[tuple[str, str | None]]:
        """The parts under the top layer (all of them where there is none)."""
        parts = self.parts()
        return parts[: len(parts) - self.top]

    def top_part(self) -> tuple[str, str] | None:
        """The top layer's body and index, if there is one."""
        if not self.top or self.indexes is None:
            return None
        return self.bodies[-1], self.indexes[-1]


PARTS_FORMAT = 1


class BadPartsList(FatalError):
    """A snapshot's list of parts that is not one (or names objects outside the state)."""


def snapshot_files(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> SnapshotFiles | None:
    """The objects of ``baseline_run``'s snapshot of ``entity`` (``None`` before the first
    commit). A whole snapshot that was never written reads as empty, as before."""
    if baseline_run is None:
        return None
    parts_key = keys.state_parts_key(tenant, baseline_run, entity)
    listed = store.get_json(parts_key)
    if listed is not None:
        return _listed_files(store, tenant, parts_key, listed)
    index_key = keys.state_index_key(tenant, baseline_run, entity)
    version = store.version(index_key)
    return SnapshotFiles(
        (keys.state_key(tenant, baseline_run, entity),),
        None if version is None else (index_key,),
        version,
    )


def _listed_files(
    store: ObjectStorePort, tenant: str, parts_key: str, listed: Any
) -> SnapshotFiles:
    own = f"state/{keys.check_tenant(tenant)}/"
    if not isinstance(listed, dict) or listed.get("format") != PARTS_FORMAT:
        raise BadPartsList(f"{parts_key}: not a list of snapshot parts")
    parts = listed.get("parts")
    if not isinstance(parts, list):
        raise BadPartsList(f"{parts_key}: not a list of snapshot parts")
    top = listed.get("top", 0)
    if top not in (0, 1) or isinstance(top, bool) or top > len(parts):
        raise BadPartsList(f"{parts_key}: not a list of snapshot parts")
    bodies: list[str] = []
    indexes: list[str] | None = []

    def own_key(key: Any) -> TypeGuard[str]:
        return isinstance(key, str) and key.startswith(own) and ".." not in key

    for part in parts:
        body = part.get("body") if isinstance(part, dict) else None
        index = part.get("index") if isinstance(part, dict) else None
        if not own_key(body):
            raise BadPartsList(f"{parts_key}: a part outside the tenant's state")
        if index is not None and not own_key(index):
            raise BadPartsList(f"{parts_key}: an index outside the tenant's state")
        bodies.append(body)
        if index is None or indexes is None:
            indexes = None
        else:
            indexes.append(index)
    if top and indexes is None:
        raise BadPartsList(f"{parts_key}: a top layer over parts without an index")
    return SnapshotFiles(
        tuple(bodies),
        None if indexes is None else tuple(indexes),
        store.version(parts_key),
        listed=True,
        top=top,
    )


def write_parts_list(
    store: ObjectStorePort,
    tenant: str,
    run_id: str,
    entity: Entity,
    parts: Iterable[tuple[str, str | None]],
    *,
    top: int = 0,
) -> None:
    """Make ``run_id``'s snapshot of ``entity`` the parts ``(body, index)``, in order,
    the last ``top`` of them its top layer."""
    listed: dict[str, Any] = {
        "format": PARTS_FORMAT,
        "parts": [{"body": body, "index": index} for body, index in parts],
    }
    if top:
        listed["top"] = top
    store.put_json(keys.state_parts_key(tenant, run_id, entity), listed)


def snapshot_parts(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> list[tuple[str, str | None]]:
    """The snapshot's (body, index) pairs, in order (one for a whole snapshot)."""
    files = snapshot_files(store, tenant, baseline_run, entity)
    return [] if files is None else files.parts()


def local_files(
    store: ObjectStorePort, object_keys: Iterable[str], stack: ExitStack
) -> list[Path] | None:
    """Local files of ``object_keys`` (see ``ObjectStorePort.local_file``) that ``stack``
    lets go of; ``None`` if one of them does not exist."""
    paths: list[Path] = []
    for key in object_keys:
        path = stack.enter_context(store.local_file(key))
        if path is None:
            return None
        paths.append(path)
    return paths


def iter_snapshot(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> Iterator[dict[str, Any]]:
    """Lines of an entity's snapshot (nothing before the first commit)."""
    return map(orjson.loads, iter_snapshot_lines(store, tenant, baseline_run, entity))


def iter_snapshot_lines(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> Iterator[bytes]:
    """``iter_snapshot``'s lines unparsed."""
    files = snapshot_files(store, tenant, baseline_run, entity)
    if files is None:
        return iter(())
    if files.top:
        return (body for body, _ in live_pairs(store, files))
    return chain.from_iterable(map(store.iter_lines, files.bodies))


def iter_index_lines(store: ObjectStorePort, files: SnapshotFiles) -> Iterator[bytes]:
    """The snapshot's index lines, unparsed (nothing for a snapshot without an index);
    of a layered one, the live lines (the earlier parts' less the keys the top has,
    then the top's)."""
    if not files.top:
        return chain.from_iterable(map(store.iter_lines, files.indexes or ()))
    return _live_index_lines(store, files)


def _key_of(index_raw: bytes) -> tuple[Any, Any]:
    system, source_id, *_ = orjson.loads(index_raw)
    return system, source_id


def top_keys(store: ObjectStorePort, files: SnapshotFiles) -> set[tuple[Any, Any]]:
    """The keys the top layer holds (none without one)."""
    top = files.top_part()
    return set() if top is None else set(map(_key_of, store.iter_lines(top[1])))


def _live_index_lines(store: ObjectStorePort, files: SnapshotFiles) -> Iterator[bytes]:
    shadowed = top_keys(store, files)
    for _, index in files.base_parts():
        for raw in store.iter_lines(index or ""):
            if _key_of(raw) not in shadowed:
                yield raw
    top = files.top_part()
    if top is not None:
        yield from store.iter_lines(top[1])


def live_pairs(store: ObjectStorePort, files: SnapshotFiles) -> Iterator[tuple[bytes, bytes]]:
    """The live (body, index) line pairs of a snapshot with an index: every line of
    a snapshot without a top layer; of a layered one, the earlier parts' lines whose
    key the top does not hold, then the top's."""
    shadowed = top_keys(store, files)
    for body, index in files.parts():
        if index is None:
            raise BadPartsList(f"{body}: a snapshot part without an index")
        pairs = zip(store.iter_lines(body), store.iter_lines(index), strict=True)
        if not shadowed or (body, index) == files.top_part():
            yield from pairs
            continue
        for pair in pairs:
            if _key_of(pair[1]) not in shadowed:
                yield pair


def layered_sql(
    read: Callable[[Sequence[Path]], str],
    paths: Sequence[Path],
    top: int,
    key: tuple[str, str],
) -> str:
    """An engine's SELECT of a snapshot's live lines: ``read`` makes a SELECT of some of
    its files (``paths``, in order, the last ``top`` of them the top layer) with the
    columns ``key`` names among its own. Without a top, ``read`` of every file; else the
    earlier parts' rows whose key the top has not (an anti join), then the top's."""
    if not top:
        return read(paths)
    base, upper = list(paths[: len(paths) - top]), list(paths[len(paths) - top :])
    if not base:
        return read(upper)
    s, i = key
    return (
        f"(SELECT * FROM ({read(base)}) AS _base WHERE NOT EXISTS ("
        f"SELECT 1 FROM ({read(upper)}) AS _top WHERE _top.{s} IS NOT DISTINCT FROM"
        f" _base.{s} AND _top.{i} IS NOT DISTINCT FROM _base.{i}))"
        f" UNION ALL ({read(upper)})"
    )


def load_baseline_index(
    store: ObjectStorePort, tenant: str, baseline_run: str | None, entity: Entity
) -> dict[tuple[str, str], BaselineEntry]:
    """(source system, source id) → target, status and hash; ids only, no bodies (read
    from the snapshot's index, or from the snapshot itself where it has none)."""
    index: dict[tuple[str, str], BaselineEntry] = {}
    files = snapshot_files(store, tenant, baseline_run, entity)
    if files is None:
        return index
    if files.indexes is not None:
        # Built in C (a NamedTuple's own constructor is a Python call per entry: seconds
        # at a million records); a top layer's lines come last and replace the earlier
        # parts' of the same key.
        entry = partial(tuple.__new__, BaselineEntry)
        loads = orjson.loads
        raws = chain.from_iterable(map(store.iter_lines, files.indexes))
        for part in _batched(raws, 10_000):
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
