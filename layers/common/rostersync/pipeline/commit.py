"""commit: apply a staged change set's included actions.

Order matters for idempotency (a retried commit doubles nothing):
1. the new snapshot is written under the run's own keys (rewriting it is harmless);
2. directory items and identity links are put (puts are idempotent);
3. change events are published in PutEvents batches with a progress checkpoint every
   500 events and whenever publishing stops on an error, so a retry resumes after the
   last accepted batch instead of re-sending; only a hard crash between checkpoints can
   repeat events, and each carries its action id for the consumer to drop repeats;
4. the report is written; the state pointer moves to this run; the run is marked
   committed. A retry that finds the pointer already here only finishes step 4.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from rostersync.changes import EVENT_VERBS
from rostersync.errors import RunStateError, StaleBaseline
from rostersync.models import ENTITY_ORDER, ENTITY_SINGULAR, Entity
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.notify import notify_run
from rostersync.pipeline.report import build_report
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    content_hash,
    current_baseline,
    index_line,
    iter_snapshot,
)
from rostersync.storage import keys
from rostersync.storage.events import EVENTS_PER_CALL
from rostersync.storage.objects import dumps_line

_WRITE_BATCH = 1000
#: Events between progress checkpoints while publishing; a crash between a PutEvents call
#: and the next checkpoint can repeat at most this many (each carries its action id).
_CHECKPOINT_EVENTS = 500


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def included_actions(deps: Deps, state: RunState, entity: Entity) -> Iterator[dict[str, Any]]:
    for action in deps.store.iter_jsonl(keys.changes_key(state.tenant, state.run_id, entity)):
        if action.get("included"):
            yield action


def _link(action: dict[str, Any], run_id: str) -> dict[str, Any]:
    """An identity link with its provenance: how it was made, by which run, when."""
    link = {
        "source_system": action["source_system"],
        "source_id": action["source_id"],
        "target_id": action["target_id"],
        "method": action.get("tier") or "unmatched",
        "run_id": run_id,
        "linked_at": _now(),
    }
    if action.get("relinked_from"):
        link["relinked_from"] = action["relinked_from"]
    return link


def directory_item(line: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The directory's view of a snapshot line: the record's fields plus identity."""
    record = dict(line.get("record") or {})
    record.pop("status", None)
    return {
        **record,
        "target_id": line["target_id"],
        "source_system": line["source_system"],
        "source_id": line["source_id"],
        "status": line["status"],
        "run_id": run_id,
    }


def _write_entity(deps: Deps, state: RunState, entity: Entity, baseline_run: str | None) -> None:
    """New snapshot for the entity; directory items and links for what changed."""
    changes: dict[tuple[str, str], dict[str, Any]] = {}
    adds = 0
    for action in included_actions(deps, state, entity):
        if action["action"] == "add":
            adds += 1
        else:
            # A re-linked record replaces the line of the source id it was known by.
            old_id = action.get("relinked_from") or action["source_id"]
            changes[(action["source_system"], old_id)] = action
    if not changes and not adds and baseline_run is not None:
        # Nothing changed: the new snapshot is the old one; copy without parsing.
        for key_of in (keys.state_key, keys.state_index_key):
            source = key_of(state.tenant, baseline_run, entity)
            if deps.store.exists(source):
                deps.store.copy(source, key_of(state.tenant, state.run_id, entity))
        return

    touched: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []

    def flush(force: bool = False) -> None:
        # Bounded buffers: a first sync adds every record of the district.
        if force or len(touched) >= _WRITE_BATCH:
            deps.directory.put_many(state.tenant, entity.value, touched)
            touched.clear()
        if force or len(links) >= _WRITE_BATCH:
            deps.links.put_many(state.tenant, entity.value, links)
            links.clear()

    def lines() -> Iterator[dict[str, Any]]:
        for line in iter_snapshot(deps.store, state.tenant, baseline_run, entity):
            action = changes.get((line["source_system"], line["source_id"]))
            if action is not None:
                if action["action"] == "archive":
                    line["status"] = ARCHIVED
                else:
                    line["status"] = ACTIVE
                    line["record"] = action["record"]
                    line["hash"] = content_hash(action["record"])
                if action.get("relinked_from"):
                    line["source_id"] = action["source_id"]
                    links.append(_link(action, state.run_id))
                touched.append(directory_item(line, state.run_id))
                flush()
            yield line
        for action in included_actions(deps, state, entity):
            if action["action"] != "add":
                continue
            line = {
                "source_system": action["source_system"],
                "source_id": action["source_id"],
                "target_id": action["target_id"],
                "status": ACTIVE,
                "hash": content_hash(action["record"]),
                "record": action["record"],
            }
            touched.append(directory_item(line, state.run_id))
            links.append(_link(action, state.run_id))
            flush()
            yield line

    with (
        deps.store.writer(keys.state_key(state.tenant, state.run_id, entity)) as snapshot,
        deps.store.writer(keys.state_index_key(state.tenant, state.run_id, entity)) as index,
    ):
        for line in lines():
            snapshot.write(dumps_line(line))
            index.write(dumps_line(index_line(line)))
    flush(force=True)


def _publish_events(deps: Deps, state: RunState) -> int:
    """Publish one event per included action, resuming after the last checkpoint."""
    progress_key = keys.commit_progress_key(state.tenant, state.run_id)
    progress = deps.store.get_json(progress_key) or {"published": 0}
    already = int(progress["published"])
    batch: list[tuple[str, dict[str, Any]]] = []
    saved = already

    def checkpoint() -> None:
        nonlocal saved
        if already != saved:
            deps.store.put_json(progress_key, {"published": already})
            saved = already

    def flush() -> None:
        nonlocal already
        if batch:
            deps.events.publish(batch)
            already += len(batch)
            batch.clear()
            if already - saved >= _CHECKPOINT_EVENTS:
                checkpoint()

    try:
        _queue_events(deps, state, batch, already, flush)
        flush()
    finally:
        # Saved on the way out too, so a failed PutEvents call (throttling: the usual
        # transient error) resumes exactly after the last accepted batch.
        checkpoint()
    return already


def _queue_events(
    deps: Deps,
    state: RunState,
    batch: list[tuple[str, dict[str, Any]]],
    skip: int,
    flush: Callable[[], None],
) -> None:
    """Fill ``batch`` with the run's change events in a fixed order, skipping the first
    ``skip`` (already published), calling ``flush`` whenever a PutEvents call is full."""
    position = 0
    for entity in ENTITY_ORDER:
        for action in included_actions(deps, state, entity):
            position += 1
            if position <= skip:
                continue
            batch.append(
                (
                    f"{ENTITY_SINGULAR[entity]}.{EVENT_VERBS[action['action']]}",
                    {
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
            )
            if len(batch) >= EVENTS_PER_CALL:
                flush()


def commit(state: RunState, deps: Deps) -> RunState:
    """Apply the change set (see the module docstring for the order of writes)."""
    started = time.monotonic()
    run = deps.runs.get(state.tenant, state.run_id)
    if run.get("status") in {"committed", "held"}:
        return state
    if run.get("status") in {"discarded", "failed"}:
        raise RunStateError(f"run {state.run_id} is {run['status']}; it cannot be committed")
    summary = deps.store.get_json(keys.change_summary_key(state.tenant, state.run_id)) or {}
    staged_on = summary.get("baseline_run_id")
    pointer = current_baseline(deps.store, state.tenant)
    if pointer != state.run_id:
        if pointer != staged_on:
            raise StaleBaseline(
                f"run {state.run_id} was staged on {staged_on or 'an empty directory'}, "
                f"but the committed state is now {pointer}; stage it again"
            )
        for entity in ENTITY_ORDER:
            _write_entity(deps, state, entity, staged_on)
        events = _publish_events(deps, state)
        state.counts.setdefault("commit", {})["events"] = events
    timings = state.counts.setdefault("timings_ms", {})
    timings["commit"] = int((time.monotonic() - started) * 1000)
    # A held run is committed for its safe part; its held actions wait for approval.
    status = "held" if summary.get("held") else "committed"
    report = build_report(deps, state, status=status)
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
    deps.runs.update(
        state.tenant,
        state.run_id,
        {
            "status": status,
            "hold": summary.get("hold", []),
            "finished_at": _now(),
            "counts": report["counts"],
            "refused": report["refused"],
            "issue_count": report["issues_total"],
            "timings_ms": timings,
            "report_key": keys.report_key(state.tenant, state.run_id),
        },
    )
    notify_run(deps, state.tenant, state.run_id, status, report)
    state.status = status
    return state
