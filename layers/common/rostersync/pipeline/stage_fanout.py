"""stage in parts: a plan, its parts (inline or over a Distributed Map), a finish.

1. **plan** (the ``stage`` task, ``begin_stage``): per entity, its parts. An entity of
   a run with more than ``STAGE_PART_RECORDS`` records (2,000,000) whose records are
   compared column-wise (``columnar``: no scope filter) is split into
   ``ceil(records / STAGE_PART_RECORDS)`` parts (at most ``STAGE_MAX_PARTS``) by a hash
   of the source id: the plan computes its diff once and stores it split, a file per
   part (``stage_partition``); any other entity is one part. The plan
   (``runs/{t}/{r}/stage/{attempt}/plan.json``) keeps the run's state, the baseline
   and the tenant's settings as the stage began, so every part stages on the same.
   A district with no entity in parts stays in this task: its parts run here, one
   after the other, then the finish: the same code as fanned out, with no Map.
2. **parts** (``stage_part``): a Distributed Map runs wave 1, then another wave 2.
   Wave 2 holds the enrollments when there is a baseline (the users and classes wave
   1 archives take their enrollments with them: each users or classes part keeps the
   source ids it archives, ``archived/{part}.json``, and an enrollments part reads
   them all); without a baseline nothing is archived and there is one wave. Each part
   writes its own change part (``changes/{part}.jsonl`` under the attempt; an entity
   of one part writes the entity's change file itself) and then a marker
   (``done/{part}.json``: rows, ms, peak MB, what it counted): a part met again after
   its marker does nothing; a part cut short is done again from the start (its
   objects are written whole, replacing any earlier).
3. **finish** (``finish_stage``): runs the parts not yet done, joins each entity's
   change parts into its change file (and their line starts into its ``.lines``), adds
   up the parts' counts, and decides as a stage in one piece does: hold checks,
   settings, the change summary (with ``stage_parts``: the markers), commit or
   prepared.

A re-stage (after a match decision) goes through the same tasks as a sync's stage,
fanned out alike, between the Review function's first and last tasks
(``application.review.begin_restage`` and ``finish_restage``).

Fanned out, the plan splits at most one entity's diff per task (at a million students
the users' and the enrollments' splits are about half a minute each): it keeps what it
planned so far in the plan file, returns ``splitting``, and the state machine runs the
stage task again, which goes on from the next entity (``begin_stage``).

Every staging of a run is an *attempt* of its own (a re-stage after a match decision
plans anew), so markers of an earlier staging are never taken for this one's.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from rostersync.errors import RunStateError
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.observability import peak_mb
from rostersync.pipeline.change_lines import ChangeLines, keep_lines, noted_lines
from rostersync.pipeline.contracts import RunState, StagePart, StagePlan
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.pipeline.snapshot import current_baseline, snapshot_files
from rostersync.pipeline.stage_entity import EntityStager, decide
from rostersync.pipeline.stage_partition import split_diff
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.policy.holds import EntityOutcome
from rostersync.policy.scope import Scope
from rostersync.settings import TenantSettings
from rostersync.storage import keys

#: Entities whose archives cascade to the enrollments.
_CASCADING = (Entity.USERS, Entity.CLASSES)


def _prefix(tenant: str, run_id: str, attempt: str) -> str:
    return keys.run_prefix(tenant, run_id) + f"stage/{attempt}/"


def plan_key(tenant: str, run_id: str, attempt: str) -> str:
    return _prefix(tenant, run_id, attempt) + "plan.json"


def done_key(tenant: str, run_id: str, attempt: str, part_id: str) -> str:
    return _prefix(tenant, run_id, attempt) + f"done/{part_id}.json"


def _archived_key(tenant: str, run_id: str, attempt: str, part_id: str) -> str:
    return _prefix(tenant, run_id, attempt) + f"archived/{part_id}.json"


def part_keys(tenant: str, run_id: str, attempt: str, part: StagePart) -> tuple[str, str]:
    """Where a part writes its change lines and their line starts: the entity's own
    change file for an entity of one part."""
    if part.parts == 1:
        return (
            keys.changes_key(tenant, run_id, part.entity),
            keys.change_lines_key(tenant, run_id, part.entity),
        )
    base = _prefix(tenant, run_id, attempt) + f"changes/{part.id}"
    return base + ".jsonl", base + ".lines"


class _Plan:
    """A stored plan: the run's state, baseline and settings as the stage began."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.state = RunState.model_validate(body["state"])
        self.baseline_run: str | None = body["baseline_run"]
        self.settings = TenantSettings.model_validate(body["settings"])
        self.plan = StagePlan.model_validate(body["plan"])

    @property
    def parts(self) -> list[StagePart]:
        return [*self.plan.parts, *self.plan.dependent_parts]

    def part(self, part_id: str) -> StagePart:
        for part in self.parts:
            if part.id == part_id:
                return part
        raise RunStateError(f"stage part {part_id} is not in the plan")


def _parts_of(
    deps: Deps, state: RunState, attempt: str, baseline_run: str | None, entity: Entity, wave: int
) -> list[StagePart]:
    """An entity's parts: more than one where its records are that many and its diff
    could be split (``split_diff``, the diff computed once for all its parts)."""
    normalized = load_normalized_summary(deps, state.tenant, state.run_id)
    records = normalized.of(entity).records
    size = deps.settings.stage_part_records
    count = 1
    if records > size:
        count = min(math.ceil(records / size), deps.settings.stage_max_parts)
    if count > 1 and not split_diff(
        deps.store,
        state.tenant,
        state.run_id,
        entity,
        baseline_run,
        count,
        _prefix(state.tenant, state.run_id, attempt),
    ):
        count = 1
    if count == 1:
        return [StagePart(id=entity.value, entity=entity, wave=wave)]
    return [
        StagePart(id=f"{entity.value}-{n:03d}", entity=entity, part=n, parts=count, wave=wave)
        for n in range(count)
    ]


def plan_stage(state: RunState, deps: Deps, *, one_split: bool = False) -> _Plan:
    """Plan the run's parts; store the plan (a new attempt). With ``one_split``, stop
    after an entity split into parts when another entity is left to plan: the stored
    plan is then ``splitting``, and the next call with the state it returns goes on."""
    tenant, run_id = state.tenant, state.run_id
    going_on = state.stage is not None and state.stage.splitting
    if going_on:
        assert state.stage is not None
        earlier = _load_plan(deps, tenant, run_id, state.stage.attempt)
        state = RunState.model_validate(earlier.body["state"])
        attempt, began_ms = earlier.plan.attempt, earlier.plan.began_ms
        baseline_run, settings = earlier.baseline_run, earlier.settings
        first, second = list(earlier.plan.parts), list(earlier.plan.dependent_parts)
        start = earlier.plan.next_entity
    else:
        # The stage's time counts from here: the plan's split of the diffs is of it.
        began_ms = int(time.time() * 1000)
        attempt = uuid.uuid4().hex[:12]
        baseline_run = current_baseline(deps.store, tenant)
        settings = load_settings(deps, tenant)
        first, second = [], []
        start = 0
    # Parts need the columnar diff: no scope filter (it reads every record, and what it
    # keeps of one entity decides the next), a baseline with its index.
    columnar = deps.settings.columnar_diff and not Scope(settings).active
    cascades = baseline_run is not None and any(e in settings.items_to_sync for e in _CASCADING)
    splitting = False
    for number, entity in enumerate(ENTITY_ORDER):
        if number < start:
            continue
        if splitting:
            start = number
            break
        if entity not in settings.items_to_sync:
            deps.store.write_jsonl(keys.changes_key(tenant, run_id, entity), [])
            continue
        files = snapshot_files(deps.store, tenant, baseline_run, entity)
        indexed = files is None or files.indexes is not None
        wave = 2 if entity is Entity.ENROLLMENTS and cascades else 1
        if columnar and indexed:
            parts = _parts_of(deps, state, attempt, baseline_run, entity, wave)
        else:
            parts = [StagePart(id=entity.value, entity=entity, wave=wave)]
        (second if wave == 2 else first).extend(parts)
        # Split into parts: the next entity is planned by the next task.
        splitting = one_split and len(parts) > 1 and number + 1 < len(ENTITY_ORDER)
    else:
        splitting = False
    fan_out = any(part.parts > 1 for part in (*first, *second))
    if not fan_out and not splitting:
        first, second = [*first, *second], []
    plan = StagePlan(
        attempt=attempt,
        fan_out=fan_out and not splitting,
        dependent=bool(second),
        concurrency=deps.settings.stage_concurrency,
        began_ms=began_ms,
        parts=first,
        dependent_parts=second,
        splitting=splitting,
        next_entity=start if splitting else len(ENTITY_ORDER),
    )
    body = {
        "state": state.model_copy(update={"stage": None}).model_dump(mode="json"),
        "baseline_run": baseline_run,
        "settings": settings.model_dump(mode="json"),
        "plan": plan.model_dump(mode="json"),
    }
    deps.store.put_json(plan_key(tenant, run_id, plan.attempt), body)
    return _Plan(body)


def _load_plan(deps: Deps, tenant: str, run_id: str, attempt: str) -> _Plan:
    body = deps.store.get_json(plan_key(tenant, run_id, attempt))
    if not isinstance(body, dict):
        raise RunStateError(f"run {run_id} has no stage plan {attempt}")
    return _Plan(body)


def _cascade(deps: Deps, plan: _Plan) -> dict[str, set[str]]:
    """The source ids the users and classes parts archive (done already: wave 1, or
    earlier in this process)."""
    tenant, run_id = plan.state.tenant, plan.state.run_id
    cascade: dict[str, set[str]] = {}
    for part in plan.parts:
        if part.entity in _CASCADING:
            ids = deps.store.get_json(_archived_key(tenant, run_id, plan.plan.attempt, part.id))
            cascade.setdefault(part.entity.value, set()).update(ids or [])
    return cascade


def run_part(
    deps: Deps, plan: _Plan, part: StagePart, scope: Scope | None = None
) -> dict[str, Any]:
    """Stage one part unless its marker says it is done; return the marker.

    ``scope``: the scope filter shared by the parts staged in this process (the
    filter of one entity depends on what it kept of the ones before)."""
    state = plan.state
    tenant, run_id, attempt = state.tenant, state.run_id, plan.plan.attempt
    marker_key = done_key(tenant, run_id, attempt, part.id)
    marker = deps.store.get_json(marker_key)
    if marker is not None:
        return dict(marker)
    started = time.monotonic()
    normalized = load_normalized_summary(deps, tenant, run_id)
    scope = scope if scope is not None else Scope(plan.settings)
    dropped = scope.dropped
    changes_key, lines_key = part_keys(tenant, run_id, attempt, part)
    stager = EntityStager(
        deps,
        state,
        part.entity,
        normalized.of(part.entity),
        plan.baseline_run,
        plan.settings,
        scope,
        normalized.source_system,
        _cascade(deps, plan) if part.entity is Entity.ENROLLMENTS else None,
        partition=(part.part, part.parts, _prefix(tenant, run_id, attempt))
        if part.parts > 1
        else None,
        changes_key=changes_key,
        lines_key=lines_key,
    )
    outcome = stager.run()
    if part.entity in _CASCADING and stager.archived_ids:
        deps.store.put_json(
            _archived_key(tenant, run_id, attempt, part.id), sorted(stager.archived_ids)
        )
    marker = {
        "part": part.id,
        "entity": part.entity.value,
        "rows": stager.lines_written,
        "ms": int((time.monotonic() - started) * 1000),
        "peak_mb": peak_mb(),
        "compared": stager.compared,
        "out_of_scope": scope.dropped - dropped,
        "outcome": asdict(outcome),
    }
    deps.store.put_json(marker_key, marker)
    return marker


def run_part_event(event: dict[str, Any], deps: Deps) -> dict[str, Any]:
    """The Distributed Map's item: ``{tenant, run_id, attempt, part}``; returns the
    marker. The part is the plan's (by id): an item names no object of its own."""
    tenant = keys.check_tenant(str(event["tenant"]))
    run_id = keys.check_run_id(str(event["run_id"]))
    attempt = str(event["attempt"])
    if not attempt.isalnum():
        raise RunStateError(f"no such stage attempt: {attempt!r}")
    given = StagePart.model_validate(event["part"])
    plan = _load_plan(deps, tenant, run_id, attempt)
    part = plan.part(given.id)
    if part != given:
        raise RunStateError(f"stage part {given.id} is not the plan's")
    return marker_summary(run_part(deps, plan, part))


def marker_summary(marker: dict[str, Any]) -> dict[str, Any]:
    """What a part reports (the Map's result, the report's ``stage_parts``)."""
    return {name: marker[name] for name in ("part", "entity", "rows", "ms", "peak_mb")}


def _join_parts(deps: Deps, plan: _Plan) -> None:
    """Join each entity's change parts into its change file, and their line starts into
    its ``.lines`` (again if the finish runs again: the same parts give the same file)."""
    tenant, run_id, attempt = plan.state.tenant, plan.state.run_id, plan.plan.attempt
    by_entity: dict[Entity, list[StagePart]] = {}
    for part in plan.parts:
        if part.parts > 1:
            by_entity.setdefault(part.entity, []).append(part)
    for entity, parts in by_entity.items():
        joined = ChangeLines()
        noted = True
        target = keys.changes_key(tenant, run_id, entity)
        with deps.store.writer(target) as out:
            for part in sorted(parts, key=lambda p: p.part):
                changes_key, lines_key = part_keys(tenant, run_id, attempt, part)
                found = noted_lines(deps.store, changes_key, lines_key)
                if found is None:
                    noted = False
                else:
                    _extend(joined, found)
                if deps.store.exists(changes_key):
                    with deps.store.open_stream(changes_key) as source:
                        shutil.copyfileobj(source, out, 1 << 20)
        if noted:
            keep_lines(deps.store, target, keys.change_lines_key(tenant, run_id, entity), joined)


def _extend(joined: ChangeLines, part: ChangeLines) -> None:
    """``part``'s lines noted after ``joined``'s."""
    lines, size = joined.lines, joined.size
    joined.starts.extend(start + size for start in part.starts)
    joined.others.extend(number + lines for number in part.others)
    joined.included += part.included
    joined.size += part.size
    if joined.linked is None or part.linked is None:
        joined.linked = None
    else:
        joined.linked += part.linked


def _outcome(markers: Iterable[dict[str, Any]]) -> EntityOutcome:
    """An entity's outcome from its parts' (counts add up; the active records before
    and the reason for refusing are the entity's, the same in every part)."""
    total = EntityOutcome()
    for marker in markers:
        found = marker["outcome"]
        for kind, n in found["counts"].items():
            total.counts[kind] = total.counts.get(kind, 0) + int(n)
        total.refused += int(found["refused"])
        total.refused_reason = total.refused_reason or found["refused_reason"]
        total.unchanged += int(found["unchanged"])
        total.active_before = max(total.active_before, int(found["active_before"]))
        total.merged += int(found["merged"])
        total.link_removals += int(found["link_removals"])
    return total


def _finish(deps: Deps, state: RunState, plan: _Plan, scope: Scope | None) -> RunState:
    markers = [run_part(deps, plan, part, scope) for part in plan.parts]
    _join_parts(deps, plan)
    by_entity: dict[Entity, list[dict[str, Any]]] = {}
    for marker in markers:
        by_entity.setdefault(Entity(marker["entity"]), []).append(marker)
    outcomes = {e: _outcome(by_entity[e]) for e in ENTITY_ORDER if e in by_entity}
    compared = {
        e.value: "rows" if any(m["compared"] == "rows" for m in by_entity[e]) else "columnar"
        for e in outcomes
    }
    state.stage = None
    if plan.plan.fan_out:
        timings = state.counts.setdefault("timings_ms", {})
        timings["stage"] = int(time.time() * 1000) - plan.plan.began_ms
    return decide(
        deps,
        state,
        plan.settings,
        plan.baseline_run,
        outcomes,
        compared,
        sum(int(m["out_of_scope"]) for m in markers),
        [marker_summary(m) for m in markers],
    )


def begin_stage(state: RunState, deps: Deps) -> RunState:
    """The stage task: plan the parts; unless they fan out, stage them here and finish
    (else ``state.stage`` lists them for the Distributed Map)."""
    plan = plan_stage(state, deps, one_split=True)
    if plan.plan.splitting or plan.plan.fan_out:
        state = RunState.model_validate(plan.body["state"])
        state.stage = plan.plan
        state.next = None
        return state
    return _finish(deps, state, plan, Scope(plan.settings))


def finish_stage(state: RunState, deps: Deps) -> RunState:
    """The finish task after the Map: the parts not yet done, the join, the decision."""
    if state.stage is None:
        raise RunStateError(f"run {state.run_id} has no stage plan to finish")
    plan = _load_plan(deps, state.tenant, state.run_id, state.stage.attempt)
    return _finish(deps, state, plan, None)


def stage_inline(state: RunState, deps: Deps) -> RunState:
    """Every part in this process, one after the other, then the finish."""
    plan = plan_stage(state, deps)
    return _finish(deps, state, plan, Scope(plan.settings))
