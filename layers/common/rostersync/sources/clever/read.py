"""Reading a Clever fetch back from the raw area: canonical records, row issues and a
read summary per entity.

A full fetch (``mode: full`` in the index) is *complete* for what the token shares: a
record no longer listed is archived (and one listed again is reactivated) by the
pipeline. A quick fetch (``mode: delta``) carries Clever events: the newest state of
each record they touch, and explicit deletions by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rostersync.models import Entity, IssueAction, RowIssue
from rostersync.sources.base import Completeness, IssueSink, RawFiles, ReadSummary, Record
from rostersync.sources.clever.mapping import (
    SOURCE_SYSTEM,
    class_from_section,
    clever_id,
    contact_students,
    course_from_course,
    demographics_from_user,
    enrollment_id,
    enrollments_from_section,
    is_student,
    org_from_district,
    org_from_school,
    section_members,
    session_from_term,
    user_from_user,
)
from rostersync.sources.http.raw_pages import RawPages
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes, canonical

API = "/v3.0"

#: The collections each entity is read from, in order.
COLLECTIONS: dict[Entity, tuple[str, ...]] = {
    Entity.ORGS: ("districts", "schools"),
    Entity.ACADEMIC_SESSIONS: ("terms",),
    Entity.COURSES: ("courses",),
    Entity.CLASSES: ("sections",),
    Entity.USERS: ("users",),
    Entity.ENROLLMENTS: ("sections",),
    Entity.DEMOGRAPHICS: ("users",),
}

#: Event record types → the entities they change.
EVENT_ENTITIES: dict[str, tuple[Entity, ...]] = {
    "districts": (Entity.ORGS,),
    "schools": (Entity.ORGS,),
    "terms": (Entity.ACADEMIC_SESSIONS,),
    "courses": (Entity.COURSES,),
    "sections": (Entity.CLASSES, Entity.ENROLLMENTS),
    "users": (Entity.USERS, Entity.DEMOGRAPHICS),
}

Mapper = Callable[[Mapping[str, Any], Notes], Record]
_MAPPERS: dict[str, Mapper] = {
    "districts": org_from_district,
    "schools": org_from_school,
    "terms": session_from_term,
    "courses": course_from_course,
    "sections": class_from_section,
}


def label(collection: str) -> str:
    return f"Clever {API}/{collection}"


def unwrap(item: Any) -> Mapping[str, Any]:
    """A listing item's object (Clever wraps each as ``{"data": {...}}``)."""
    obj = item.get("data") if isinstance(item, Mapping) else None
    if isinstance(obj, Mapping):
        return obj
    raise ItemRejected("data", "an item with no data object")


@dataclass
class _Tally:
    rows: int = 0
    records: int = 0
    unknown: list[str] = field(default_factory=list)
    unreadable: int = 0
    deleted: list[str] = field(default_factory=list)


class CleverRead:
    """One Clever fetch opened for reading."""

    source_system = SOURCE_SYSTEM
    version: str | None = "3.0"

    def __init__(self, raw: RawFiles, sink: IssueSink) -> None:
        self.pages = RawPages(raw)
        self.sink = sink
        self.delta = self.pages.index.get("mode") == "delta"
        self._summaries: dict[Entity, ReadSummary] = {}
        self._contacts_of: dict[str, list[str]] | None = None
        self._events: _EventState | None = None

    # ------------------------------------------------------------------ shared parts

    def _issue(
        self,
        file: str,
        line: int,
        entity: Entity,
        note: FieldNote | ItemRejected,
        source_id: str | None,
    ) -> None:
        action = note.action if isinstance(note, FieldNote) else IssueAction.ROW_SKIPPED
        self.sink(
            RowIssue(
                file=file,
                line=line,
                column=note.column,
                message=note.message,
                action=action,
                entity=entity,
                source_id=source_id,
            )
        )

    def _objects(self, collection: str) -> Iterator[tuple[int, Any]]:
        line = 0
        for body in self.pages.bodies(collection):
            for item in body.get("data") or []:
                line += 1
                yield line, item

    def _untrusted(self, entity: Entity) -> str | None:
        reasons = [
            str(self.pages.meta(c)["untrusted"])
            for c in COLLECTIONS[entity]
            if self.pages.meta(c).get("untrusted")
        ]
        return "; ".join(reasons) or None

    def summary(self, entity: Entity) -> ReadSummary:
        return self._summaries[entity]

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        if self.delta:
            yield from self._delta_records(entity)
        else:
            yield from self._full_records(entity)

    # ------------------------------------------------------------------ full reads

    def contacts_of(self) -> dict[str, list[str]]:
        """Student id → the contact users related to it (from the contacts' side)."""
        if self._contacts_of is None:
            found: dict[str, list[str]] = {}
            for _, item in self._objects("users"):
                obj = item.get("data") if isinstance(item, Mapping) else None
                if not isinstance(obj, Mapping) or not obj.get("id"):
                    continue
                for student in contact_students(obj):
                    found.setdefault(student, []).append(str(obj["id"]))
            self._contacts_of = found
        return self._contacts_of

    def _full_records(self, entity: Entity) -> Iterator[Record]:
        collections = COLLECTIONS[entity]
        tally = _Tally()
        for collection in collections:
            file = label(collection)
            for line, item in self._objects(collection):
                tally.rows += 1
                source_id: str | None = None
                notes: Notes = []
                try:
                    obj = unwrap(item)
                    source_id = clever_id(obj)
                    records = self._map(entity, collection, obj, notes)
                except ItemRejected as rejected:
                    self._issue(file, line, entity, rejected, source_id)
                    if source_id is None:
                        tally.unreadable += 1
                    else:
                        tally.unknown.extend(self._ids_of(entity, collection, item, source_id))
                    continue
                for note in notes:
                    self._issue(file, line, entity, note, source_id)
                for record in records:
                    tally.records += 1
                    yield record
        if entity is Entity.ENROLLMENTS:
            tally.rows = tally.records + len(tally.unknown)
        self._summaries[entity] = ReadSummary(
            entity=entity,
            completeness=Completeness.COMPLETE
            if all(self.pages.has(c) for c in collections)
            else Completeness.ABSENT,
            label=", ".join(label(c) for c in collections),
            rows=tally.rows,
            records=tally.records,
            unknown_ids=tally.unknown,
            unreadable_rows=tally.unreadable,
            untrusted=self._untrusted(entity),
        )

    def _ids_of(self, entity: Entity, collection: str, item: Any, source_id: str) -> list[str]:
        """The ids an unusable object would have given this entity (kept from archive)."""
        if entity is Entity.ENROLLMENTS:
            obj = item.get("data") or {}
            return [enrollment_id(source_id, user) for user in section_members(obj)]
        return [source_id]

    def _map(
        self, entity: Entity, collection: str, obj: Mapping[str, Any], notes: Notes
    ) -> list[Record]:
        if entity is Entity.ENROLLMENTS:
            class_from_section(obj, [])  # a section that is no class gives no enrollments
            return [canonical(entity, r) for r in enrollments_from_section(obj)]
        if entity is Entity.USERS:
            contacts = self.contacts_of().get(clever_id(obj), []) if is_student(obj) else []
            return [canonical(entity, user_from_user(obj, notes, contacts))]
        if entity is Entity.DEMOGRAPHICS:
            user_from_user(obj, [])  # a user that is no user has no demographics
            record = demographics_from_user(obj, notes)
            return [] if record is None else [canonical(entity, record)]
        return [canonical(entity, _MAPPERS[collection](obj, notes))]

    # ------------------------------------------------------------------ delta reads

    def _delta_records(self, entity: Entity) -> Iterator[Record]:
        if self._events is None:
            self._events = _EventState.read(self.pages, self._issue_from_events)
        state = self._events
        tally = _Tally()
        for record in state.records.get(entity, []):
            tally.records += 1
            yield record
        deleted = state.deleted.get(entity, [])
        self._summaries[entity] = ReadSummary(
            entity=entity,
            completeness=Completeness.DELTA,
            label=label("events"),
            rows=state.rows.get(entity, 0),
            records=tally.records,
            unknown_ids=state.unknown.get(entity, []),
            unreadable_rows=0,
            deleted_ids=deleted,
        )

    def _issue_from_events(
        self, line: int, entity: Entity, note: FieldNote | ItemRejected, source_id: str | None
    ) -> None:
        self._issue(label("events"), line, entity, note, source_id)


EventIssue = Callable[[int, Entity, FieldNote | ItemRejected, str | None], None]


@dataclass
class _EventState:
    """Clever events folded into the newest state of each record they touch."""

    records: dict[Entity, list[Record]] = field(default_factory=dict)
    deleted: dict[Entity, list[str]] = field(default_factory=dict)
    unknown: dict[Entity, list[str]] = field(default_factory=dict)
    rows: dict[Entity, int] = field(default_factory=dict)

    @classmethod
    def read(cls, pages: RawPages, issue: EventIssue) -> _EventState:
        # The newest event per (record type, id) wins: events run oldest to newest.
        latest: dict[tuple[str, str], tuple[int, str, Mapping[str, Any]]] = {}
        previous_members: dict[str, set[str]] = {}
        line = 0
        for body in pages.bodies("events"):
            for item in body.get("data") or []:
                line += 1
                event = item.get("data") if isinstance(item, Mapping) else None
                kind = str((event or {}).get("type") or "")
                record_type, _, action = kind.partition(".")
                if record_type not in EVENT_ENTITIES or action not in (
                    "created",
                    "updated",
                    "deleted",
                ):
                    continue  # resources.*, or a type this version does not define
                payload = (event or {}).get("data") or {}
                obj = payload.get("object") if isinstance(payload, Mapping) else None
                if not isinstance(obj, Mapping) or not obj.get("id"):
                    entity = EVENT_ENTITIES[record_type][0]
                    issue(
                        line, entity, ItemRejected("data.object", "an event with no object"), None
                    )
                    continue
                object_id = str(obj["id"])
                latest[(record_type, object_id)] = (line, action, obj)
                before = payload.get("previous_attributes") or {}
                if record_type == "sections" and isinstance(before, Mapping):
                    members = previous_members.setdefault(object_id, set())
                    for key in ("students", "teachers"):
                        members.update(str(u) for u in before.get(key) or [])
                    if before.get("teacher"):
                        members.add(str(before["teacher"]))
        contacts_of = _refetched_contacts(pages)
        refetched = _refetched_students(pages)
        for student_id, obj in refetched.items():
            latest.setdefault(("users", student_id), (0, "updated", obj))

        state = cls()
        for (record_type, object_id), (line, action, obj) in latest.items():
            for entity in EVENT_ENTITIES[record_type]:
                state.rows[entity] = state.rows.get(entity, 0) + 1
                state._apply(
                    entity,
                    record_type,
                    object_id,
                    action,
                    obj,
                    line,
                    issue,
                    contacts_of,
                    previous_members,
                )
        return state

    def _apply(
        self,
        entity: Entity,
        record_type: str,
        object_id: str,
        action: str,
        obj: Mapping[str, Any],
        line: int,
        issue: EventIssue,
        contacts_of: Mapping[str, list[str]],
        previous_members: Mapping[str, set[str]],
    ) -> None:
        deleted = self.deleted.setdefault(entity, [])
        records = self.records.setdefault(entity, [])
        if entity is Entity.ENROLLMENTS:
            current = set() if action == "deleted" else set(section_members(obj))
            gone = (previous_members.get(object_id, set()) | set(section_members(obj))) - current
            deleted.extend(enrollment_id(object_id, user) for user in sorted(gone))
            if action != "deleted":
                try:
                    class_from_section(obj, [])
                    records.extend(canonical(entity, r) for r in enrollments_from_section(obj))
                except ItemRejected:
                    self.unknown.setdefault(entity, []).extend(
                        enrollment_id(object_id, user) for user in sorted(current)
                    )
            return
        if action == "deleted":
            deleted.append(object_id)
            return
        notes: Notes = []
        try:
            if entity is Entity.USERS:
                if is_student(obj) and object_id not in contacts_of:
                    raise ItemRejected("roles.student", "the student's contacts could not be read")
                contacts = contacts_of.get(object_id, [])
                record: Record | None = user_from_user(obj, notes, contacts)
            elif entity is Entity.DEMOGRAPHICS:
                user_from_user(obj, [])
                record = demographics_from_user(obj, notes)
                if record is None and is_student(obj):
                    deleted.append(object_id)  # no longer shared: nothing left to keep
            else:
                record = _MAPPERS[record_type](obj, notes)
            if record is not None:
                records.append(canonical(entity, record))
        except ItemRejected as rejected:
            issue(line, entity, rejected, object_id)
            self.unknown.setdefault(entity, []).append(object_id)
            return
        for note in notes:
            issue(line, entity, note, object_id)


def _refetched_contacts(pages: RawPages) -> dict[str, list[str]]:
    """Student id → its contacts, from the ``mycontacts`` listings a quick fetch made."""
    found: dict[str, list[str]] = {}
    for stream, meta in pages.streams.items():
        if meta.get("refetch") != "contacts" or meta.get("missing"):
            continue
        contacts = found.setdefault(str(meta["student"]), [])
        for body in pages.bodies(stream):
            for item in body.get("data") or []:
                obj = item.get("data") if isinstance(item, Mapping) else None
                if isinstance(obj, Mapping) and obj.get("id") and obj["id"] not in contacts:
                    contacts.append(str(obj["id"]))
    return found


def _refetched_students(pages: RawPages) -> dict[str, Mapping[str, Any]]:
    """Students re-read because a contact of theirs changed (their current state)."""
    found: dict[str, Mapping[str, Any]] = {}
    for stream, meta in pages.streams.items():
        if meta.get("refetch") != "user" or meta.get("missing"):
            continue
        for body in pages.bodies(stream):
            obj = body.get("data") if isinstance(body, Mapping) else None
            if isinstance(obj, Mapping) and obj.get("id"):
                found[str(obj["id"])] = obj
    return found
