"""normalize: raw input → canonical records per entity, row-level issues, a summary.

The run's source reads its raw input (``sources.registry``); this step only writes what
it yields: one JSONL per entity with an id line beside each record (``[source_system,
source_id, status, content hash, line number]``: what the columnar diff reads), the
issues, and the source-neutral ``NormalizedSummary`` (written last, so its presence
means the step finished).
"""

from __future__ import annotations

from rostersync.models import ENTITY_ORDER, Entity, RowIssue
from rostersync.pipeline.contracts import NormalizedSummary, RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.snapshot import content_hash
from rostersync.sources.base import SourceRead
from rostersync.sources.registry import source_for
from rostersync.storage import keys
from rostersync.storage.objects import dumps_line
from rostersync.storage.raw import ObjectRawArea

#: Lines joined into one write: a write per line costs more than the join, and far
#: bigger batches cost more again (fresh memory for every joined batch).
_WRITE_BATCH = 256


def _write_entity(deps: Deps, state: RunState, read: SourceRead, entity: Entity) -> int:
    """The entity's records, and beside them their ids, statuses and content hashes."""
    count = 0
    with (
        deps.store.writer(keys.normalized_key(state.tenant, state.run_id, entity)) as records,
        deps.store.writer(keys.normalized_ids_key(state.tenant, state.run_id, entity)) as ids,
    ):
        record_lines: list[bytes] = []
        id_lines: list[bytes] = []
        add_record, add_id = record_lines.append, id_lines.append
        for record in read.iter_records(entity):
            add_record(dumps_line(record))
            add_id(
                dumps_line(
                    [
                        record["source_system"],
                        record["source_id"],
                        record.get("status"),
                        content_hash(record),
                        count,
                    ]
                )
            )
            count += 1
            if len(id_lines) == _WRITE_BATCH:
                records.write(b"".join(record_lines))
                ids.write(b"".join(id_lines))
                record_lines.clear()
                id_lines.clear()
        records.write(b"".join(record_lines))
        ids.write(b"".join(id_lines))
    return count


def normalize(state: RunState, deps: Deps) -> RunState:
    """Read the raw input in entity order; write one JSONL per entity, issues, summary."""
    raw_prefix = state.raw_prefix or keys.raw_prefix(state.tenant, state.run_id)
    raw = ObjectRawArea(deps.store, state.tenant, raw_prefix)
    source = source_for(state.source.kind)
    counts: dict[str, int] = {}
    issue_count = 0
    with deps.store.writer(keys.issues_key(state.tenant, state.run_id)) as issue_writer:

        def sink(issue: RowIssue) -> None:
            nonlocal issue_count
            issue_count += 1
            issue_writer.write(dumps_line(issue.model_dump(mode="json", exclude_none=True)))

        with source.read(state.source, raw, sink) as read:
            entities = {}
            for entity in ENTITY_ORDER:
                counts[entity.value] = _write_entity(deps, state, read, entity)
                entities[entity] = read.summary(entity)
            summary = NormalizedSummary(
                source=state.source.kind,
                source_system=read.source_system,
                version=read.version,
                entities=entities,
                issues=0,
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
