"""The admin's side of a run: review, untick, commit, discard, approve, undo, history.

Use cases with typed inputs; the CLI and the API call these. A prepared run's change set
lives in S3 (``runs/{tenant}/{run}/changes/``); ticking and unticking rewrite the
``included`` flags there.

Long work never runs in a request: ``request_commit``, ``request_restage``,
``request_select`` (whole kinds of actions), ``request_undo`` and ``request_approve``
check what they can at once, mark the run (``committing``, ``restaging``, or a new
``running`` run) and start an execution of the state machine for it; the work itself is
``run_operation`` (the Review function) or the commit step, under the state machine's
Retry and Catch. A re-stage is the Review function's ``begin_restage``, then the match
and stage steps of a sync (fanned out for a large district), then its
``finish_restage``. A failed decision leaves the run prepared with ``last_error`` set.
Committing goes through the same ``commit`` as a sync, so a prepared run and an
auto-committed run are applied by the same code.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from secrets import token_hex
from typing import IO, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from rostersync.application.runs import acquire_run_lock, run_source
from rostersync.changes import Action, ActionKind, empty_counts, field_changes, make_action
from rostersync.errors import RunStateError, StaleBaseline
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.change_lines import (
    Marks,
    Relined,
    keep_lines,
    marks,
    noted_lines,
    replaced_lines,
)
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import build_report
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    current_baseline,
    iter_snapshot,
)
from rostersync.records import (
    COMMITTED_STATUSES,
    LastSelection,
    RunRecord,
    RunStatus,
    RunUpdate,
    utc_now,
)
from rostersync.sources.oneroster_csv import OneRosterCsvSpec
from rostersync.storage import keys
from rostersync.storage.objects import copy_range, dumps_line, own_size
from rostersync.storage.ports import LocksPort, ObjectStorePort

REVIEWABLE = frozenset({RunStatus.PREPARED})
#: How long an in-request selection may be: longer ones go through the state machine.
INLINE_SELECTION = 1000


class RunLauncher(Protocol):
    """Starts an execution of the state machine (``runs.RunLauncher``)."""

    def launch(self, run_input: dict[str, Any], *, name: str) -> None: ...


def _execution_name(run_id: str, operation: str) -> str:
    """Executions are unique by name: a run's sync and each later decision get their own."""
    return f"{run_id}-{operation}-{token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ActionFilter(BaseModel):
    """Which actions of a run to list."""

    model_config = ConfigDict(extra="forbid")

    entity: Entity | None = None
    action: ActionKind | None = None
    included: bool | None = None
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)


class ActionPage(BaseModel):
    total: int
    offset: int
    limit: int
    actions: list[dict[str, Any]]


class Selection(BaseModel):
    """Actions to tick or untick: by id, or every action of ``entity:action`` kinds."""

    model_config = ConfigDict(extra="forbid")

    action_ids: list[str] = Field(default_factory=list)
    all_of: list[tuple[Entity, ActionKind]] = Field(default_factory=list)


def _run_state(deps: Deps, tenant: str, run_id: str) -> tuple[RunRecord, RunState]:
    run = deps.runs.get(tenant, run_id)
    state = RunState(
        tenant=tenant,
        run_id=run_id,
        trigger=run.trigger or "cli",
        mode=run.mode or "full",
        source=run_source(run) or OneRosterCsvSpec(key=keys.uploads_prefix(tenant, run_id)),
        requested_by=run.requested_by,
        counts={"timings_ms": run.timings_ms or {}},
    )
    return run, state


def iter_actions(deps: Deps, tenant: str, run_id: str) -> Iterator[Action]:
    for entity in ENTITY_ORDER:
        yield from deps.store.iter_jsonl(keys.changes_key(tenant, run_id, entity))


def list_actions(deps: Deps, tenant: str, run_id: str, filters: ActionFilter) -> ActionPage:
    """A page of the run's actions, with field-level diffs."""
    deps.runs.get(tenant, run_id)  # raises RunNotFound for another tenant's run
    matching = (
        a
        for a in iter_actions(deps, tenant, run_id)
        if (filters.entity is None or a["entity"] == filters.entity.value)
        and (filters.action is None or a["action"] == filters.action)
        and (filters.included is None or bool(a["included"]) == filters.included)
    )
    total = 0
    page: list[dict[str, Any]] = []
    for action in matching:
        if filters.offset <= total < filters.offset + filters.limit:
            page.append(dict(action))
        total += 1
    return ActionPage(total=total, offset=filters.offset, limit=filters.limit, actions=page)


_ID_PREFIX = b'{"id":"'


def _line_id(line: bytes) -> str | None:
    """The action id a change line starts with, as stage writes actions (``id`` first);
    None where it cannot be read off the line (the line is parsed instead)."""
    if not line.startswith(_ID_PREFIX):
        return None
    end = line.find(b'"', len(_ID_PREFIX))
    ident = line[len(_ID_PREFIX) : end] if end > 0 else b""
    if not ident or b"\\" in ident:
        return None
    return ident.decode("utf-8", "replace")


def _rewrite_entity(
    deps: Deps,
    tenant: str,
    run_id: str,
    entity: Entity,
    change: Callable[[dict[str, Any]], bool],
    may_hit: Callable[[str | None], bool],
    ids: set[str] | None = None,
) -> dict[str, int]:
    """Rewrite one entity's change file with ``change(action) -> bool`` (True if its
    ``included`` flag was turned),
    an action at a time (a first sync's file has a line per record): a first pass
    counts the changes, a second writes the file if there are any. ``may_hit(id)`` says
    whether the action on a line can be one to change, from its id (None: unread);
    the other lines are copied as they are, never parsed. What stage noted of the file
    (``ChangeLines``) is followed through the rewrite, so the commit's plan and the
    report need not read the file again. Returns, per kind of action, how many more are
    included than before.

    ``ids``: the only actions that can be hits (a few, as a click in the console
    sends), when the file is the version stage noted: their lines are searched for in
    one read of the file (``_rewrite_found``) and only they are parsed and written
    anew, the bytes between copied as they are."""
    key = keys.changes_key(tenant, run_id, entity)
    lines_key = keys.change_lines_key(tenant, run_id, entity)
    if ids is not None and len(ids) <= _FOUND_BY_SEARCH:
        found = _rewrite_found(deps.store, key, lines_key, ids, change)
        if found is not None:
            return found
    loads = orjson.loads

    def changed_lines() -> Iterator[tuple[bytes, Marks | None, Marks | None, str]]:
        for line in deps.store.iter_lines(key):
            if may_hit(_line_id(line)):
                action = loads(line)
                was = marks(action)
                if change(action):
                    yield dumps_line(action), was, marks(action), action["action"]
                    continue
            yield line + b"\n", None, None, ""

    if not any(was is not None for _, was, _, _ in changed_lines()):
        return {}
    shifts = empty_counts()
    noted = noted_lines(deps.store, key, lines_key)
    relined = None if noted is None else Relined(noted)
    with deps.store.writer(key) as out:
        for line, was, now, kind in changed_lines():
            out.write(line)
            if relined is not None:
                relined.line(len(line), was, now)
            if was is not None and now is not None:
                shifts[kind] += now[0] - was[0]
    if relined is not None:
        keep_lines(deps.store, key, lines_key, relined.done())
    return shifts


#: Action ids up to which a rewrite searches the file for their lines (one pass, a
#: search of each block per id) instead of reading it line by line.
_FOUND_BY_SEARCH = 16


#: Bytes of a change file searched at a time for a few action ids.
_SEARCH_BLOCK = 8 << 20


def _lines_of(body: IO[bytes], ids: set[str]) -> list[tuple[int, int, bytes]]:
    """Where the lines holding the actions ``ids`` start and end (at their newline) in a
    change file, as stage writes its lines (the id first), and each such line: one pass
    over the stream, a block of whole lines at a time."""
    needles = [_ID_PREFIX + ident.encode() + b'"' for ident in ids]
    found: list[tuple[int, int, bytes]] = []
    offset, data = 0, b""  # ``data`` starts at a line's start, ``offset`` in the file
    while chunk := body.read(_SEARCH_BLOCK):
        data += chunk
        whole = data.rfind(b"\n") + 1
        for needle in needles:
            at = data.find(needle, 0, whole)
            while at >= 0:
                end = data.find(b"\n", at)
                if at == 0 or data[at - 1] == 0x0A:  # at a line's start
                    found.append((offset + at, offset + end, data[at:end]))
                at = data.find(needle, end, whole)
        offset += whole
        data = data[whole:]
    if data:
        raise ValueError("a change file's last line has no newline")
    return sorted(found)


def _copy_around(
    store: ObjectStorePort,
    key: str,
    body: IO[bytes],
    size: int,
    hits: list[tuple[int, int, bytes]],
) -> None:
    """Write the change file at ``key`` (``size`` bytes) anew from ``body`` (the file as
    it is), each ``(start, end, line)`` of ``hits`` (in order) written instead of the
    bytes from ``start`` to ``end`` and its newline; the bytes between copied as they
    are (by the kernel from a file here; from a second read of the object otherwise)."""
    try:
        local = stat.S_ISREG(os.fstat(body.fileno()).st_mode)  # a file, not a socket
    except (AttributeError, OSError, ValueError):
        local = False
    with ExitStack() as stack:
        out = stack.enter_context(store.writer(key))
        stream = None if local else stack.enter_context(store.open_stream(key))
        read = 0  # how far ``stream`` is read

        def copy(start: int, stop: int) -> None:
            nonlocal read
            if stream is None:
                copy_range(body, start, stop, out)
                return
            _copy_next(stream, start - read, None)  # the line replaced
            _copy_next(stream, stop - start, out)
            read = stop

        at = 0
        for start, end, line in hits:
            copy(at, start)
            out.write(line)
            at = end + 1
        copy(at, size)


def _copy_next(source: IO[bytes], count: int, out: IO[bytes] | None) -> None:
    """The next ``count`` bytes of a stream written to ``out`` (passed over: None)."""
    while count:
        block = source.read(min(count, _SEARCH_BLOCK))
        if not block:
            raise EOFError("the change file ended early")
        if out is not None:
            out.write(block)
        count -= len(block)


def _rewrite_found(
    store: ObjectStorePort,
    key: str,
    lines_key: str,
    ids: set[str],
    change: Callable[[dict[str, Any]], bool],
) -> dict[str, int] | None:
    """``_rewrite_entity`` for a few action ids, every one of which is found on a line
    of its own: their lines are changed and the bytes between copied. None (nothing
    written) where that does not apply: the file not the version stage noted, an id not
    found so (the line-by-line read then says what it is)."""
    noted = noted_lines(store, key, lines_key)
    size = store.size(key)
    if noted is None or not ids or size != noted.size:
        return None
    with store.open_stream(key) as body:
        try:
            found = _lines_of(body, ids)
        except ValueError:
            return None
        if {_line_id(line) for _, _, line in found} != ids:
            return None
        starts = noted.starts
        numbers = [bisect.bisect_left(starts, start) for start, _, _ in found]
        if any(
            n == len(starts) or starts[n] != at
            for n, (at, _, _) in zip(numbers, found, strict=True)
        ):
            return None  # the noted starts are not this file's
        #: Per changed line: its number, where it starts and ends, the line written
        #: instead, its marks before and after, its kind of action.
        hits: list[tuple[int, int, int, bytes, Marks, Marks, str]] = []
        for number, (start, end, text) in zip(numbers, found, strict=True):
            action = orjson.loads(text)
            was = marks(action)
            if change(action):
                line = own_size(dumps_line(action))  # held until every hit is found
                hits.append((number, start, end, line, was, marks(action), action["action"]))
        if not hits:
            return {}
        _copy_around(
            store, key, body, size, [(start, end, line) for _, start, end, line, *_ in hits]
        )
    shifts = empty_counts()
    for *_, was, now, kind in hits:
        shifts[kind] += now[0] - was[0]
    relined = replaced_lines(
        noted, [(number, len(line), was, now) for number, _, _, line, was, now, _ in hits]
    )
    keep_lines(store, key, lines_key, relined)
    return shifts


def set_included(
    deps: Deps, tenant: str, run_id: str, selection: Selection, included: bool, who: str
) -> int:
    """Tick (include) or untick (exclude) actions of a prepared run in the request (a
    short list of ids); return how many changed. Unknown action ids are an error, not a
    silent no-op. Whole kinds of actions go through ``request_select``."""
    run = deps.runs.get(tenant, run_id)
    if run.status not in REVIEWABLE:
        raise RunStateError(f"run {run_id} is {run.status}; only prepared runs can be edited")
    if selection.all_of or len(selection.action_ids) > INLINE_SELECTION:
        raise RunStateError("a selection this large runs in the background: request_select")
    return _apply_selection(deps, tenant, run_id, selection, included, who)


def _apply_selection(
    deps: Deps, tenant: str, run_id: str, selection: Selection, included: bool, who: str
) -> int:
    wanted = set(selection.action_ids)
    kinds = {(e.value, a) for e, a in selection.all_of}
    found: set[str] = set()

    def change(action: dict[str, Any]) -> bool:
        hit = action["id"] in wanted or (action["entity"], action["action"]) in kinds
        if not hit:
            return False
        found.add(action["id"])
        if action.get("applied"):
            return False  # already committed while the run was held
        if bool(action["included"]) == included:
            return False
        action["included"] = included
        action["decided_by"] = who
        action["decided_at"] = _now()
        if included:
            action["reason"] = None
        else:
            action["reason"] = f"excluded by {who}"
        return True

    names = {e.value for e in Entity}
    entities = {Entity(a.split("-", 1)[0]) for a in wanted if a.split("-", 1)[0] in names}
    entities |= {e for e, _ in selection.all_of}
    unknown_entity = [a for a in wanted if a.split("-", 1)[0] not in names]
    # By id alone, a line whose id is not wanted is no hit: it is copied unparsed.
    may_hit = (lambda _: True) if kinds else (lambda i: i is None or i in wanted)
    changed = 0
    #: Per entity and kind of action, how many more are included than before.
    shifts: dict[str, dict[str, int]] = {}
    for entity in ENTITY_ORDER:
        if entity in entities:
            ids = None if kinds else {a for a in wanted if a.split("-", 1)[0] == entity.value}
            shifted = _rewrite_entity(deps, tenant, run_id, entity, change, may_hit, ids)
            changed += sum(abs(n) for n in shifted.values())
            shifts[entity.value] = shifted
    missing = sorted((wanted - found) | set(unknown_entity))
    if missing:
        raise RunStateError(f"no such action in run {run_id}: {', '.join(missing[:5])}")
    if changed:
        _shift_counts(deps, tenant, run_id, shifts)
    return changed


def _shift_counts(deps: Deps, tenant: str, run_id: str, shifts: dict[str, dict[str, int]]) -> None:
    """Move ``shifts`` (per entity and kind, how many more actions are included) from the
    change summary's excluded counts to its included ones, without reading the change
    set; a summary that does not hold both (or would go below zero) is recounted."""
    summary_key = keys.change_summary_key(tenant, run_id)
    summary = deps.store.get_json(summary_key) or {}
    counts: Any = summary.get("counts")
    excluded: Any = summary.get("excluded")
    try:
        for entity, row in shifts.items():
            for kind, n in row.items():
                if n:
                    counts[entity][kind] += n
                    excluded[entity][kind] -= n
                    if counts[entity][kind] < 0 or excluded[entity][kind] < 0:
                        raise ValueError(kind)
    except (KeyError, TypeError, ValueError):
        _refresh_counts(deps, tenant, run_id)
        return
    deps.store.put_json(summary_key, summary)


def _refresh_counts(deps: Deps, tenant: str, run_id: str) -> None:
    """Count included and excluded actions into the change summary, reading the change
    set."""
    summary_key = keys.change_summary_key(tenant, run_id)
    summary = deps.store.get_json(summary_key) or {}
    counts = {e.value: empty_counts() for e in ENTITY_ORDER}
    excluded = {e.value: empty_counts() for e in ENTITY_ORDER}
    for action in iter_actions(deps, tenant, run_id):
        bucket = counts if action["included"] else excluded
        bucket[action["entity"]][action["action"]] += 1
    summary["counts"] = counts
    summary["excluded"] = excluded
    deps.store.put_json(summary_key, summary)


def request_commit(
    deps: Deps, locks: LocksPort, launcher: RunLauncher, tenant: str, run_id: str, who: str
) -> str:
    """Start committing a prepared run's included actions (the run turns ``committing``,
    then ``committed`` or ``held``; back to ``prepared`` with ``last_error`` if it fails).
    Returns the run id."""
    run, state = _run_state(deps, tenant, run_id)
    if run.status is not RunStatus.PREPARED:
        raise RunStateError(f"run {run_id} is {run.status}; only a prepared run can be committed")
    summary = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    staged_on, current = summary.get("baseline_run_id"), current_baseline(deps.store, tenant)
    if current != staged_on and current != run_id:
        raise StaleBaseline(
            f"run {run_id} was staged on {staged_on or 'an empty directory'}, but the "
            f"committed state is now {current}; stage it again"
        )
    if "excluded" not in summary:  # staged before the summary kept both counts
        _refresh_counts(deps, tenant, run_id)
    # A commit is a run too: it takes the tenant's lock, so it never overlaps a sync; the
    # lock frees itself once the run is no longer committing.
    acquire_run_lock(deps, locks, tenant, run_id)
    deps.runs.update(
        tenant,
        run_id,
        RunUpdate(
            committed_by=who,
            status=RunStatus.COMMITTING,
            committing_at=utc_now(),
            last_error=None,
        ),
    )
    state.operation, state.who = "commit", who
    try:
        launcher.launch(state.model_dump(mode="json"), name=_execution_name(run_id, "commit"))
    except Exception:
        deps.runs.update(tenant, run_id, RunUpdate(status=RunStatus.PREPARED))
        locks.release(tenant, run_id)
        raise
    return run_id


def request_select(
    deps: Deps,
    launcher: RunLauncher,
    tenant: str,
    run_id: str,
    selection: Selection,
    included: bool,
    who: str,
) -> str:
    """Start ticking or unticking whole kinds of a prepared run's actions (the run turns
    ``restaging`` until it is done). Returns the run id."""
    run, state = _run_state(deps, tenant, run_id)
    if run.status not in REVIEWABLE:
        raise RunStateError(f"run {run_id} is {run.status}; only prepared runs can be edited")
    deps.runs.update(tenant, run_id, RunUpdate(status=RunStatus.RESTAGING, last_error=None))
    state.operation, state.who, state.included = "select", who, included
    state.selection = selection.model_dump(mode="json")
    _launch_or_restore(deps, launcher, state, RunStatus.PREPARED)
    return run_id


def request_restage(deps: Deps, launcher: RunLauncher, tenant: str, run_id: str) -> str:
    """Start matching and staging a prepared run again (after a match decision), keeping
    the actions an admin unticked. Returns the run id."""
    run, state = _run_state(deps, tenant, run_id)
    if run.status is not RunStatus.PREPARED:
        raise RunStateError(f"run {run_id} is {run.status}; only a prepared run can be re-staged")
    deps.runs.update(tenant, run_id, RunUpdate(status=RunStatus.RESTAGING, last_error=None))
    state.operation = "restage"
    _launch_or_restore(deps, launcher, state, RunStatus.PREPARED)
    return run_id


def _launch_or_restore(
    deps: Deps, launcher: RunLauncher, state: RunState, status: RunStatus
) -> None:
    try:
        launcher.launch(
            state.model_dump(mode="json"), name=_execution_name(state.run_id, state.operation)
        )
    except Exception:
        deps.runs.update(state.tenant, state.run_id, RunUpdate(status=status))
        raise


def discard_run(deps: Deps, tenant: str, run_id: str, who: str) -> None:
    """Drop a prepared run: nothing of it is applied."""
    run = deps.runs.get(tenant, run_id)
    if run.status is not RunStatus.PREPARED:
        raise RunStateError(f"run {run_id} is {run.status}; only a prepared run can be discarded")
    deps.runs.update(
        tenant,
        run_id,
        RunUpdate(status=RunStatus.DISCARDED, discarded_by=who, finished_at=utc_now()),
    )


@dataclass
class DerivedRun:
    """A run made from another's actions (undo, approval of held actions)."""

    run_id: str
    report: dict[str, Any]


def _prepare_derived_run(
    deps: Deps,
    tenant: str,
    run_id: str,
    who: str,
    actions: Iterable[Action],
) -> DerivedRun:
    """Write ``actions`` as the prepared run ``run_id`` on the current committed state."""
    baseline = current_baseline(deps.store, tenant)
    by_entity: dict[str, list[Action]] = {e.value: [] for e in ENTITY_ORDER}
    for action in actions:
        by_entity[action["entity"]].append(action)
    for entity in ENTITY_ORDER:
        deps.store.write_jsonl(keys.changes_key(tenant, run_id, entity), by_entity[entity.value])
    deps.store.put_json(keys.change_summary_key(tenant, run_id), {"baseline_run_id": baseline})
    _refresh_counts(deps, tenant, run_id)
    _, state = _run_state(deps, tenant, run_id)
    report = build_report(deps, state, status="prepared")
    deps.runs.update(
        tenant,
        run_id,
        RunUpdate(
            status=RunStatus.PREPARED,
            counts=report["counts"],
            issue_count=0,
            report_key=keys.report_key(tenant, run_id),
        ),
    )
    return DerivedRun(run_id, report)


def _request_derived(
    deps: Deps,
    launcher: RunLauncher,
    tenant: str,
    derived_from: str,
    who: str,
    *,
    operation: Literal["undo", "approve"],
    trigger: Literal["undo", "cli", "api"],
) -> str:
    """Record a new run made from ``derived_from`` and start preparing it."""
    run_id = keys.new_run_id()
    deps.runs.put(
        tenant,
        RunRecord(
            run_id=run_id,
            status=RunStatus.RUNNING,
            trigger=trigger,
            mode="full",
            requested_by=who,
            started_at=utc_now(),
            undo_of=derived_from if operation == "undo" else None,
            approves=derived_from if operation == "approve" else None,
        ),
    )
    state = RunState(
        tenant=tenant,
        run_id=run_id,
        trigger=trigger,
        source=OneRosterCsvSpec(key=keys.uploads_prefix(tenant, run_id)),
        requested_by=who,
        operation=operation,
        who=who,
        derived_from=derived_from,
    )
    _launch_or_restore(deps, launcher, state, RunStatus.FAILED)
    return run_id


def _check_undoable(deps: Deps, tenant: str, run_id: str) -> None:
    run = deps.runs.get(tenant, run_id)
    if run.status not in COMMITTED_STATUSES:
        raise RunStateError(f"run {run_id} is {run.status}; only a committed run can be undone")


def request_undo(deps: Deps, launcher: RunLauncher, tenant: str, run_id: str, who: str) -> str:
    """Start preparing a run that puts back what ``run_id`` changed; returns its id."""
    _check_undoable(deps, tenant, run_id)
    return _request_derived(deps, launcher, tenant, run_id, who, operation="undo", trigger="undo")


def undo_run(deps: Deps, tenant: str, run_id: str, who: str, new_run_id: str) -> DerivedRun:
    """Prepare ``new_run_id`` to put every record the given run changed back as it was
    before it: what it archived is reactivated, what it updated is restored, what it
    created is archived. Reviewed and committed like any other run."""
    _check_undoable(deps, tenant, run_id)
    summary = deps.store.get_json(keys.change_summary_key(tenant, run_id)) or {}
    before_run = summary.get("baseline_run_id")
    current = current_baseline(deps.store, tenant)
    reversed_actions: list[Action] = []
    for entity in ENTITY_ORDER:
        touched = {
            (a["source_system"], a["source_id"])
            for a in deps.store.iter_jsonl(keys.changes_key(tenant, run_id, entity))
            if a.get("included") or a.get("applied")
        }
        if not touched:
            continue
        before = {
            (line["source_system"], line["source_id"]): line
            for line in iter_snapshot(deps.store, tenant, before_run, entity)
            if (line["source_system"], line["source_id"]) in touched
        }
        for line in iter_snapshot(deps.store, tenant, current, entity):
            key = (line["source_system"], line["source_id"])
            if key not in touched:
                continue
            action = _restore_action(entity, line, before.get(key))
            if action is not None:
                action["tier"] = "undo"
                reversed_actions.append(action)
    return _prepare_derived_run(deps, tenant, new_run_id, who, reversed_actions)


def _restore_action(
    entity: Entity, now: dict[str, Any], before: dict[str, Any] | None
) -> Action | None:
    """The action taking a record from its current line back to ``before`` (absent
    before: archived)."""
    ids = (now["source_system"], now["source_id"], now["target_id"])
    if before is None or before["status"] == ARCHIVED:
        if now["status"] == ACTIVE:
            return make_action(entity, "archive", *ids)
        return None
    if now["status"] == ARCHIVED:
        return make_action(
            entity,
            "reactivate",
            *ids,
            record=before["record"],
            changes=field_changes(now.get("record") or {}, before["record"]),
        )
    if now.get("hash") != before.get("hash"):
        return make_action(
            entity,
            "update",
            *ids,
            record=before["record"],
            changes=field_changes(now.get("record") or {}, before["record"]),
        )
    return None


def _check_approvable(deps: Deps, tenant: str, run_id: str) -> None:
    run = deps.runs.get(tenant, run_id)
    if run.status is not RunStatus.HELD:
        raise RunStateError(f"run {run_id} is {run.status}; only a held run can be approved")
    if current_baseline(deps.store, tenant) != run_id:
        raise StaleBaseline(
            f"the committed state has moved on since run {run_id}; its held actions are stale"
        )


def request_approve(deps: Deps, launcher: RunLauncher, tenant: str, run_id: str, who: str) -> str:
    """Start preparing a run carrying a held run's held actions; returns its id."""
    _check_approvable(deps, tenant, run_id)
    return _request_derived(deps, launcher, tenant, run_id, who, operation="approve", trigger="cli")


def approve_held(deps: Deps, tenant: str, run_id: str, who: str, new_run_id: str) -> DerivedRun:
    """Prepare ``new_run_id`` carrying a held run's held actions, approved by ``who``.

    Refused if the committed state has moved since: a later run re-evaluated those
    records, so the held actions may no longer be right."""
    _check_approvable(deps, tenant, run_id)
    held: list[Action] = []
    for action in iter_actions(deps, tenant, run_id):
        if action.get("held") and not action.get("applied"):
            approved = action.copy()
            approved["included"], approved["held"] = True, False
            approved["reason"] = f"approved by {who}"
            held.append(approved)
    derived = _prepare_derived_run(deps, tenant, new_run_id, who, held)
    deps.runs.update(
        tenant,
        run_id,
        RunUpdate(status=RunStatus.APPROVED, approved_by=who, approved_in=derived.run_id),
    )
    return derived


def list_runs(deps: Deps, tenant: str, limit: int = 50) -> list[RunRecord]:
    """The tenant's runs, newest first, with trigger, who, mode, status, counts, duration."""
    return [_readable_reasons(run) for run in deps.runs.list(tenant, limit)]


def _readable_reasons(run: RunRecord) -> RunRecord:
    """The run with its failure reasons as people read them (a Lambda error's message,
    never its JSON and stack trace)."""
    from rostersync.application.runs import failure_reason

    readable: dict[str, Any] = {}
    if run.reason:
        readable["reason"] = failure_reason(run.reason)
    if run.last_error_reason:
        readable["last_error_reason"] = failure_reason(run.last_error_reason)
    return run.model_copy(update=readable) if readable else run


@dataclass(frozen=True)
class ShownRun:
    """A run's history record and its report (None until the run has staged)."""

    run: RunRecord
    report: dict[str, Any] | None


def show_run(deps: Deps, tenant: str, run_id: str) -> ShownRun:
    """The run's history record and its report."""
    run = deps.runs.get(tenant, run_id)
    report = deps.store.get_json(keys.report_key(tenant, run_id))
    return ShownRun(_readable_reasons(run), report)


def _unticked_key(tenant: str, run_id: str) -> str:
    return keys.run_prefix(tenant, run_id) + "restage/unticked.json"


#: What a line holds once an admin ticked or unticked its action (orjson writes no
#: spaces; a quote inside a value is escaped, so only a key is followed by this).
_DECIDED = b'"decided_by":"'


def _unticked_by_admins(deps: Deps, tenant: str, run_id: str) -> dict[str, str]:
    """The run's actions an admin unticked, with who did: only lines an admin decided
    are parsed (a first sync's change set has a line per record)."""
    unticked: dict[str, str] = {}
    for entity in ENTITY_ORDER:
        for line in deps.store.iter_lines(keys.changes_key(tenant, run_id, entity)):
            if _DECIDED in line:
                action = orjson.loads(line)
                if not action["included"] and action.get("decided_by"):
                    unticked[action["id"]] = str(action["decided_by"])
    return unticked


def _present(deps: Deps, tenant: str, run_id: str, wanted: set[str]) -> set[str]:
    """Those of the action ids ``wanted`` the run's change files hold, read off each
    line's start (the files of entities no wanted id is of are not read)."""
    present: set[str] = set()
    for entity in ENTITY_ORDER:
        prefix = f"{entity.value}-"
        if not any(ident.startswith(prefix) for ident in wanted):
            continue
        for line in deps.store.iter_lines(keys.changes_key(tenant, run_id, entity)):
            ident = _line_id(line)
            if ident is None:
                ident = str(orjson.loads(line).get("id"))
            if ident in wanted:
                present.add(ident)
    return present


def begin_restage(deps: Deps, state: RunState) -> RunState:
    """The first task of a re-stage (after a matching decision, or on a moved committed
    state): keep the actions an admin unticked, for ``finish_restage`` to put back; the
    state machine then matches and stages the run again as a sync does, fanned out
    for a large district, for review."""
    tenant, run_id = state.tenant, state.run_id
    run = deps.runs.get(tenant, run_id)
    if run.status not in {RunStatus.PREPARED, RunStatus.RESTAGING}:
        raise RunStateError(f"run {run_id} is {run.status}; only a prepared run can be re-staged")
    deps.store.put_json(_unticked_key(tenant, run_id), _unticked_by_admins(deps, tenant, run_id))
    state.review = True
    # Stage leaves the run "restaging" for a re-stage: it is prepared again only once
    # the admin's unticks are back, so it can never be committed without them.
    state.operation = "restage"
    state.next = None
    return state


def finish_restage(deps: Deps, state: RunState) -> RunState:
    """The last task of a re-stage: the admin's unticks put back on the actions staged
    again; the run is prepared again."""
    tenant, run_id = state.tenant, state.run_id
    unticked = deps.store.get_json(_unticked_key(tenant, run_id)) or {}
    still_there = _present(deps, tenant, run_id, set(unticked))
    # One rewrite per admin who unticked, not one per action (a change file is
    # rewritten whole).
    by_who: dict[str, list[str]] = {}
    for action_id, who in unticked.items():
        if action_id in still_there:
            by_who.setdefault(who, []).append(action_id)
    for who, action_ids in sorted(by_who.items()):
        _apply_selection(deps, tenant, run_id, Selection(action_ids=action_ids), False, who)
    deps.runs.update(tenant, run_id, RunUpdate(status=RunStatus.PREPARED))
    return state


def run_operation(state: RunState, deps: Deps) -> RunState:
    """The long part of an admin's decision, run by the state machine (the Review
    function): re-stage, tick or untick a selection, prepare an undo or an approval."""
    tenant, run_id, who = state.tenant, state.run_id, state.who or "admin"
    if state.operation == "restage":
        return begin_restage(deps, state)
    if state.operation == "restaged":
        finish_restage(deps, state)
    elif state.operation == "select":
        selection = Selection.model_validate(state.selection or {})
        changed = _apply_selection(deps, tenant, run_id, selection, bool(state.included), who)
        deps.runs.update(
            tenant,
            run_id,
            RunUpdate(
                status=RunStatus.PREPARED,
                last_selection=LastSelection(included=state.included, changed=changed),
            ),
        )
    elif state.operation in {"undo", "approve"} and state.derived_from:
        make = undo_run if state.operation == "undo" else approve_held
        make(deps, tenant, state.derived_from, who, run_id)
    else:
        raise RunStateError(f"no such operation on a run: {state.operation}")
    state.status = "prepared"
    state.next = "prepared"
    return state
