"""Staging one entity (or one part of it): its records against the last committed state
→ its change lines; and the decision that follows the staging of every entity.

Per entity, one streaming pass over the normalized records (zipped with their match
decisions, which are in the same order) against an id-only index of the baseline; then
one streaming pass over the baseline snapshot to fetch the *before* side of the records
that changed. Memory holds ids and hashes, plus the changed records only.

Semantics:
- Delete = archive. A record absent from a complete read is archived; a ``tobedeleted``
  record is archived in complete and delta reads alike.
- A record whose row failed validation is *unknown*: never archived.
- If an entity had rows with no readable id, none of its absences can be trusted, so
  its implicit archives are refused; so are those of a listed-but-missing or empty file.
- Quick runs apply only what the bundle carries: absences archive nothing.
- Field rules from the tenant's settings: blank source values may erase nothing; class
  renames may be ignored after the first sync; contact details edited in the app are
  kept unless the sync may overwrite them.
- Hold: thresholds on archives and changes per entity, a bundle much smaller than the
  last one, a required file missing or empty. A held run's archives wait for an admin;
  its adds and updates go through if the settings allow, otherwise everything waits.

Refused and held actions stay in the change set, ``included: false``, with the reason.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from functools import cached_property, partial
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson

from rostersync.changes import (
    SETTING_OF_ACTION,
    Action,
    ActionKind,
    HoldTrip,
    empty_counts,
    field_changes,
    make_action,
)
from rostersync.models import ENTITY_ORDER, Entity, SourceStatus, Tier
from rostersync.pipeline.change_lines import ChangeLines, keep_lines
from rostersync.pipeline.columnar import (
    Diff,
    RecordLines,
    connect_engine,
    diff_entity,
    handed_diff,
    sql_files,
)
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.match_decisions import MatchDecision
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.pipeline.notify import notify_run
from rostersync.pipeline.report import build_report
from rostersync.pipeline.snapshot import (
    ACTIVE,
    ARCHIVED,
    BODY_KEY,
    BaselineEntry,
    content_hash,
    iter_snapshot,
    iter_snapshot_lines,
    layered_sql,
    load_baseline_index,
    local_files,
    snapshot_files,
)
from rostersync.pipeline.stage_partition import PartDiff, part_diff
from rostersync.policy.field_rules import apply_field_rules
from rostersync.policy.holds import (
    EntityOutcome,
    hold_checks,
    keep_links_to_absent,
    removes_links,
    untick,
)
from rostersync.policy.refusals import archive_refusal
from rostersync.policy.scope import Scope
from rostersync.records import RunStatus, RunUpdate
from rostersync.settings import CONTACT_FIELDS, TenantSettings
from rostersync.sources.base import ReadSummary
from rostersync.storage import keys
from rostersync.storage.objects import dumps_line
from rostersync.storage.ports import ObjectStorePort

#: Decisions that may take over the app record of a source id that vanished.
RELINK_TIERS = frozenset({Tier.AUTO, Tier.KEY, Tier.MANUAL})


def _given(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _known_owner(owner: tuple[str, str] | None, _target_id: str) -> tuple[str, str] | None:
    return owner


class EntityStager:
    """Stages one entity of one run."""

    def __init__(
        self,
        deps: Deps,
        state: RunState,
        entity: Entity,
        summary: ReadSummary,
        baseline_run: str | None,
        settings: TenantSettings,
        scope: Scope,
        source_system: str,
        cascade: dict[str, set[str]] | None = None,
        *,
        partition: tuple[int, int, str] | None = None,
        changes_key: str | None = None,
        lines_key: str | None = None,
    ) -> None:
        self.deps = deps
        #: ``(part, parts, prefix)``: stage only the records of this part, from the diff
        #: the stage's plan split under ``prefix`` (``stage_partition``).
        self.partition = partition
        self._part_diff: PartDiff | None = None
        #: Where the change lines go (the entity's change file unless a part's).
        self.changes_key = changes_key or keys.changes_key(state.tenant, state.run_id, entity)
        self.lines_key = lines_key or keys.change_lines_key(state.tenant, state.run_id, entity)
        #: Change lines written.
        self.lines_written = 0
        #: For enrollments: the source ids of the users and classes this run archives.
        self.cascade = cascade or {}
        #: Source ids this run archives (included): their enrollments follow.
        self.archived_ids: set[str] = set()
        self.source_system = source_system
        self.store: ObjectStorePort = deps.store
        self.state = state
        self.entity = entity
        self.summary = summary
        self.baseline_run = baseline_run
        self.settings = settings
        self.scope = scope
        self.result = EntityOutcome()
        self.pending: dict[tuple[str, str], tuple[ActionKind, dict[str, Any], str, str]] = {}
        self.explicit_archives: list[Action] = []
        self.seen: set[tuple[str, str]] = set()
        self.targets: set[str] = set()
        self.relinked: dict[tuple[str, str], tuple[tuple[str, str], dict[str, Any], str, str]] = {}
        self._owners: dict[str, tuple[str, str]] | None = None
        #: How the records were compared with the baseline: ``columnar`` or ``rows``.
        self.compared = "rows"
        self._app_edits: dict[str, dict[str, Any]] | None = None

    @cached_property
    def index(self) -> dict[tuple[str, str], BaselineEntry]:
        """The baseline by id (read on first need: the columnar diff does without)."""
        return load_baseline_index(self.store, self.state.tenant, self.baseline_run, self.entity)

    def _diff(self, stack: ExitStack) -> Diff | None:
        """The columnar diff of this entity, where it applies (no scope filter, which
        must read every record; a baseline with its index)."""
        if not self.deps.settings.columnar_diff or self.scope.active:
            return None
        tenant, run_id, entity = self.state.tenant, self.state.run_id, self.entity
        if self.partition is not None:
            part, parts, prefix = self.partition
            self._part_diff = part_diff(self.store, entity, part, parts, prefix, stack)
            return self._part_diff.diff
        files = snapshot_files(self.store, tenant, self.baseline_run, entity)
        if files is not None and files.indexes is None:
            return None
        handed = handed_diff(self.store, tenant, run_id, entity, self.baseline_run, stack)
        if handed is not None:
            return handed
        return diff_entity(
            self.store,
            keys.normalized_ids_key(tenant, run_id, entity),
            keys.matched_key(tenant, run_id, entity),
            None if files is None else files.indexes,
            stack,
            0 if files is None else files.top,
        )

    def _run_keys(self) -> Iterator[tuple[str, str]]:
        """Every (source system, source id) of the run's records."""
        ids_key = keys.normalized_ids_key(self.state.tenant, self.state.run_id, self.entity)
        for line in self.store.iter_jsonl(ids_key):
            yield line[0], line[1]

    def _owner_of(self, target_id: str) -> tuple[str, str] | None:
        """The baseline record holding ``target_id`` (index built on first need)."""
        if self._owners is None:
            self._owners = {entry.target_id: key for key, entry in self.index.items()}
        return self._owners.get(target_id)

    def _consider(
        self,
        key: tuple[str, str],
        status: str | None,
        digest: str,
        target_id: str | None,
        tier_name: str,
        base: BaselineEntry | None,
        owner_of: Callable[[str], tuple[str, str] | None],
        record_of: Callable[[], dict[str, Any]],
        *,
        tracked: bool = True,
        added_record: Callable[[], Any] | None = None,
    ) -> Action | None:
        """What one record of the run comes to: an add (returned), a change waiting for
        its *before* side (``pending``), an explicit archive, a re-link, or nothing.

        ``tracked``: the record is kept among those seen and its app id among those
        taken. The columnar diff knows which app ids two records share and reads the
        absent records itself: it tracks only those, so a first sync of millions of
        records holds no set of them all. ``added_record``: the record an add carries,
        if not ``record_of()`` (the columnar path passes the normalized line as it is,
        an ``orjson.Fragment``: written into the change file without a parse)."""
        if tracked:
            self.seen.add(key)
        if target_id is None:
            return None  # held for an admin's decision: no change this run
        if tracked:
            if target_id in self.targets:
                self.result.merged += 1  # a second source record for one app record
                return None
            self.targets.add(target_id)
        deleted = status == SourceStatus.TOBEDELETED.value
        if base is None and not deleted and Tier(tier_name) in RELINK_TIERS:
            owner = owner_of(target_id)
            if owner is not None and owner != key:
                # The source re-issued this record's id: re-link, do not duplicate.
                self.relinked[owner] = (key, record_of(), target_id, tier_name)
                return None
        if base is None:
            if deleted:
                return None
            self.result.counts["add"] += 1
            return make_action(
                self.entity,
                "add",
                *key,
                target_id,
                tier=tier_name,
                record=(added_record or record_of)(),
            )
        if base.status == ARCHIVED:
            if not deleted:
                self.pending[key] = ("reactivate", record_of(), base.target_id, tier_name)
        elif deleted:
            self.explicit_archives.append(
                make_action(self.entity, "archive", *key, base.target_id, tier=tier_name)
            )
        elif digest != base.hash:
            self.pending[key] = ("update", record_of(), base.target_id, tier_name)
        else:
            self.result.unchanged += 1
        return None

    def _direct_actions(self) -> Iterator[Action]:
        """Actions from the records of this run, row by row. A record is parsed only when
        it is needed (an add, a change, a scope filter): an unchanged record is known by
        its id, status and content hash alone."""
        tenant, run_id, entity = self.state.tenant, self.state.run_id, self.entity
        ids = self.store.iter_jsonl(keys.normalized_ids_key(tenant, run_id, entity))
        raw_records = self.store.iter_lines(keys.normalized_key(tenant, run_id, entity))
        decisions = (
            MatchDecision.from_line(line)
            for line in self.store.iter_jsonl(keys.matched_key(tenant, run_id, entity))
        )
        filtering = self.scope.active
        loads = orjson.loads
        index = self.index
        for (system, source_id, status, digest, *_), raw, decision in zip(
            ids, raw_records, decisions, strict=True
        ):
            record: dict[str, Any] | None = None
            if filtering:
                record = self.scope.admit(entity, loads(raw))
                if record is None:
                    continue  # out of scope: as if not sent
                digest = content_hash(record)  # a filter may have changed it
            key = (system, source_id)
            action = self._consider(
                key,
                status,
                digest,
                decision.target_id,
                decision.tier.value,
                index.get(key),
                self._owner_of,
                partial(_given, record) if record is not None else partial(loads, raw),
            )
            if action is not None:
                yield action

    def _columnar_actions(self, diff: Diff, stack: ExitStack) -> Iterator[Action]:
        """Actions from the records the columnar diff handed over (the others are
        unchanged: counted, never parsed), with the same decisions as row by row."""
        tenant, run_id = self.state.tenant, self.state.run_id
        # A first sync hands over every record: read forwards.
        raw_records = RecordLines(
            self.store, tenant, run_id, self.entity, stack, sliced=self.baseline_run is not None
        )
        handed = 0
        counts = self.result.counts
        entity, deleted = self.entity, SourceStatus.TOBEDELETED.value
        for row in diff.rows:
            handed += 1
            raw = raw_records.at(row.line, row.source_system, row.source_id)
            if (
                row.base_target is None
                and row.target_id is not None
                and row.owner_system is None
                and not row.shared
                and row.status != deleted
            ):
                # The first sync's every record: new to the baseline, its app id its own
                # and held by no baseline record. ``_consider`` makes it an add, as here.
                counts["add"] += 1
                # The normalized line as it is (written into the change file unparsed).
                line: Any = orjson.Fragment(raw)
                yield make_action(
                    entity,
                    "add",
                    row.source_system,
                    row.source_id,
                    row.target_id,
                    tier=row.tier,
                    record=line,
                )
                continue
            base = (
                None
                if row.base_target is None
                else BaselineEntry(row.base_target, row.base_status or ACTIVE, row.base_hash or "")
            )
            owner = (
                None
                if row.owner_system is None or row.owner_id is None
                else (row.owner_system, row.owner_id)
            )
            action = self._consider(
                (row.source_system, row.source_id),
                row.status,
                row.hash,
                row.target_id,
                row.tier,
                base,
                partial(_known_owner, owner),
                partial(orjson.loads, raw),
                tracked=row.shared,
                added_record=partial(orjson.Fragment, raw),
            )
            if action is not None:
                yield action
        self.result.unchanged += diff.records - handed

    def _absent(
        self, protected: set[str], diff: Diff | None
    ) -> Iterator[tuple[tuple[str, str], str]]:
        """The active baseline records this run does not carry, and their app ids."""
        explicit = {(a["source_system"], a["source_id"]) for a in self.explicit_archives}
        explicit |= set(self.relinked)
        if diff is not None:
            for row in diff.absent:
                key = (row.source_system, row.source_id)
                if key not in explicit and key[1] not in protected:
                    yield key, row.target_id
            return
        for key, base in self.index.items():
            absent = base.status == ACTIVE and key not in self.seen and key not in explicit
            if absent and key[1] not in protected:
                yield key, base.target_id

    def _owns(self, key: tuple[str, str]) -> bool:
        """Whether a key of the entity is this part's (always, staged whole)."""
        if self.partition is None or self._part_diff is None:
            return True
        return self._part_diff.owns(key, self.partition[0], self.partition[1])

    def _app_contact_values(self, target_id: str) -> dict[str, Any]:
        if self.entity != Entity.USERS or self.settings.overwrite_app_contact_edits:
            return {}
        if self._app_edits is None:
            self._app_edits = self.deps.app_edits.all_for(self.state.tenant, self.entity.value)
        edits = self._app_edits.get(target_id) or {}
        return {name: value for name, value in edits.items() if name in CONTACT_FIELDS}

    def _pending_lines(self) -> Iterator[dict[str, Any]]:
        """The baseline lines of the records waiting for their baseline (``pending``,
        ``relinked``): lines of other records are passed over unparsed by the start
        every line is written with; if any is not met that way, every line is read."""
        tenant, entity = self.state.tenant, self.entity
        dumps = orjson.dumps
        wanted = {
            b'{"source_system":' + dumps(system) + b',"source_id":' + dumps(source_id)
            for system, source_id in itertools.chain(self.pending, self.relinked)
        }
        for raw in iter_snapshot_lines(self.store, tenant, self.baseline_run, entity):
            end = raw.find(b',"target_id":')
            if end < 0 or raw[:end] in wanted:
                yield orjson.loads(raw)
        if self.pending or self.relinked:
            yield from iter_snapshot(self.store, tenant, self.baseline_run, entity)

    def _cascaded_archives(self, archived: set[tuple[str, str]]) -> Iterator[Action]:
        """Archives of the active enrollments of users and classes this run archives
        (the source may still list them, or never say): an enrollment never outlives
        its student, teacher or class. Reviewable and counted like any archive."""
        users, classes = self.cascade.get("users", set()), self.cascade.get("classes", set())
        for system, source_id, target_id, user, klass in self._enrollments_of(users, classes):
            key = (system, source_id)
            if key in archived or key in self.pending or not self._owns(key):
                continue
            if user in users:
                cause = f"user {user} archived"
            elif klass in classes:
                cause = f"class {klass} archived"
            else:
                continue
            action = make_action(self.entity, "archive", *key, target_id, tier="cascade")
            action["cascade_of"] = cause
            yield action

    def _enrollments_of(
        self, users: set[str], classes: set[str]
    ) -> Iterator[tuple[str, str, str, str | None, str | None]]:
        """The baseline's active enrollments of ``users`` or ``classes``: (source system,
        source id, app id, user, class), in snapshot order. DuckDB reads the snapshot (in
        C, on every core); where it cannot, every line is parsed here."""
        tenant, entity = self.state.tenant, self.entity
        if self.baseline_run is None:
            return
        with ExitStack() as stack:
            files = snapshot_files(self.store, tenant, self.baseline_run, entity)
            paths = None if files is None else local_files(self.store, files.bodies, stack)
            if not paths:
                return
            spill = stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-"))
            con = stack.enter_context(connect_engine(Path(spill)))
            try:
                con.execute("CREATE TEMP TABLE wanted_users (id VARCHAR)")
                con.execute("CREATE TEMP TABLE wanted_classes (id VARCHAR)")
                for table, ids in (("wanted_users", users), ("wanted_classes", classes)):
                    if ids:
                        con.execute(f"INSERT INTO {table} SELECT unnest(?::VARCHAR[])", [list(ids)])
                lines = layered_sql(_cascade_lines, paths, files.top if files else 0, BODY_KEY)
                found = con.execute(_CASCADE.format(lines=lines)).fetchall()
            except duckdb.Error:
                found = None
        if found is not None:
            yield from found
            return
        for line in iter_snapshot(self.store, tenant, self.baseline_run, entity):
            if line["status"] != ACTIVE:
                continue
            record = line.get("record") or {}
            user, klass = record.get("user_source_id"), record.get("class_source_id")
            if user in users or klass in classes:
                yield line["source_system"], line["source_id"], line["target_id"], user, klass

    def run(self) -> EntityOutcome:
        entity = self.entity
        result = self.result
        change_lines = ChangeLines()
        with ExitStack() as stack, self.store.writer(self.changes_key) as change_file:
            out = _ChangeFile(change_file, change_lines)
            diff = self._diff(stack)
            self.compared = "rows" if diff is None else "columnar"
            direct = self._direct_actions() if diff is None else self._columnar_actions(diff, stack)
            for action in direct:
                out.write(action)
            if diff is None:
                active = sum(1 for entry in self.index.values() if entry.status == ACTIVE)
            else:
                active = diff.active_before
            # A read whose absences cannot be trusted cannot remove links either: a link
            # to a record missing from it is kept.
            untrusted = (
                archive_refusal(entity, self.summary, active) is not None
                or bool(self.summary.unknown_ids)
            ) and not self.summary.is_absent
            if diff is not None and (self.summary.deleted_ids or untrusted):
                self.seen.update(self._run_keys())  # the diff left the unchanged unseen

            # Deletions given only as an id and a status (too bare to be records).
            system = self.source_system
            for source_id in self.summary.deleted_ids:
                if (
                    self._part_diff is not None
                    and (system, source_id) not in self._part_diff.absent
                ):
                    continue  # another part's (a bare deletion of an absent record)
                base = self.index.get((system, source_id))
                if (
                    base is not None
                    and base.status == ACTIVE
                    and (system, source_id) not in self.seen
                ):
                    self.seen.add((system, source_id))
                    self.explicit_archives.append(
                        make_action(entity, "archive", system, source_id, base.target_id)
                    )
            archives = self.explicit_archives
            if self.summary.is_complete and self.state.mode == "full":
                protected = set(self.summary.unknown_ids)
                archives = archives + [
                    make_action(entity, "archive", *key, target_id)
                    for key, target_id in self._absent(protected, diff)
                ]
            result.active_before = active
            reason = archive_refusal(entity, self.summary, active)
            if self.summary.is_absent or not archives:
                reason = None
            for action in archives:
                if reason is not None:
                    action["included"] = False
                    action["reason"] = reason
                    result.refused += 1
                else:
                    result.counts["archive"] += 1
                    self.archived_ids.add(action["source_id"])
                out.write(action)
            result.refused_reason = reason if result.refused else None
            if entity is Entity.ENROLLMENTS and any(self.cascade.values()):
                archived = {(a["source_system"], a["source_id"]) for a in archives}
                for action in self._cascaded_archives(archived):
                    result.counts["archive"] += 1
                    out.write(action)
            present = {source_id for _, source_id in self.seen} if untrusted else set()

            if self.pending or self.relinked:
                for line in self._pending_lines():
                    key = (line["source_system"], line["source_id"])
                    relinked_from = None
                    found = self.pending.pop(key, None)
                    if found is None and key in self.relinked:
                        new_key, record, target_id, tier = self.relinked.pop(key)
                        kind: ActionKind = "update" if line["status"] == ACTIVE else "reactivate"
                        found = (kind, record, target_id, tier)
                        relinked_from, key = key[1], new_key
                    if found is None:
                        continue
                    kind, record, target_id, tier = found
                    before = line.get("record") or {}
                    record = apply_field_rules(
                        entity, before, record, self.settings, self._app_contact_values(target_id)
                    )
                    if untrusted and kind == "update":
                        record = keep_links_to_absent(before, record, present)
                    changes = field_changes(before, record)
                    if not changes and kind == "update" and relinked_from is None:
                        result.unchanged += 1
                        continue
                    result.counts[kind] += 1
                    action = make_action(
                        entity, kind, *key, target_id, tier=tier, record=record, changes=changes
                    )
                    if relinked_from is not None:
                        action["relinked_from"] = relinked_from
                        action["changes"]["source_id"] = [relinked_from, key[1]]
                    if removes_links(action):
                        result.link_removals += 1
                    out.write(action)
        self.lines_written = change_lines.lines
        keep_lines(self.store, self.changes_key, self.lines_key, change_lines)
        return result


def _cascade_lines(paths: Sequence[Path]) -> str:
    return f"""SELECT * FROM read_json({sql_files(paths)}, format = 'newline_delimited',
    columns = {{
        source_system: 'VARCHAR', source_id: 'VARCHAR', target_id: 'VARCHAR',
        status: 'VARCHAR', record: 'STRUCT(user_source_id VARCHAR, class_source_id VARCHAR)'
    }})"""


_CASCADE = """
SELECT source_system, source_id, target_id, record.user_source_id, record.class_source_id
FROM ({lines})
WHERE status = 'active' AND (
    record.user_source_id IN (SELECT id FROM wanted_users)
    OR record.class_source_id IN (SELECT id FROM wanted_classes)
)
"""


class _ChangeFile:
    """A change file being written, each line noted in its ``ChangeLines``."""

    def __init__(self, out: IO[bytes], lines: ChangeLines) -> None:
        self._out, self._lines = out, lines

    def write(self, action: Action) -> None:
        line = dumps_line(action)
        self._out.write(line)
        self._lines.add(line, action)


def _apply_hold_and_settings(
    deps: Deps,
    state: RunState,
    settings: TenantSettings,
    held: bool,
    held_counts: dict[str, int],
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Untick what the settings do not sync and what a hold keeps back; recount the
    included actions and the others."""
    counts = {e.value: empty_counts() for e in ENTITY_ORDER}
    excluded = {e.value: empty_counts() for e in ENTITY_ORDER}
    for entity in ENTITY_ORDER:
        key = keys.changes_key(state.tenant, state.run_id, entity)
        # A first pass decides; a second rewrites the file if anything changed. Neither
        # holds more than one action (a held first sync has a million).
        held_here = 0
        dirty = False
        for action in deps.store.iter_jsonl(key):
            if not action["included"]:
                excluded[entity.value][action["action"]] += 1
                continue
            reason, waits = untick(action, settings, held=held)
            if reason is None:
                counts[entity.value][action["action"]] += 1
                continue
            excluded[entity.value][action["action"]] += 1
            held_here += waits
            dirty = True
        if held_here:
            held_counts[entity.value] = held_counts.get(entity.value, 0) + held_here
        if dirty:
            # Noted as stage notes what it writes: the commit's plan and the report
            # need not read the file again.
            lines = ChangeLines()
            with deps.store.writer(key) as out:
                written = _ChangeFile(out, lines)
                for action in _unticked(deps.store.iter_jsonl(key), settings, held):
                    written.write(action)
            lines_key = keys.change_lines_key(state.tenant, state.run_id, entity)
            keep_lines(deps.store, key, lines_key, lines)
    return counts, excluded


def _unticked(actions: Iterator[Action], settings: TenantSettings, held: bool) -> Iterator[Action]:
    """``actions`` with those this run does not apply unticked (see ``untick``)."""
    for action in actions:
        if action["included"]:
            reason, waits = untick(action, settings, held=held)
            if reason is not None:
                action["included"], action["held"], action["reason"] = False, waits, reason
        yield action


def hold_thresholds(deps: Deps, settings: TenantSettings) -> Any:
    """The tenant's hold thresholds, the archive share capped by the stack's."""
    return settings.hold.model_copy(
        update={"archive_share": min(settings.hold.archive_share, deps.settings.max_archive_share)}
    )


def decide(
    deps: Deps,
    state: RunState,
    settings: TenantSettings,
    baseline_run: str | None,
    outcomes: dict[Entity, EntityOutcome],
    compared: dict[str, str],
    out_of_scope: int,
    stage_parts: list[dict[str, Any]],
) -> RunState:
    """What follows the staging of every entity: hold checks, the tenant's settings,
    the change summary, and commit or prepared."""
    tenant, run_id = state.tenant, state.run_id
    normalized = load_normalized_summary(deps, tenant, run_id)
    thresholds = hold_thresholds(deps, settings)
    refused: dict[str, dict[str, Any]] = {}
    for entity, outcome in outcomes.items():
        if outcome.refused:
            refused[entity.value] = {"archive": outcome.refused, "reason": outcome.refused_reason}

    last = deps.store.get_json(keys.state_pointer_key(tenant)) or {}
    hold = hold_checks(
        thresholds, outcomes, normalized, last.get("rows"), full=state.mode == "full"
    )
    # Empty or missing files already refuse their archives; they hold the run only when
    # there was a committed state to lose.
    if baseline_run is None:
        hold = [h for h in hold if h["check"] != "required_file"]
    held_counts: dict[str, int] = {}
    if hold or set(settings.changes_to_sync) != set(SETTING_OF_ACTION.values()):
        counts, excluded = _apply_hold_and_settings(deps, state, settings, bool(hold), held_counts)
    else:
        # Nothing to untick: the counts are the staging counts (what stage left out is
        # the archives it refused); no second pass over S3.
        counts = {e.value: empty_counts() for e in ENTITY_ORDER}
        excluded = {e.value: empty_counts() for e in ENTITY_ORDER}
        for entity, outcome in outcomes.items():
            counts[entity.value] = dict(outcome.counts)
            excluded[entity.value]["archive"] = outcome.refused
    rows = normalized.rows
    deps.store.put_json(
        keys.change_summary_key(tenant, run_id),
        {
            "baseline_run_id": baseline_run,
            "counts": counts,
            #: The actions left out (refused, held, not synced, unticked), per kind.
            "excluded": excluded,
            "refused": refused,
            "hold": hold,
            "held": held_counts,
            "rows": rows,
            "unchanged": {e.value: o.unchanged for e, o in outcomes.items()},
            "out_of_scope": out_of_scope,
            "compared": compared,
            "stage_parts": stage_parts,
        },
    )
    totals = dict.fromkeys((*empty_counts(), "refused", "held", "unchanged"), 0)
    for row in counts.values():
        for action, n in row.items():
            totals[action] += n
    totals["refused"] = sum(int(r["archive"]) for r in refused.values())
    totals["held"] = sum(held_counts.values())
    totals["unchanged"] = sum(o.unchanged for o in outcomes.values())
    state.counts["stage"] = totals
    waits = bool(hold) and not settings.hold.apply_safe_changes
    state.next = "prepared" if (state.review or waits or not settings.auto_commit) else "commit"
    if state.next == "prepared":
        report = build_report(deps, state, status="prepared")
        deps.runs.update(
            tenant,
            run_id,
            RunUpdate(
                status=RunStatus.RESTAGING if state.operation == "restage" else RunStatus.PREPARED,
                counts=report["counts"],
                refused=report["refused"],
                hold=[HoldTrip.model_validate(trip) for trip in hold],
                issue_count=report["issues_total"],
                report_key=keys.report_key(tenant, run_id),
            ),
        )
        state.status = "prepared"
        notify_run(deps, tenant, run_id, "prepared", report)
    return state
