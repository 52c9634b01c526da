"""commit: apply a staged change set's included actions.

Order matters for idempotency (a retried commit doubles nothing):
1. the new snapshot is written under the run's own keys (rewriting it is harmless);
2. directory items and identity links are put (puts are idempotent);
3. change events are published in PutEvents batches. Each has a stable ``event_id``
   (tenant, baseline, action id, content); the ids published on top of a baseline are
   kept in a ledger (``published/{tenant}/{baseline}/``, a chunk every 1,000 events and
   whenever publishing stops on an error), so a retried commit, and a re-run staged on
   the same baseline after a failed commit, publish only what was not published. Only a
   hard crash between chunks, or a PutEvents call that timed out after it succeeded,
   can repeat an event, with the same ``event_id`` for the consumer to drop;
4. the report is written; the state pointer moves to this run; the run is marked
   committed; ``run.committed`` (or ``run.held``) is sent and noted on the run
   (``notified``). A retry that finds the pointer already here only finishes step 4,
   and one that finds the run committed sends the notification if it was not noted.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

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
#: Events between ledger chunks while publishing; a crash between a PutEvents call and
#: the next chunk can repeat at most this many (each with the same ``event_id``).
_CHECKPOINT_EVENTS = 1000


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


def commit(state: RunState, deps: Deps) -> RunState:
    """Apply the change set (see the module docstring for the order of writes)."""
    started = time.monotonic()
    run = deps.runs.get(state.tenant, state.run_id)
    if run.get("status") in {"committed", "held"}:
        if run.get("notified") != run["status"]:
            # Marked committed, but the notification failed: send it now (once).
            report = deps.store.get_json(keys.report_key(state.tenant, state.run_id)) or {}
            _notify_once(deps, state, str(run["status"]), report)
        state.status = str(run["status"])
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
        events = _publish_events(deps, state, staged_on)
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
    _notify_once(deps, state, status, report)
    state.status = status
    return state


def _notify_once(deps: Deps, state: RunState, status: str, report: dict[str, Any]) -> None:
    notify_run(deps, state.tenant, state.run_id, status, report)
    deps.runs.update(state.tenant, state.run_id, {"notified": status})
