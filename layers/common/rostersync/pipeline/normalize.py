"""normalize: raw input → canonical records per entity, row-level issues, a summary.

The run's source reads its raw input (``sources.registry``); this step only writes what
it yields: one JSONL per entity with an id line beside each record (``[source_system,
source_id, status, content hash, line number]``: what the columnar diff reads), the
issues, and the source-neutral ``NormalizedSummary`` (written last, so its presence
means the step finished).

Unchanged input is not read twice. A source that can recognise it (``ReusingRead``: the
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
from array import array
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from rostersync.models import ENTITY_ORDER, Entity, RowIssue
from rostersync.packed import pack, unpack
from rostersync.pipeline.contracts import NormalizedSummary, RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.snapshot import content_hash, current_baseline
from rostersync.sources.base import PreviousRead, Reused, ReusingRead, SourceRead
from rostersync.sources.registry import source_for
from rostersync.storage import keys
from rostersync.storage.objects import dumps_line
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
        self._files: tuple[mmap.mmap, mmap.mmap] | None = None

    def _map(self, key: str) -> mmap.mmap:
        path = self._stack.enter_context(self._deps.store.local_file(key))
        if path is None:
            raise FileNotFoundError(key)
        with path.open("rb") as fh:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._stack.callback(mapped.close)
        return mapped

    def files(self) -> tuple[mmap.mmap, mmap.mmap]:
        if self._files is None:
            self._files = (self._map(self._keys[0]), self._map(self._keys[1]))
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
) -> tuple[int, int]:
    """The entity's records, and beside them their ids, statuses and content hashes; the
    count of records and of those taken from ``earlier``."""
    count = reused = 0
    reusing = read if isinstance(read, ReusingRead) else None
    items: Iterator[object] = (
        reusing.iter_items(entity) if reusing is not None else read.iter_records(entity)
    )
    ends = _Ends(array("Q"), array("Q"))
    end_record, end_id = ends.records.append, ends.ids.append
    record_end = id_end = 0
    with (
        deps.store.writer(keys.normalized_key(state.tenant, state.run_id, entity)) as records,
        deps.store.writer(keys.normalized_ids_key(state.tenant, state.run_id, entity)) as ids,
    ):
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
                    records.write(earlier_records[start : before_records[stop - 1]])
                    base = record_end - start
                    record_end = base + before_records[stop - 1]
                    ends.records.extend(map(base.__add__, before_records[first:stop]))
                    start = before_ids[first - 1] if first else 0
                    # Each id line with this run's line number (its last cell).
                    renumbered = [
                        b"%b%d]\n" % (line[: line.rindex(b",") + 1], number)
                        for line, number in zip(
                            earlier_ids[start : before_ids[stop - 1]].splitlines(),
                            itertools.count(count),
                        )
                    ]
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
    """Read the raw input in entity order; write one JSONL per entity, issues, summary."""
    raw_prefix = state.raw_prefix or keys.raw_prefix(state.tenant, state.run_id)
    raw = ObjectRawArea(deps.store, state.tenant, raw_prefix)
    source = source_for(state.source.kind)
    counts: dict[str, int] = {}
    reused: dict[str, int] = {}
    issue_count = 0
    previous = _previous_run(deps, state)
    with (
        ExitStack() as stack,
        deps.store.writer(keys.issues_key(state.tenant, state.run_id)) as issue_writer,
    ):

        def sink(issue: RowIssue) -> None:
            nonlocal issue_count
            issue_count += 1
            issue_writer.write(dumps_line(issue.model_dump(mode="json", exclude_none=True)))

        with source.read(state.source, raw, sink) as read:
            entities = {}
            for entity in ENTITY_ORDER:
                earlier = None
                if previous is not None and isinstance(read, ReusingRead):
                    earlier = _offer(stack, deps, read, state.tenant, previous, entity)
                counts[entity.value], taken = _write_entity(deps, state, read, entity, earlier)
                if taken:
                    reused[entity.value] = taken
                entities[entity] = read.summary(entity)
            summary = NormalizedSummary(
                source=state.source.kind,
                source_system=read.source_system,
                version=read.version,
                entities=entities,
                issues=0,
                reused=reused,
                reused_from=previous if reused else None,
            )
    counts["issues"] = issue_count
    summary.issues = issue_count
    deps.store.put_json(
        keys.normalized_summary_key(state.tenant, state.run_id), summary.model_dump(mode="json")
    )
    state.counts["normalize"] = counts
    return state


def load_normalized_summary(deps: Deps, tenant: str, run_id: str) -> NormalizedSummary:
    """The run's normalized summary (empty if normalize has not written one)."""
    stored = deps.store.get_json(keys.normalized_summary_key(tenant, run_id))
    return NormalizedSummary() if stored is None else NormalizedSummary.model_validate(stored)
