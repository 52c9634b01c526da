"""A guardian file beside any source: guardians (and their links to students) that the
source itself does not give (a Clever or ClassLink district sharing no contacts).

The file is a CSV, UTF-8, one guardian a row, header names in any case:

``guardian_id`` (required), ``given_name``, ``family_name`` (one of the two required),
``email``, ``phone``, ``sms``, ``relationship`` (``parent``, ``guardian``, ``relative``
or a word such as ``mother``, ``grandparent``; blank: guardian) and ``student_ids`` (the
students' ids in the source, separated by ``;`` or ``,``; at least one).

Where it comes from: the run's spec (``SourceSpec.guardians``, from ``rostersync sync
--guardians FILE``), else the tenant's standing file ``inbox/{tenant}/guardians.csv``
(dropped over SFTP; read by every run until replaced). Every source registered is
wrapped by ``GuardianFileSource``, so the pipeline never knows a guardian file exists:

- the fetch copies the file into the run's raw area (``guardian-file.csv``) beside what
  the source fetched, and keeps, in the cursor the commit saves, the links the guardian
  files have given so far (``{guardian_id: [student_id, ...]}``);
- the read adds the file's guardians to the source's users (after them), adds each
  guardian to its students' ``agent_source_ids``, and reports every bad row as a row
  issue. A link to a student the roster does not have is dropped with an issue (checked
  when the source's users read is complete; a quick run's delta cannot tell).

A file is *partial* unless given as complete: guardians it leaves out, and every guardian
of an earlier file on a run with no file at all, stay as they are (their ids are
*unknown* to the read, which never archives them) and keep their links on the students.
A complete file archives the earlier files' guardians it leaves out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pydantic import ValidationError

from rostersync.errors import BundleError
from rostersync.models import Entity, IssueAction, Role, RowIssue, validate_record
from rostersync.observability import logger
from rostersync.sources.base import (
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    RawFiles,
    ReadSummary,
    Record,
    Source,
    SourceRead,
    SourceSpec,
)
from rostersync.storage import keys

__all__ = [
    "COLUMNS",
    "GuardianFileRead",
    "GuardianFileSource",
    "inbox_guardian_file",
    "parse_guardian_file",
]

#: The tenant's standing guardian file, in its inbox.
INBOX_NAME = "guardians.csv"
#: The file's copy and what the read needs to know, in the run's raw area.
RAW_FILE = "guardian-file.csv"
RAW_META = "guardian-file.json"
#: The key of the guardian files' part of a wrapped cursor.
CURSOR_KEY = "guardian_file"
#: The documented columns, and other names accepted for them.
COLUMNS: dict[str, tuple[str, ...]] = {
    "guardian_id": ("guardian_id", "id", "sourced_id", "sourcedid"),
    "given_name": ("given_name", "first_name", "givenname"),
    "family_name": ("family_name", "last_name", "familyname"),
    "email": ("email",),
    "phone": ("phone",),
    "sms": ("sms",),
    "relationship": ("relationship", "role"),
    "student_ids": ("student_ids", "students", "student_id"),
}
#: Relationship words → canonical roles (anything else: guardian, the word kept).
RELATIONSHIPS: dict[str, Role] = {
    "parent": Role.PARENT,
    "mother": Role.PARENT,
    "father": Role.PARENT,
    "stepparent": Role.PARENT,
    "stepmother": Role.PARENT,
    "stepfather": Role.PARENT,
    "guardian": Role.GUARDIAN,
    "legal guardian": Role.GUARDIAN,
    "carer": Role.GUARDIAN,
    "foster parent": Role.GUARDIAN,
    "relative": Role.RELATIVE,
    "grandparent": Role.RELATIVE,
    "grandmother": Role.RELATIVE,
    "grandfather": Role.RELATIVE,
    "aunt": Role.RELATIVE,
    "uncle": Role.RELATIVE,
    "sibling": Role.RELATIVE,
    "brother": Role.RELATIVE,
    "sister": Role.RELATIVE,
}


def inbox_guardian_file(tenant: str) -> str:
    """The key of the tenant's standing guardian file."""
    return keys.inbox_prefix(tenant) + INBOX_NAME


# ------------------------------------------------------------------ the file


@dataclass(frozen=True)
class GuardianRow:
    line: int
    guardian_id: str
    fields: dict[str, str]
    student_ids: tuple[str, ...]


@dataclass
class GuardianFile:
    """A guardian file read: its usable rows, and whether all of it could be read."""

    rows: list[GuardianRow] = field(default_factory=list)
    #: Rows with no guardian id (their guardians cannot be told apart from absent ones).
    unreadable_rows: int = 0
    #: The file could be read to its end.
    readable: bool = True
    #: Ids of rows that could not be used (their guardians stay as they are).
    skipped_ids: list[str] = field(default_factory=list)

    def links(self) -> dict[str, list[str]]:
        return {row.guardian_id: list(row.student_ids) for row in self.rows}


def _header_map(header: list[str]) -> dict[str, int]:
    names = [name.strip().lower().replace(" ", "_").replace("-", "_") for name in header]
    found: dict[str, int] = {}
    for column, aliases in COLUMNS.items():
        for index, name in enumerate(names):
            if name in aliases and column not in found:
                found[column] = index
    return found


def _split_ids(value: str) -> tuple[str, ...]:
    parts = (part.strip() for part in value.replace(";", ",").split(","))
    return tuple(dict.fromkeys(part for part in parts if part))


def parse_guardian_file(body: bytes, label: str, sink: IssueSink | None = None) -> GuardianFile:
    """The rows of a guardian file; each unusable row (or column) reported to ``sink``."""

    def issue(line: int | None, column: str | None, message: str, action: IssueAction) -> None:
        if sink is not None:
            sink(
                RowIssue(
                    file=label,
                    line=line,
                    column=column,
                    message=message,
                    action=action,
                    entity=Entity.USERS,
                )
            )

    parsed = GuardianFile()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        issue(None, None, "the guardian file is not UTF-8 text", IssueAction.FILE_SKIPPED)
        parsed.readable = False
        return parsed
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            issue(1, None, "the guardian file is empty", IssueAction.FILE_SKIPPED)
            parsed.readable = False
            return parsed
        columns = _header_map(header)
        needed = [c for c in ("guardian_id", "student_ids") if c not in columns]
        if needed or ("given_name" not in columns and "family_name" not in columns):
            missing = needed or ["given_name or family_name"]
            issue(
                1,
                ", ".join(missing),
                "the guardian file has no such column",
                IssueAction.FILE_SKIPPED,
            )
            parsed.readable = False
            return parsed
        seen: set[str] = set()
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue

            def value(column: str, values: list[str] = values) -> str:
                index = columns.get(column)
                return values[index].strip() if index is not None and index < len(values) else ""

            guardian_id = value("guardian_id")
            if not guardian_id:
                parsed.unreadable_rows += 1
                issue(line, "guardian_id", "no guardian id", IssueAction.ROW_SKIPPED)
                continue
            if guardian_id in seen:
                parsed.skipped_ids.append(guardian_id)
                issue(
                    line,
                    "guardian_id",
                    f"guardian {guardian_id} is on an earlier row too",
                    IssueAction.ROW_SKIPPED,
                )
                continue
            seen.add(guardian_id)
            students = _split_ids(value("student_ids"))
            if not students:
                parsed.skipped_ids.append(guardian_id)
                issue(line, "student_ids", "no student ids", IssueAction.ROW_SKIPPED)
                continue
            if not value("given_name") and not value("family_name"):
                parsed.skipped_ids.append(guardian_id)
                issue(line, "family_name", "no name", IssueAction.ROW_SKIPPED)
                continue
            fields = {c: value(c) for c in COLUMNS if c not in ("guardian_id", "student_ids")}
            parsed.rows.append(GuardianRow(line, guardian_id, fields, students))
    except csv.Error as exc:
        issue(
            reader.line_num,
            None,
            f"the guardian file could not be read past this line ({exc})",
            IssueAction.FILE_SKIPPED,
        )
        parsed.readable = False
    return parsed


def guardian_record(source_system: str, row: GuardianRow, students: list[str]) -> Record:
    """The canonical user record of a guardian file row (raises ValidationError)."""
    word = row.fields.get("relationship", "").strip()
    role = RELATIONSHIPS.get(word.lower(), Role.GUARDIAN)
    given, family = row.fields.get("given_name", ""), row.fields.get("family_name", "")
    record = {
        "source_system": source_system,
        "source_id": row.guardian_id,
        "role": role.value,
        "source_role": word if word and word.lower() != role.value else None,
        "given_name": given,
        "family_name": family or given,
        "email": row.fields.get("email") or None,
        "phone": row.fields.get("phone") or None,
        "sms": row.fields.get("sms") or None,
        "agent_source_ids": sorted(students),
    }
    return validate_record(Entity.USERS, record).model_dump(mode="json")


# ------------------------------------------------------------------ the cursor


def split_cursor(saved: Mapping[str, Any] | None) -> tuple[dict[str, list[str]], Any]:
    """The links kept by earlier guardian files, and the wrapped source's own cursor."""
    if isinstance(saved, Mapping) and isinstance(saved.get(CURSOR_KEY), Mapping):
        kept = saved[CURSOR_KEY].get("links") or {}
        links = {
            str(g): [str(s) for s in students]
            for g, students in kept.items()
            if isinstance(students, list)
        }
        inner = saved.get("source")
        return links, dict(inner) if isinstance(inner, Mapping) else None
    return {}, dict(saved) if isinstance(saved, Mapping) else None


def wrap_cursor(links: Mapping[str, list[str]], inner: Any) -> dict[str, Any]:
    return {CURSOR_KEY: {"links": dict(sorted(links.items()))}, "source": inner}


# ------------------------------------------------------------------ the source


@dataclass(frozen=True)
class _Given:
    label: str
    complete: bool


class GuardianFileSource:
    """``inner`` with guardian files merged in (``around`` makes one per source)."""

    kind: ClassVar[str] = ""
    spec_model: ClassVar[type[SourceSpec]] = SourceSpec

    def __init__(self, inner: Source) -> None:
        self.inner = inner

    @classmethod
    def around(cls, inner: Source) -> Source:
        """``inner`` wrapped, under its own kind and spec model."""
        wrapped = type(
            f"{type(inner).__name__}WithGuardianFile",
            (cls,),
            {"kind": inner.kind, "spec_model": inner.spec_model},
        )
        source: Source = wrapped(inner)
        return source

    def _copy_file(self, spec: SourceSpec, ctx: FetchContext) -> _Given | None:
        """Copy the run's guardian file (the spec's, else the inbox's) into the raw area."""
        if spec.guardians is not None:
            key, complete = spec.guardians.key, spec.guardians.complete
            label = spec.guardians.name or key.rsplit("/", 1)[-1]
        else:
            key, complete, label = inbox_guardian_file(ctx.tenant), False, INBOX_NAME
            if not ctx.raw.object_exists(key):
                return None
        if not ctx.raw.object_exists(key):
            raise BundleError("the guardian file is no longer there")
        ctx.raw.copy_in(key, RAW_FILE)
        return _Given(label=label, complete=complete)

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        kept, inner_cursor = split_cursor(ctx.cursor)
        result = self.inner.fetch(spec, replace(ctx, cursor=inner_cursor))
        given = self._copy_file(spec, ctx)
        if given is None and not kept:
            return result
        links = dict(kept)
        rows = 0
        if given is not None:
            with ctx.raw.open(RAW_FILE) as body:
                parsed = parse_guardian_file(body.read(), given.label)
            rows = len(parsed.rows)
            if parsed.readable:
                if given.complete and not parsed.unreadable_rows:
                    links = parsed.links()
                else:
                    links.update(parsed.links())
        meta = {
            "given": given is not None,
            "label": given.label if given else None,
            "complete": bool(given and given.complete),
            "kept": kept,
        }
        ctx.raw.put_bytes(RAW_META, json.dumps(meta, sort_keys=True).encode())
        logger().info(
            "guardian file",
            extra={"given": given is not None, "rows": rows, "kept_guardians": len(kept)},
        )
        result.counts["guardian_file_rows"] = rows
        result.cursor = wrap_cursor(links, result.cursor)
        return result

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[SourceRead]:
        with self.inner.read(spec, raw, sink) as inner:
            if raw.exists(RAW_META):
                yield GuardianFileRead(inner, raw, sink)
            else:
                yield inner


class GuardianFileRead:
    """A source's read with a guardian file's guardians added to its users."""

    def __init__(self, inner: SourceRead, raw: RawFiles, sink: IssueSink) -> None:
        self.inner = inner
        self.source_system = inner.source_system
        self.version = inner.version
        self.sink = sink
        with raw.open(RAW_META) as body:
            meta = json.loads(body.read())
        self.kept: dict[str, list[str]] = {
            str(g): [str(s) for s in students] for g, students in meta.get("kept", {}).items()
        }
        self.label = str(meta.get("label") or INBOX_NAME)
        self.complete = bool(meta.get("complete"))
        self.file: GuardianFile | None = None
        self.rows: dict[str, GuardianRow] = {}
        #: Ids of rows that could not be used: unknown this run, never archived.
        self.skipped: set[str] = set()
        if meta.get("given"):
            with raw.open(RAW_FILE) as body:
                self.file = parse_guardian_file(body.read(), self.label, sink)
            if self.file.readable:
                self.rows = self._valid_rows(self.file.rows)
            self.skipped.update(self.file.skipped_ids)
        self._users: ReadSummary | None = None

    def _issue(
        self, row: GuardianRow, column: str | None, message: str, action: IssueAction
    ) -> None:
        self.sink(
            RowIssue(
                file=self.label,
                line=row.line,
                column=column,
                message=message,
                action=action,
                entity=Entity.USERS,
                source_id=row.guardian_id,
            )
        )

    def _valid_rows(self, rows: list[GuardianRow]) -> dict[str, GuardianRow]:
        valid: dict[str, GuardianRow] = {}
        for row in rows:
            try:
                guardian_record(self.source_system, row, list(row.student_ids))
            except ValidationError as exc:
                column = ".".join(str(p) for p in exc.errors()[0].get("loc", ())) or None
                self._issue(row, column, "not a valid guardian", IssueAction.ROW_SKIPPED)
                self.skipped.add(row.guardian_id)
                continue
            valid[row.guardian_id] = row
        return valid

    @property
    def _replaces_kept(self) -> bool:
        """A complete file, read whole: the earlier files' guardians it omits are gone."""
        return (
            self.complete
            and self.file is not None
            and self.file.readable
            and not self.file.unreadable_rows
        )

    def _links(self) -> dict[str, list[str]]:
        """Guardian → students, as this run's students get them."""
        links = {} if self._replaces_kept else dict(self.kept)
        links.update({gid: list(row.student_ids) for gid, row in self.rows.items()})
        return links

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        if entity is not Entity.USERS:
            yield from self.inner.iter_records(entity)
            return
        guardians_of: dict[str, list[str]] = {}
        for guardian, students in self._links().items():
            for student in students:
                guardians_of.setdefault(student, []).append(guardian)
        inner_ids: set[str] = set()
        students_read: set[str] = set()
        for record in self.inner.iter_records(entity):
            source_id = str(record["source_id"])
            inner_ids.add(source_id)
            if record.get("role") == Role.STUDENT.value:
                students_read.add(source_id)
                extra = guardians_of.get(source_id)
                if extra:
                    agents = list(record.get("agent_source_ids") or [])
                    added = [g for g in sorted(extra) if g not in agents]
                    if added:
                        record = {**record, "agent_source_ids": agents + added}
            yield record
        inner_summary = self.inner.summary(entity)
        emitted, unknown = 0, []
        for guardian_id, row in self.rows.items():
            if guardian_id in inner_ids:
                self._issue(
                    row,
                    "guardian_id",
                    f"the source already gives user {guardian_id}",
                    IssueAction.ROW_SKIPPED,
                )
                continue
            linked = []
            for student in row.student_ids:
                if student in students_read or (
                    not inner_summary.is_complete and student not in inner_ids
                ):
                    linked.append(student)
                else:
                    what = "is not a student" if student in inner_ids else "is not in the roster"
                    self._issue(
                        row,
                        "student_ids",
                        f"student {student} {what}",
                        IssueAction.FIELD_DROPPED,
                    )
            if not linked:
                self._issue(
                    row,
                    "student_ids",
                    "none of the guardian's students is in the roster",
                    IssueAction.ROW_SKIPPED,
                )
                unknown.append(guardian_id)
                continue
            emitted += 1
            yield guardian_record(self.source_system, row, linked)
        unknown.extend(sorted(self.skipped - set(self.rows) - inner_ids))
        earlier = set(self.kept) - set(self.rows) - self.skipped - inner_ids
        deleted: list[str] = []
        if self._replaces_kept:
            deleted = sorted(earlier)
        else:
            unknown.extend(sorted(earlier))  # kept as they are: never archived for absence
        # ``rows`` stays the source's own: a run without a guardian file is no smaller.
        self._users = inner_summary.model_copy(
            update={
                "records": inner_summary.records + emitted,
                "unknown_ids": [*inner_summary.unknown_ids, *unknown],
                "deleted_ids": [*inner_summary.deleted_ids, *deleted],
                "label": ", ".join(filter(None, [inner_summary.label, self.label])),
            }
        )

    def summary(self, entity: Entity) -> ReadSummary:
        if entity is Entity.USERS:
            if self._users is None:
                raise RuntimeError("users are summarized once they have all been read")
            return self._users
        return self.inner.summary(entity)
