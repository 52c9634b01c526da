"""The match step's matcher: identity links, admins' decisions, exact keys, fuzzy.

Order (people, staff first): an existing identity link → an admin's decision (confirmed
or manual link; rejected pairs are never offered again) → the tenant's confirmed exact
keys (teachers by email by default) → fuzzy matching against the app's records that have
no source yet, and against records whose source id vanished this run (a changed Clever
or SIS id re-links instead of duplicating). Then classes, whose teachers are linked by
now. Every source record lands in one tier; suggestions wait for an admin (no change this
run); unmatched records are created unless the tenant holds them.

The matcher reads ids, names and dates only; it holds one entity's matching records in
memory, which the matching engine needs for blocking.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import date
from typing import Any

import orjson

from rostersync.errors import RunStateError
from rostersync.matching import (
    ClassRecord,
    Decision,
    KeySpec,
    PersonKind,
    PersonRecord,
    match_by_keys,
    match_classes,
    match_people,
)
from rostersync.matching.records import name_readings
from rostersync.models import GUARDIAN_ROLES, STAFF_ROLES, Entity, Role, Tier
from rostersync.pipeline.columnar import RecordLines
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.match_columnar import IdTables
from rostersync.pipeline.match_decisions import MatchDecision, new_target_id
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.pipeline.snapshot import (
    ACTIVE,
    BaselineEntry,
    current_baseline,
    iter_snapshot,
    load_baseline_index,
)
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.settings import MatchKeys
from rostersync.storage import keys

APP_SYSTEM = "app"

#: What matching needs of the run's users against the baseline: source id → target of
#: the linked (for class teachers), the unlinked records, the records an admin linked
#: (with the target), the source system, the app ids taken, the baseline's active
#: records whose source id the run does not carry.
_UserScan = tuple[
    dict[str, str],
    list[dict[str, Any]],
    list[tuple[dict[str, Any], str]],
    str,
    set[str],
    set[tuple[str, str]],
]


def key_spec(name: str) -> KeySpec:
    """``source_field:app_field[:strip]`` (validated by ``settings.MatchKeys``)."""
    parts = name.split(":")
    return KeySpec(parts[0], parts[1], len(parts) == 3 and parts[2] == "strip")


def decision_key(entity: str, source_system: str, source_id: str) -> str:
    return f"{entity}#{source_system}#{source_id}"


def _parse_date(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def person_kind(role: str | None) -> PersonKind | None:
    if role == Role.STUDENT.value:
        return PersonKind.STUDENT
    if role in {r.value for r in STAFF_ROLES}:
        return PersonKind.TEACHER
    if role in {r.value for r in GUARDIAN_ROLES}:
        return PersonKind.GUARDIAN
    return None


def source_person(
    record: dict[str, Any], birth: dict[str, date], schools: dict[str, str], key: str | None = None
) -> PersonRecord | None:
    """A canonical user dict as a matching record; None for roles not matched. The
    names' kana readings come from its ``metadata.*`` extensions (``name_readings``)."""
    kind = person_kind(record.get("role"))
    if kind is None:
        return None
    identifiers = {"source_id": record["source_id"]}
    for name in ("identifier", "username"):
        if record.get(name):
            identifiers[name] = str(record[name])
    for user_id in record.get("user_ids") or []:
        identifiers.setdefault(str(user_id["type"]), str(user_id["identifier"]))
    school = next((schools[o] for o in record.get("org_source_ids") or [] if o in schools), None)
    given_reading, family_reading = name_readings(record.get("extensions"))
    return PersonRecord(
        key=key or record["source_id"],
        kind=kind,
        given_name=record.get("given_name") or "",
        family_name=record.get("family_name") or "",
        middle_name=record.get("middle_name"),
        preferred_given_name=record.get("preferred_given_name"),
        email=record.get("email"),
        birth_date=birth.get(record["source_id"]),
        grade=(record.get("grades") or [None])[0],
        school=school,
        identifiers=identifiers,
        given_name_reading=given_reading,
        family_name_reading=family_reading,
    )


def confirmed_examples(
    confirmed: list[tuple[dict[str, Any], str]],
    app_people: list[dict[str, Any]],
    birth: dict[str, date],
    schools: dict[str, str],
) -> list[tuple[PersonRecord, PersonRecord]]:
    """The (source, app) records of the links an admin made (confirmed or manual, in this
    run or an earlier one; ``confirmed``: canonical source user, app id): labelled
    examples of the district's own typing habits for the match model. Links to records
    the app does not hold are left out."""
    app_by_id = {p["app_id"]: p for p in app_people if p.get("kind") != "class"}
    out = []
    for record, target in confirmed:
        app = app_by_id.get(target)
        person = source_person(record, birth, schools) if app is not None else None
        if app is not None and person is not None:
            out.append((person, app_person(app)))
    return out


def app_person(record: dict[str, Any]) -> PersonRecord:
    return PersonRecord(
        key=record["app_id"],
        kind=PersonKind(record["kind"]),
        given_name=record.get("given_name") or "",
        family_name=record.get("family_name") or "",
        email=record.get("email"),
        birth_date=_parse_date(record.get("birth_date")),
        grade=record.get("grade"),
        school=(record.get("school") or "").casefold() or None,
        identifiers=dict(record.get("identifiers") or {}),
    )


def _review_row(entity: Entity, decision: Decision, target: str | None) -> dict[str, Any]:
    evidence = decision.evidence
    return {
        "entity": entity.value,
        "source_id": decision.source_key,
        "target_id": target,
        "tier": decision.tier.value,
        "score": round(float(decision.score), 4),
        "runner_up": round(float(decision.runner_up), 4),
        "agreed": list(evidence.agreed) if evidence else [],
        "missing": list(evidence.missing) if evidence else [],
        "notes": list(evidence.notes) if evidence else [],
        "field_scores": (
            {k: round(float(v), 3) for k, v in evidence.field_scores.items()} if evidence else {}
        ),
        "alternatives": [[k, round(float(s), 4)] for k, s in decision.alternatives],
    }


class IdentityMatcher:
    """Decides users and classes up front (they depend on each other), the rest by link."""

    def __init__(self, deps: Deps, state: RunState) -> None:
        self.deps = deps
        self.state = state
        #: The engine's id tables over this baseline (``match_columnar``), where the step
        #: uses them.
        self.tables: IdTables | None = None
        self.tenant = state.tenant
        self.baseline = current_baseline(deps.store, state.tenant)
        self.settings = load_settings(deps, state.tenant)
        self.normalized = load_normalized_summary(deps, state.tenant, state.run_id)
        self.source_system = self.normalized.source_system
        self.decided: dict[Entity, dict[str, MatchDecision]] = {
            Entity.USERS: {},
            Entity.CLASSES: {},
        }
        self.review: list[dict[str, Any]] = []
        self.manual: dict[tuple[str, str], str] = {}
        self.rejected: dict[str, set[tuple[str, str]]] = {"users": set(), "classes": set()}
        #: App records an admin kept ad hoc or archived: not offered to matching.
        self.set_aside: set[str] = set()
        self._indexes: dict[Entity, dict[tuple[str, str], BaselineEntry]] = {}

    # ------------------------------------------------------------------ inputs

    def _normalized(self, entity: Entity) -> Iterator[dict[str, Any]]:
        return self.deps.store.iter_jsonl(
            keys.normalized_key(self.tenant, self.state.run_id, entity)
        )

    def _index(self, entity: Entity) -> dict[tuple[str, str], BaselineEntry]:
        if entity not in self._indexes:
            self._indexes[entity] = load_baseline_index(
                self.deps.store, self.tenant, self.baseline, entity
            )
        return self._indexes[entity]

    def _skipped(self, entity: Entity) -> set[str]:
        return set(self.normalized.of(entity).unknown_ids)

    def _load_decisions(self) -> None:
        for item in self.deps.decisions.all(self.tenant):
            entity = item.get("entity")
            if entity not in self.rejected:
                continue
            if item.get("target_id") and item.get("decision") in {"confirmed", "manual"}:
                self.manual[(entity, item["source_id"])] = item["target_id"]
            for target in item.get("rejected_targets") or []:
                self.rejected[entity].add((item["source_id"], target))
            if item.get("decision") in {"adhoc", "archived"} and item.get("target_id"):
                self.set_aside.add(item["target_id"])

    def _confirmed_keys(self) -> dict[PersonKind, list[KeySpec]]:
        """The tenant's exact keys per kind of person (``settings.match_keys``). Keys
        confirmed before they lived in the settings are still read from the tenant."""
        meta = self.deps.tenants.get_meta(self.tenant) or {}
        earlier = meta.get("match_keys") or {}
        defaults = MatchKeys()
        out: dict[PersonKind, list[KeySpec]] = {}
        for kind in PersonKind:
            names = getattr(self.settings.match_keys, kind.value + "s")
            if names == getattr(defaults, kind.value + "s") and earlier.get(kind.value):
                out[kind] = [
                    KeySpec(s[0], s[1], bool(s[2]) if len(s) > 2 else False)
                    for s in earlier[kind.value]
                ]
            else:
                out[kind] = [key_spec(name) for name in names]
        return out

    # ------------------------------------------------------------------ protocol

    def prepare(self) -> None:
        """Decide users (staff first) and classes before the entities are written."""
        app_people = list(self.deps.store.iter_jsonl(keys.app_records_key(self.tenant, "people")))
        app_classes = list(self.deps.store.iter_jsonl(keys.app_records_key(self.tenant, "classes")))
        self._load_decisions()
        if not app_people and not app_classes and not self.manual and self.baseline is None:
            return  # a first sync with nothing in the app to match: everything is new
        schools = {
            o["source_id"]: str(o.get("name") or "").casefold()
            for o in self._normalized(Entity.ORGS)
        }
        has_manual_classes = any(e == Entity.CLASSES.value for e, _ in self.manual)
        user_targets = self._match_users(
            app_people, schools, need_targets=bool(app_classes) or has_manual_classes
        )
        self._match_classes(app_classes, schools, user_targets)

    def decision_lines(
        self, entity: Entity, ids: Iterable[list[Any]], tiers: dict[str, int]
    ) -> Iterator[list[Any]]:
        """Decision lines in record order. The hot path of a sync (one line per record of
        the district), so it works on plain lists and strings."""
        decided = self.decided.get(entity, {})
        index = self._index(entity)
        # School mapping: a source school goes to the app school the admin chose; two
        # source schools mapped to one app school are merged into it.
        mapping = self.settings.schools.mapping if entity == Entity.ORGS else {}
        linked, unmatched, manual = Tier.LINKED.value, Tier.UNMATCHED.value, Tier.MANUAL.value
        counts = dict.fromkeys((linked, unmatched), 0)
        for line in ids:
            system, source_id = line[0], line[1]
            if source_id in mapping:
                tiers[manual] = tiers.get(manual, 0) + 1
                yield [system, source_id, mapping[source_id], manual, 1.0]
                continue
            known = decided.get(source_id)
            if known is not None:
                tiers[known.tier.value] = tiers.get(known.tier.value, 0) + 1
                yield known.to_line()
                continue
            link = index.get((system, source_id))
            if link is not None:
                counts[linked] += 1
                yield [system, source_id, link.target_id, linked, None]
            else:
                counts[unmatched] += 1
                target = new_target_id(self.tenant, entity, system, source_id)
                yield [system, source_id, target, unmatched, None]
        for tier, count in counts.items():
            if count:
                tiers[tier] = tiers.get(tier, 0) + count

    def special_ids(self, entity: Entity) -> set[str]:
        """The source ids whose decision is not a plain link-or-new (see ``special_line``)."""
        mapping = self.settings.schools.mapping if entity == Entity.ORGS else {}
        return set(mapping) | set(self.decided.get(entity, {}))

    def special_line(
        self, entity: Entity, system: str, source_id: str
    ) -> tuple[list[Any], str] | None:
        """The decision line and tier ``decision_lines`` gives a record of ``special_ids``
        (``None`` for any other)."""
        if entity == Entity.ORGS and source_id in self.settings.schools.mapping:
            target = self.settings.schools.mapping[source_id]
            return [system, source_id, target, Tier.MANUAL.value, 1.0], Tier.MANUAL.value
        known = self.decided.get(entity, {}).get(source_id)
        if known is not None:
            return known.to_line(), known.tier.value
        return None

    def review_rows(self) -> list[dict[str, Any]]:
        return self.review

    # ------------------------------------------------------------------ people

    def _orphans(
        self, entity: Entity, absent: set[tuple[str, str]], schools: dict[str, str]
    ) -> list[PersonRecord]:
        """Linked records whose source id is absent (not merely unreadable) this run, as
        candidates for a source record that came back under a new id (``absent``: the
        baseline's active records whose source id the run does not carry)."""
        skipped = self._skipped(entity)
        absent = {key for key in absent if key[1] not in skipped}
        if not absent:
            return []
        absent_ids = {key[1] for key in absent}
        birth = {
            line["source_id"]: parsed
            for line in self._snapshot(Entity.DEMOGRAPHICS, absent_ids)
            if line["source_id"] in absent_ids
            and (parsed := _parse_date((line.get("record") or {}).get("birth_date")))
        }
        out = []
        for line in self._snapshot(entity, absent_ids):
            key = (line["source_system"], line["source_id"])
            if key in absent and line.get("record"):
                person = source_person(line["record"], birth, schools, key=line["target_id"])
                if person is not None:
                    out.append(person)
        return out

    def _snapshot(self, entity: Entity, source_ids: set[str]) -> Iterable[dict[str, Any]]:
        """The baseline snapshot's lines, or (from the engine) those of ``source_ids``."""
        if self.tables is not None:
            return self.tables.snapshot_lines(entity, source_ids)
        return iter_snapshot(self.deps.store, self.tenant, self.baseline, entity)

    def _scan_users(self, app_people: list[dict[str, Any]]) -> _UserScan:
        """The run's users against the baseline index, record by record."""
        entity = Entity.USERS
        index = self._index(entity)
        taken = {entry.target_id for entry in index.values()} | self.set_aside
        targets_of: dict[str, str] = {}
        unlinked: list[dict[str, Any]] = []
        present: set[str] = set()
        #: Source records an admin linked (confirmed or manual, this run or before).
        confirmed: list[tuple[dict[str, Any], str]] = []
        system = self.source_system
        for record in self._normalized(entity):
            system, source_id = record["source_system"], record["source_id"]
            present.add(source_id)
            link = index.get((system, source_id))
            manual = self.manual.get((entity.value, source_id))
            if manual is not None:
                confirmed.append((record, manual))
            if manual is not None and (link is None or link.target_id != manual):
                self._decide_manual(entity, system, source_id, manual)
                targets_of[source_id] = manual
                taken.add(manual)
                continue
            if link is not None:
                targets_of[source_id] = link.target_id
                continue
            unlinked.append(record)
        absent = {
            key for key, entry in index.items() if entry.status == ACTIVE and key[1] not in present
        }
        return targets_of, unlinked, confirmed, system, taken, absent

    def _scan_users_by_engine(
        self, tables: IdTables, app_people: list[dict[str, Any]], need_targets: bool
    ) -> _UserScan | None:
        """The same as ``_scan_users`` from the engine's tables: only the records not
        linked yet, or that an admin linked, are read whole (``None`` if the id lines do
        not say where the records are). The app ids held by baseline records are looked
        up only among the app's people (the only ones ``taken`` is asked about), and the
        linked users' targets only when classes need them (``need_targets``)."""
        entity = Entity.USERS
        manual_ids = {source_id for e, source_id in self.manual if e == entity.value}
        pending = tables.pending(entity, manual_ids)
        wanted = {line: (system, source_id) for _, line, system, source_id, _, _ in pending}
        if None in wanted:
            return None
        records = dict(self._records_at(entity, set(wanted)))  # type: ignore[arg-type]
        if len(records) != len(wanted) or any(
            (r["source_system"], r["source_id"]) != wanted[n] for n, r in records.items()
        ):
            return None
        taken = tables.targets_among(entity, (p["app_id"] for p in app_people)) | self.set_aside
        targets: list[tuple[int, str, Any]] = []  # a held record has no target
        unlinked: list[dict[str, Any]] = []
        confirmed: list[tuple[dict[str, Any], str]] = []
        for position, line, system, source_id, known, target in pending:
            record = records[line]  # type: ignore[index]
            manual = self.manual.get((entity.value, source_id))
            if manual is not None:
                confirmed.append((record, manual))
            if manual is not None and (not known or target != manual):
                self._decide_manual(entity, system, source_id, manual)
                targets.append((position, source_id, manual))
                taken.add(manual)
                continue
            if known:
                targets.append((position, source_id, target))
                continue
            unlinked.append(record)
        targets_of: dict[str, str] = {}
        if need_targets:
            linked = [row for row in tables.linked(entity) if row[1] not in manual_ids]
            for _, source_id, target in heapq.merge(linked, targets):
                targets_of[source_id] = target
        system = tables.last_system(entity) or self.source_system
        return targets_of, unlinked, confirmed, system, taken, tables.absent(entity)

    def _records_at(self, entity: Entity, lines: set[int]) -> Iterator[tuple[int, dict[str, Any]]]:
        """The run's records of ``entity`` on those lines of its normalized file (only
        those are parsed), in file order."""
        if not lines:
            return
        with ExitStack() as stack:
            records = RecordLines(self.deps.store, self.tenant, self.state.run_id, entity, stack)
            for number in sorted(lines):
                try:
                    raw = records.at(number)
                except RunStateError:
                    return  # past the end: the caller sees lines missing
                yield number, orjson.loads(raw)

    def _birth_dates(self, people: set[str]) -> dict[str, date]:
        """The run's birth dates by source id: of ``people`` only where the engine says
        which lines hold theirs, else of everyone."""
        entity = Entity.DEMOGRAPHICS
        records: Iterable[dict[str, Any]] | None = None
        lines = None
        if self.tables is not None and self.tables.usable(entity):
            lines = self.tables.lines_of(entity, people)
        if lines is not None:
            chosen = [record for _, record in self._records_at(entity, lines)]
            if len(chosen) == len(lines) and all(r["source_id"] in people for r in chosen):
                records = chosen
        if records is None:
            records = self._normalized(entity)
        return {
            d["source_id"]: parsed
            for d in records
            if (parsed := _parse_date(d.get("birth_date"))) is not None
        }

    def _decide_manual(self, entity: Entity, system: str, source_id: str, target: str) -> None:
        self.decided[entity][source_id] = MatchDecision(system, source_id, target, Tier.MANUAL, 1.0)

    def _match_users(
        self, app_people: list[dict[str, Any]], schools: dict[str, str], need_targets: bool
    ) -> dict[str, str]:
        """Decide every unlinked source user; return source id → target id of the users
        linked now or before (for class teachers; only if ``need_targets``, when the
        engine answers)."""
        entity = Entity.USERS
        scan = None
        if self.tables is not None and self.tables.usable(entity):
            scan = self._scan_users_by_engine(self.tables, app_people, need_targets)
        if scan is None:
            scan = self._scan_users(app_people)
        targets_of, unlinked, confirmed, system, taken, absent = scan
        if not unlinked:
            return targets_of  # everyone is linked: nothing to match (the usual next day)
        people = {r["source_id"] for r in unlinked} | {r["source_id"] for r, _ in confirmed}
        birth = self._birth_dates(people)
        pending = [
            person
            for record in unlinked
            if (person := source_person(record, birth, schools)) is not None
        ]
        taught = confirmed_examples(confirmed, app_people, birth, schools)
        orphans = self._orphans(entity, absent, schools)
        orphan_keys = {o.key for o in orphans}
        # An orphan's app record is free to be claimed by the source id that replaced it;
        # it is offered once, with the synced data (fresher than the app's import).
        taken -= orphan_keys
        candidates = [
            app_person(p)
            for p in app_people
            if p["app_id"] not in taken
            and p["app_id"] not in orphan_keys
            and p.get("kind") != "class"
        ] + orphans
        rejected = self.rejected["users"]
        keys_by_kind = self._confirmed_keys()
        # Staff first: their links are what classes are connected through.
        for kind in (PersonKind.TEACHER, PersonKind.STUDENT, PersonKind.GUARDIAN):
            sources = [p for p in pending if p.kind == kind]
            pool = [c for c in candidates if c.kind == kind and c.key not in taken]
            if not sources:
                continue
            by_key = match_by_keys(sources, pool, keys_by_kind[kind]) if pool else None
            keyed = dict(by_key.links) if by_key else {}
            keyed = {s: t for s, t in keyed.items() if (s, t) not in rejected}
            for source_id, target in keyed.items():
                self.decided[entity][source_id] = MatchDecision(
                    system, source_id, target, Tier.KEY, 1.0
                )
                targets_of[source_id] = target
                taken.add(target)
                self.review.append(
                    {
                        "entity": entity.value,
                        "source_id": source_id,
                        "target_id": target,
                        "tier": Tier.KEY.value,
                        "score": 1.0,
                        "runner_up": 0.0,
                        "agreed": [
                            f"key {by_key.linked_by[source_id].source_field}" if by_key else "key"
                        ],
                        "missing": [],
                        "notes": [],
                        "field_scores": {},
                        "alternatives": [],
                    }
                )
            # The pairs linked by key, and those an admin linked, are the same person:
            # labelled examples the match model learns this district's typing habits from.
            by_key_pool = {c.key: c for c in pool}
            examples = [
                (p, by_key_pool[keyed[p.key]])
                for p in sources
                if p.key in keyed and keyed[p.key] in by_key_pool
            ] + [(s, t) for s, t in taught if s.kind == kind]
            rest = [p for p in sources if p.key not in keyed]
            pool = [c for c in pool if c.key not in taken]
            if not rest:
                continue
            if not pool:
                for person in rest:
                    self._unmatched(entity, system, person.key)
                continue
            result = match_people(
                rest,
                pool,
                thresholds=self.settings.people_thresholds,
                exclude_pairs=rejected,
                examples=examples,
            )
            for decision in result.decisions.values():
                linked = self._record_scored(entity, system, decision)
                if linked is not None:
                    targets_of[decision.source_key] = linked
        return targets_of

    def _record_scored(self, entity: Entity, system: str, decision: Decision) -> str | None:
        """Keep a scored decision (and its evidence for review); return the target it
        links now, if any. Suggestions wait for an admin: no target this run."""
        source_id = decision.source_key
        if decision.tier == Tier.AUTO and decision.target_key is not None:
            self.decided[entity][source_id] = MatchDecision(
                system, source_id, decision.target_key, Tier.AUTO, float(decision.score)
            )
            self.review.append(_review_row(entity, decision, decision.target_key))
            return decision.target_key
        if decision.tier == Tier.SUGGESTED:
            self.decided[entity][source_id] = MatchDecision(
                system, source_id, None, Tier.SUGGESTED, float(decision.score)
            )
            self.review.append(_review_row(entity, decision, decision.target_key))
            return None
        self._unmatched(entity, system, source_id)
        if decision.score > 0:
            self.review.append(_review_row(entity, decision, None))
        return None

    def _unmatched(self, entity: Entity, system: str, source_id: str) -> None:
        target = (
            None
            if self.settings.hold_unmatched
            else new_target_id(self.tenant, entity, system, source_id)
        )
        self.decided[entity][source_id] = MatchDecision(system, source_id, target, Tier.UNMATCHED)

    # ------------------------------------------------------------------ classes

    def _match_classes(
        self,
        app_classes: list[dict[str, Any]],
        schools: dict[str, str],
        user_targets: dict[str, str],
    ) -> None:
        entity = Entity.CLASSES
        has_manual = any(e == entity.value for e, _ in self.manual)
        if not app_classes and not has_manual:
            return  # nothing to connect to (and no baseline index to read)
        index = self._index(entity)
        taken = {entry.target_id for entry in index.values()} | self.set_aside
        pool_records = [c for c in app_classes if c["app_id"] not in taken]
        if not pool_records and not has_manual:
            return  # no app class to connect to: classes are linked or new
        teachers: dict[str, set[str]] = {}
        staff = {r.value for r in STAFF_ROLES}
        for enrollment in self._normalized(Entity.ENROLLMENTS):
            if enrollment.get("role") in staff:
                target = user_targets.get(enrollment["user_source_id"])
                if target is not None:
                    teachers.setdefault(enrollment["class_source_id"], set()).add(target)
        terms = {
            s["source_id"]: (_parse_date(s.get("start_date")), _parse_date(s.get("end_date")))
            for s in self._normalized(Entity.ACADEMIC_SESSIONS)
        }
        pending: list[ClassRecord] = []
        system = self.source_system
        for record in self._normalized(entity):
            system, source_id = record["source_system"], record["source_id"]
            manual = self.manual.get((entity.value, source_id))
            link = index.get((system, source_id))
            if manual is not None and (link is None or link.target_id != manual):
                self.decided[entity][source_id] = MatchDecision(
                    system, source_id, manual, Tier.MANUAL, 1.0
                )
                taken.add(manual)
                continue
            if link is not None or not pool_records:
                continue
            dates = [terms.get(t, (None, None)) for t in record.get("term_source_ids") or []]
            starts = [d[0] for d in dates if d[0]]
            ends = [d[1] for d in dates if d[1]]
            pending.append(
                ClassRecord(
                    key=source_id,
                    title=record.get("title") or "",
                    subject=(record.get("subjects") or [None])[0],
                    class_code=record.get("class_code"),
                    teacher_keys=frozenset(teachers.get(source_id, ())),
                    start_date=min(starts) if starts else None,
                    end_date=max(ends) if ends else None,
                    school=schools.get(record.get("school_source_id") or ""),
                )
            )
        pool = [
            ClassRecord(
                key=c["app_id"],
                title=c.get("title") or "",
                subject=c.get("subject"),
                class_code=c.get("class_code"),
                teacher_keys=frozenset([c["teacher_app_id"]] if c.get("teacher_app_id") else []),
                start_date=_parse_date(c.get("start_date")),
                end_date=_parse_date(c.get("end_date")),
                school=(c.get("school") or "").casefold() or None,
            )
            for c in pool_records
            if c["app_id"] not in taken
        ]
        if not pending or not pool:
            return
        result = match_classes(
            pending,
            pool,
            teacher_required=self.settings.classes_need_linked_teacher,
            date_window_days=self.settings.class_date_window_days,
            thresholds=self.settings.class_thresholds,
            exclude_pairs=self.rejected["classes"],
        )
        for decision in result.decisions.values():
            self._record_scored(entity, system, decision)
