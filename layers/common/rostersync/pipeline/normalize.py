"""normalize: raw input → canonical records per entity, row-level issues, a summary.

The run's source reads its raw input (``sources.registry``); this step only writes what
it yields: one JSONL per entity with an id line beside each record (``[source_system,
source_id, status, content hash, line number]``: what the columnar diff reads), the
issues, and the source-neutral ``NormalizedSummary`` (written last, so its presence
means the step finished).

Input identical to the committed run's, file for file, is not read at all: that run's
read is taken whole (``normalize_whole``). Otherwise unchanged input is not read twice.
A source that can recognise it (``ReusingRead``: the
files read line by line) is offered what the read of the tenant's committed run
kept; records it recognises come back as ``Reused`` markers, and their record and id
lines are copied from that run's files (the id line with this run's line number) instead
of being built, serialized and hashed again. Beside each entity this step keeps, for the
next run, the source's state and where each line ends (``normalized_reuse_key``).
``NORMALIZE_REUSE=false`` reads everything afresh; the output is the same either way.
"""

from __future__ import annotations

import itertools
import mmap
import time
from array import array
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

from rostersync.errors import RunStateError
from rostersync.models import ENTITY_ORDER, Entity, RowIssue
from rostersync.observability import peak_mb
from rostersync.packed import pack, unpack
from rostersync.pipeline import normalize_parts as parts
from rostersync.pipeline import normalize_whole as whole
from rostersync.pipeline.contracts import NormalizedSummary, NormalizePart, RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.snapshot import content_hash, current_baseline
from rostersync.sources.base import (
    PartedRead,
    PreviousRead,
    ReadSummary,
    Reused,
    ReusingRead,
    SourceRead,
)
from rostersync.sources.registry import source_for
from rostersync.storage import keys
from rostersync.storage.objects import copy_range, dumps_line
from rostersync.storage.raw import ObjectRawArea

#: Lines joined into one write: a write per line costs more than the join, and far
#: bigger batches cost more again (fresh memory for every joined batch).
_WRITE_BATCH = 256


@dataclass
class _Ends:
    """Where each record's line and id line end in an entity's two files."""

    records: array[int]
    ids: array[int]

    def encode(self, state: bytes) -> bytes:
        """These ends, with the source's ``state`` for recognising its input."""
        return pack({}, array("B", state), self.records, self.ids)

    @classmethod
    def decode(cls, body: bytes) -> tuple[_Ends, bytes] | None:
        unpacked = unpack(body, ("B", "Q", "Q"))
        if unpacked is None:
            return None
        state, records, ids = unpacked[1]
        return (cls(records, ids), state.tobytes()) if len(records) == len(ids) else None


class _Earlier:
    """The committed run's record and id lines of one entity, by record number."""

    def __init__(
        self, stack: ExitStack, deps: Deps, tenant: str, run_id: str, entity: Entity, ends: _Ends
    ):
        self._stack, self._deps = stack, deps
        self._keys = (
            keys.normalized_key(tenant, run_id, entity),
            keys.normalized_ids_key(tenant, run_id, entity),
        )
        self.ends = ends
        self._files: tuple[IO[bytes], mmap.mmap] | None = None

    def _local(self, key: str) -> IO[bytes]:
        path = self._stack.enter_context(self._deps.store.local_file(key))
        if path is None:
            raise FileNotFoundError(key)
        return self._stack.enter_context(path.open("rb"))

    def files(self) -> tuple[IO[bytes], mmap.mmap]:
        """The records file (its runs are copied by the kernel) and the id lines, mapped
        (each is renumbered)."""
        if self._files is None:
            ids = self._local(self._keys[1])
            mapped = mmap.mmap(ids.fileno(), 0, access=mmap.ACCESS_READ)
            self._stack.callback(mapped.close)
            self._files = (self._local(self._keys[0]), mapped)
        return self._files


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """``numbers`` as runs of consecutive numbers, ``(first, last + 1)``."""
    first = last = numbers[0]
    for number in itertools.islice(numbers, 1, None):
        if number != last + 1:
            yield first, last + 1
            first = number
        last = number
    yield first, last + 1


def _offer(
    stack: ExitStack, deps: Deps, read: ReusingRead, tenant: str, previous: str, entity: Entity
) -> _Earlier | None:
    """Offer ``read`` what the read of run ``previous`` kept of ``entity``; the lines
    its ``Reused`` markers point at."""
    body = deps.store.get_bytes(keys.normalized_reuse_key(tenant, previous, entity))
    decoded = None if body is None else _Ends.decode(body)
    if decoded is None:
        return None
    lines = (keys.normalized_key, keys.normalized_ids_key)
    if not all(deps.store.exists(key(tenant, previous, entity)) for key in lines):
        return None  # the lines it points at are gone
    ends, source_state = decoded
    earlier = _Earlier(stack, deps, tenant, previous, entity, ends)
    raw = ObjectRawArea(deps.store, tenant, keys.raw_prefix(tenant, previous))
    read.offer_reuse(entity, PreviousRead(raw, source_state))
    return earlier


def _previous_run(deps: Deps, state: RunState) -> str | None:
    """The committed run whose read this run may take unchanged records from."""
    if not deps.settings.normalize_reuse:
        return None
    baseline = current_baseline(deps.store, state.tenant)
    return None if baseline == state.run_id else baseline


def _write_entity(
    deps: Deps,
    state: RunState,
    read: SourceRead,
    entity: Entity,
    earlier: _Earlier | None,
    part: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """The entity's records, and beside them their ids, statuses and content hashes; the
    count of records and of those taken from ``earlier``. With ``part``: the records of
    that part (of a ``PartedRead``), into the part's files, numbered from 0."""
    count = reused = 0
    reusing = read if isinstance(read, ReusingRead) and part is None else None
    items: Iterator[object]
    if part is not None:
        assert isinstance(read, PartedRead)
        own = parts.own_ids_key(state.tenant, state.run_id, entity)
        loader = partial(parts.load_seen, deps, [own]) if deps.store.exists(own) else None
        items = read.iter_part(entity, part, loader)
        records_key, ids_key = parts.records_keys(state.tenant, state.run_id, entity, part)
    else:
        items = reusing.iter_items(entity) if reusing is not None else read.iter_records(entity)
        records_key = keys.normalized_key(state.tenant, state.run_id, entity)
        ids_key = keys.normalized_ids_key(state.tenant, state.run_id, entity)
    ends = _Ends(array("Q"), array("Q"))
    end_record, end_id = ends.records.append, ends.ids.append
    record_end = id_end = 0
    with deps.store.writer(records_key) as records, deps.store.writer(ids_key) as ids:
        record_lines: list[bytes] = []
        id_lines: list[bytes] = []
        add_record, add_id = record_lines.append, id_lines.append

        def flush() -> None:
            records.write(b"".join(record_lines))
            ids.write(b"".join(id_lines))
            record_lines.clear()
            id_lines.clear()

        for item in items:
            if type(item) is Reused:
                # Runs of the earlier run's lines: the records copied a run at a time,
                # the id lines each with this run's line number.
                assert earlier is not None
                flush()
                earlier_records, earlier_ids = earlier.files()
                before_records, before_ids = earlier.ends.records, earlier.ends.ids
                for first, stop in _runs(item.numbers):
                    start = before_records[first - 1] if first else 0
                    copy_range(earlier_records, start, before_records[stop - 1], records)
                    base = record_end - start
                    record_end = base + before_records[stop - 1]
                    ends.records.extend(map(base.__add__, before_records[first:stop]))
                    start = before_ids[first - 1] if first else 0
                    # Each id line with this run's line number (its last cell).
                    renumbered = parts.renumbered(
                        earlier_ids[start : before_ids[stop - 1]].splitlines(), count
                    )
                    ids.write(b"".join(renumbered))
                    ends.ids.extend(
                        itertools.islice(
                            itertools.accumulate(map(len, renumbered), initial=id_end), 1, None
                        )
                    )
                    id_end = ends.ids[-1]
                    count += len(renumbered)
                reused += len(item.numbers)
                continue
            record = item  # a record dict
            assert isinstance(record, dict)
            line = dumps_line(record)
            id_line = dumps_line(
                [
                    record["source_system"],
                    record["source_id"],
                    record.get("status"),
                    content_hash(record),
                    count,
                ]
            )
            add_record(line)
            add_id(id_line)
            if reusing is not None:
                record_end += len(line)
                id_end += len(id_line)
                end_record(record_end)
                end_id(id_end)
            count += 1
            if len(id_lines) == _WRITE_BATCH:
                flush()
        flush()
    if reusing is not None:
        source_state = reusing.reuse_state(entity)
        key = keys.normalized_reuse_key(state.tenant, state.run_id, entity)
        if source_state is not None:
            deps.store.put_bytes(key, ends.encode(source_state))
    return count, reused


def normalize(state: RunState, deps: Deps) -> RunState:
    """Read the raw input in entity order; write one JSONL per entity, issues, summary.

    An entity whose input the source can cut into parts (``PartedRead``: a CSV
    file over twice ``NORMALIZE_PART_BYTES``) is not read here: the step stops there
    with its parts planned (``state.normalize``), the state machine reads them side by
    side (``normalize_part``), and ``normalize_next`` adds them up and carries on."""
    began = int(time.time() * 1000)
    previous = _previous_run(deps, state)
    found = None
    if deps.settings.normalize_reuse:
        raw_prefix = state.raw_prefix or keys.raw_prefix(state.tenant, state.run_id)
        found = whole.fingerprint(deps, state, raw_prefix)
        if previous is not None and found is not None:
            taken = whole.take(deps, state, previous, found)
            if taken is not None:
                return taken
    progress = parts.Progress(began_ms=began, previous=previous, input=found)
    return _read_on(state, deps, progress)


def normalize_next(state: RunState, deps: Deps) -> RunState:
    """After the parts: add them up (reading any not read yet) and carry on reading."""
    progress = parts.load_progress(deps, state.tenant, state.run_id)
    if progress is None:
        raise RunStateError(f"run {state.run_id} has no normalize in progress")
    return _read_on(state, deps, progress)


class _Issues:
    """The issue sink of a read: issues go to ``writer`` (None: dropped), counted."""

    def __init__(self) -> None:
        self.writer: IO[bytes] | None = None
        self.count = 0

    def __call__(self, issue: RowIssue) -> None:
        if self.writer is not None:
            self.count += 1
            self.writer.write(dumps_line(issue.model_dump(mode="json", exclude_none=True)))


def _read_on(state: RunState, deps: Deps, progress: parts.Progress) -> RunState:
    """Read the entities from ``progress.next`` on, until the input ends (the summary is
    written) or an entity is to be read in parts (its plan is stored and returned)."""
    tenant, run_id = state.tenant, state.run_id
    raw_prefix = state.raw_prefix or keys.raw_prefix(tenant, run_id)
    raw = ObjectRawArea(deps.store, tenant, raw_prefix)
    source = source_for(state.source.kind)
    previous = progress.previous
    settings = deps.settings
    segment = parts.segment_key(tenant, run_id, progress.segments)
    sink = _Issues()
    with ExitStack() as stack, deps.store.writer(segment) as issue_writer:
        # Carrying on, what opening the input reports was reported by the first task.
        sink.writer = None if progress.opened else issue_writer
        with source.read(state.source, raw, sink) as read:
            sink.writer = issue_writer
            parted = read if isinstance(read, PartedRead) else None
            if progress.opened:
                assert parted is not None
                parted.carry_on(progress.carried, parts.load_known(deps, progress))
            if progress.entity is not None:
                assert parted is not None
                _add_up_parts(deps, state, parted, progress, sink)
            while progress.next < len(ENTITY_ORDER):
                entity = ENTITY_ORDER[progress.next]
                planned = None
                if parted is not None and settings.normalize_part_bytes:
                    own = parts.own_ids_key(tenant, run_id, entity)
                    planned = parted.plan_parts(
                        entity,
                        settings.normalize_part_bytes,
                        settings.normalize_max_parts,
                        partial(deps.store.writer, own),
                    )
                if planned:
                    assert parted is not None
                    progress.issue_files.append(segment)
                    progress.segments += 1
                    progress.issues += sink.count
                    parts.keep_known(deps, tenant, run_id, parted, progress)
                    progress.carried = parted.carried()
                    progress.opened = True
                    progress.entity, progress.parts = entity, planned
                    progress.state = state.model_dump(mode="json", exclude={"normalize"})
                    parts.save_progress(deps, tenant, run_id, progress)
                    parts.drop_joined(deps, progress)
                    state.normalize = parts.plan_of(progress, settings)
                    return state
                earlier = None
                # A task that joins parts holds their ids already: it does not also hold
                # the previous read's lines (measured at 1M: 1.6 GB with them, 0.7 without).
                if previous is not None and isinstance(read, ReusingRead) and not progress.opened:
                    earlier = _offer(stack, deps, read, tenant, previous, entity)
                progress.counts[entity.value], taken = _write_entity(
                    deps, state, read, entity, earlier
                )
                if taken:
                    progress.reused[entity.value] = taken
                progress.entities[entity.value] = read.summary(entity).model_dump(mode="json")
                progress.next += 1
            summary = NormalizedSummary(
                source=state.source.kind,
                source_system=read.source_system,
                version=read.version,
                entities={
                    Entity(name): ReadSummary.model_validate(value)
                    for name, value in progress.entities.items()
                },
                issues=0,
                reused=progress.reused,
                reused_from=previous if progress.reused else None,
                parts=progress.markers,
            )
    progress.issue_files.append(segment)
    progress.segments += 1  # a task run again writes a file of its own
    progress.issues += sink.count
    if not progress.opened:
        deps.store.copy(segment, keys.issues_key(tenant, run_id))
    else:
        parts.join_issues(deps, tenant, run_id, progress)
        parts.save_progress(deps, tenant, run_id, progress)  # read to the end
        parts.drop_joined(deps, progress)
        timings = state.counts.setdefault("timings_ms", {})
        timings["normalize"] = int(time.time() * 1000) - progress.began_ms
    counts = dict(progress.counts)
    counts["issues"] = summary.issues = progress.issues
    if progress.input is not None:
        whole.keep(deps, tenant, run_id, progress.input, counts)
    deps.store.put_json(
        keys.normalized_summary_key(tenant, run_id), summary.model_dump(mode="json")
    )
    state.counts["normalize"] = counts
    state.normalize = None
    return state


def _add_up_parts(
    deps: Deps, state: RunState, read: PartedRead, progress: parts.Progress, sink: _Issues
) -> None:
    """The parts of ``progress.entity`` (any not read yet read here) added up: its
    records and id lines joined, its summary, what it reports once."""
    entity = progress.entity
    assert entity is not None
    tenant, run_id = state.tenant, state.run_id
    markers = []
    for part in progress.parts:
        found = parts.marker(deps, tenant, run_id, entity, part)
        if found is None:
            found = run_part(deps, state, read, sink, entity, part)
        markers.append(found)
    # The parts' issues come before what the entity reports once (this task's file).
    taken = read.finish_parts(entity, [marker["read"] for marker in markers])
    used = progress.parts[:taken]
    progress.issue_files.extend(parts.issues_key(tenant, run_id, entity, p) for p in used)
    progress.issues += sum(int(marker["issues"]) for marker in markers[:taken])
    progress.counts[entity.value] = parts.join_records(deps, tenant, run_id, entity, used)
    # The parts' records and id lines are in the entity's files now: dropped once the
    # progress says so (a task run again before then joins them again).
    progress.joined.extend(
        key for p in progress.parts for key in parts.records_keys(tenant, run_id, entity, p)
    )
    progress.markers.extend(parts.reported(marker) for marker in markers[:taken])
    progress.entities[entity.value] = read.summary(entity).model_dump(mode="json")
    if markers[0]["seen"]:
        stopped = bool(markers[taken - 1]["read"].get("stopped"))
        files = None if stopped else [parts.seen_key(tenant, run_id, entity, p) for p in used]
        progress.known[entity.value] = files
        read.carry_on({}, {entity: parts.load_seen(deps, files)})
    progress.entity, progress.parts = None, []
    progress.next += 1


def normalize_part_event(event: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """Read one part (a Distributed Map item: tenant, run id, part); what it reports.
    A part met again after its marker does nothing."""
    tenant, run_id = keys.check_tenant(event["tenant"]), keys.check_run_id(event["run_id"])
    wanted = NormalizePart.model_validate(event["part"])
    progress = parts.load_progress(deps, tenant, run_id)
    if progress is None or progress.entity is not wanted.entity or progress.state is None:
        raise RunStateError(f"run {run_id} is not reading {wanted.entity.value} in parts")
    part = next((p for p in progress.parts if int(p["index"]) == wanted.index), None)
    if part is None:
        raise RunStateError(f"normalize part {wanted.id} is not in the plan")
    found = parts.marker(deps, tenant, run_id, wanted.entity, part)
    if found is not None:
        return parts.reported(found)
    state = RunState.model_validate(progress.state)
    raw = ObjectRawArea(deps.store, tenant, state.raw_prefix or keys.raw_prefix(tenant, run_id))
    sink = _Issues()  # what opening the input reports was reported by the first task
    with source_for(state.source.kind).read(state.source, raw, sink) as read:
        if not isinstance(read, PartedRead):
            raise RunStateError(f"the {state.source.kind} source does not read in parts")
        read.carry_on(progress.carried, parts.load_known(deps, progress))
        return parts.reported(run_part(deps, state, read, sink, wanted.entity, part))


def run_part(
    deps: Deps,
    state: RunState,
    read: PartedRead,
    sink: _Issues,
    entity: Entity,
    part: dict[str, Any],
) -> dict[str, Any]:
    """Read one part of ``entity``: its records and id lines, its issues, the ids it had
    first, what it gave; then its marker."""
    started = time.monotonic()
    tenant, run_id = state.tenant, state.run_id
    before, writer = sink.count, sink.writer
    with deps.store.writer(parts.issues_key(tenant, run_id, entity, part)) as issues:
        sink.writer = issues
        try:
            count, _ = _write_entity(deps, state, read, entity, None, part)
        finally:
            sink.writer = writer
    issue_count, sink.count = sink.count - before, before
    result, seen = read.part_result(entity)
    if seen is not None:
        deps.store.put_bytes(parts.seen_key(tenant, run_id, entity, part), "\n".join(seen).encode())
    marker = {
        "part": parts.part_id(entity, part),
        "entity": entity.value,
        "rows": count,
        "issues": issue_count,
        #: Ids of its rows that rows of earlier parts have (read as repeats).
        "repeated": len(part.get("repeated") or []),
        "ms": int((time.monotonic() - started) * 1000),
        "peak_mb": peak_mb(),
        "seen": seen is not None,
        "read": result,
    }
    deps.store.put_json(parts.marker_key(tenant, run_id, entity, part), marker)
    return marker


def load_normalized_summary(deps: Deps, tenant: str, run_id: str) -> NormalizedSummary:
    """The run's normalized summary (empty if normalize has not written one)."""
    stored = deps.store.get_json(keys.normalized_summary_key(tenant, run_id))
    return NormalizedSummary() if stored is None else NormalizedSummary.model_validate(stored)
