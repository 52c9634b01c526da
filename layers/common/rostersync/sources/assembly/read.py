"""Reading an Assembly fetch back: canonical records, row issues and a summary per entity.

A full fetch is complete for what the school's token shares; a quick one is a delta
(the records changed since the cursor; students in ``/students/left`` deleted by id; a
listing answering 304 carries nothing). Sessions and courses are not read (absent).
Contacts are not read: guardians are left to a later binding of ``/contacts``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rostersync.models import Entity, IssueAction, RowIssue
from rostersync.sources.assembly.mapping import (
    SOURCE_SYSTEM,
    class_from_group,
    demographics_from_student,
    enrollments_from_group,
    group_key,
    group_members,
    org_from_school,
    school_org_id,
    staff_user,
    student_key,
    student_user,
    text,
)
from rostersync.sources.base import Completeness, IssueSink, RawFiles, ReadSummary, Record
from rostersync.sources.http import RawPages
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes, canonical

STREAMS: dict[Entity, tuple[str, ...]] = {
    Entity.ORGS: ("school",),
    Entity.ACADEMIC_SESSIONS: (),
    Entity.COURSES: (),
    Entity.CLASSES: ("teaching_groups", "registration_groups"),
    Entity.USERS: ("students", "staff_members"),
    Entity.ENROLLMENTS: ("teaching_groups", "registration_groups"),
    Entity.DEMOGRAPHICS: ("students",),
}


def label(stream: str) -> str:
    return f"Assembly /{stream}"


@dataclass
class _Tally:
    rows: int = 0
    records: list[Record] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unreadable: int = 0
    deleted: list[str] = field(default_factory=list)


def _item_id(stream: str, item: Any) -> str | None:
    """The item's id (the school has none of its own: its URN, else its slug)."""
    if not isinstance(item, Mapping):
        return None
    if stream == "school":
        return text(item.get("urn")) or text(item.get("slug"))
    return text(item.get("id"))


class AssemblyRead:
    """One Assembly fetch opened for reading."""

    source_system = SOURCE_SYSTEM
    version: str | None = None

    def __init__(self, raw: RawFiles, sink: IssueSink) -> None:
        self.pages = RawPages(raw)
        self.sink = sink
        self.delta = self.pages.index.get("mode") == "delta"
        self.version = str(self.pages.index.get("api_version") or "") or None
        self._unreadable: dict[str, int] = {}
        self._tallies: dict[Entity, _Tally] = {}
        self.school_id = str(self.pages.index.get("school") or "")
        self._build()

    def _items(self, stream: str) -> dict[str, tuple[int, Mapping[str, Any]]]:
        found: dict[str, tuple[int, Mapping[str, Any]]] = {}
        position = unreadable = 0
        for body in self.pages.bodies(stream):
            data = body.get("data", body) if isinstance(body, Mapping) else None
            for item in data if isinstance(data, list) else [data]:
                position += 1
                item_id = _item_id(stream, item)
                if item_id is None or not isinstance(item, Mapping):
                    unreadable += 1
                    continue
                found.pop(item_id, None)
                found[item_id] = (position, item)
        self._unreadable[stream] = unreadable
        return found

    def _issue(
        self, stream: str, line: int, entity: Entity, note: FieldNote | ItemRejected, sid: str
    ) -> None:
        action = note.action if isinstance(note, FieldNote) else IssueAction.ROW_SKIPPED
        self.sink(
            RowIssue(
                file=label(stream),
                line=line,
                column=note.column,
                message=note.message,
                action=action,
                entity=entity,
                source_id=sid,
            )
        )

    def _members(self) -> dict[tuple[str, str], list[Any]]:
        """(group listing, group id) → the students read from its ``/students``."""
        found: dict[tuple[str, str], list[Any]] = {}
        for stream, meta in self.pages.streams.items():
            if not meta.get("members_of"):
                continue
            ids = [item.get("id") for _, item in self._items(stream).values()]
            found[(str(meta["members_of"]), str(meta["group"]))] = ids
        return found

    def _build(self) -> None:
        school_objects = list(self._items("school").values()) if self.pages.has("school") else []
        school = self.school_id
        if school_objects:
            with contextlib.suppress(ItemRejected):
                school = school_org_id(school_objects[0][1])
        members = self._members()

        def org(obj: Mapping[str, Any], line: int, notes: Notes) -> list[Record]:
            return [org_from_school(obj)]

        self._entity(Entity.ORGS, "school", org, key=lambda i: i)
        for stream in ("teaching_groups", "registration_groups"):
            self._groups(stream, school, members)
        self._entity(
            Entity.USERS, "students", lambda o, line, n: [student_user(o, school)], key=student_key
        )
        self._entity(
            Entity.USERS,
            "staff_members",
            lambda o, line, n: [staff_user(o, school)],
            key=lambda i: f"staff-{i}",
        )
        self._entity(
            Entity.DEMOGRAPHICS,
            "students",
            lambda o, line, n: [r for r in [demographics_from_student(o, n)] if r is not None],
            key=student_key,
        )
        if self.delta and self.pages.has("students-left"):
            for item_id in self._items("students-left"):
                for entity in (Entity.USERS, Entity.DEMOGRAPHICS):
                    self._tallies.setdefault(entity, _Tally()).deleted.append(student_key(item_id))

    def _groups(
        self, stream: str, school: str, members: Mapping[tuple[str, str], list[Any]]
    ) -> None:
        def key(item_id: str) -> str:
            return group_key(stream, item_id)

        def klass(obj: Mapping[str, Any], line: int, notes: Notes) -> list[Record]:
            return [class_from_group(stream, obj, school, notes)]

        def enrollments(obj: Mapping[str, Any], line: int, notes: Notes) -> list[Record]:
            listed = members.get((stream, str(obj.get("id"))))
            return enrollments_from_group(stream, obj, school, listed, notes)

        def ids(item_id: str, obj: Mapping[str, Any]) -> list[str]:
            return [f"{key(item_id)}-{m}" for m in group_members(obj, None)]

        self._entity(Entity.CLASSES, stream, klass, key=key)
        self._entity(Entity.ENROLLMENTS, stream, enrollments, key=key, ids=ids)

    def _entity(
        self,
        entity: Entity,
        stream: str,
        mapper: Callable[[Mapping[str, Any], int, Notes], list[Record]],
        *,
        key: Callable[[str], str],
        ids: Callable[[str, Mapping[str, Any]], list[str]] | None = None,
    ) -> None:
        tally = self._tallies.setdefault(entity, _Tally())
        if not self.pages.has(stream):
            return
        items = self._items(stream)
        tally.unreadable += self._unreadable.get(stream, 0)
        for item_id, (line, obj) in items.items():
            tally.rows += 1
            notes: Notes = []
            try:
                records = [canonical(entity, r) for r in mapper(obj, line, notes)]
            except ItemRejected as rejected:
                self._issue(stream, line, entity, rejected, key(item_id))
                tally.unknown.extend(ids(item_id, obj) if ids else [key(item_id)])
                continue
            for note in notes:
                self._issue(stream, line, entity, note, key(item_id))
            tally.records.extend(records)
        if entity is Entity.ENROLLMENTS:
            tally.rows = len(tally.records) + len(tally.unknown)

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        yield from self._tallies.get(entity, _Tally()).records

    def summary(self, entity: Entity) -> ReadSummary:
        tally = self._tallies.get(entity, _Tally())
        streams = STREAMS[entity]
        present = bool(streams) and all(self.pages.has(s) for s in streams)
        if not present:
            completeness = Completeness.ABSENT
        elif self.delta:
            completeness = Completeness.DELTA
        else:
            completeness = Completeness.COMPLETE
        reasons = [
            str(self.pages.meta(s)["untrusted"])
            for s in streams
            if self.pages.meta(s).get("untrusted")
        ]
        return ReadSummary(
            entity=entity,
            completeness=completeness,
            label=", ".join(label(s) for s in streams) or None,
            rows=tally.rows,
            records=len(tally.records),
            unknown_ids=tally.unknown,
            unreadable_rows=tally.unreadable,
            deleted_ids=tally.deleted,
            untrusted="; ".join(reasons) or None,
        )
