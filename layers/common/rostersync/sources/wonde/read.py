"""Reading a Wonde fetch back: canonical records, row issues and a summary per entity.

A full fetch is complete for what the school's token shares (orgs: the school; users:
students, employees and contacts; classes and their enrollments; demographics). A quick
fetch is a delta: the records updated since the cursor, and ``/deletions`` by id.
Guardian links go both ways (a student's contacts and a contact's students); in a full
read a link to a person not listed is dropped with an issue.

Sessions and courses are not read from Wonde (absent): a class's subject is kept on it.
A school's data is small (a few thousand people), so a read holds it in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rostersync.models import Entity, IssueAction, RowIssue
from rostersync.sources.base import Completeness, IssueSink, RawFiles, ReadSummary, Record
from rostersync.sources.http import RawPages
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes, canonical
from rostersync.sources.wonde.mapping import (
    SOURCE_SYSTEM,
    class_members,
    class_record,
    contact_user,
    demographics_from_student,
    employee_user,
    enrollment_id,
    enrollments_from_class,
    included_list,
    org_from_school,
    relationship_word,
    student_user,
    text,
    wonde_id,
)

#: Entity → the listings it is read from.
STREAMS: dict[Entity, tuple[str, ...]] = {
    Entity.ORGS: ("school",),
    Entity.ACADEMIC_SESSIONS: (),
    Entity.COURSES: (),
    Entity.CLASSES: ("classes",),
    Entity.USERS: ("students", "employees"),
    Entity.ENROLLMENTS: ("classes",),
    Entity.DEMOGRAPHICS: ("students",),
}
#: ``/deletions`` types → the entities they delete from.
DELETION_TYPES: dict[str, tuple[Entity, ...]] = {
    "student": (Entity.USERS, Entity.DEMOGRAPHICS),
    "employee": (Entity.USERS,),
    "contact": (Entity.USERS,),
    "class": (Entity.CLASSES,),
}


def label(stream: str) -> str:
    return "Wonde /school" if stream == "school" else f"Wonde /{stream}"


@dataclass
class _Tally:
    rows: int = 0
    records: list[Record] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unreadable: int = 0
    deleted: list[str] = field(default_factory=list)


class WondeRead:
    """One Wonde fetch opened for reading."""

    source_system = SOURCE_SYSTEM
    version: str | None = "1.0"

    def __init__(self, raw: RawFiles, sink: IssueSink) -> None:
        self.pages = RawPages(raw)
        self.sink = sink
        self.delta = self.pages.index.get("mode") == "delta"
        self._unreadable: dict[str, int] = {}
        self.objects = {stream: self._latest(stream) for stream in self.pages.streams}
        school = next(iter(self.objects.get("school", {}).values()), (0, {}))[1]
        self.school_id = text(school.get("id")) or str(self.pages.index.get("school") or "")
        self._tallies: dict[Entity, _Tally] = {}
        self._build()

    def _latest(self, stream: str) -> dict[str, tuple[int, Mapping[str, Any]]]:
        """The stream's objects by id, the last copy of each, with its position."""
        found: dict[str, tuple[int, Mapping[str, Any]]] = {}
        position = 0
        unreadable = 0
        for body in self.pages.bodies(stream):
            data = body.get("data") if isinstance(body, Mapping) else None
            for item in data if isinstance(data, list) else [data]:
                position += 1
                item_id = text(item.get("id")) if isinstance(item, Mapping) else None
                if item_id is None or not isinstance(item, Mapping):
                    unreadable += 1
                    continue
                found.pop(item_id, None)
                found[item_id] = (position, item)
        self._unreadable[stream] = unreadable
        return found

    # ------------------------------------------------------------------ building

    def _issue(
        self,
        stream: str,
        line: int,
        entity: Entity,
        note: FieldNote | ItemRejected,
        source_id: str | None,
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
                source_id=source_id,
            )
        )

    def _links(self) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]:
        """Student → contacts, contact → students, contact → relationship words."""
        contacts_of: dict[str, list[str]] = {}
        students_of: dict[str, list[str]] = {}
        words: dict[str, list[str]] = {}

        def link(student: str, contact: str, word: str | None) -> None:
            contacts_of.setdefault(student, [])
            students_of.setdefault(contact, [])
            if contact not in contacts_of[student]:
                contacts_of[student].append(contact)
            if student not in students_of[contact]:
                students_of[contact].append(student)
            if word:
                words.setdefault(contact, []).append(word)

        for student_id, (_, student) in self.objects.get("students", {}).items():
            for contact in included_list(student, "contacts"):
                if (contact_id := text(contact.get("id"))) is not None:
                    link(student_id, contact_id, relationship_word(contact))
        for contact_id, (_, contact) in self.objects.get("contacts", {}).items():
            for student in included_list(contact, "students"):
                if (linked := text(student.get("id"))) is not None:
                    link(linked, contact_id, relationship_word(student))
        return contacts_of, students_of, words

    def _build(self) -> None:
        school = self.school_id
        contacts_of, students_of, words = self._links()
        teaching = {
            member
            for _, klass in self.objects.get("classes", {}).values()
            for member, role in class_members(klass).items()
            if role.value == "teacher"
        }
        people = set(self.objects.get("students", {})) | set(self.objects.get("contacts", {}))

        asked = self.pages.has("contacts")
        refused = bool(self.pages.meta("contacts").get("unavailable"))

        def known(ids: list[str], stream: str, line: int, source_id: str) -> list[str]:
            if not asked:
                return []  # contacts are not read for this school
            if self.delta or refused:
                return ids  # cannot be checked against a listing this run
            kept = [i for i in ids if i in people]
            for missing in (i for i in ids if i not in people):
                self._issue(
                    stream,
                    line,
                    Entity.USERS,
                    FieldNote(
                        "contacts",
                        f"{missing} is not listed: the guardian link was dropped",
                        IssueAction.FIELD_DROPPED,
                    ),
                    source_id,
                )
            return kept

        mappers: dict[str, Callable[[Mapping[str, Any], int, str, Notes], list[Record]]] = {
            "students": lambda o, line, i, n: [
                student_user(o, school, known(contacts_of.get(i, []), "students", line, i))
            ],
            "employees": lambda o, line, i, n: [employee_user(o, school, i in teaching)],
            "contacts": lambda o, line, i, n: [
                contact_user(
                    o, school, known(students_of.get(i, []), "contacts", line, i), words.get(i, [])
                )
            ],
        }
        self._entity(Entity.ORGS, "school", lambda o, line, i, n: [org_from_school(o)])
        self._entity(Entity.CLASSES, "classes", lambda o, line, i, n: [class_record(o, school, n)])
        for stream, mapper in mappers.items():
            self._entity(Entity.USERS, stream, mapper)
        self._entity(
            Entity.ENROLLMENTS,
            "classes",
            lambda o, line, i, n: enrollments_from_class(o, school),
            ids=lambda i, o: [enrollment_id(i, m) for m in class_members(o)],
        )
        self._entity(
            Entity.DEMOGRAPHICS,
            "students",
            lambda o, line, i, n: [r for r in [demographics_from_student(o, n)] if r is not None],
        )
        if self.delta:
            self._deletions()

    def _entity(
        self,
        entity: Entity,
        stream: str,
        mapper: Callable[[Mapping[str, Any], int, str, Notes], list[Record]],
        ids: Callable[[str, Mapping[str, Any]], list[str]] | None = None,
    ) -> None:
        tally = self._tallies.setdefault(entity, _Tally())
        tally.unreadable += self._unreadable.get(stream, 0)
        for source_id, (line, obj) in self.objects.get(stream, {}).items():
            tally.rows += 1
            notes: Notes = []
            try:
                wonde_id(obj)
                records = [canonical(entity, r) for r in mapper(obj, line, source_id, notes)]
            except ItemRejected as rejected:
                self._issue(stream, line, entity, rejected, source_id)
                tally.unknown.extend(ids(source_id, obj) if ids else [source_id])
                continue
            for note in notes:
                self._issue(stream, line, entity, note, source_id)
            tally.records.extend(records)
        if entity is Entity.ENROLLMENTS:
            tally.rows = len(tally.records) + len(tally.unknown)

    def _deletions(self) -> None:
        for _, (_, item) in self.objects.get("deletions", {}).items():
            kind = (text(item.get("type")) or "").lower()
            if item.get("restored") or item.get("restored_at"):
                continue  # deleted, then restored: its record comes as an update
            for entity in DELETION_TYPES.get(kind, ()):
                tally = self._tallies.setdefault(entity, _Tally())
                tally.deleted.append(str(item["id"]))

    # ------------------------------------------------------------------ SourceRead

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
        # Contacts are users too, when they were asked for.
        consulted = (*streams, "contacts") if entity is Entity.USERS else streams
        reasons = [
            str(self.pages.meta(s)["untrusted"])
            for s in consulted
            if self.pages.meta(s).get("untrusted")
        ]
        return ReadSummary(
            entity=entity,
            completeness=completeness,
            label=", ".join(label(s) for s in consulted if self.pages.has(s)) or None,
            rows=tally.rows,
            records=len(tally.records),
            unknown_ids=tally.unknown,
            unreadable_rows=tally.unreadable,
            deleted_ids=tally.deleted,
            untrusted="; ".join(reasons) or None,
        )
