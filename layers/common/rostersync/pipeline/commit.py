"""commit: apply a staged change set's included actions, in chunks.

A commit has three parts, each its own state-machine task:

1. **begin** (``commit``): checks the run may commit on the current state, plans its
   chunks and marks the run *committing*. The plan (``runs/{t}/{r}/commit/plan.json``)
   has, per entity, one *snapshot* chunk (the entity's new snapshot: the baseline with
   the changes applied, plus the directory items of changed records the baseline holds)
   and *adds* chunks (directory items and links of the records new to the tenant, a part
   of ``COMMIT_CHUNK_ACTIONS`` lines of the change file each, read by a ranged read).
   An entity of more than ``SNAPSHOT_PART_LINES`` lines (a first sync's enrollments)
   has its snapshot in parts instead, each its own chunk: a *base* (the baseline with
   the changes other than adds applied; the plan keeps those changes in a file of their
   own) and one part per range of the change file (the added records' lines); the
   finish joins the parts into the snapshot before the state pointer moves to it.
2. **chunks** (``commit_chunk``): a Distributed Map applies them in parallel when the
   change set is larger than ``COMMIT_INLINE_ACTIONS``; otherwise the finish applies them
   itself, one after the other: the same code either way. Every chunk is idempotent by
   ``(tenant, run, commit, chunk)``: a chunk that finished leaves a marker with its rows,
   time and peak memory, and is skipped when met again; puts are idempotent, so a chunk
   cut short is simply done again.
3. **finish** (``commit_finish``): applies the chunks not yet done, then publishes the
   change events, writes the report, moves the state pointer, marks the run committed
   and sends ``run.committed``. The app learns of the commit only from that event: the
   items land while the run shows *committing*.

Change events: one per included action while the change set has at most the tenant's
``change_events_limit`` actions; above it none, and ``run.committed`` carries the keys
of the run's change files instead (a first sync of a million records is not a million
events). Each change event has a stable ``event_id`` (tenant, baseline, action id,
content); the ids published on top of a baseline are kept in a ledger
(``published/{tenant}/{baseline}/``, a chunk every 1,000 events and whenever publishing
stops on an error), so a retried finish, and a re-run staged on the same baseline after
a failed commit, publish only what was not published.

A commit interrupted part-way (a chunk or the finish failing for good, a process
killed) leaves the run *committing*, with the error kept: it is resumed, never
restarted and never labelled *failed* half-applied, by the next start for the tenant
(``application.runs``), which runs begin again on the same plan, skipping done chunks.
A finish that finds the pointer already on the run only completes the run record and
its notification.
"""

from __future__ import annotations

import hashlib
import mmap
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import IO, Any

import orjson

from rostersync.changes import EVENT_VERBS, HoldTrip
from rostersync.errors import RunStateError, StaleBaseline
from rostersync.models import ENTITY_ORDER, ENTITY_SINGULAR, Entity
from rostersync.observability import peak_mb
from rostersync.pipeline.change_lines import noted_lines
from rostersync.pipeline.contracts import CommitChunk, CommitPlan, RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.notify import notify_run
from rostersync.pipeline.report import build_report, links_existing
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    SnapshotFiles,
    content_hash,
    current_baseline,
    index_line,
    iter_index_lines,
    live_pairs,
    snapshot_files,
    top_keys,
    write_parts_list,
)
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.records import (
    COMMITTED_STATUSES,
    IDENTITY,
    CommitProgress,
    ItemStatus,
    RunStatus,
    RunUpdate,
    utc_now,
)
from rostersync.storage import keys
from rostersync.storage.events import EVENTS_PER_CALL
from rostersync.storage.objects import copy_range, dumps_line

# How large a change set is applied inline, and how many lines a chunk takes, are the
# stack's settings (``COMMIT_INLINE_ACTIONS``, 20,000; ``COMMIT_CHUNK_ACTIONS``, 10,000:
# well within a 1 GB Lambda and a minute).
#: Events between ledger chunks while publishing; a crash between a PutEvents call and
#: the next chunk can repeat at most this many (each with the same ``event_id``).
_CHECKPOINT_EVENTS = 1000
#: Directory items and links of changed baseline lines handed to a repository at a
#: time, held while the baseline is read beside the day's changes (an item is a dict
#: of its record: 50,000 took 200 MB).
_CHANGED_BATCH = 10_000
#: The changes other than adds a snapshot applies, by the key of the baseline line each
#: replaces: each action's line as the change file holds it, parsed when its line is met
#: (66,592 users' changes parsed took 254 MB of a chunk's 1 GB at a million students).
_Changes = dict[tuple[str, str], bytes]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def included_actions(deps: Deps, state: RunState, entity: Entity) -> Iterator[dict[str, Any]]:
    for action in deps.store.iter_jsonl(keys.changes_key(state.tenant, state.run_id, entity)):
        if action.get("included"):
            yield action


def _link(action: dict[str, Any], run_id: str, at: str) -> dict[str, Any]:
    """An identity link with its provenance: how it was made, by which run, when."""
    link = {
        "source_system": action["source_system"],
        "source_id": action["source_id"],
        "target_id": action["target_id"],
        "method": action.get("tier") or "unmatched",
        "run_id": run_id,
        "linked_at": at,
    }
    if action.get("relinked_from"):
        link["relinked_from"] = action["relinked_from"]
    return link


_STATUSES = frozenset(status.value for status in ItemStatus)


def flat_item(line: dict[str, Any], run_id: str, status: str | None = None) -> dict[str, Any]:
    """The directory's view of a snapshot line (or of an added record's action, with
    ``status``), flat (``DirectoryItem.flat``): the record's fields, then its identity.
    Built as a dict, without a model: the line is the commit's own, and a million models
    would cost the commit seconds."""
    status = status or line["status"]
    if status not in _STATUSES:
        raise ValueError(f"{line['target_id']}: no such status {status!r}")
    # A copy less the identity attributes (faster than a comprehension testing each key).
    item: dict[str, Any] = dict(line.get("record") or {})
    pop = item.pop
    for name in IDENTITY:
        pop(name, None)
    item["target_id"] = line["target_id"]
    if line["source_system"] is not None:
        item["source_system"] = line["source_system"]
    if line["source_id"] is not None:
        item["source_id"] = line["source_id"]
    item["status"] = status
    item["run_id"] = run_id
    return item


def _added_line(action: dict[str, Any]) -> dict[str, Any]:
    """The snapshot line of an added record."""
    return {
        "source_system": action["source_system"],
        "source_id": action["source_id"],
        "target_id": action["target_id"],
        "status": ACTIVE,
        "record": action["record"],
        "hash": content_hash(action["record"]),
    }


# ----------------------------------------------------------------------------- plan


def _plan_key(state: RunState) -> str:
    return keys.run_prefix(state.tenant, state.run_id) + "commit/plan.json"


def _done_key(tenant: str, run_id: str, chunk_id: str) -> str:
    return keys.run_prefix(tenant, run_id) + f"commit/done/{chunk_id}.json"


def _base_changes_key(tenant: str, run_id: str, entity: Entity) -> str:
    """The included actions of an entity other than adds (kept by the plan for the
    chunk that applies them to the baseline)."""
    return keys.run_prefix(tenant, run_id) + f"commit/changes/{entity.value}.jsonl"


def _part_keys(tenant: str, run_id: str, chunk: CommitChunk) -> tuple[str, str]:
    """Where a snapshot part chunk writes its lines and their index lines: a part of the
    run's snapshot (the finish lists the parts)."""
    return keys.state_part_keys(tenant, run_id, chunk.entity, chunk.id)


def _plan(deps: Deps, state: RunState) -> CommitPlan:
    """Chunks for the run's change files: per entity *snapshot* chunks and *adds*
    chunks. Inline, an entity's change file is one *adds* chunk; fanned out, each chunk
    reads its own byte range of the file (a ranged read: no copy, no parse of others).

    An entity of more than ``SNAPSHOT_PART_LINES`` lines has its snapshot in parts, so
    that no chunk takes a minute at a million students: a *base* chunk (the baseline
    with the changes other than adds applied, read from a file the plan keeps of them)
    and a chunk per range of that many lines of the change file (the added records'
    lines); the finish lists them as the snapshot's parts (no copy)."""
    size = deps.settings.commit_chunk_actions
    scans: dict[Entity, _Scan] = {}
    for entity in ENTITY_ORDER:
        key = keys.changes_key(state.tenant, state.run_id, entity)
        base_key = _base_changes_key(state.tenant, state.run_id, entity)
        lines_key = keys.change_lines_key(state.tenant, state.run_id, entity)
        noted = _scan_noted(deps, key, lines_key, size, base_key)
        scans[entity] = noted if noted is not None else _scan(deps, key, size, base_key)
    total = sum(scan.lines for scan in scans.values())
    fan_out = total > deps.settings.commit_inline_actions
    chunks: list[CommitChunk] = []
    for entity, scan in scans.items():
        key = keys.changes_key(state.tenant, state.run_id, entity)
        if len(scan.parts) > 1:
            chunks.append(
                CommitChunk(
                    id=f"{entity.value}-snapshot-base",
                    entity=entity,
                    kind="snapshot",
                    key=_base_changes_key(state.tenant, state.run_id, entity),
                )
            )
            chunks.extend(
                CommitChunk(
                    id=f"{entity.value}-snapshot-{n:05d}",
                    entity=entity,
                    kind="snapshot",
                    key=key,
                    start=start,
                    end=end,
                )
                for n, (start, end) in enumerate(scan.parts)
            )
        else:
            chunks.append(
                CommitChunk(id=f"{entity.value}-snapshot", entity=entity, kind="snapshot")
            )
        if not scan.lines:
            continue
        ranges = scan.ranges if fan_out else [(None, None)]
        chunks.extend(
            CommitChunk(
                id=f"{entity.value}-adds-{n:05d}",
                entity=entity,
                kind="adds",
                key=key,
                start=start,
                end=end,
            )
            for n, (start, end) in enumerate(ranges)
        )
    return CommitPlan(
        actions=total,
        included=sum(scan.included for scan in scans.values()),
        fan_out=fan_out,
        concurrency=deps.settings.commit_concurrency,
        chunks=chunks,
    )


#: Lines of a change file per snapshot part (about 5 s of one core each).
SNAPSHOT_PART_LINES = 500_000


@dataclass
class _Scan:
    lines: int = 0
    included: int = 0
    #: Byte ranges ``[start, end)`` of ``size`` lines each.
    ranges: list[tuple[int | None, int | None]] = field(default_factory=list)
    #: Byte ranges of ``SNAPSHOT_PART_LINES`` lines each.
    parts: list[tuple[int | None, int | None]] = field(default_factory=list)


def _scan_noted(deps: Deps, key: str, lines_key: str, size: int, base_key: str) -> _Scan | None:
    """``_scan`` from what stage noted of the change file as it wrote it
    (``pipeline.change_lines``), while the file is the version stage wrote; None
    otherwise, or where a snapshot in parts needs included lines other than adds (then
    every line is read)."""
    noted = noted_lines(deps.store, key, lines_key)
    if noted is None:
        return None
    starts, end = noted.starts, noted.size
    parts = [(starts[i], end) for i in range(0, noted.lines, SNAPSHOT_PART_LINES)]
    if len(parts) > 1 and noted.others:
        return None
    if len(parts) > 1:
        deps.store.put_bytes(base_key, b"")  # a first sync's snapshot: adds only

    def cut(every: int) -> list[tuple[int | None, int | None]]:
        bounds = [starts[i] for i in range(0, noted.lines, every)] + [end]
        return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

    return _Scan(
        lines=noted.lines,
        included=noted.included,
        ranges=cut(size),
        parts=cut(SNAPSHOT_PART_LINES) if parts else [],
    )


def _scan(deps: Deps, key: str, size: int, base_key: str) -> _Scan:
    """Parse every line of a change file (an unreadable change set stops the commit here,
    before anything of it is applied); count lines and included actions; cut it into
    byte ranges of ``size`` lines, and of ``SNAPSHOT_PART_LINES``; keep its included
    actions other than adds at ``base_key`` (for a snapshot in parts)."""
    scan = _Scan()
    if not deps.store.exists(key):
        return scan
    starts: list[int] = []
    part_starts: list[int] = []
    position = 0  # where ``pending`` starts in the file
    loads = orjson.loads

    with deps.store.writer(base_key) as base:

        def take(line: bytes, at: int) -> None:
            if not line.strip():
                return
            if scan.lines % size == 0:
                starts.append(at)
            if scan.lines % SNAPSHOT_PART_LINES == 0:
                part_starts.append(at)
            action = loads(line)
            if action.get("included"):
                scan.included += 1
                if action.get("action") != "add":
                    base.write(line + b"\n")
            scan.lines += 1

        with deps.store.open_stream(key) as body:
            pending = b""
            while chunk := body.read(1 << 20):
                buffer = pending + chunk
                begin = 0
                while (newline := buffer.find(b"\n", begin)) != -1:
                    take(buffer[begin:newline], position + begin)
                    begin = newline + 1
                position += begin
                pending = buffer[begin:]
            take(pending, position)
    end = position + len(pending)
    bounds: list[int] = [*starts, end]
    scan.ranges = [(bounds[i], bounds[i + 1]) for i in range(len(starts))]
    part_bounds: list[int] = [*part_starts, end]
    scan.parts = [(part_bounds[i], part_bounds[i + 1]) for i in range(len(part_starts))]
    return scan


def begin_commit(state: RunState, deps: Deps) -> RunState:
    """Check the run may commit, plan its chunks (or take the plan an interrupted
    commit left) and mark it *committing*."""
    run = deps.runs.get(state.tenant, state.run_id)
    status = run.status
    if status in COMMITTED_STATUSES:
        state.commit = CommitPlan(actions=0, fan_out=False, chunks=[])
        return state
    if status in {RunStatus.DISCARDED, RunStatus.FAILED}:
        raise RunStateError(f"run {state.run_id} is {status}; it cannot be committed")
    summary = deps.store.get_json(keys.change_summary_key(state.tenant, state.run_id)) or {}
    staged_on = summary.get("baseline_run_id")
    pointer = current_baseline(deps.store, state.tenant)
    if pointer == state.run_id:
        # Applied and pointed to already: the finish only completes the record.
        state.commit = CommitPlan(actions=0, fan_out=False, chunks=[])
        return state
    if pointer != staged_on:
        raise StaleBaseline(
            f"run {state.run_id} was staged on {staged_on or 'an empty directory'}, "
            f"but the committed state is now {pointer}; stage it again"
        )
    stored = deps.store.get_json(_plan_key(state))
    if stored is not None:
        plan = CommitPlan.model_validate(stored)
    else:
        plan = _plan(deps, state)
        deps.store.put_json(_plan_key(state), plan.model_dump(mode="json"))
    done = set(_done_chunks(deps, state.tenant, state.run_id))
    remaining = [chunk for chunk in plan.chunks if chunk.id not in done]
    state.commit = CommitPlan(
        actions=plan.actions,
        included=plan.included,
        fan_out=plan.fan_out and bool(remaining),
        concurrency=plan.concurrency,
        chunks=remaining,
        began_ms=int(time.time() * 1000),
    )
    deps.runs.update(
        state.tenant,
        state.run_id,
        RunUpdate(
            status=RunStatus.COMMITTING,
            committing_at=run.committing_at or utc_now(),
            commit=CommitProgress(chunks=len(plan.chunks), done=len(done), actions=plan.actions),
        ),
    )
    state.counts.setdefault("commit", {})["chunks"] = len(plan.chunks)
    return state


def _done_chunks(deps: Deps, tenant: str, run_id: str) -> list[str]:
    prefix = keys.run_prefix(tenant, run_id) + "commit/done/"
    return [key.removeprefix(prefix).removesuffix(".json") for key in deps.store.list_keys(prefix)]


# --------------------------------------------------------------------------- chunks


def apply_chunk(deps: Deps, tenant: str, run_id: str, chunk: CommitChunk) -> dict[str, Any]:
    """Apply one chunk unless its marker says it is done; return the marker."""
    marker_key = _done_key(tenant, run_id, chunk.id)
    done = deps.store.get_json(marker_key)
    if done is not None:
        return dict(done)
    started = time.monotonic()
    summary = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    baseline_run = summary.get("baseline_run_id")
    linked = 0
    if chunk.kind == "snapshot" and chunk.key is None:
        rows = _write_snapshot(deps, tenant, run_id, chunk.entity, baseline_run)
    elif chunk.kind == "snapshot" and chunk.start is None:
        rows = _write_snapshot_base(deps, tenant, run_id, chunk, baseline_run)
    elif chunk.kind == "snapshot":
        rows = _write_snapshot_part(deps, tenant, run_id, chunk)
    else:
        rows, linked = _write_adds(deps, tenant, run_id, chunk)
    marker: dict[str, Any] = {
        "chunk": chunk.id,
        "rows": rows,
        "ms": int((time.monotonic() - started) * 1000),
        "peak_mb": peak_mb(),
    }
    if chunk.kind == "adds":
        # Of the adds, those linked to an existing app record (the rest are new ones).
        marker["linked"] = linked
    deps.store.put_json(marker_key, marker)
    return marker


def _write_adds(deps: Deps, tenant: str, run_id: str, chunk: CommitChunk) -> tuple[int, int]:
    """Directory items and links of the included *add* actions of one part; how many,
    and how many of them link to an existing app record.

    The items are handed over as they are made (the repository writes them in
    batches of its own size: locally a transaction costs about as much for a few rows
    as for many, see ``storage.local.database``); the links, smaller, are kept for the
    part and put after them."""
    at = _now()
    entity = chunk.entity.value
    links: list[dict[str, Any]] = []
    linked = 0
    if chunk.start is not None and chunk.end is not None:
        lines = _range_lines(deps, chunk.key or "", chunk.start, chunk.end)
        rows: Iterator[Any] = map(orjson.loads, lines)
    else:
        rows = deps.store.iter_jsonl(chunk.key or "")

    def items() -> Iterator[dict[str, Any]]:
        nonlocal linked
        for action in rows:
            if action["action"] != "add" or not action.get("included"):
                continue
            links.append(_link(action, run_id, at))
            linked += links_existing(action)
            yield flat_item(action, run_id, ACTIVE)

    written = deps.directory.put_flat(tenant, entity, items())
    deps.links.put_many(tenant, entity, links)
    return written, linked


def _write_snapshot(
    deps: Deps, tenant: str, run_id: str, entity: Entity, baseline_run: str | None
) -> int:
    """The entity's new snapshot, whole; directory items and links for the changed
    records the baseline holds (updates, archives, reactivations, re-links). Returns
    lines written."""
    changes_key = keys.changes_key(tenant, run_id, entity)
    targets = (keys.state_key(tenant, run_id, entity), keys.state_index_key(tenant, run_id, entity))
    if baseline_run is not None and not _any_included(deps, changes_key):
        _copy_baseline(deps, tenant, baseline_run, run_id, entity, f"{entity.value}-snapshot")
        return 0
    files = snapshot_files(deps.store, tenant, baseline_run, entity)
    if files is not None and files.indexes is not None:
        layered = _write_layered(deps, tenant, run_id, entity, files, changes_key)
        if layered is not None:
            return layered
    changes: _Changes = {}
    written = 0
    with deps.store.writer(targets[0]) as snapshot, deps.store.writer(targets[1]) as index:
        # One pass over the change file: the added records' lines are written as they
        # come (a snapshot's lines are in no particular order), the other changes kept
        # for the baseline's lines below.
        for raw in deps.store.iter_lines(changes_key):
            action = orjson.loads(raw)
            if not action.get("included"):
                continue
            if action["action"] == "add":
                _write_added(action, snapshot, index)
                written += 1
            else:
                _keep_change(changes, action, raw)
        written += _apply_to_baseline(
            deps, tenant, run_id, entity, baseline_run, changes, snapshot, index
        )
    return written


#: The largest top layer, as a share of the bytes of the index under it: above, the
#: snapshot is made flat again (every reader of a layered one reads the top twice).
LAYER_SHARE = 0.125


def _write_layered(
    deps: Deps, tenant: str, run_id: str, entity: Entity, files: SnapshotFiles, changes_key: str
) -> int | None:
    """The new snapshot as a top layer over the baseline's earlier parts: the top's
    lines with the run's changes applied, the changed baseline lines (found by the
    index, the rest passed over), the added records' lines. The lines written, or
    ``None`` (nothing written) where the snapshot is made flat instead: a change that
    re-links a record (its old key must go), a top layer above ``LAYER_SHARE``, a
    baseline not as the commit writes it."""
    changes: _Changes = {}
    for raw in deps.store.iter_lines(changes_key):
        action = orjson.loads(raw)
        if not action.get("included"):
            continue
        if action.get("relinked_from"):
            return None
        if action["action"] != "add":
            _keep_change(changes, action, raw)
    base = files.base_parts()
    under = sum(deps.store.size(index or "") or 0 for _, index in base)
    top = keys.state_part_keys(tenant, run_id, entity, f"{entity.value}-top")
    with deps.store.writer(top[0]) as snapshot, deps.store.writer(top[1]) as index:
        _, above, below = _by_layer(deps, files, changes)
        written = _apply_to_top(deps, tenant, run_id, entity, files, above, snapshot, index)
        if index.tell() + len(below) * 64 > under * LAYER_SHARE:
            written = -1  # too large a top (an index line is 64 bytes or more)
        else:
            try:
                written += _apply_in_runs(
                    deps,
                    tenant,
                    run_id,
                    entity,
                    "",
                    below,
                    snapshot,
                    index,
                    parts=base,
                    copy=False,
                )
            except _NotAsWritten:
                written = -1
        if written >= 0:
            for raw in deps.store.iter_lines(changes_key):
                action = orjson.loads(raw)
                if action["action"] == "add" and action.get("included"):
                    _write_added(action, snapshot, index)
                    written += 1
            if index.tell() > under * LAYER_SHARE:
                written = -1
    if written < 0:
        for key in top:
            deps.store.delete(key)
        return None
    write_parts_list(deps.store, tenant, run_id, entity, [*base, top], top=1)
    return written


def _write_snapshot_base(
    deps: Deps, tenant: str, run_id: str, chunk: CommitChunk, baseline_run: str | None
) -> int:
    """The first part of a snapshot in parts: the baseline with the changes other than
    adds (``chunk.key``, kept by the plan) applied, with their directory items and
    links."""
    entity = chunk.entity
    targets = _part_keys(tenant, run_id, chunk)
    changes: _Changes = {}
    for raw in deps.store.iter_lines(chunk.key or ""):
        _keep_change(changes, orjson.loads(raw), raw)
    files = snapshot_files(deps.store, tenant, baseline_run, entity)
    if baseline_run is not None and not changes and not (files is not None and files.top):
        _copy_baseline(deps, tenant, baseline_run, run_id, entity, chunk.id, parted=True)
        return 0
    with deps.store.writer(targets[0]) as snapshot, deps.store.writer(targets[1]) as index:
        return _apply_to_baseline(
            deps, tenant, run_id, entity, baseline_run, changes, snapshot, index
        )


def _write_snapshot_part(deps: Deps, tenant: str, run_id: str, chunk: CommitChunk) -> int:
    """A part of a snapshot in parts: the lines of the records a range of the change
    file adds."""
    written = 0
    snapshot_key, index_key = _part_keys(tenant, run_id, chunk)
    loads = orjson.loads
    lines = _range_lines(deps, chunk.key or "", chunk.start or 0, chunk.end or 0)
    with deps.store.writer(snapshot_key) as snapshot, deps.store.writer(index_key) as index:
        for raw in lines:
            action = loads(raw)
            if action["action"] == "add" and action.get("included"):
                _write_added(action, snapshot, index)
                written += 1
    return written


#: Bytes read at a time from a range of a change file.
_RANGE_BLOCK = 4 << 20


def _range_lines(deps: Deps, key: str, start: int, end: int) -> Iterator[bytes]:
    """The non-empty lines of bytes ``start`` to ``end`` of an object, read a block at a
    time (a part of a snapshot spans hundreds of megabytes at a million students)."""
    pending = b""
    at = start
    while at < end:
        block = deps.store.read_bytes(key, at, min(at + _RANGE_BLOCK, end))
        if not block:
            break
        at += len(block)
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def _adds_of(plan: CommitPlan, markers: list[dict[str, Any]]) -> dict[str, dict[str, int]] | None:
    """The included adds per entity, new and linked, as the adds chunks counted them
    (None where a marker does not say: one written by an earlier version)."""
    if not markers:
        return None
    adds = {entity.value: {"new": 0, "linked": 0} for entity in ENTITY_ORDER}
    entity_of = {chunk.id: chunk.entity.value for chunk in plan.chunks if chunk.kind == "adds"}
    for marker in markers:
        entity = entity_of.get(str(marker.get("chunk")))
        if entity is None:
            continue
        if not isinstance(marker.get("linked"), int):
            return None
        adds[entity]["linked"] += marker["linked"]
        adds[entity]["new"] += int(marker["rows"]) - marker["linked"]
    return adds


def _snapshot_parts(plan: CommitPlan) -> dict[Entity, list[str]]:
    """The entities whose snapshot the plan makes in parts, and the parts' chunk ids in
    order (the base first)."""
    parts: dict[Entity, list[str]] = {}
    for chunk in plan.chunks:
        if chunk.kind == "snapshot" and chunk.key is not None:
            parts.setdefault(chunk.entity, []).append(chunk.id)
    return parts


def _list_snapshots(deps: Deps, tenant: str, run_id: str, plan: CommitPlan) -> None:
    """List the parts of each snapshot made in parts as the run's snapshot, in the plan's
    order (a base that took an unchanged baseline in parts has several, named after it);
    nothing is copied. Again if the finish runs again: the same parts give the same list."""
    for entity, chunk_ids in _snapshot_parts(plan).items():
        folder = keys.state_parts_prefix(tenant, run_id, entity)
        stored = set(deps.store.list_keys(folder))
        parts: list[tuple[str, str | None]] = []
        for chunk_id in chunk_ids:
            bodies = sorted(
                key
                for key in stored
                if key.startswith(f"{folder}{chunk_id}.")
                and key.endswith(".jsonl")
                and not key.endswith(".index.jsonl")
            )
            for body in bodies:
                if not deps.store.size(body):
                    continue  # nothing in it (a first sync's base)
                index = body.removesuffix(".jsonl") + ".index.jsonl"
                parts.append((body, index if index in stored else None))
        write_parts_list(deps.store, tenant, run_id, entity, parts)


def _drop_staged_parts(deps: Deps, tenant: str, run_id: str) -> None:
    """Delete what the stage's attempts kept beside the run's change files (their plans,
    split diffs, change parts, markers: the change summary lists the parts) and what
    normalize kept beside its files (its progress, parts' markers, issues and ids: the
    report lists the parts): the run is committed, nothing reads or stages it again."""
    prefix = keys.run_prefix(tenant, run_id)
    for folder in ("stage/", "normalize/"):
        for key in deps.store.list_keys(prefix + folder):
            deps.store.delete(key)


def _copy_baseline(
    deps: Deps,
    tenant: str,
    baseline_run: str,
    run_id: str,
    entity: Entity,
    name: str,
    *,
    parted: bool = False,
) -> None:
    """Nothing changed: the new snapshot is the old one. It lists the baseline's files
    as its own parts (nothing copied: on S3 a copy of a million students' enrollments
    is gigabytes, and above 5 GB not one request), its top layer as the top. Where the
    run makes this snapshot in parts (``parted``), the baseline's parts are copied as
    the part ``name`` (a whole one) or ``name.00000``, … (in the embedded store a second
    link to each file; on S3 a copy within the bucket), for the finish to list."""
    files = snapshot_files(deps.store, tenant, baseline_run, entity)
    if files is None:
        return
    if not parted:
        parts = [(body, index) for body, index in files.parts() if deps.store.exists(body)]
        if parts:  # else none was ever written: the new snapshot reads as empty too
            top = files.top if parts[-1] == files.top_part() else 0
            write_parts_list(deps.store, tenant, run_id, entity, parts, top=top)
        return
    for n, (body, index) in enumerate(files.parts()):
        if files.listed:
            target = keys.state_part_keys(tenant, run_id, entity, f"{name}.{n:05d}")
        else:
            target = keys.state_part_keys(tenant, run_id, entity, name)
        if deps.store.exists(body):
            deps.store.copy(body, target[0])
        if index is not None:
            deps.store.copy(index, target[1])


def _keep_change(changes: _Changes, action: dict[str, Any], raw: bytes) -> None:
    # A re-linked record replaces the line of the source id it was known by.
    old_id = action.get("relinked_from") or action["source_id"]
    changes[(action["source_system"], old_id)] = raw


def _write_added(action: dict[str, Any], snapshot: IO[bytes], index: IO[bytes]) -> None:
    line = _added_line(action)
    snapshot.write(dumps_line(line))
    index.write(dumps_line(index_line(line)))


class _Changer:
    """Applies a change to a baseline line, and gathers the directory items and links of
    the changed records (put ``_CHANGED_BATCH`` at a time)."""

    def __init__(self, deps: Deps, tenant: str, run_id: str, entity: Entity) -> None:
        self.deps = deps
        self.tenant = tenant
        self.run_id = run_id
        self.entity = entity
        self.at = _now()
        self.touched: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []

    def flush(self, force: bool = False) -> None:
        if force or len(self.touched) >= _CHANGED_BATCH:
            self.deps.directory.put_flat(self.tenant, self.entity.value, self.touched)
            self.touched.clear()
        if force or len(self.links) >= _CHANGED_BATCH:
            self.deps.links.put_many(self.tenant, self.entity.value, self.links)
            self.links.clear()

    def change(self, line: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
        if action["action"] == "archive":
            line["status"] = ARCHIVED
        else:
            line["status"] = ACTIVE
            line["record"] = action["record"]
            line["hash"] = content_hash(action["record"])
        if action.get("relinked_from"):
            line["source_id"] = action["source_id"]
            self.links.append(_link(action, self.run_id, self.at))
        self.touched.append(flat_item(line, self.run_id))
        self.flush()
        return line


def _apply_to_baseline(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    changes: _Changes,
    snapshot: IO[bytes],
    index: IO[bytes],
) -> int:
    """Write the baseline's lines with ``changes`` applied; directory items and links of
    the changed records. Returns lines written.

    The lines no change touches are copied as runs of bytes (``_apply_in_runs``); a
    baseline whose files are not as the commit writes them (no index, an empty line, a
    line the index does not match, a change whose record is not found once) is applied
    line by line instead, from where the copy in runs began: the same bytes either way."""
    files = snapshot_files(deps.store, tenant, baseline_run, entity)
    if baseline_run is not None and files is not None and files.indexes is not None:
        marks = snapshot.tell(), index.tell()
        try:
            if files.top:
                return _apply_flattened(
                    deps, tenant, run_id, entity, files, changes, snapshot, index
                )
            return _apply_in_runs(
                deps, tenant, run_id, entity, baseline_run, changes, snapshot, index
            )
        except _NotAsWritten:
            for out, mark in zip((snapshot, index), marks, strict=True):
                out.seek(mark)
                out.truncate()
    return _apply_line_by_line(deps, tenant, run_id, entity, baseline_run, changes, snapshot, index)


def _apply_flattened(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    files: SnapshotFiles,
    changes: _Changes,
    snapshot: IO[bytes],
    index: IO[bytes],
) -> int:
    """``_apply_to_baseline`` for a layered baseline, made flat: the earlier parts' lines
    less those the top layer holds (copied in runs, the changed ones applied), then the
    top's (the changed ones applied). The same lines, in the same order, as
    ``_apply_line_by_line`` of it."""
    shadowed, above, below = _by_layer(deps, files, changes)
    written = _apply_in_runs(
        deps,
        tenant,
        run_id,
        entity,
        "",
        below,
        snapshot,
        index,
        parts=files.base_parts(),
        masked=shadowed,
    )
    return written + _apply_to_top(deps, tenant, run_id, entity, files, above, snapshot, index)


def _by_layer(
    deps: Deps, files: SnapshotFiles, changes: _Changes
) -> tuple[set[Any], _Changes, _Changes]:
    """The keys a layered baseline's top holds, the changes to its lines, and the
    changes to the earlier parts' lines."""
    shadowed = top_keys(deps.store, files)
    above = {key: raw for key, raw in changes.items() if key in shadowed}
    below = {key: raw for key, raw in changes.items() if key not in shadowed}
    return shadowed, above, below


def _apply_to_top(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    files: SnapshotFiles,
    changes: _Changes,
    snapshot: IO[bytes],
    index: IO[bytes],
) -> int:
    """The top layer's lines with ``changes`` (of keys it holds) applied; how many."""
    top = files.top_part()
    if top is None:
        return 0
    changer = _Changer(deps, tenant, run_id, entity)
    written = 0
    loads = orjson.loads
    pairs = zip(deps.store.iter_lines(top[0]), deps.store.iter_lines(top[1]), strict=True)
    for raw, index_raw in pairs:
        system, source_id, *_ = loads(index_raw)
        change = changes.get((system, source_id))
        if change is None:
            snapshot.write(raw + b"\n")
            index.write(index_raw + b"\n")
        else:
            line = changer.change(loads(raw), loads(change))
            snapshot.write(dumps_line(line))
            index.write(dumps_line(index_line(line)))
        written += 1
    changer.flush(force=True)
    return written


def _apply_line_by_line(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str | None,
    changes: _Changes,
    snapshot: IO[bytes],
    index: IO[bytes],
) -> int:
    """``_apply_to_baseline`` one line at a time (any baseline, with an index or none)."""
    changer = _Changer(deps, tenant, run_id, entity)
    written = 0
    # The baseline's lines, each with its key and its index line: a line no change
    # touches is copied as it is, never parsed.
    for raw, key, index_raw in _baseline_lines(deps, tenant, baseline_run, entity):
        change = changes.get(key)
        if change is None and index_raw is not None:
            snapshot.write(raw + b"\n")
            index.write(index_raw + b"\n")
        else:
            line = orjson.loads(raw)
            if change is not None:
                line = changer.change(line, orjson.loads(change))
            snapshot.write(dumps_line(line))
            index.write(dumps_line(index_line(line)))
        written += 1
    changer.flush(force=True)
    return written


class _NotAsWritten(Exception):
    """The baseline's files are not as the commit writes them: applied line by line."""


#: Bytes of a baseline file read at a time by the copy in runs.
_RUN_BLOCK = 16 << 20


@contextmanager
def _mapped(stream: IO[bytes]) -> Iterator[mmap.mmap | None]:
    """The stream's file mapped read-only where it is one (the embedded store's
    objects): read in place, with no copy into the process; None for any other stream
    (an S3 body, an empty file), which is read a block at a time."""
    try:
        mapped: mmap.mmap | None = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except (AttributeError, OSError, ValueError):
        mapped = None
    if mapped is None:
        yield None
        return
    with mapped:
        yield mapped


def _forget(mapped: mmap.mmap, start: int, end: int) -> int:
    """Drop the pages of ``[start, end)`` of a mapping from the process (read already:
    they stay in the page cache, and the process's memory stays about a block however
    large the file); returns where the next such range starts."""
    end -= end % mmap.PAGESIZE
    if end - start >= _RUN_BLOCK and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED, start, end - start)
        return end
    return start


class _LineCursor:
    """The lines of a stream, a block at a time (or of its mapped file): the next ``n``
    copied as one run of bytes, or the next one taken. Lines are found by ``find``
    (memchr), none split off unless taken. Raises ``_NotAsWritten`` on an empty line or a
    read past the last line."""

    def __init__(self, stream: IO[bytes], mapped: mmap.mmap | None) -> None:
        self.stream = stream
        self.block: bytes | mmap.mmap = b"" if mapped is None else mapped
        self.mapped = mapped
        self.at = 0  # where the next line starts in ``block``
        self.kept = 0  # where the mapped pages not yet dropped start

    def _more(self) -> bool:
        """Read the next block behind what is left of this one; False at the end."""
        if self.mapped is not None:
            return False
        data = self.stream.read(_RUN_BLOCK)
        if not data:
            return False
        self.block = self.block[self.at :] + data
        self.at = 0
        return True

    def copy(self, count: int, out: IO[bytes] | None) -> None:
        """Write the next ``count`` lines as they are (pass over them: ``out`` None)."""
        while count:
            find = self.block.find
            start = pos = self.at
            skipped = 0
            while skipped < count:
                newline = find(b"\n", pos)
                if newline <= pos:  # none in the block, or an empty line
                    break
                pos = newline + 1
                skipped += 1
            if out is None:
                pass
            elif self.mapped is not None:
                copy_range(self.stream, start, pos, out)  # by the kernel
            else:
                with memoryview(self.block) as view:
                    out.write(view[start:pos])
            self.at = pos
            count -= skipped
            if self.mapped is not None:
                self.kept = _forget(self.mapped, self.kept, pos)
            if count:
                self._next_line_or_more()

    def _next_line_or_more(self) -> None:
        newline = self.block.find(b"\n", self.at)
        if newline == self.at:
            raise _NotAsWritten("an empty line")
        if newline < 0 and not self._more():
            raise _NotAsWritten("fewer lines than the index")

    def take(self) -> bytes:
        """The next line, without its newline."""
        while (newline := self.block.find(b"\n", self.at)) <= self.at:
            self._next_line_or_more()
        line = self.block[self.at : newline]
        self.at = newline + 1
        return line

    def at_end(self) -> bool:
        """Whether nothing follows the lines read (not even an unfinished line)."""
        return self.at == len(self.block) and not self._more()


def _line_blocks(stream: IO[bytes], mapped: mmap.mmap | None) -> Iterator[bytes]:
    """The stream's bytes in blocks of whole lines of about ``_RUN_BLOCK`` bytes (of
    its mapped file if it has one). Raises ``_NotAsWritten`` if the last line has no
    newline."""
    if mapped is not None:
        at, size, kept = 0, len(mapped), 0
        while at < size:
            cut = mapped.rfind(b"\n", at, at + _RUN_BLOCK) + 1
            if not cut:  # a line longer than a block
                cut = mapped.find(b"\n", at + _RUN_BLOCK) + 1
                if not cut:
                    raise _NotAsWritten("the last line has no newline")
            yield mapped[at:cut]
            kept = _forget(mapped, kept, cut)
            at = cut
        return
    pending = b""
    while data := stream.read(_RUN_BLOCK):
        cut = data.rfind(b"\n") + 1
        if not cut:
            pending += data
            continue
        yield pending + data[:cut]
        pending = data[cut:]
    if pending:
        raise _NotAsWritten("the last line has no newline")


def _wanted(changes: Mapping[Any, Any]) -> dict[bytes, list[tuple[bytes, Any]]]:
    """The changes by their source id as an index line holds it between quotes, each with
    the start of the index line of its key (``["system","source_id",``: an index line
    starting with it is that key's, JSON being read left to right)."""
    wanted: dict[bytes, list[tuple[bytes, Any]]] = {}
    for key in changes:
        system, source_id = key
        if not isinstance(system, str) or not isinstance(source_id, str):
            continue  # a key with a null: found by the blocks read line by line
        prefix = orjson.dumps([system, source_id])[:-1] + b","
        quoted = orjson.dumps(source_id)[1:-1]
        wanted.setdefault(quoted, []).append((prefix, key))
    return wanted


#: An index line's source id (its second value), the line after a newline; and the
#: first line's. In a block without a backslash a string ends at its next quote (and
#: holds no newline: JSON writes one escaped).
_SOURCE_ID = re.compile(rb'\n\["[^"]*","([^"]*)"')
_FIRST_SOURCE_ID = re.compile(rb'\["[^"]*","([^"]*)"')


def _index_hits(
    block: bytes,
    changes: Mapping[Any, Any],
    wanted: dict[bytes, list[tuple[bytes, Any]]],
) -> tuple[int, list[tuple[int, int, int, Any]]]:
    """The lines in a block of whole index lines, and those a change touches: each
    line's number in the block, where it starts and ends (its newline excluded), and its
    key.

    In a block without a backslash whose every line starts with two strings, each
    line's source id is read by one regular expression over the block (no line is split
    off or parsed), and a line is the key's where it starts with the key's
    ``["system","source_id",``. Any other block is parsed line by line."""
    hits: list[tuple[int, int, int, Any]] = []
    lines = block.count(b"\n")
    first = _FIRST_SOURCE_ID.match(block) if b"\\" not in block else None
    ids = _SOURCE_ID.findall(block) if first is not None else []
    if first is not None and len(ids) + 1 == lines:
        ids.insert(0, first.group(1))
        after = 0  # where the line after the last hit starts
        counted = numbered = 0  # lines before ``counted`` in the block: ``numbered``
        for n in [n for n, quoted in enumerate(ids) if quoted in wanted]:
            for prefix, key in wanted[ids[n]]:
                if n == 0:
                    start = 0 if block.startswith(prefix) else -1
                else:
                    start = block.find(b"\n" + prefix, max(after - 1, 0)) + 1
                if start < 0 or (n and not start):
                    continue
                number = numbered + block.count(b"\n", counted, start)
                if number != n:
                    continue  # another system's record of the same id
                counted, numbered = start, number
                end = block.find(b"\n", start)
                hits.append((n, start, end, key))
                after = end + 1
                break
        return lines, hits
    loads = orjson.loads
    start = 0
    for n, line in enumerate(block.split(b"\n")[:lines]):
        end = start + len(line)
        try:
            system, source_id, *_ = loads(line)
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise _NotAsWritten("an index line that is not a list") from exc
        key = (system, source_id)
        if key in changes:
            hits.append((n, start, end, key))
        start = end + 1
    return lines, hits


def _apply_in_runs(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    baseline_run: str,
    changes: _Changes,
    snapshot: IO[bytes],
    index: IO[bytes],
    *,
    parts: list[tuple[str, str | None]] | None = None,
    masked: set[Any] | None = None,
    copy: bool = True,
) -> int:
    """``_apply_to_baseline`` for a baseline with its index: the index is read a block
    at a time and the lines of the changed keys found in it (``_index_hits``); the runs
    of lines between them are copied from both files as they are, and only the changed
    lines are parsed and written anew. Raises ``_NotAsWritten`` (having written part) where
    the files are not as the commit writes them, or a change's key is not found exactly
    once.

    ``parts``: the baseline's parts to read (by default all of a snapshot without a top
    layer); the lines of the keys in ``masked`` are left out (a top layer holds them);
    ``copy=False``: only the changed lines are written (the rest is passed over), and
    their number returned."""
    changer = _Changer(deps, tenant, run_id, entity)
    targets: dict[Any, bytes | None] = dict.fromkeys(masked or ())
    targets.update(changes)
    wanted = _wanted(targets)
    found: set[Any] = set()
    total = 0
    if parts is None:
        files = snapshot_files(deps.store, tenant, baseline_run, entity)
        if files is not None and files.top:
            raise _NotAsWritten("a layered snapshot read as a flat one")
        parts = [] if files is None else files.parts()
    for state_key, index_key in parts:
        if index_key is None:
            raise _NotAsWritten("a part without an index")
        written = 0  # lines of the part's index before the current block
        with ExitStack() as stack:
            body = stack.enter_context(deps.store.open_stream(state_key))
            ids = stack.enter_context(deps.store.open_stream(index_key))
            lines = _LineCursor(body, stack.enter_context(_mapped(body)))
            copied = 0  # lines of the part copied or taken
            for block in _line_blocks(ids, stack.enter_context(_mapped(ids))):
                at = 0
                lines_in_block, hits = _index_hits(block, targets, wanted)
                for n, start, end, key in hits:
                    if key in found:
                        raise _NotAsWritten("a key on more than one line")
                    found.add(key)
                    lines.copy(written + n - copied, snapshot if copy else None)
                    if copy:
                        index.write(memoryview(block)[at:start])
                    taken = lines.take()
                    copied = written + n + 1
                    at = end + 1
                    change = targets[key]
                    if change is None:
                        continue  # the top layer's
                    line = changer.change(orjson.loads(taken), orjson.loads(change))
                    snapshot.write(dumps_line(line))
                    index.write(dumps_line(index_line(line)))
                if copy:
                    index.write(memoryview(block)[at:])
                written += lines_in_block
            lines.copy(written - copied, snapshot if copy else None)
            if not lines.at_end():
                raise _NotAsWritten("more lines than the index")
        total += written
    if not found.issuperset(changes):
        raise _NotAsWritten("a change whose record the baseline does not hold")
    changer.flush(force=True)
    if not copy:
        return len(changes)
    return total - len(found) + len(changes)


def _any_included(deps: Deps, changes_key: str) -> bool:
    """Whether the change file holds an included action (read up to the first)."""
    # A generator left part-read closes its file when dropped, at once.
    return any(action.get("included") for action in deps.store.iter_jsonl(changes_key))


def _baseline_lines(
    deps: Deps, tenant: str, baseline_run: str | None, entity: Entity
) -> Iterator[tuple[bytes, tuple[str, str], bytes | None]]:
    """The baseline snapshot's lines, unparsed, with their keys and index lines (keys read
    from the index; from the line itself, and no index line, for a snapshot without)."""
    files = snapshot_files(deps.store, tenant, baseline_run, entity)
    if files is None:
        return
    loads = orjson.loads
    if files.top:
        for raw, index_raw in live_pairs(deps.store, files):
            system, source_id, *_ = loads(index_raw)
            yield raw, (system, source_id), index_raw
        return
    bodies = chain.from_iterable(map(deps.store.iter_lines, files.bodies))
    if files.indexes is None:
        for raw in bodies:
            line = orjson.loads(raw)
            yield raw, (line["source_system"], line["source_id"]), None
        return
    for raw, index_raw in zip(bodies, iter_index_lines(deps.store, files), strict=True):
        system, source_id, *_ = loads(index_raw)
        yield raw, (system, source_id), index_raw


def apply_chunk_event(event: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """The Distributed Map's item: ``{tenant, run_id, chunk}``; returns the marker."""
    tenant = keys.check_tenant(str(event["tenant"]))
    run_id = keys.check_run_id(str(event["run_id"]))
    chunk = CommitChunk.model_validate(event["chunk"])
    if chunk.key is not None and chunk.key not in {
        key_of(tenant, run_id, entity)
        for entity in ENTITY_ORDER
        for key_of in (keys.changes_key, _base_changes_key)
    }:
        raise RunStateError(f"chunk {chunk.id} names a file outside run {run_id}")
    return apply_chunk(deps, tenant, run_id, chunk)


# --------------------------------------------------------------------------- finish


def event_id(tenant: str, baseline_run: str | None, action: dict[str, Any]) -> str:
    """A change event's stable id: the same change on the same committed state gets the
    same id, whichever run (or retry) publishes it. Consumers de-duplicate by it."""
    record = action.get("record")
    content = content_hash(record) if record else ""
    changes = orjson.dumps(action.get("changes") or {}, option=orjson.OPT_SORT_KEYS, default=str)
    digest = hashlib.blake2b(
        b"|".join(
            (
                tenant.encode(),
                (baseline_run or "").encode(),
                str(action["id"]).encode(),
                content.encode(),
                changes,
            )
        ),
        digest_size=12,
    ).hexdigest()
    return f"ev-{digest}"


def _published_ledger(deps: Deps, tenant: str, baseline_run: str | None) -> set[str]:
    """Event ids already published on top of ``baseline_run`` (by any run)."""
    seen: set[str] = set()
    for key in deps.store.list_keys(keys.published_events_prefix(tenant, baseline_run)):
        seen.update(deps.store.get_json(key) or [])
    return seen


def _publish_events(deps: Deps, state: RunState, baseline_run: str | None) -> int:
    """Publish one event per included action not yet in the baseline's ledger; the
    ledger gets a chunk every ``_CHECKPOINT_EVENTS`` events and whenever publishing stops
    on an error. Returns the run's change events (published now or before)."""
    prefix = keys.published_events_prefix(state.tenant, baseline_run)
    ledger = _published_ledger(deps, state.tenant, baseline_run)
    batch: list[tuple[str, dict[str, Any]]] = []
    unsaved: list[str] = []
    total = 0

    def checkpoint() -> None:
        if unsaved:
            name = f"{state.run_id}-{uuid.uuid4().hex[:12]}.json"
            deps.store.put_json(prefix + name, sorted(unsaved))
            unsaved.clear()

    def flush() -> None:
        if batch:
            deps.events.publish(batch)
            unsaved.extend(detail["event_id"] for _, detail in batch)
            batch.clear()
            if len(unsaved) >= _CHECKPOINT_EVENTS:
                checkpoint()

    try:
        for detail_type, detail in _change_events(deps, state, baseline_run):
            total += 1
            if detail["event_id"] in ledger:
                continue
            batch.append((detail_type, detail))
            if len(batch) >= EVENTS_PER_CALL:
                flush()
        flush()
    finally:
        # Saved on the way out too, so a failed PutEvents call (throttling: the usual
        # transient error) resumes exactly after the last accepted batch.
        checkpoint()
    return total


def _change_events(
    deps: Deps, state: RunState, baseline_run: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The run's change events in a fixed order, each with its stable ``event_id``."""
    for entity in ENTITY_ORDER:
        for action in included_actions(deps, state, entity):
            yield (
                f"{ENTITY_SINGULAR[entity]}.{EVENT_VERBS[action['action']]}",
                {
                    "event_id": event_id(state.tenant, baseline_run, action),
                    "tenant": state.tenant,
                    "run_id": state.run_id,
                    "action_id": action["id"],
                    "entity": entity.value,
                    "target_id": action["target_id"],
                    "source_system": action["source_system"],
                    "source_id": action["source_id"],
                    "changed_fields": sorted(action.get("changes") or {}),
                },
            )


def _change_files(state: RunState) -> list[str]:
    return [keys.changes_key(state.tenant, state.run_id, entity) for entity in ENTITY_ORDER]


def finish_commit(state: RunState, deps: Deps) -> RunState:
    """Apply what is left of the plan, publish, point the state at the run, mark it
    committed (or held for its held part) and notify."""
    started = time.monotonic()
    run = deps.runs.get(state.tenant, state.run_id)
    if run.status in COMMITTED_STATUSES:
        if run.notified != run.status:
            # Marked committed, but the notification failed: send it now (once).
            report = deps.store.get_json(keys.report_key(state.tenant, state.run_id)) or {}
            _notify_once(deps, state, run.status.value, report, run.change_files)
        state.status = run.status.value
        return state
    summary = deps.store.get_json(keys.change_summary_key(state.tenant, state.run_id)) or {}
    staged_on = summary.get("baseline_run_id")
    pointer = current_baseline(deps.store, state.tenant)
    plan = CommitPlan.model_validate(deps.store.get_json(_plan_key(state)) or {})
    limit = load_settings(deps, state.tenant).change_events_limit
    # Above the tenant's limit, no change events: run.committed names the change files.
    change_files = _change_files(state) if limit is not None and plan.included > limit else None
    markers: list[dict[str, Any]] = []
    if pointer != state.run_id:
        for chunk in plan.chunks:
            markers.append(apply_chunk(deps, state.tenant, state.run_id, chunk))
        _list_snapshots(deps, state.tenant, state.run_id, plan)
        events = 0 if change_files else _publish_events(deps, state, staged_on)
        state.counts.setdefault("commit", {})["events"] = events
    timings = state.counts.setdefault("timings_ms", {})
    began = state.commit.began_ms if state.commit is not None else 0
    timings["commit"] = (
        int(time.time() * 1000) - began if began else int((time.monotonic() - started) * 1000)
    )
    # A held run is committed for its safe part; its held actions wait for approval.
    status = "held" if summary.get("held") else "committed"
    report = build_report(deps, state, status=status, adds=_adds_of(plan, markers))
    if markers:
        report["chunks"] = markers
        deps.store.put_json(keys.report_key(state.tenant, state.run_id), report)
    if pointer != state.run_id:
        previous = deps.store.get_json(keys.state_pointer_key(state.tenant)) or {}
        fetched = deps.store.get_json(keys.fetch_summary_key(state.tenant, state.run_id)) or {}
        cursor = previous.get("source_cursor")
        if fetched.get("cursor") is not None:
            # The source's cursor (an events id) moves only with a commit: a run that is
            # discarded or fails leaves the next quick run where this one started.
            cursor = {"kind": fetched.get("kind"), "cursor": fetched["cursor"]}
        deps.store.put_json(
            keys.state_pointer_key(state.tenant),
            {
                "run_id": state.run_id,
                "committed_at": _now(),
                "rows": summary.get("rows"),
                "source_cursor": cursor,
            },
        )
        _drop_staged_parts(deps, state.tenant, state.run_id)
    deps.runs.update(
        state.tenant,
        state.run_id,
        RunUpdate(
            status=RunStatus(status),
            hold=[HoldTrip.model_validate(trip) for trip in summary.get("hold", [])],
            finished_at=utc_now(),
            counts=report["counts"],
            refused=report["refused"],
            issue_count=report["issues_total"],
            timings_ms=timings,
            report_key=keys.report_key(state.tenant, state.run_id),
            change_files=change_files,
            last_error=None,
            last_error_reason=None,
        ),
    )
    _notify_once(deps, state, status, report, change_files)
    state.status = status
    return state


def commit(state: RunState, deps: Deps) -> RunState:
    """The whole commit in one call: begin, every chunk, finish (tools and tests)."""
    return finish_commit(begin_commit(state, deps), deps)


def _notify_once(
    deps: Deps,
    state: RunState,
    status: str,
    report: dict[str, Any],
    change_files: list[str] | None,
) -> None:
    notify_run(deps, state.tenant, state.run_id, status, report, change_files=change_files)
    deps.runs.update(state.tenant, state.run_id, RunUpdate(notified=RunStatus(status)))
