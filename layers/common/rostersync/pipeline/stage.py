"""stage: diff the matched records against the last committed state → a change set.

Per entity, one streaming pass over the normalized records (zipped with their match
decisions, which are in the same order) against an id-only index of the baseline; then
one streaming pass over the baseline snapshot to fetch the *before* side of the records
that changed. Memory holds ids and hashes, plus the changed records only.

Semantics:
- Delete = archive. A record absent from a bulk file is archived; a ``tobedeleted`` row
  is archived in bulk and delta files alike.
- A record whose row failed validation is *unknown*: never archived.
- If an entity had rows with no readable id, none of its absences can be trusted, so
  its implicit archives are refused.
- A file the manifest lists but which is missing or empty archives nothing.
- Quick runs apply only what the bundle carries: absences archive nothing.
- Archiving more than ``max_archive_share`` of an entity's active records is refused.

Refused actions stay in the change set, ``included: false`` with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rostersync.models import ENTITY_ORDER, Entity, SourceStatus
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.match import MatchDecision
from rostersync.pipeline.report import build_report
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    BaselineEntry,
    content_hash,
    content_of,
    current_baseline,
    iter_snapshot,
    load_baseline_index,
)
from rostersync.storage import keys
from rostersync.storage.objects import ObjectStore, dumps_line

ACTIONS = ("add", "update", "archive", "reactivate")


def action_id(entity: Entity, source_system: str, source_id: str, action: str) -> str:
    """A stable id: the same change staged twice gets the same id."""
    digest = hashlib.blake2b(
        f"{entity.value}|{source_system}|{source_id}|{action}".encode(), digest_size=8
    ).hexdigest()
    return f"{entity.value}-{action}-{digest}"


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Field-level diff of two records' content: ``{field: [before, after]}``."""
    old, new = content_of(before), content_of(after)
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }


def make_action(
    entity: Entity,
    kind: str,
    source_system: str,
    source_id: str,
    target_id: str,
    *,
    tier: str | None = None,
    record: dict[str, Any] | None = None,
    changes: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": action_id(entity, source_system, source_id, kind),
        "entity": entity.value,
        "action": kind,
        "source_system": source_system,
        "source_id": source_id,
        "target_id": target_id,
        "tier": tier,
        "included": True,
        "reason": None,
        "changes": changes or {},
        "record": record,
    }


@dataclass
class EntityStage:
    """The outcome of staging one entity."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    refused: int = 0
    refused_reason: str | None = None
    unchanged: int = 0


def _archive_refusal(
    entity: Entity, summary: dict[str, Any], archives: int, active: int, max_share: float
) -> str | None:
    """Why this entity's archives must not go through, or None."""
    file_name = summary.get("file") or f"{entity.value} file"
    if summary.get("missing"):
        return f"{file_name} is listed in the manifest but missing; nothing archived"
    if summary.get("rows", 0) == 0 and active > 0:
        return f"{file_name} has no rows; its {active} active records are not archived"
    if summary.get("unreadable_rows", 0):
        return (
            f"{summary['unreadable_rows']} rows of {file_name} could not be read (no id); "
            "absent records might be among them"
        )
    if active and archives > max_share * active:
        return (
            f"{archives} of {active} active {entity.value} ({archives / active:.0%}) would be "
            f"archived, above the {max_share:.0%} limit"
        )
    return None


def stage_entity(
    store: ObjectStore,
    state: RunState,
    entity: Entity,
    summary: dict[str, Any],
    baseline_run: str | None,
    max_share: float,
) -> EntityStage:
    """Write the entity's actions; return its counts."""
    tenant, run_id = state.tenant, state.run_id
    index = load_baseline_index(store, tenant, baseline_run, entity)
    mode = summary.get("mode", "absent")
    result = EntityStage()
    pending: dict[tuple[str, str], tuple[str, dict[str, Any], str, str]] = {}
    explicit_archives: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    records = store.iter_jsonl(keys.normalized_key(tenant, run_id, entity))
    decisions = (
        MatchDecision.from_line(line)
        for line in store.iter_jsonl(keys.matched_key(tenant, run_id, entity))
    )

    def direct_actions() -> Iterator[dict[str, Any]]:
        for record, decision in zip(records, decisions, strict=True):
            key = (record["source_system"], record["source_id"])
            seen.add(key)
            if decision.target_id is None:
                continue  # held for an admin's decision: no change this run
            base = index.get(key)
            deleted = record.get("status") == SourceStatus.TOBEDELETED.value
            if base is None:
                if not deleted:
                    result.counts["add"] += 1
                    yield make_action(
                        entity,
                        "add",
                        *key,
                        decision.target_id,
                        tier=decision.tier.value,
                        record=record,
                    )
            elif base.status == ARCHIVED:
                if not deleted:
                    pending[key] = ("reactivate", record, base.target_id, decision.tier.value)
            elif deleted:
                explicit_archives.append(
                    make_action(entity, "archive", *key, base.target_id, tier=decision.tier.value)
                )
            elif content_hash(record) != base.hash:
                pending[key] = ("update", record, base.target_id, decision.tier.value)
            else:
                result.unchanged += 1

    with store.writer(keys.changes_key(tenant, run_id, entity)) as out:
        for action in direct_actions():
            out.write(dumps_line(action))

        archives = explicit_archives
        if mode == "bulk" and state.mode == "full":
            protected = set(summary.get("skipped_ids", []))
            explicit = {(a["source_system"], a["source_id"]) for a in explicit_archives}
            archives = archives + [
                make_action(entity, "archive", *key, base.target_id)
                for key, base in _absent(index, seen, protected, explicit)
            ]
        active = sum(1 for entry in index.values() if entry.status == ACTIVE)
        reason = _archive_refusal(entity, summary, len(archives), active, max_share)
        if mode == "absent" or not archives:
            reason = None
        for action in archives:
            if reason is not None:
                action["included"] = False
                action["reason"] = reason
                result.refused += 1
            else:
                result.counts["archive"] += 1
            out.write(dumps_line(action))
        result.refused_reason = reason if result.refused else None

        if pending:
            for line in iter_snapshot(store, tenant, baseline_run, entity):
                key = (line["source_system"], line["source_id"])
                found = pending.pop(key, None)
                if found is None:
                    continue
                kind, record, target_id, tier = found
                changes = field_changes(line.get("record") or {}, record)
                result.counts[kind] += 1
                out.write(
                    dumps_line(
                        make_action(
                            entity,
                            kind,
                            *key,
                            target_id,
                            tier=tier,
                            record=record,
                            changes=changes,
                        )
                    )
                )
    return result


def _absent(
    index: dict[tuple[str, str], BaselineEntry],
    seen: set[tuple[str, str]],
    protected: set[str],
    explicit: set[tuple[str, str]],
) -> Iterator[tuple[tuple[str, str], BaselineEntry]]:
    for key, base in index.items():
        absent = base.status == ACTIVE and key not in seen and key not in explicit
        if absent and key[1] not in protected:
            yield key, base


def stage(state: RunState, deps: Deps) -> RunState:
    """Stage every entity; write the change-set summary; decide commit or prepared."""
    normalized = deps.store.get_json(keys.normalized_summary_key(state.tenant, state.run_id)) or {}
    baseline_run = current_baseline(deps.store, state.tenant)
    counts: dict[str, dict[str, int]] = {}
    refused: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys((*ACTIONS, "refused", "unchanged"), 0)
    for entity in ENTITY_ORDER:
        summary = normalized.get("entities", {}).get(entity.value, {})
        outcome = stage_entity(
            deps.store, state, entity, summary, baseline_run, deps.settings.max_archive_share
        )
        counts[entity.value] = outcome.counts
        for action, count in outcome.counts.items():
            totals[action] += count
        totals["unchanged"] += outcome.unchanged
        if outcome.refused:
            totals["refused"] += outcome.refused
            refused[entity.value] = {"archive": outcome.refused, "reason": outcome.refused_reason}
    deps.store.put_json(
        keys.change_summary_key(state.tenant, state.run_id),
        {"baseline_run_id": baseline_run, "counts": counts, "refused": refused},
    )
    state.counts["stage"] = totals
    state.next = "prepared" if state.review else "commit"
    if state.next == "prepared":
        report = build_report(deps, state, status="prepared")
        deps.runs.update(
            state.tenant,
            state.run_id,
            {
                "status": "prepared",
                "counts": report["counts"],
                "refused": report["refused"],
                "issue_count": report["issues_total"],
                "report_key": keys.report_key(state.tenant, state.run_id),
            },
        )
        state.status = "prepared"
    return state
