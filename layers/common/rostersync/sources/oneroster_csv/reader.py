"""Reads a OneRoster CSV bundle (1.0, 1.1 or 1.2) into canonical record dicts.

Records stream out one at a time, each a dict shaped exactly like
``Model.model_dump(mode="json")`` for its entity; rows are never collected. Between files
the reader keeps only the id sets of orgs, academic sessions, courses, classes and users
(to check references), and within a file the ids seen so far (to catch duplicates).

Every problem goes to the issue sink as a ``RowIssue`` carrying the file, the physical line
where the row starts (the header is line 1; quoted cells spanning lines are counted), the
column as written in the header, the offending value and what was done. How the reader
treats the input where OneRoster leaves room or the files break its rules:

* Headers are matched case-insensitively, ignoring surrounding whitespace, spaces,
  underscores and dashes; OneRoster 1.0 names (``userId``, ``agents``, ``grade``,
  ``schoolYearId``, ``userSourcedId`` in demographics) and misspellings seen in real
  exports (``dataLastModified``, ``prefferedGivenName``) are accepted. ``ext_*`` and
  ``metadata.*`` columns are kept verbatim in ``extensions`` (blank values omitted). Any
  other unknown column is reported once per file and column, not per row. OneRoster
  columns the canonical model has no place for (1.2's ``preferredMiddleName``,
  ``pronouns``, ``userMasterIdentifier``, ``resourceSourcedIds``) are deliberately not
  read: the data is children's and is not kept where the app has no use for it.
* A column whose name contains "password", "passwd" or "secret" is never read into a
  record, an issue or a log; one NOTED issue per file says such a column was discarded.
  In such a file a row with the wrong number of cells is skipped, because shifted cells
  could carry a password into a kept field.
* Issues that would repeat on row after row are summarized once per file and column with
  a count and the first line: blank status (read as ``active``), blank fields OneRoster
  requires but the model does not (``username``, ``enabledUser``, ``orgSourcedIds``,
  session dates, a class's ``courseSourcedId`` / ``classType`` / ``termSourcedIds``,
  ...), and blank ``dateLastModified`` in delta files (in bulk files a blank one is normal
  and silent).
* A row is skipped, with its id in ``skipped_ids`` (unknown this run, so never archived),
  when its status is not ``active`` / ``tobedeleted`` / 1.0's ``inactive``, a field the
  model requires is blank, a required enumeration cannot be mapped (org type, session
  type, role -- an org of a type OneRoster does not define is skipped too rather than
  guessed at), a required reference points outside a bulk file of this bundle (a class's
  school, an enrollment's class or user, demographics of a user), or it has more cells
  than the header with data in them (cells may sit under the wrong column). Optional
  values that cannot be read (dates, class type, booleans, ``userIds``) are reported and
  left at their default instead.
* A row with fewer cells than the header reads its missing cells as blank. A row without
  a sourcedId counts in ``unreadable_rows``; a file that cannot be parsed to its end
  counts one more, so no archive of that entity is trusted. A file without even a header
  is treated as absent (a header-only file is a valid, empty bulk file). Blank lines and
  rows of blank cells are passed over.
* A row repeating an earlier sourcedId of the same file is skipped; the first one wins.
* References are checked only against files read as bulk in this bundle, and only for
  ``active`` rows (a row being deleted is archived whatever it points at). A row whose id
  was readable counts as existing even if the row itself was skipped: it is still at the
  source, only unknown this run. Optional references to missing records are dropped with
  an issue. References within one file (an org's parent, a session's parent, a user's
  agents) are checked against the ids read so far and, the first time one points further
  down, against an id-only pre-pass over the file that streams like the main pass and
  keeps nothing but the id set. That keeps the records exact (dangling agents dropped)
  without holding rows back.
* A ``tobedeleted`` row is yielded as a record with that status when it carries what a
  record needs. Delta files often carry little more than the id for deletions; such rows
  go to ``deleted_ids`` (with one summary issue per file) so the deletion is not lost.
* Dates: ISO dates, ISO datetimes (``Z``, an offset, or none), ``YYYY-MM-DD HH:MM:SS``
  and US ``M/D/YYYY``. ``dateLastModified`` becomes a UTC datetime; one without an offset
  is taken as UTC and a bare date as midnight UTC. For date fields given a datetime, the
  date as written is kept.
* Manifest: no manifest means every roster file present is read as bulk (one issue). A
  present file the manifest does not list is read as bulk; one it marks ``absent`` is
  ignored; one with a mode other than bulk/delta/absent is read as delta so that nothing
  is archived on an uncertain footing; one it lists but that is not there is reported
  with ``missing`` set in its summary. Unknown manifest properties (typos such as
  ``fiel.demographics``) are reported.
* OneRoster 1.2 users.csv has no role column: when it is absent, each user's role and
  orgs come from roles.csv (the ``primary`` role wins, its org first, then the orgs of the
  other roles), held as a user id -> (role, orgs) lookup while users.csv is read. 1.2's
  administrator variants become ``administrator`` with ``source_role`` kept; a
  ``primaryOrgSourcedId`` leads the user's orgs.
* Bytes that are not UTF-8 are read as Windows-1252 (the usual encoding of exports that
  are not UTF-8) instead of failing the file, with one issue per file.
* A header that does not split on commas but does on semicolons or tabs (Excel's CSV
  where the decimal mark is a comma, tab-separated text) is read with that delimiter and
  one NOTED issue. A BOM and CRLF line ends need nothing.

Damage never makes a record look gone. When a file's absences cannot be trusted, the
summary's ``untrusted`` says why in plain words and no record of the entity is archived
for being absent:

* The file ends in the middle of a row (no line end after a row with too few cells) or
  inside a quoted cell: that row is skipped, never padded, with an issue.
* A quoted cell spans lines and holds what look like other rows (a quote not closed where
  it should be): the row is skipped with an issue giving its line and how many lines it
  swallowed; ids at the start of swallowed lines go to ``skipped_ids``.
* The file is not CSV text (binary, a zip, UTF-16): treated as absent.
* A sourcedId with a quote or a delimiter in it is the mark of merged cells: the row
  counts as unreadable.

What storage cannot hold is refused here, one row at a time, not at commit (the limits
are in ``limits.py``): a sourcedId over ``MAX_ID_CHARS`` characters or with control
characters counts the row as unreadable; such a reference, or a record whose JSON is
over ``MAX_RECORD_BYTES``, skips the row by id with an issue naming the column.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import difflib
import functools
import hashlib
import io
import itertools
import operator
import re
import sys
import threading
from array import array
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import orjson
from pydantic import BaseModel, Field

from rostersync.errors import BundleError
from rostersync.models import (
    ENTITY_ORDER,
    ENTITY_SINGULAR,
    ClassType,
    Entity,
    IssueAction,
    OrgType,
    Role,
    RowIssue,
    SessionType,
    Severity,
)
from rostersync.packed import pack, unpack
from rostersync.sources.base import Reused
from rostersync.sources.bundle import BundleFiles
from rostersync.sources.oneroster_csv.dialect import (
    DELIMITER_NAMES,
    detect_delimiter,
    has_line_break,
    id_problem,
    is_secret_column,
    known_cells,
    norm,
    shown,
    swallowed_lines,
    swallows_rows,
)
from rostersync.sources.oneroster_csv.limits import (
    CSV_FIELD_LIMIT,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    UNMEASURED_ROW_CHARS,
)
from rostersync.sources.oneroster_csv.parts import (
    ByteLines,
    FilePart,
    Unsplittable,
    open_part,
    plan_file,
    splittable,
)

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

__all__ = [
    "FILE_NAMES",
    "KNOWN_COLUMNS",
    "EntityReadSummary",
    "FileMode",
    "OneRosterBundle",
]

Record = dict[str, Any]
IssueSink = Callable[[RowIssue], None]
#: Builds the record of ``row`` (given its sourcedId, status and line), or returns None
#: when the row is skipped (the converter has then recorded the skip).
_Converter = Callable[[list[str], str, str, int], Record | None]


class FileMode(StrEnum):
    """How a file is to be read: a full copy, changes only, or not given."""

    BULK = "bulk"
    DELTA = "delta"
    ABSENT = "absent"


class EntityReadSummary(BaseModel):
    """What reading one entity's file gave, known once its records have all been read."""

    entity: Entity
    file: str | None
    mode: FileMode
    #: Data rows in the file (blank lines not counted).
    rows: int = 0
    #: Records yielded.
    records: int = 0
    #: Ids of rows skipped for invalid content: unknown this run, never to be archived.
    skipped_ids: list[str] = Field(default_factory=list)
    #: Rows skipped with no usable sourcedId, plus one if the file could not be read to its
    #: end; when non-zero no archive of this entity may be trusted.
    unreadable_rows: int = 0
    #: The manifest lists the file but the bundle does not have it.
    missing: bool = False
    #: Ids of ``tobedeleted`` rows too incomplete to yield as records: to be archived by id.
    deleted_ids: list[str] = Field(default_factory=list)
    #: Why the absence of a record from this file proves nothing although the file was
    #: read (it is cut off, a stray quote swallowed rows, it is not CSV at all), or None.
    untrusted: str | None = None


class PartRead(BaseModel):
    """What reading one part of a file gave: its summary and what is reported once per
    file, for the finish that adds the parts up (``OneRosterBundle.finish_parts``)."""

    summary: EntityReadSummary
    header: list[str]
    header_line: int
    delimiter: str
    #: column key -> [count, first line] of blanks in fields OneRoster requires.
    blanks: dict[str, list[int]] = Field(default_factory=dict)
    trailing_blank_cells: list[int] = Field(default_factory=lambda: [0, 0])
    thin_deletions: list[int] = Field(default_factory=lambda: [0, 0])
    #: Bytes read as Windows-1252 (the header's counted by part 0 only).
    decoded: int = 0
    distrust: list[str] = Field(default_factory=list)
    #: The parser could not read the part to its end (one pass would stop there too).
    stopped: bool = False


FILE_NAMES: Final[dict[Entity, str]] = {
    Entity.ORGS: "orgs.csv",
    Entity.ACADEMIC_SESSIONS: "academicSessions.csv",
    Entity.COURSES: "courses.csv",
    Entity.CLASSES: "classes.csv",
    Entity.USERS: "users.csv",
    Entity.ENROLLMENTS: "enrollments.csv",
    Entity.DEMOGRAPHICS: "demographics.csv",
}
_MANIFEST = "manifest.csv"
_ROLES_FILE = "roles.csv"

#: Other OneRoster 1.1/1.2 files a manifest may list (roles.csv is read only for users).
_OTHER_ONEROSTER_FILES: Final = frozenset(
    name.lower()
    for name in (
        "categories",
        "classResources",
        "courseResources",
        "lineItems",
        "lineItemLearningObjectiveIds",
        "lineItemScoreScales",
        "resources",
        "results",
        "resultLearningObjectiveIds",
        "resultScoreScales",
        "roles",
        "scoreScales",
        "userProfiles",
        "userResources",
    )
)
_MANIFEST_PROPERTIES: Final = frozenset(
    {"manifest.version", "oneroster.version", "source.systemname", "source.systemcode"}
)
_VERSIONS: Final = ("1.0", "1.1", "1.2")

_ACTIVE: Final = "active"
_TOBEDELETED: Final = "tobedeleted"
_STATUS: Final[dict[str, str]] = {_ACTIVE: _ACTIVE, _TOBEDELETED: _TOBEDELETED}

_EXTENSION_PREFIXES: Final = ("ext_", "ext.", "metadata.")


def _both_cases(pairs: dict[str, Any]) -> dict[str, Any]:
    """A lookup keyed by each word as spelled and in lower case (exact hits skip .lower())."""
    out = {key.lower(): value for key, value in pairs.items()}
    out.update(pairs)
    return out


_BOOLS: Final[dict[str, bool]] = _both_cases(
    {
        "true": True,
        "TRUE": True,
        "True": True,
        "false": False,
        "FALSE": False,
        "False": False,
        "1": True,
        "0": False,
        "yes": True,
        "no": False,
    }
)
_ORG_TYPES: Final[dict[str, str]] = _both_cases({t.value: t.value for t in OrgType})
_SESSION_TYPES: Final[dict[str, str]] = _both_cases({t.value: t.value for t in SessionType})
_CLASS_TYPES: Final[dict[str, str]] = _both_cases({t.value: t.value for t in ClassType})
#: Role word -> (canonical role, source_role).
_ROLES: Final[dict[str, tuple[str, str | None]]] = _both_cases(
    {
        **{r.value: (r.value, None) for r in Role},
        **{
            word: (Role.ADMINISTRATOR.value, word)
            for word in (
                "districtAdministrator",
                "siteAdministrator",
                "systemAdministrator",
                "principal",
            )
        },
    }
)

_COMMON_KEYS: Final = ("sourcedId", "status", "dateLastModified")
_COMMON_ALIASES: Final = {"datalastmodified": "dateLastModified"}

#: The OneRoster columns read for each entity, by their spelling in OneRoster 1.1/1.2.
_COLUMNS: Final[dict[Entity, tuple[str, ...]]] = {
    Entity.ORGS: ("name", "type", "identifier", "parentSourcedId"),
    Entity.ACADEMIC_SESSIONS: (
        "title",
        "type",
        "startDate",
        "endDate",
        "parentSourcedId",
        "schoolYear",
    ),
    Entity.COURSES: (
        "title",
        "schoolYearSourcedId",
        "courseCode",
        "grades",
        "orgSourcedId",
        "subjects",
        "subjectCodes",
    ),
    Entity.CLASSES: (
        "title",
        "grades",
        "courseSourcedId",
        "classCode",
        "classType",
        "location",
        "schoolSourcedId",
        "termSourcedIds",
        "subjects",
        "subjectCodes",
        "periods",
    ),
    Entity.USERS: (
        "enabledUser",
        "orgSourcedIds",
        "primaryOrgSourcedId",
        "role",
        "username",
        "userIds",
        "givenName",
        "familyName",
        "middleName",
        "preferredGivenName",
        "preferredFamilyName",
        "identifier",
        "email",
        "sms",
        "phone",
        "agentSourcedIds",
        "grades",
    ),
    Entity.ENROLLMENTS: (
        "classSourcedId",
        "schoolSourcedId",
        "userSourcedId",
        "role",
        "primary",
        "beginDate",
        "endDate",
    ),
    Entity.DEMOGRAPHICS: (
        "birthDate",
        "sex",
        "americanIndianOrAlaskaNative",
        "asian",
        "blackOrAfricanAmerican",
        "nativeHawaiianOrOtherPacificIslander",
        "white",
        "demographicRaceTwoOrMoreRaces",
        "hispanicOrLatinoEthnicity",
        "countryOfBirthCode",
        "stateOfBirthAbbreviation",
        "cityOfBirth",
        "publicSchoolResidenceStatus",
    ),
}
#: OneRoster columns deliberately not read (no place in the model).
_IGNORED: Final[dict[Entity, tuple[str, ...]]] = {
    Entity.USERS: ("preferredMiddleName", "userMasterIdentifier", "resourceSourcedIds", "pronouns"),
}
#: Other spellings of columns: normalized header -> column key.
_ALIASES: Final[dict[Entity, dict[str, str]]] = {
    Entity.ORGS: {},
    Entity.ACADEMIC_SESSIONS: {},
    Entity.COURSES: {
        "schoolyearid": "schoolYearSourcedId",
        "grade": "grades",
        "subjectcode": "subjectCodes",
    },
    Entity.CLASSES: {
        "grade": "grades",
        "termsourcedid": "termSourcedIds",
        "subjectcode": "subjectCodes",
        "period": "periods",
    },
    Entity.USERS: {
        "userid": "userIds",
        "agents": "agentSourcedIds",
        "agentsourcedid": "agentSourcedIds",
        "orgsourcedid": "orgSourcedIds",
        "enabled": "enabledUser",
        "grade": "grades",
        "gradelevel": "grades",
        "gradelevels": "grades",
        "prefferedgivenname": "preferredGivenName",
        "preferedgivenname": "preferredGivenName",
        "preferredfirstname": "preferredGivenName",
        "prefferedfamilyname": "preferredFamilyName",
        "preferedfamilyname": "preferredFamilyName",
        "preferredlastname": "preferredFamilyName",
        "prefferedmiddlename": "preferredMiddleName",
    },
    Entity.ENROLLMENTS: {},
    Entity.DEMOGRAPHICS: {
        "usersourcedid": "sourcedId",
        "twoormoreraces": "demographicRaceTwoOrMoreRaces",
        "hispanicorlatino": "hispanicOrLatinoEthnicity",
    },
}
#: Columns without which no row of the file can become a record.
_REQUIRED_COLUMNS: Final[dict[Entity, tuple[str, ...]]] = {
    Entity.ORGS: ("name", "type"),
    Entity.ACADEMIC_SESSIONS: ("title", "type"),
    Entity.COURSES: ("title",),
    Entity.CLASSES: ("title", "schoolSourcedId"),
    Entity.USERS: ("givenName", "familyName", "role"),
    Entity.ENROLLMENTS: ("classSourcedId", "userSourcedId", "role"),
    Entity.DEMOGRAPHICS: (),
}


def _header_lookup(entity: Entity) -> dict[str, str]:
    keys = (*_COMMON_KEYS, *_COLUMNS[entity], *_IGNORED.get(entity, ()))
    lookup = {norm(key): key for key in keys}
    lookup.update(_COMMON_ALIASES)
    lookup.update(_ALIASES[entity])
    return lookup


_HEADER_LOOKUP: Final[dict[Entity, dict[str, str]]] = {e: _header_lookup(e) for e in Entity}
_MANIFEST_COLUMNS: Final = frozenset({"propertyname", "value"})
_ROLES_LOOKUP: Final[dict[str, str]] = {
    norm(k): k for k in ("sourcedId", "status", "userSourcedId", "roleType", "role")
} | {"orgsourcedid": "orgSourcedId"}
#: Every column name a OneRoster file of any kind may have, normalized by ``norm``.
KNOWN_COLUMNS: Final = frozenset(
    itertools.chain(*_HEADER_LOOKUP.values(), _MANIFEST_COLUMNS, _ROLES_LOOKUP)
)


class _Feed:
    """The lines of a list from ``pos`` on, for a parser; ``pos`` says how far it read."""

    __slots__ = ("lines", "pos")

    def __init__(self, lines: list[str], pos: int) -> None:
        self.lines, self.pos = lines, pos

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


class _OneLine:
    """An iterator giving one line at a time to a parser (``line``, then nothing)."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line, self.line = self.line, None
        if line is None:
            raise StopIteration
        return line


@dataclass(frozen=True)
class ReuseOffer:
    """A previous read of the bundle's files, for taking its clean lines as they were:
    that bundle's files and what that read kept (``OneRosterBundle.reuse_state``)."""

    files: BundleFiles
    state: bytes


#: Records of one file the next run may take as they are, at most (above it every row
#: is read: the lines to recognise would take too much memory).
REUSE_MAX_RECORDS: Final = 2_000_000
#: Characters of lines read ahead at a time while reusing.
_READ_AHEAD: Final = 1 << 20
#: Lines checked together at most: a refused line costs one such check.
_TAKE_TOGETHER: Final = 512


@functools.cache
def _code_digest() -> str:
    """A digest of this package's code: a record read by other code is read again."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


#: The columns of each entity holding ids of other records (or of the same file's),
#: whether a cell holds several, and the file they point into.
_REFERENCE_COLUMNS: Final[dict[Entity, tuple[tuple[str, bool, Entity], ...]]] = {
    Entity.ORGS: (("parentSourcedId", False, Entity.ORGS),),
    Entity.ACADEMIC_SESSIONS: (("parentSourcedId", False, Entity.ACADEMIC_SESSIONS),),
    Entity.COURSES: (
        ("schoolYearSourcedId", False, Entity.ACADEMIC_SESSIONS),
        ("orgSourcedId", False, Entity.ORGS),
    ),
    Entity.CLASSES: (
        ("courseSourcedId", False, Entity.COURSES),
        ("schoolSourcedId", False, Entity.ORGS),
        ("termSourcedIds", True, Entity.ACADEMIC_SESSIONS),
    ),
    Entity.USERS: (
        ("orgSourcedIds", True, Entity.ORGS),
        ("primaryOrgSourcedId", False, Entity.ORGS),
        ("agentSourcedIds", True, Entity.USERS),
    ),
    Entity.ENROLLMENTS: (
        ("classSourcedId", False, Entity.CLASSES),
        ("schoolSourcedId", False, Entity.ORGS),
        ("userSourcedId", False, Entity.USERS),
    ),
    Entity.DEMOGRAPHICS: (),
}


# --- text decoding ---------------------------------------------------------------------

_FALLBACK_ERRORS: Final = "rostersync-cp1252-fallback"
_fallback_state = threading.local()
#: Bytes Windows-1252 leaves undefined; they are read as Latin-1.
_CP1252_HOLES: Final = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Decode bytes that are not UTF-8 as Windows-1252 and count them for an issue."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    _fallback_state.count = _fallback_count() + len(bad)
    text = "".join(chr(b) if b in _CP1252_HOLES else bytes((b,)).decode("cp1252") for b in bad)
    return text, exc.end


def _fallback_count() -> int:
    count: int = getattr(_fallback_state, "count", 0)
    return count


codecs.register_error(_FALLBACK_ERRORS, _cp1252_fallback)


def _text(raw: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig drops a BOM; newline="" lets csv see quoted line breaks as they are.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors=_FALLBACK_ERRORS, newline="")


class _Lines:
    """The lines of a file as csv.reader takes them, watched for what only the lines show.

    ``unterminated``: the last line has no line end (only the last one can lack it), so
    the row holding it may be cut off. ``exhausted``: the parser asked for a line past the
    end, which it does only in the middle of a quoted cell. ``flagged``: one of those, or
    a line long enough to make a record too big, happened since it was last cleared; rows
    of one line that leave it clear need no closer look (the hot path stays as it was).
    ``last``: the line given last (a row of one line is that line).

    Reusing (``reuse`` set, see ``_FileReader._reuse_memo``): lines are read ahead a
    block at a time and looked up together; a run of lines at the start of a row
    (``boundary``, which the row loop sets after each row) that the previous run read
    cleanly, and that ``take`` accepts (all of them at once, else up to the first it
    refuses), never reaches the parser: their line numbers go to ``hit_lines``, the
    previous run's record numbers to ``hit_records``, and they count in ``swallowed``, so
    the parser's line numbers plus ``swallowed`` are the file's.
    """

    __slots__ = (
        "boundary",
        "exhausted",
        "flagged",
        "hit_lines",
        "hit_records",
        "last",
        "reuse",
        "swallowed",
        "take",
        "text",
        "unterminated",
    )

    def __init__(self, text: io.TextIOWrapper, reusing: bool = False) -> None:
        self.text = text
        self.flagged = False
        self.unterminated = False
        self.exhausted = False
        self.last = ""
        self.boundary = False
        self.swallowed = 0
        self.hit_lines: list[int] = []
        self.hit_records: list[int] = []
        #: Line -> the previous run's record index, once the header allows reuse.
        self.reuse: dict[str, int] | None = {} if reusing else None
        #: How many of ``lines[start:end]`` (in order, from the first) can be taken.
        self.take: Callable[[list[str], int, int], int] | None = None

    def __iter__(self) -> Iterator[str]:
        if self.reuse is not None:
            yield from self._reusing()
            return
        long = UNMEASURED_ROW_CHARS
        for line in self.text:
            if len(line) > long or line[-1] not in "\r\n":
                self.flagged = True
                self.unterminated = line[-1] not in "\r\n"
            self.last = line
            yield line
        self.exhausted = self.flagged = True

    def _reusing(self) -> Iterator[str]:
        long = UNMEASURED_ROW_CHARS
        given = 0
        hit_lines, hit_records = self.hit_lines, self.hit_records
        # A block of lines split as iterating the text splits them (in C).
        while block := self.text.readlines(_READ_AHEAD):
            count, i = len(block), 0
            found: list[int | None] | None = None
            while i < count:
                if self.boundary and self.reuse and self.take is not None:
                    if found is None:
                        found = list(map(self.reuse.get, block))
                    end = i
                    while end < count and found[end] is not None:
                        end += 1
                    if end > i:
                        taken = self.take(block, i, end)
                        if taken:
                            first = given + self.swallowed + 1
                            self.swallowed += taken
                            hit_lines.extend(range(first, first + taken))
                            hit_records.extend(found[i : i + taken])  # type: ignore[arg-type]
                            i += taken
                        if i == end:
                            continue
                        # block[i] was refused: the parser reads it.
                line = block[i]
                i += 1
                if len(line) > long or line[-1] not in "\r\n":
                    self.flagged = True
                    self.unterminated = line[-1] not in "\r\n"
                self.boundary = False
                self.last = line
                given += 1
                yield line
        self.exhausted = self.flagged = True


@contextmanager
def _csv_rows(
    files: BundleFiles,
    name: str,
    delimiter: str,
    reusing: bool = False,
    part: FilePart | None = None,
) -> Iterator[tuple[CsvReader, _Lines]]:
    """A csv.reader over the file's watched lines (those of one part of it: its
    header's, then its rows')."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    opened = files.open(name) if part is None else open_part(files, name, part)  # type: ignore[arg-type]
    with opened as raw:
        lines = _Lines(_text(raw), reusing)
        yield csv.reader(lines, delimiter=delimiter), lines


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _binary_problem(name: str, first: list[str]) -> str | None:
    """Why a file whose first row is ``first`` is not CSV text at all, or None."""
    text = "".join(first)
    if "\x00" in text and text.startswith(("ÿþ", "þÿ")):  # a UTF-16 byte-order mark
        return (
            f"{name} is UTF-16 text (as Excel saves 'Unicode Text'), which this reader does "
            "not read; save it as 'CSV UTF-8'"
        )
    controls = len(_CONTROL_CHARS.findall(text))
    if "\x00" in text or controls > max(2, len(text) // 50):
        return (
            f"{name} is not CSV text but binary data (a spreadsheet, a zip or another file "
            "saved under a .csv name?)"
        )
    return None


# --- value parsing ---------------------------------------------------------------------

_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_USER_ID = re.compile(r"\{\s*([^{}:]+?)\s*:\s*([^{}]*?)\s*\}")
_CACHE_LIMIT: Final = 50_000


def _parse_datetime(text: str) -> str | None:
    """A datetime string as pydantic dumps a UTC datetime, or None if unreadable."""
    s = text.strip()
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        us = _US_DATE.fullmatch(s)
        if us is None:
            return None
        try:
            parsed = datetime(int(us[3]), int(us[1]), int(us[2]))
        except ValueError:
            return None
    try:
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return None
    return parsed.isoformat() + "Z"


def parse_date(text: str) -> str | None:
    """An ISO date string, or None if unreadable."""
    s = text.strip()
    try:
        return date.fromisoformat(s).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(s).date().isoformat()
    except ValueError:
        pass
    us = _US_DATE.fullmatch(s)
    if us is None:
        return None
    try:
        return date(int(us[3]), int(us[1]), int(us[2])).isoformat()
    except ValueError:
        return None


def _split(value: str) -> list[str]:
    """A multi-valued cell as a list: split on commas, trimmed, blanks dropped."""
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    return [part for piece in value.split(",") if (part := piece.strip())]


def _parse_user_ids(value: str) -> list[dict[str, str]] | None:
    """``{type:id},{type:id}`` as user_ids dicts, or None if the cell is malformed."""
    if value[0] == "{" and value[-1] == "}":
        inner = value[1:-1]
        if "{" not in inner and "}" not in inner:
            # One id, the common case, without the regex.
            kind, colon, ident = inner.partition(":")
            kind, ident = kind.strip(), ident.strip()
            return [{"type": kind, "identifier": ident}] if colon and kind and ident else None
        # Several, written tight (``{a:1},{b:2}``: what the regex reads as these parts),
        # also without it; anything else (spaces, blanks, stray braces) goes to the regex.
        ids: list[dict[str, str]] = []
        for part in inner.split("},{"):
            kind, colon, ident = part.partition(":")
            if (
                not (colon and kind and ident)
                or "{" in part
                or "}" in part
                or kind.strip() != kind
                or ident.strip() != ident
            ):
                break
            ids.append({"type": kind, "identifier": ident})
        else:
            return ids
    out: list[dict[str, str]] = []
    pos = 0
    for match in _USER_ID.finditer(value):
        if value[pos : match.start()].strip(" \t,"):
            return None
        if not match[2]:
            return None
        out.append({"type": match[1], "identifier": match[2]})
        pos = match.end()
    if value[pos:].strip(" \t,") or not out:
        return None
    return out


_SCAN_CHUNK: Final = 1 << 18


def _scan_column(text: io.TextIOWrapper, idx: int, delimiter: str = ",") -> set[str]:
    """The non-blank values of column ``idx`` in the CSV rows left in ``text``.

    Gives what csv.reader would, several times faster: while the text has no quotes and
    no bare carriage returns, each line is a row of plain delimited cells (csv.reader's
    own rule), so a regex picks the cell out of whole chunks at once. From the first
    quote on, the rest goes through csv.reader, which handles quoted line breaks.
    """
    ids: set[str] = set()
    d = re.escape(delimiter)
    # A line's idx-th cell, then the rest of the line.
    cell = re.compile(f"(?:[^{d}\\n]*{d}){{{idx}}}([^{d}\\n]*)[^\\n]*\\n")
    carry = ""
    while chunk := text.read(_SCAN_CHUNK):
        chunk = carry + chunk
        cut = chunk.rfind("\n") + 1
        body, carry = chunk[:cut], chunk[cut:]
        if '"' in body or body.count("\r") != body.count("\r\n"):
            rest = io.StringIO(body + carry + text.readline(), newline="")
            for row in csv.reader(itertools.chain(rest, text), delimiter=delimiter):
                if len(row) > idx and (value := row[idx].strip()):
                    ids.add(value)
            return ids
        ids.update(map(str.strip, cell.findall(body)))
    if carry:
        if '"' in carry or "\r" in carry.rstrip("\r"):
            rows: Iterator[list[str]] = csv.reader(
                io.StringIO(carry, newline=""), delimiter=delimiter
            )
            ids.update(row[idx].strip() for row in rows if len(row) > idx)
        else:
            ids.update(map(str.strip, cell.findall(carry + "\n")))
    ids.discard("")
    return ids


# --- header ----------------------------------------------------------------------------


def _first_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The first row with a non-blank cell (the header), or None; reads no further."""
    return next((row for row in reader if any(cell.strip() for cell in row)), None)


class _Header:
    """A file's header mapped onto column keys."""

    def __init__(self, entity: Entity, header: list[str]) -> None:
        lookup = _HEADER_LOOKUP[entity]
        self.raw = header
        self.width = len(header)
        #: Each column's name as written.
        self.names = [cell.strip() for cell in header]
        self.index: dict[str, int] = {}
        self.written: dict[str, str] = {}
        self.extensions: list[tuple[int, str]] = []
        self.secrets: list[str] = []
        self.unknown: list[tuple[int, str]] = []
        self.repeated: list[tuple[str, str]] = []
        ext_names: set[str] = set()
        for idx, cell in enumerate(header):
            name = cell.strip()
            lower = name.lower()
            if is_secret_column(name):
                self.secrets.append(name)
                continue
            if lower.startswith(_EXTENSION_PREFIXES):
                if name in ext_names:
                    self.repeated.append((name, name))
                else:
                    ext_names.add(name)
                    self.extensions.append((idx, name))
                continue
            key = lookup.get(norm(name))
            if key is None:
                self.unknown.append((idx, name))
            elif key in self.index:
                self.repeated.append((name, self.written[key]))
            else:
                self.index[key] = idx
                self.written[key] = name

    def col(self, key: str) -> int:
        """The column's index, or the index of the blank cell appended to every row."""
        return self.index.get(key, self.width)


# --- the bundle --------------------------------------------------------------------------


IssueReporter = Callable[..., None]


def read_manifest_properties(
    raw: IO[bytes], issue: IssueReporter | None = None
) -> dict[str, tuple[str, int]]:
    """A manifest's properties: ``{lower-case name: (value, line)}``, the first of a
    repeated property winning. The one reading of ``manifest.csv``: the reader and the
    inbox's completeness check both use it. Problems go to ``issue`` (the reader's
    issue method's arguments) when given."""
    if issue is None:
        issue = _ignore_issue
    declared: dict[str, tuple[str, int]] = {}
    text = _text(raw).read()  # a manifest is a few lines
    delimiter = detect_delimiter(
        next((ln for ln in text.splitlines() if ln.strip()), ""), _MANIFEST_COLUMNS
    )
    if delimiter != ",":
        issue(
            _MANIFEST,
            f"manifest.csv separates its cells with {DELIMITER_NAMES[delimiter]}, "
            "not commas; it was read that way",
            IssueAction.NOTED,
        )
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 0
    try:
        for row in reader:
            first_line, line = line + 1, reader.line_num
            if not row or not row[0].strip():
                continue
            key = row[0].strip()
            lower = key.lower()
            if first_line == 1 and norm(key) == "propertyname":
                continue
            value = row[1].strip() if len(row) > 1 else ""
            if lower in declared:
                issue(
                    _MANIFEST,
                    f"The property {key} is given again; the first value "
                    f"({declared[lower][0]!r}) was used",
                    IssueAction.NOTED,
                    line=first_line,
                    column="propertyName",
                    value=value,
                )
                continue
            if lower.startswith("file.") or lower in _MANIFEST_PROPERTIES:
                declared[lower] = (value, first_line)
            else:
                issue(
                    _MANIFEST,
                    f"{key} is not a OneRoster manifest property (a typo?); ignored",
                    IssueAction.NOTED,
                    line=first_line,
                    column="propertyName",
                    value=key,
                )
    except csv.Error as exc:
        issue(
            _MANIFEST,
            f"manifest.csv could not be read past line {line}: {exc}",
            IssueAction.NOTED,
            line=line + 1,
        )
    return declared


def _ignore_issue(*args: Any, **kwargs: Any) -> None:
    return None


def listed_files(declared: dict[str, tuple[str, int]]) -> dict[str, str]:
    """``{file name (lower case, with .csv): mode (lower case)}`` of the ``file.*``
    properties."""
    return {
        key[5:] + ".csv": value.strip().lower()
        for key, (value, _line) in declared.items()
        if key.startswith("file.") and len(key) > 5
    }


class OneRosterBundle:
    """A OneRoster CSV bundle, read entity by entity.

    ``version`` is the manifest's ``oneroster.version`` ("1.0", "1.1" or "1.2"; "1.1" when
    not given) and ``modes`` how each entity's file is read. Read entities in
    ``ENTITY_ORDER``: references are checked against the id sets of the files read before
    (a file referenced before it was read is scanned for ids first). A file found to have
    no header turns ABSENT in ``modes`` when it is read.
    """

    def __init__(
        self,
        files: BundleFiles,
        issue_sink: IssueSink,
        source_system: str = "oneroster",
    ) -> None:
        self._files = files
        self._sink = issue_sink
        self.source_system = source_system
        self._present: dict[str, str] = {name.lower(): name for name in files.names()}
        self.version: str = "1.1"
        self.modes: dict[Entity, FileMode] = {}
        self._missing: set[Entity] = set()
        self._roles_mode: FileMode = FileMode.ABSENT
        self._known: dict[Entity, set[str] | None] = {}
        self._summaries: dict[Entity, EntityReadSummary] = {}
        self._roles: dict[str, tuple[str, tuple[str, ...]]] | None = None
        self._roles_loaded = False
        self._datetimes: dict[str, str] = {}
        self._dates: dict[str, str] = {}
        #: File name -> its delimiter, once a pass over it has seen its header.
        self._delimiters: dict[str, str] = {}
        #: What a previous read left for taking unchanged lines as they were, by entity.
        self._offers: dict[Entity, ReuseOffer] = {}
        self._reuse_states: dict[Entity, bytes | None] = {}
        #: The last part read of each entity: what it gave, and the ids it saw first.
        self._parts: dict[Entity, tuple[PartRead, list[str] | None]] = {}
        #: The ids of a file read in parts, as the plan wrote them, to be loaded once.
        self._own_ids: dict[Entity, Callable[[], set[str] | None]] = {}
        if _MANIFEST in self._present:
            self._read_manifest()
        else:
            self._without_manifest()
        for entity in ENTITY_ORDER:
            if self.modes[entity] is FileMode.ABSENT:
                self._summaries[entity] = self._absent_summary(entity)

    # public API

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        """Stream the entity's canonical record dicts; issues go to the sink as found.

        Each call reads the file afresh. ``summary(entity)`` is available once the
        iterator is exhausted.
        """
        if entity in self._offers:
            raise RuntimeError(f"{entity} was offered a previous read: read its items")
        for item in self.iter_items(entity):
            assert not isinstance(item, Reused)
            yield item

    def offer_reuse(self, entity: Entity, offer: ReuseOffer) -> None:
        """Let the next read of ``entity`` take the lines ``offer`` read cleanly as they
        were (``Reused`` markers among the records)."""
        self._offers[entity] = offer

    def reuse_state(self, entity: Entity) -> bytes | None:
        """What the next run needs to take the lines of ``entity``'s file read cleanly by
        this read (once it is read), or None."""
        return self._reuse_states.get(entity)

    def iter_items(self, entity: Entity) -> Iterator[Record | Reused]:
        """``iter_records``, with ``Reused`` markers where a previous read was offered."""
        mode = self.modes[entity]
        self._reuse_states.pop(entity, None)
        if mode is FileMode.ABSENT:
            return
        self._summaries.pop(entity, None)
        reader = _FileReader(self, entity, self._file_name(entity), mode)
        yield from reader.records()
        self._summaries[entity] = reader.summary
        self._reuse_states[entity] = reader.reuse_state()
        if entity is Entity.USERS:
            # The roles.csv lookup is only needed while users.csv is read.
            self._roles = None
            self._roles_loaded = False

    # parts

    def plan_parts(
        self,
        entity: Entity,
        part_bytes: int,
        max_parts: int,
        own_ids: Callable[[], AbstractContextManager[IO[bytes]]] | None = None,
    ) -> list[FilePart] | None:
        """The entity's file cut into parts of about ``part_bytes`` (at most
        ``max_parts``) to read side by side (``iter_part``), or None where it is read
        whole: too small, not a file of rows with a usable header, or not safe to cut
        (see ``parts``). A file whose rows refer to each other (orgs' parents, users'
        agents) has its ids written to the writer ``own_ids`` opens (a line each): its
        parts check those references against them (``iter_part``), as the id pre-pass
        of one pass would."""
        if self.modes[entity] is FileMode.ABSENT or not splittable(self._files):
            return None
        name = self._file_name(entity)
        size = self._files.size(name)  # type: ignore[attr-defined]
        if size is None or size < 2 * part_bytes:
            return None
        lookup = _HEADER_LOOKUP[entity]
        before = _fallback_count()
        delimiter = self._delimiters.get(name, ",")
        try:
            while True:
                with self._files.open(name) as raw:
                    feed = ByteLines(raw, _FALLBACK_ERRORS)
                    first = _first_row(csv.reader(feed, delimiter=delimiter))
                if (
                    first is None
                    or _binary_problem(name, first) is not None
                    or known_cells(first, lookup) < 2
                ):
                    return None
                found = self.delimiter(name, first, lookup)
                if found == delimiter:
                    break
                delimiter = found
            header = _Header(entity, first)
            if "sourcedId" not in header.index:
                return None
            plan = functools.partial(
                plan_file,
                self._files,
                name,
                errors=_FALLBACK_ERRORS,
                delimiter=delimiter,
                header_end=feed.pos,
                header_lines=feed.lines,
                i_sid=header.index["sourcedId"],
                part_bytes=part_bytes,
                max_parts=max_parts,
            )
            if own_ids is None or not _refers_to_itself(entity):
                return plan()
            with own_ids() as out:
                return plan(ids_out=out)
        except (Unsplittable, csv.Error):
            return None
        finally:
            # Decoding problems are reported by the reads of the parts.
            _fallback_state.count = before

    def iter_part(
        self,
        entity: Entity,
        part: FilePart,
        own_ids: Callable[[], set[str] | None] | None = None,
    ) -> Iterator[Record]:
        """The records of one part of the entity's file, as one pass over the file
        would read them there; then ``part_read`` says what the part gave. References
        to the file's own rows are checked against ``own_ids()`` (the ids the plan
        wrote), if given, instead of a pre-pass over the whole file."""
        self._parts.pop(entity, None)
        if own_ids is not None and _refers_to_itself(entity):
            # Ids the plan could not read to the end are no more checkable than the
            # pre-pass's (which gives None where the parser stops).
            self._own_ids[entity] = own_ids if part.whole else lambda: None
        reader = _FileReader(self, entity, self._file_name(entity), self.modes[entity], part)
        for item in reader.records():
            assert not isinstance(item, Reused)
            yield item
        self._parts[entity] = (reader.part_read(), reader.seen_first())

    def part_read(self, entity: Entity) -> tuple[PartRead, list[str] | None]:
        """What the last part read of the entity gave, and the ids its rows had first in
        the file (None where no other file refers to the entity's ids)."""
        return self._parts[entity]

    def finish_parts(self, entity: Entity, reads: list[PartRead]) -> int:
        """Add up the parts of the entity's file, in order, into its summary, and report
        what is reported once per file. A part the parser stopped in is the last one
        read (one pass reads no further): the number of parts taken is returned."""
        taken = next((k + 1 for k, read in enumerate(reads) if read.stopped), len(reads))
        reads = reads[:taken]
        first = reads[0]
        reader = _FileReader(self, entity, self._file_name(entity), self.modes[entity])
        reader.header = _Header(entity, first.header)
        reader.header_line, reader.delimiter = first.header_line, first.delimiter
        summary = reader.summary
        decoded = 0
        for read in reads:
            part = read.summary
            summary.rows += part.rows
            summary.records += part.records
            summary.skipped_ids.extend(part.skipped_ids)
            summary.deleted_ids.extend(part.deleted_ids)
            summary.unreadable_rows += part.unreadable_rows
            summary.mode = part.mode
            for key, (count, line) in read.blanks.items():
                reader.blanks.setdefault(key, [0, line])[0] += count
            for mine, theirs in (
                (reader.trailing_blank_cells, read.trailing_blank_cells),
                (reader.thin_deletions, read.thin_deletions),
            ):
                mine[0] += theirs[0]
                mine[1] = mine[1] or theirs[1]
            decoded += read.decoded
            reader.distrust.extend(read.distrust)
        reader._finish(decoded)
        self._summaries[entity] = summary
        if reads[-1].stopped:
            self._known[entity] = None
        return taken

    def known(self, entity: Entity) -> set[str] | None:
        """The ids later files may refer to, as far as this read has them (None where
        references to the entity cannot be checked, or it is not read yet)."""
        return self._known.get(entity)

    def restore(
        self,
        modes: dict[Entity, FileMode],
        known: dict[Entity, set[str] | None],
        summaries: dict[Entity, EntityReadSummary],
    ) -> None:
        """Carry on a read begun elsewhere: the modes, id sets and summaries it had."""
        self.modes.update(modes)
        self._known.update(known)
        self._summaries.update(summaries)

    def has_summary(self, entity: Entity) -> bool:
        return entity in self._summaries

    def summary(self, entity: Entity) -> EntityReadSummary:
        """What reading the entity gave; raises RuntimeError before it has been read."""
        try:
            return self._summaries[entity]
        except KeyError:
            raise RuntimeError(f"{entity} has not been read to its end yet") from None

    # manifest

    def _issue(self, file: str, message: str, action: IssueAction, **kw: Any) -> None:
        self._sink(RowIssue(file=file, message=message, action=action, **kw))

    def _without_manifest(self) -> None:
        present = [e for e in ENTITY_ORDER if FILE_NAMES[e].lower() in self._present]
        if not present:
            raise BundleError("the bundle has neither manifest.csv nor any OneRoster CSV file")
        for entity in ENTITY_ORDER:
            self.modes[entity] = FileMode.BULK if entity in present else FileMode.ABSENT
        self._roles_mode = FileMode.BULK if _ROLES_FILE in self._present else FileMode.ABSENT
        self._issue(
            _MANIFEST,
            "The bundle has no manifest.csv, so it does not say which files are complete; "
            f"every file present ({', '.join(FILE_NAMES[e] for e in present)}) was read as "
            "bulk",
            IssueAction.READ_AS_BULK,
        )

    def _read_manifest(self) -> None:
        with self._files.open(self._present[_MANIFEST]) as raw:
            declared = read_manifest_properties(raw, self._issue)
        self._set_version(declared.get("oneroster.version"))
        for key, (_, line) in declared.items():
            name = key.removeprefix("file.")
            if (
                key.startswith("file.")
                and name not in _ENTITY_BY_MANIFEST_NAME
                and name not in _OTHER_ONEROSTER_FILES
            ):
                self._issue(
                    _MANIFEST,
                    f"The manifest lists a file {key[5:]!r} that OneRoster does not "
                    "define; ignored",
                    IssueAction.NOTED,
                    line=line,
                    column="propertyName",
                    value=key,
                )
        for entity in ENTITY_ORDER:
            self.modes[entity] = self._mode_from_manifest(entity, declared)
        roles = declared.get("file.roles", ("bulk", 0))[0].lower()
        present = _ROLES_FILE in self._present
        self._roles_mode = (
            FileMode(roles) if present and roles in ("bulk", "delta") else FileMode.ABSENT
        )

    def _set_version(self, declared: tuple[str, int] | None) -> None:
        if declared is None:
            return
        value, line = declared
        version = value.lower().removeprefix("v")
        for known in _VERSIONS:
            if version == known or version.startswith(known + "."):
                self.version = known
                return
        self._issue(
            _MANIFEST,
            f"oneroster.version {value!r} is not 1.0, 1.1 or 1.2; read as 1.1",
            IssueAction.KEPT_DEFAULT,
            line=line,
            column="value",
            value=value,
        )

    def _mode_from_manifest(self, entity: Entity, declared: dict[str, tuple[str, int]]) -> FileMode:
        name = FILE_NAMES[entity]
        present = name.lower() in self._present
        stem = name.removesuffix(".csv")
        entry = declared.get("file." + stem.lower())
        if entry is None:
            if not present:
                return FileMode.ABSENT
            self._issue(
                _MANIFEST,
                f"The manifest does not list {name}, which is in the bundle; read as bulk",
                IssueAction.READ_AS_BULK,
                entity=entity,
            )
            return FileMode.BULK
        value, line = entry
        mode = value.lower()
        if mode in ("bulk", "delta"):
            if present:
                return FileMode(mode)
            self._missing.add(entity)
            self._issue(
                _MANIFEST,
                f"The manifest lists {name} as {mode}, but the bundle has no such file",
                IssueAction.FILE_SKIPPED,
                line=line,
                column="value",
                value=value,
                entity=entity,
            )
            return FileMode.ABSENT
        if mode == "absent":
            if present:
                self._issue(
                    name,
                    f"The manifest marks {name} as absent, but the bundle has it; "
                    "the file was not read",
                    IssueAction.FILE_SKIPPED,
                    entity=entity,
                )
            return FileMode.ABSENT
        self._issue(
            _MANIFEST,
            f"The manifest gives {name} the mode {value!r}, which is not bulk, delta or "
            "absent"
            + ("; read as delta, so nothing is archived for being left out" if present else ""),
            IssueAction.NOTED,
            line=line,
            column="value",
            value=value,
            entity=entity,
        )
        return FileMode.DELTA if present else FileMode.ABSENT

    def _absent_summary(self, entity: Entity) -> EntityReadSummary:
        missing = entity in self._missing
        return EntityReadSummary(
            entity=entity,
            file=FILE_NAMES[entity] if missing else None,
            mode=FileMode.ABSENT,
            missing=missing,
        )

    def _file_name(self, entity: Entity) -> str:
        return self._present[FILE_NAMES[entity].lower()]

    # state shared between files

    def _known_ids(self, entity: Entity) -> set[str] | None:
        """Ids in the entity's bulk file, or None when references to it cannot be checked."""
        if self.modes[entity] is not FileMode.BULK:
            return None
        if entity not in self._known:
            loader = self._own_ids.pop(entity, None)
            self._known[entity] = loader() if loader is not None else self._scan_ids(entity)
        return self._known[entity]

    def _scan_ids(self, entity: Entity) -> set[str] | None:
        """The sourcedIds of a file in one streaming pass, or None if it cannot be parsed."""
        before = _fallback_count()
        name = self._file_name(entity)
        delimiter = self._delimiters.get(name, ",")
        try:
            while True:
                with _csv_rows(self._files, name, delimiter) as (reader, lines):
                    first = _first_row(reader)
                    if first is None or _binary_problem(name, first) is not None:
                        return None
                    found = self.delimiter(name, first, _HEADER_LOOKUP[entity])
                    if found != delimiter:
                        delimiter = found
                        continue
                    header = _Header(entity, first)
                    if "sourcedId" not in header.index:
                        return None
                    return _scan_column(lines.text, header.index["sourcedId"], delimiter)
        except csv.Error:
            return None
        finally:
            # Decoding problems are reported by the main pass over the file, not here.
            _fallback_state.count = before

    def _binary_sample_problem(self, name: str) -> str | None:
        """Whether the start of the file, not just its first row, is binary."""
        before = _fallback_count()
        with self._files.open(name) as raw:
            sample = _text(raw).read(_SCAN_CHUNK)
        _fallback_state.count = before
        return _binary_problem(name, [sample])

    def delimiter(self, name: str, first: list[str], known: Collection[str]) -> str:
        """The file's delimiter: a comma, unless its header (``first`` as read with
        commas) has no sourcedId and splits into more known columns with another."""
        found = self._delimiters.get(name)
        if found is None:
            found = ","
            if known_cells(first, known) < 2:
                before = _fallback_count()
                with self._files.open(name) as raw:
                    line = next((ln for ln in _text(raw) if ln.strip()), "")
                _fallback_state.count = before
                found = detect_delimiter(line, known)
            self._delimiters[name] = found
        return found

    def _roles_lookup(self) -> dict[str, tuple[str, tuple[str, ...]]] | None:
        """OneRoster 1.2's roles.csv as user id -> (role word, org ids), or None."""
        if not self._roles_loaded:
            self._roles_loaded = True
            if self._roles_mode is not FileMode.ABSENT:
                self._roles = self._read_roles(self._present[_ROLES_FILE])
        return self._roles

    def _read_roles(self, name: str) -> dict[str, tuple[str, tuple[str, ...]]] | None:
        lookup = _ROLES_LOOKUP
        best: dict[str, tuple[str, bool, tuple[str, ...]]] = {}
        with self._files.open(name) as raw:
            first = _first_row(csv.reader(_text(raw))) or []
        delimiter = self.delimiter(name, first, lookup)
        with _csv_rows(self._files, name, delimiter) as (reader, _):
            first = _first_row(reader) or []
            cols: dict[str, int] = {}
            for idx, cell in enumerate(first):
                key = lookup.get(norm(cell.strip()))
                if key is not None:
                    cols.setdefault(key, idx)
            if "userSourcedId" not in cols or "role" not in cols:
                self._issue(
                    name,
                    "roles.csv has no userSourcedId or role column; it was not used",
                    IssueAction.FILE_SKIPPED,
                    line=1,
                )
                return None
            width = len(first)
            i_user, i_role = cols["userSourcedId"], cols["role"]
            i_type = cols.get("roleType", width)
            i_org = cols.get("orgSourcedId", width)
            i_status = cols.get("status", width)
            try:
                for row in reader:
                    if len(row) < width:
                        row.extend([""] * (width - len(row)))
                    row.append("")
                    user = row[i_user].strip()
                    role = row[i_role].strip()
                    status = row[i_status].strip().lower()
                    if not user or not role or status in (_TOBEDELETED, "inactive"):
                        continue
                    primary = row[i_type].strip().lower() == "primary"
                    org = sys.intern(row[i_org].strip())
                    current = best.get(user)
                    if current is None:
                        best[user] = (sys.intern(role), primary, (org,) if org else ())
                        continue
                    others = tuple(o for o in current[2] if o != org)
                    if primary and not current[1]:
                        # The primary role's org leads the user's orgs.
                        best[user] = (sys.intern(role), True, ((org,) if org else ()) + others)
                    else:
                        best[user] = (current[0], current[1], others + ((org,) if org else ()))
            except csv.Error as exc:
                self._issue(
                    name,
                    f"roles.csv could not be read past line {reader.line_num}: {exc}; "
                    "users whose roles come after that point are skipped",
                    IssueAction.NOTED,
                    line=reader.line_num,
                    severity=Severity.ROW,
                )
        return {user: (role, orgs) for user, (role, _, orgs) in best.items()}


_ENTITY_BY_MANIFEST_NAME: Final[dict[str, Entity]] = {
    FILE_NAMES[e].removesuffix(".csv").lower(): e for e in Entity
}


# --- one file --------------------------------------------------------------------------


class _Verdict(StrEnum):
    """What a closer look at a row found."""

    READ = "read"  # nothing wrong
    MEASURE = "measure"  # long enough that its record must be measured
    DROPPED = "dropped"  # damaged: reported and skipped


class _FileReader:
    """One pass over one entity file, with its counters and its summary."""

    def __init__(
        self,
        bundle: OneRosterBundle,
        entity: Entity,
        name: str,
        mode: FileMode,
        part: FilePart | None = None,
    ) -> None:
        self.bundle = bundle
        #: The part of the file this pass reads (None: all of it).
        self.part = part
        #: Issues are not reported (a later part's header: part 0 reports it).
        self.quiet = False
        #: The parser could not read past a point.
        self.stopped = False
        self.decoded = 0
        self.entity = entity
        self.name = name
        self.mode = mode
        self.summary = EntityReadSummary(entity=entity, file=name, mode=mode)
        self.header = _Header(entity, [])
        self.header_line = 1
        self.has_secrets = False
        self.missing_required: set[str] = set()
        #: column key -> [count, first line] of blanks in fields OneRoster requires.
        self.blanks: dict[str, list[int]] = {}
        self.trailing_blank_cells = [0, 0]
        self.thin_deletions = [0, 0]
        #: Ids of rows read so far; in a part, with those earlier parts have.
        self.seen: set[str] = set(part.repeated) if part is not None else set()
        self.delimiter = ","
        #: Why absences from this file cannot be trusted, in plain words.
        self.distrust: list[str] = []
        #: Issues so far: a row that adds none was read cleanly.
        self.noted = 0
        #: The blanks of the row being read (``blank``), by key.
        self.row_blanks: list[str] = []
        #: Per record yielded, its line when the next run may take it as it is, else 0,
        #: and which blanks it had (an index into ``blank_sets``; 0: none).
        self.reusable = array("I")
        self.reusable_blanks = array("H")
        self.blank_sets: dict[tuple[str, ...], int] = {(): 0}
        #: The previous read's blanks of each record it kept, as ``blank_sets`` indexes.
        self._earlier_blanks: tuple[array[int], list[int]] | None = None
        #: What the records depend on besides their own line (None: reuse nothing).
        self.fingerprint: str | None = None
        #: Records taken from the previous run's read.
        self.reused = 0

    # issues

    def issue(
        self,
        line: int | None,
        key: str | None,
        value: str | None,
        message: str,
        action: IssueAction,
        sid: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        self.noted += 1
        if self.quiet:
            return
        column = None if key is None else self.header.written.get(key, key)
        self.bundle._sink(
            RowIssue(
                file=self.name,
                line=line,
                column=column,
                value=value,
                message=message,
                action=action,
                entity=self.entity,
                source_id=sid,
                severity=severity,
            )
        )

    def skip(
        self, status: str, line: int, sid: str, key: str, value: str | None, message: str
    ) -> None:
        """Record a row that cannot become a record."""
        if status == _TOBEDELETED:
            self.summary.deleted_ids.append(sid)
            count = self.thin_deletions
            count[0] += 1
            count[1] = count[1] or line
            return
        self.summary.skipped_ids.append(sid)
        if key not in self.missing_required:
            self.issue(line, key, value, message, IssueAction.ROW_SKIPPED, sid)

    def blank(self, key: str, line: int) -> None:
        """Count a blank in a field OneRoster requires (reported once per file)."""
        self.row_blanks.append(key)
        self._count_blank(key, line)

    def _count_blank(self, key: str, line: int) -> None:
        entry = self.blanks.get(key)
        if entry is None:
            self.blanks[key] = [1, line]
        else:
            entry[0] += 1

    # values

    def col(self, key: str) -> int:
        return self.header.col(key)

    def has(self, key: str) -> bool:
        return key in self.header.index

    def known(self, entity: Entity) -> set[str] | None:
        return self.bundle._known_ids(entity)

    def datetime_value(self, raw: str, key: str, line: int, sid: str) -> str | None:
        cache = self.bundle._datetimes
        value = cache.get(raw)
        if value is None:
            if not raw.strip():
                return None
            value = _parse_datetime(raw)
            if value is None:
                self.issue(
                    line,
                    key,
                    raw,
                    f"{raw!r} is not a date and time this reader understands (ISO 8601, "
                    "YYYY-MM-DD HH:MM:SS or M/D/YYYY); left empty",
                    IssueAction.KEPT_DEFAULT,
                    sid,
                )
                return None
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[raw] = value
        return value

    def date_value(self, raw: str, key: str, line: int, sid: str) -> str | None:
        cache = self.bundle._dates
        value = cache.get(raw)
        if value is None:
            value = parse_date(raw)
            if value is None:
                self.issue(
                    line,
                    key,
                    raw,
                    f"{raw!r} is not a date this reader understands (YYYY-MM-DD or "
                    "M/D/YYYY); left empty",
                    IssueAction.KEPT_DEFAULT,
                    sid,
                )
                return None
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[raw] = value
        return value

    def bool_value(self, raw: str, key: str, line: int, sid: str, default: str) -> bool | None:
        value = _BOOLS.get(raw)
        if value is None:
            value = _BOOLS.get(raw.lower())
            if value is None:
                self.issue(
                    line,
                    key,
                    raw,
                    f"{raw!r} is not true or false; {default}",
                    IssueAction.KEPT_DEFAULT,
                    sid,
                )
        return value

    def drop_dangling(
        self, ids: list[str], known: set[str], key: str, line: int, sid: str, target: Entity
    ) -> list[str]:
        """The ids that exist in ``target``'s bulk file; the others are reported."""
        kept: list[str] = []
        for ref in ids:
            if ref in known:
                kept.append(ref)
            else:
                self.issue(
                    line,
                    key,
                    ref,
                    f"No {ENTITY_SINGULAR[target]} {ref!r} in {FILE_NAMES[target]}; "
                    "the reference was dropped",
                    IssueAction.FIELD_DROPPED,
                    sid,
                )
        return kept

    def in_this_file(self, ref: str, seen: set[str]) -> bool:
        """Whether ``ref`` is a sourcedId of this file, or cannot be checked.

        Rows read so far answer most references at no cost; one pointing further down
        the file brings in the ids of the whole file from an id-only pre-pass.
        """
        if ref in seen:
            return True
        known = self.known(self.entity)
        return known is None or ref in known

    def drop_dangling_in_this_file(
        self, ids: list[str], key: str, line: int, sid: str
    ) -> list[str]:
        """``ids`` without those that are not sourcedIds of this file (each reported)."""
        known = self.known(self.entity)
        if known is None or known.issuperset(ids):
            return ids
        return self.drop_dangling(ids, known, key, line, sid, self.entity)

    def dangling(self, ref: str, key: str, line: int, sid: str, target: Entity) -> None:
        """Report a single reference to a record missing from ``target``'s bulk file."""
        self.drop_dangling([ref], set(), key, line, sid, target)

    # the pass

    def records(self) -> Iterator[Record | Reused]:
        """The file's records (``Reused`` markers for lines the previous run's read took
        as they are, when one was offered); counters and summary issues are complete at
        the end."""
        before = _fallback_count()
        delimiter = self.bundle._delimiters.get(self.name, ",")
        part = self.part
        while True:
            offer = self.bundle._offers.get(self.entity) if part is None else None
            reusing = offer is not None
            with _csv_rows(self.bundle._files, self.name, delimiter, reusing, part) as (
                reader,
                lines,
            ):
                try:
                    # Blank lines before the header are passed over; line numbers count them.
                    first = _first_row(reader)
                except csv.Error as exc:
                    self._unusable(f"The header of {self.name} could not be read: {exc}")
                    return
                if first is None:
                    self._unusable(f"{self.name} has no header (nor any row)", trusted=True)
                    return
                problem = _binary_problem(self.name, first)
                if problem is None and known_cells(first, _HEADER_LOOKUP[self.entity]) < 2:
                    # Not a OneRoster header: look at more of the file than its first row.
                    problem = self.bundle._binary_sample_problem(self.name)
                if problem is not None:
                    self._unusable(problem)
                    return
                found = self.bundle.delimiter(self.name, first, _HEADER_LOOKUP[self.entity])
                if found != delimiter:
                    # Read again from the start with the delimiter the header shows.
                    delimiter = found
                    _fallback_state.count = before
                    continue
                self.delimiter = delimiter
                self.header = _Header(self.entity, first)
                self.header_line = reader.line_num
                if part is not None and part.index:
                    # Part 0 reports the header, and its bytes read as Windows-1252.
                    self.quiet, sink = True, self.bundle._sink
                    self.bundle._sink = _ignore_issue
                    try:
                        self._check_header()
                    finally:
                        self.quiet, self.bundle._sink = False, sink
                    before = _fallback_count()
                else:
                    self._check_header()
                if part is not None:
                    # The part's rows carry the file's line numbers.
                    lines.swallowed = part.first_line - self.header_line - 1
                lines.flagged = False
                self.fingerprint = self._fingerprint(first)
                if offer is not None:
                    memo = self._reuse_memo(offer)
                    if memo:
                        lines.reuse = memo
                        lines.take = self._taker(memo)
                yield from self._rows(reader, lines)
            break
        if part is None:
            self._finish(_fallback_count() - before)
        else:
            self.decoded = _fallback_count() - before

    # reuse

    def _fingerprint(self, header: list[str]) -> str | None:
        """All a clean row's record depends on besides its line and the references it
        makes (checked again for each line taken): the code, the file and its header,
        how the bundle's files are read. None where more comes in (roles.csv)."""
        if self.entity is Entity.USERS and "role" not in self.header.index:
            return None
        bundle = self.bundle
        return orjson.dumps(
            [
                _code_digest(),
                self.name,
                self.entity.value,
                header,
                self.delimiter,
                self.mode.value,
                bundle.source_system,
                bundle.version,
                [bundle.modes[entity].value for entity in ENTITY_ORDER],
                bundle._roles_mode.value,
            ]
        ).decode()

    def reuse_state(self) -> bytes | None:
        """What the next run needs to take this file's clean lines as they were read."""
        if self.fingerprint is None or len(self.reusable) > REUSE_MAX_RECORDS:
            return None
        fields = {"fingerprint": self.fingerprint, "blanks": list(self.blank_sets)}
        return pack(fields, self.reusable, self.reusable_blanks)

    def _reuse_memo(self, offer: ReuseOffer) -> dict[str, int] | None:
        """The previous run's clean lines of this file -> the index of their records,
        when that read's fingerprint is this one's; else None (every row is read)."""
        unpacked = unpack(offer.state, ("I", "H"))
        if unpacked is None or self.fingerprint is None:
            return None
        fields, (numbers, blanks) = unpacked
        if fields.get("fingerprint") != self.fingerprint or len(numbers) != len(blanks):
            return None
        if len(numbers) > REUSE_MAX_RECORDS:
            return None
        sets = self.blank_sets
        remap = [sets.setdefault(tuple(keys), len(sets)) for keys in fields.get("blanks") or [[]]]
        if any(index >= len(remap) for index in set(blanks)):
            return None
        self._earlier_blanks = (blanks, remap)
        taken = [index for index, number in enumerate(numbers) if number]
        before = _fallback_count()
        try:
            with offer.files.open(self.name) as raw:
                # Every line, as this read splits them (in C: no Python step per line).
                text = list(_text(raw))
            if taken and numbers[taken[-1]] > len(text):
                return None
            chosen = list(map(text.__getitem__, [numbers[i] - 1 for i in taken]))
            memo = dict(zip(chosen, taken, strict=True))
        except (OSError, KeyError, ValueError, BundleError):
            # The previous input is gone or unreadable: every row is read.
            return None
        finally:
            # That file's decoding is not this one's to report.
            _fallback_state.count = before
        return memo

    def _own_ids(self, memo: dict[str, int]) -> set[str] | None:
        """This file's ids, as ``known`` gives them (the id pre-pass), read with the
        previous run's clean lines (``memo``): such a line at the start of a row is a
        row of its own (it was read so, from a row's start, with this header and
        delimiter), so its id is its cell, split without the parser; only the other
        lines go through the parser."""
        bundle, entity = self.bundle, self.entity
        if bundle.modes[entity] is not FileMode.BULK or entity in bundle._known:
            return self.known(entity)
        before = _fallback_count()
        try:
            with bundle._files.open(self.name) as raw:
                lines = list(_text(raw))
        finally:
            # Decoding problems are reported by the main pass over the file.
            _fallback_state.count = before
        i_sid, delimiter = self.header.col("sourcedId"), self.delimiter
        feed = _Feed(lines, self.header_line)
        parse = csv.reader(feed, delimiter=delimiter)
        ids: set[str] = set()
        count = len(lines)
        # Where the lines the previous run read cleanly are not (in C, then bisected).
        others = list(
            itertools.compress(range(count), map(operator.not_, map(memo.__contains__, lines)))
        )
        others.append(count)
        strip = str.strip
        try:
            pos = self.header_line
            while pos < count:
                if lines[pos] in memo:
                    # A run of such lines, each a row: their ids split out together.
                    end = others[bisect.bisect_left(others, pos)]
                    run = lines[pos:end]
                    if i_sid == 0:
                        cells = [line.partition(delimiter)[0] for line in run]
                        if any(cell[:1] == '"' for cell in cells):
                            cells = [
                                next(csv.reader([line], delimiter=delimiter))[0] for line in run
                            ]
                    else:
                        cells = [row[i_sid] for row in csv.reader(run, delimiter=delimiter)]
                    ids.update(map(strip, cells))
                    pos = end
                    continue
                feed.pos = pos
                row = next(parse)
                pos = feed.pos
                if len(row) > i_sid and (value := row[i_sid].strip()):
                    ids.add(value)
        except (csv.Error, StopIteration, IndexError):
            # Read as the pre-pass reads it (which answers None where it cannot).
            return self.known(entity)
        ids.discard("")
        bundle._known[entity] = ids
        return ids

    def _taker(self, memo: dict[str, int]) -> Callable[[list[str], int, int], int]:
        """How many of ``lines[start:end]``, lines the previous run read cleanly, can be
        taken as they were (in order, up to the first that cannot): a line still splits
        into the header's cells, its id is not a repeat, and every reference it makes
        still resolves as this run's reading checks it. Lines are checked together (a
        few set operations for hundreds of lines); where that fails, one at a time."""
        header, entity, seen = self.header, self.entity, self.seen
        width, delimiter = header.width, self.delimiter
        i_sid = header.col("sourcedId")
        checks: list[tuple[int, bool, set[str] | None]] = []
        for key, multi, target in _REFERENCE_COLUMNS[entity]:
            if key in header.index:
                known = None if target is entity else self.known(target)
                if target is entity or known is not None:
                    checks.append((header.index[key], multi, known))
        # The common case in one step: single references to other files.
        simple = bool(checks) and all(not multi and known is not None for _, multi, known in checks)
        cells_of = itemgetter(i_sid, *(i for i, _, _ in checks))
        sid_of = itemgetter(i_sid)
        sets = [known for _, _, known in checks]
        users = self.known(Entity.USERS) if entity is Entity.DEMOGRAPHICS else None
        in_this_file = self.in_this_file
        strip = str.strip
        # Quoted lines are split as the parser splits them: one line at a time.
        feed = _OneLine()
        parse = csv.reader(feed, delimiter=delimiter)

        def one(line: str) -> bool:
            if '"' in line:
                feed.line = line
                try:
                    cells = next(parse)
                except (csv.Error, StopIteration):
                    return False
            else:
                cells = line.split(delimiter)
            if len(cells) != width:
                return False
            if simple:
                sid, *refs = cells_of(cells)
                sid = sid.strip()
                if sid in seen or (users is not None and sid not in users):
                    return False
                for ref, known in zip(refs, sets, strict=True):
                    ref = ref.strip()
                    if ref and ref not in known:  # type: ignore[operator]
                        return False
                seen.add(sid)
                return True
            sid = cells[i_sid].strip()
            if sid in seen or (users is not None and sid not in users):
                return False
            for i, multi, known in checks:
                value = cells[i].strip()
                if not value:
                    continue
                for ref in _split(value) if multi else (value,):
                    if not (ref in known if known is not None else in_this_file(ref, seen)):
                        return False
            seen.add(sid)
            return True

        def together(lines: list[str]) -> bool:
            """Whether every line can be taken (then taken): what ``one`` checks, at
            once, conservatively (a reference to a later line of the run is left to
            ``one``)."""
            if '"' in "".join(lines):
                try:
                    rows = list(csv.reader(lines, delimiter=delimiter))
                except csv.Error:
                    return False
                if len(rows) != len(lines):
                    return False
            else:
                rows = [line.split(delimiter) for line in lines]
            if set(map(len, rows)) != {width}:
                return False
            sids = list(map(strip, map(sid_of, rows)))
            if len(set(sids)) != len(sids) or not seen.isdisjoint(sids):
                return False
            if users is not None and not users.issuperset(sids):
                return False
            for i, multi, known in checks:
                cell = itemgetter(i)
                if not multi and known is not None and known.issuperset(map(cell, rows)):
                    continue  # every cell an id as it stands (the common case: no set made)
                values = set(map(strip, map(cell, rows)))
                values.discard("")
                if multi:
                    # ``_split`` of each, at once: the pieces between commas, trimmed.
                    values = set(map(strip, ",".join(values).split(",")))
                    values.discard("")
                if known is not None:
                    if not known.issuperset(values):
                        return False
                elif rest := values.difference(seen):
                    # As ``in_this_file`` answers: this file's ids, when known.
                    own = self._own_ids(memo)
                    if own is not None and not own.issuperset(rest):
                        return False
            seen.update(sids)
            return True

        def take(lines: list[str], start: int, end: int) -> int:
            taken = start
            while taken < end:
                stop = min(end, taken + _TAKE_TOGETHER)
                if together(lines[taken:stop]):
                    taken = stop
                    continue
                for line in lines[taken:stop]:
                    if not one(line):
                        return taken - start
                    taken += 1
            return taken - start

        return take

    def _unusable(self, problem: str, trusted: bool = False) -> None:
        """Treat a file without a usable header as absent: nothing is archived for it."""
        self.issue(
            1,
            None,
            None,
            f"{problem}; the file was treated as absent",
            IssueAction.FILE_SKIPPED,
        )
        self.summary.mode = FileMode.ABSENT
        if not trusted:
            self.summary.untrusted = problem
        self.bundle.modes[self.entity] = FileMode.ABSENT
        self.bundle._known.pop(self.entity, None)

    def _check_header(self) -> None:
        header = self.header
        if self.delimiter != ",":
            self.issue(
                self.header_line,
                None,
                None,
                f"The file separates its cells with {DELIMITER_NAMES[self.delimiter]}, not "
                "commas (as Excel saves CSV where the decimal mark is a comma); it was read "
                "that way",
                IssueAction.NOTED,
            )
        if header.secrets:
            self.has_secrets = True
            self.issue(
                self.header_line,
                None,
                None,
                f"The file has password columns ({', '.join(header.secrets)}); their "
                "contents were discarded unread and are never stored",
                IssueAction.NOTED,
            )
        for idx, name in header.unknown:
            self.issue(
                self.header_line,
                name or None,
                None,
                f"{name or f'Column {idx + 1} (no name)'} is not a OneRoster column of "
                f"{FILE_NAMES[self.entity]}; its values were not kept",
                IssueAction.FIELD_DROPPED,
            )
        for name, first in header.repeated:
            self.issue(
                self.header_line,
                None,
                None,
                f"Column {name} repeats column {first}; only the first was read",
                IssueAction.FIELD_DROPPED,
            )
        required = list(_REQUIRED_COLUMNS[self.entity])
        if (
            self.entity is Entity.USERS
            and "role" not in header.index
            and self.bundle._roles_lookup() is not None
        ):
            required.remove("role")
        for key in required:
            if key not in header.index:
                self.missing_required.add(key)
                self.issue(
                    self.header_line,
                    None,
                    None,
                    f"The file has no {key} column, which every record needs"
                    f"{_misspelled(key, [name for _, name in header.unknown])}; "
                    "every row was skipped",
                    IssueAction.ROW_SKIPPED,
                    severity=Severity.BLOCKING,
                )
        if "sourcedId" not in header.index:
            self.issue(
                self.header_line,
                None,
                None,
                "The file has no sourcedId column; no row can be identified",
                _SKIP_FILE,
            )

    def _rows(self, reader: CsvReader, lines: _Lines) -> Iterator[Record | Reused]:
        header = self.header
        entity = self.entity
        summary = self.summary
        width = header.width
        i_sid = header.col("sourcedId")
        i_status = header.col("status")
        i_dlm = header.col("dateLastModified")
        has_sid = "sourcedId" in header.index
        blank_dlm_counts = self.mode is FileMode.DELTA and "dateLastModified" in header.index
        extensions = header.extensions
        references = [
            header.index[key] for key, _, _ in _REFERENCE_COLUMNS[entity] if key in header.index
        ]
        # A row's reference cells and the blank cell appended to it (so that there are
        # always two: a tuple), to be checked joined: when the whole is short enough and
        # printable, so is each cell (the common case, one check instead of one a cell).
        reference_cells = itemgetter(*references, width)
        convert = _CONVERTERS[entity](self)
        datetimes = self.bundle._datetimes
        seen = self.seen
        skipped = summary.skipped_ids
        other_delimiter = self.delimiter if self.delimiter != "," else None
        rows = records = 0
        keep, keep_blanks = self.reusable.append, self.reusable_blanks.append
        row_blanks, blank_sets = self.row_blanks, self.blank_sets
        hits = lines.hit_records
        prev = reader.line_num
        lines.boundary = True
        try:
            for row in reader:
                if hits:
                    # Rows taken as the previous run read them, before this one.
                    yield self._drain(lines)
                lines.boundary = True
                start = prev + 1
                prev = reader.line_num
                # The parser's line numbers, plus the lines it never saw: the file's.
                line = start + lines.swallowed
                noted = self.noted
                if row_blanks:
                    row_blanks.clear()
                clean = True
                measure = False
                if lines.flagged or prev != start:
                    # A long line, the end of the file, or a row over several lines.
                    lines.flagged = False
                    clean = False
                    verdict = self._inspect(row, line, prev + lines.swallowed, lines)
                    if verdict is _Verdict.DROPPED:
                        rows += 1
                        continue
                    measure = verdict is _Verdict.MEASURE
                if len(row) != width:
                    if not any(cell.strip() for cell in row):
                        continue
                    rows += 1
                    clean = False
                    if not self._fit(row, line, i_sid):
                        continue
                else:
                    rows += 1
                # Absent columns read this always-blank cell.
                row.append("")
                sid = row[i_sid].strip()
                if not sid:
                    if not any(cell.strip() for cell in row):
                        rows -= 1
                    else:
                        summary.unreadable_rows += 1
                        if has_sid:
                            self.issue(
                                line,
                                "sourcedId",
                                None,
                                "The row has no sourcedId",
                                IssueAction.ROW_SKIPPED,
                            )
                    continue
                if (
                    len(sid) > MAX_ID_CHARS
                    or not sid.isprintable()
                    or '"' in sid
                    or "," in sid
                    or (other_delimiter and other_delimiter in sid)
                ) and self._bad_id(sid, line):
                    continue
                if sid in seen:
                    self.issue(
                        line,
                        "sourcedId",
                        sid,
                        f"sourcedId {sid!r} appears earlier in the file; the first row was kept",
                        IssueAction.ROW_SKIPPED,
                        sid,
                    )
                    continue
                seen.add(sid)
                status = _STATUS.get(row[i_status])
                if status is None:
                    status = self._status(row[i_status], line, sid)
                    if status is None:
                        skipped.append(sid)
                        continue
                if references:
                    value = "".join(reference_cells(row))
                    if (
                        len(value) > MAX_ID_CHARS or not value.isprintable()
                    ) and self._odd_reference(row, references, status, line, sid):
                        continue
                rec = convert(row, sid, status, line)
                if rec is None:
                    continue
                raw_dlm = row[i_dlm]
                if raw_dlm:
                    rec["date_last_modified"] = datetimes.get(raw_dlm) or self.datetime_value(
                        raw_dlm, "dateLastModified", line, sid
                    )
                elif blank_dlm_counts:
                    self.blank("dateLastModified", line)
                if extensions:
                    rec["extensions"] = {
                        name: value for i, name in extensions if (value := row[i].strip())
                    }
                if measure and self._too_big(rec, row, status, line, sid):
                    continue
                records += 1
                # A row of one line read without an issue or a blank: the same line
                # next time reads the same (see ``_reuse_memo``).
                if clean and noted == self.noted:
                    keep(line)
                    keep_blanks(
                        blank_sets.setdefault(tuple(row_blanks), len(blank_sets))
                        if row_blanks
                        else 0
                    )
                else:
                    keep(0)
                    keep_blanks(0)
                yield rec
        except csv.Error as exc:
            summary.unreadable_rows += 1
            last = prev + lines.swallowed
            self.issue(
                last + 1,
                None,
                None,
                f"The file could not be read past line {last}: {exc}; the rows after it "
                "were not read",
                _SKIP_FILE,
            )
            self.distrust.append(f"{self.name} could not be read past line {last}")
            self.stopped = True
            if self.part is None:
                self.bundle._known[entity] = None
        else:
            if entity in _REFERENCED and self.mode is FileMode.BULK and self.part is None:
                # The ids read are what later files may refer to.
                self.bundle._known[entity] = seen
        if hits:
            yield self._drain(lines)
        summary.rows = rows + self.reused
        summary.records = records + self.reused

    def _drain(self, lines: _Lines) -> Reused:
        """The lines taken since the last row, as one marker; their blanks counted."""
        numbers, taken = lines.hit_lines, lines.hit_records
        assert self._earlier_blanks is not None
        earlier, remap = self._earlier_blanks
        self.reusable.extend(numbers)
        if len(remap) == 1:
            # The previous read had no blanks: neither have these.
            self.reusable_blanks.extend(itertools.repeat(0, len(taken)))
        else:
            keys = list(self.blank_sets)
            keep_blanks = self.reusable_blanks.append
            for number, index in zip(numbers, taken, strict=True):
                found = remap[earlier[index]]
                keep_blanks(found)
                # The blanks the previous read counted for this line, counted again.
                for key in keys[found]:
                    self._count_blank(key, number)
        self.reused += len(taken)
        marker = Reused(taken[:])
        numbers.clear()
        taken.clear()
        return marker

    # damage

    def _inspect(self, row: list[str], line: int, end: int, lines: _Lines) -> _Verdict:
        """Look closer at a row the fast path cannot vouch for: one that spans lines, ends
        the file, or is long. A row cut off or swallowing other rows is dropped here."""
        width = self.header.width
        if not any(cell.strip() for cell in row):
            return _Verdict.READ
        if lines.exhausted:
            self._ends_in_quote(row, line, end)
            return _Verdict.DROPPED
        if lines.unterminated and len(row) < width:
            self._cut_off(row, line)
            return _Verdict.DROPPED
        if end != line:
            spanning = [k for k, cell in enumerate(row) if has_line_break(cell)]
            damaged = next(
                (k for k in spanning if swallows_rows(row[k], self.delimiter, width)), None
            )
            if damaged is None and spanning and len(row) != width:
                # A cell over several lines in a row of the wrong width: the quote that
                # closed it opened a cell of another row (which then ends early or spills
                # that row's cells into this one).
                damaged = spanning[0]
            if damaged is not None:
                self._swallowed(row, line, end, damaged)
                return _Verdict.DROPPED
        if sum(map(len, row)) > UNMEASURED_ROW_CHARS:
            return _Verdict.MEASURE
        return _Verdict.READ

    def _column_name(self, idx: int) -> str | None:
        names = self.header.names
        return (names[idx] or None) if idx < len(names) else None

    def _damaged_row_ids(self, row: list[str], damaged: int) -> None:
        """Keep the ids of a damaged row, and those in the rows it swallowed, from being
        archived: the row's own id when it is whole (before the damaged cell), else one
        more unreadable row; ids at the start of swallowed lines as unknown."""
        i_sid = self.header.col("sourcedId")
        sid = row[i_sid].strip() if i_sid < damaged else ""
        if sid and self._sid_problem(sid) is None:
            if sid not in self.seen:
                self.seen.add(sid)
                self.summary.skipped_ids.append(sid)
        else:
            self.summary.unreadable_rows += 1
        if i_sid >= self.header.width:
            return
        for text in swallowed_lines(row[damaged]):
            cells = text.split(self.delimiter)
            # Only an id followed by a delimiter is whole, and only a line with half the
            # header's cells or more looks like a row.
            if len(cells) > max(i_sid + 1, self.header.width // 2):
                found = cells[i_sid].strip()
                if found and self._sid_problem(found) is None and found not in self.seen:
                    self.summary.skipped_ids.append(found)

    def _ends_in_quote(self, row: list[str], line: int, end: int) -> None:
        damaged = len(row) - 1
        after = f" and the {end - line} lines after it" if end > line else ""
        self.issue(
            line,
            self._column_name(damaged),
            None,
            f"{self.name} ends inside a quoted cell that opens on line {line}: the file is "
            f"cut off, or that quote is never closed. The row{after} could not be read and "
            f"{'were' if after else 'was'} skipped",
            IssueAction.ROW_SKIPPED,
        )
        self.distrust.append(
            f"{self.name} ends inside a quoted cell opened on line {line} (cut off, or an "
            "unbalanced quote)"
        )
        self._damaged_row_ids(row, damaged)

    def _cut_off(self, row: list[str], line: int) -> None:
        width = self.header.width
        self.issue(
            line,
            self._column_name(len(row) - 1),
            None,
            f"{self.name} ends in the middle of a row (cut off?): the last row has "
            f"{len(row)} of {width} cells and no line end. It was skipped, not read with "
            "blanks",
            IssueAction.ROW_SKIPPED,
        )
        self.distrust.append(f"{self.name} ends in the middle of a row (cut off?)")
        # The last cell may be cut: an id in it is not whole.
        self._damaged_row_ids(row, len(row) - 1)

    def _swallowed(self, row: list[str], line: int, end: int, damaged: int) -> None:
        cell = row[damaged]
        self.issue(
            line,
            self._column_name(damaged),
            None,
            f"A quoted cell on line {line} runs on to line {end}, over {end - line} line "
            f"breaks and {cell.count(self.delimiter)} delimiters: a quote is not closed "
            f"where it should be, and the cell swallowed {end - line} lines that look like "
            "rows. The row was skipped; the rows swallowed could not be read",
            IssueAction.ROW_SKIPPED,
        )
        self.distrust.append(
            f"an unbalanced quote on line {line} of {self.name} swallowed the "
            f"{end - line} lines after it"
        )
        self._damaged_row_ids(row, damaged)

    # values storage cannot hold

    def _sid_problem(self, sid: str) -> str | None:
        """Why the sourcedId cannot be stored or is not whole, or None."""
        problem = id_problem(sid, MAX_ID_CHARS)
        if problem is not None:
            return f"The sourcedId cannot be stored: {problem}"
        # Ids have no quotes or delimiters (references list them with commas): a stray
        # quote has merged cells into this one.
        if '"' in sid:
            return "The sourcedId has a quote in it (a stray quote?)"
        if "," in sid or self.delimiter in sid:
            return "The sourcedId has a delimiter in it (cells merged by a stray quote?)"
        return None

    def _bad_id(self, sid: str, line: int) -> bool:
        """Whether the sourcedId cannot be stored or is damaged (then the row counts as
        unreadable: the real id is unknown)."""
        message = self._sid_problem(sid)
        if message is None:
            return False
        self.summary.unreadable_rows += 1
        self.issue(
            line,
            "sourcedId",
            shown(sid),
            f"{message}. The row was skipped, and with its real id unknown no absence "
            "from this file is trusted",
            IssueAction.ROW_SKIPPED,
        )
        return True

    def _odd_reference(
        self, row: list[str], references: list[int], status: str, line: int, sid: str
    ) -> bool:
        """Whether a reference cell too long or not printable makes the row skipped."""
        for i in references:
            value = row[i]
            if len(value) > MAX_ID_CHARS or not value.isprintable():
                return self._bad_reference(row, status, line, sid)
        return False

    def _bad_reference(self, row: list[str], status: str, line: int, sid: str) -> bool:
        """Whether a reference cannot be stored (then the row is skipped)."""
        for key, multi, _ in _REFERENCE_COLUMNS[self.entity]:
            if key not in self.header.index:
                continue
            cell = row[self.header.index[key]].strip()
            for ref in _split(cell) if multi else [cell]:
                problem = id_problem(ref, MAX_ID_CHARS)
                if problem is not None:
                    self.skip(
                        status,
                        line,
                        sid,
                        key,
                        shown(ref),
                        f"{key} cannot be stored: {problem}; the row was skipped",
                    )
                    return True
        return False

    def _too_big(self, rec: Record, row: list[str], status: str, line: int, sid: str) -> bool:
        """Whether the record is too big to store (then the row is skipped)."""
        size = len(orjson.dumps(rec))
        if size <= MAX_RECORD_BYTES:
            return False
        widest = max(range(self.header.width), key=lambda i: len(row[i]))
        name = self._column_name(widest) or f"column {widest + 1}"
        self.skip(
            status,
            line,
            sid,
            name,
            None,
            f"The record would take {size:,} bytes, more than the {MAX_RECORD_BYTES:,} a "
            f"record may take in storage; {name} alone has {len(row[widest]):,} characters. "
            "The row was skipped",
        )
        return True

    def _fit(self, row: list[str], line: int, i_sid: int) -> bool:
        """Bring a row with the wrong number of cells to the header's width, or skip it."""
        width = self.header.width
        count = len(row)
        sid = row[i_sid].strip() if i_sid < count else ""
        problem = None
        if count > width and not any(cell.strip() for cell in row[width:]):
            # Trailing commas: nothing is out of place.
            del row[width:]
            self.trailing_blank_cells[0] += 1
            self.trailing_blank_cells[1] = self.trailing_blank_cells[1] or line
            return True
        if self.has_secrets:
            problem = (
                f"The row has {count} cells but the header has {width}, so cells may be "
                "in the wrong columns, and the file has a password column"
            )
        elif count > width:
            problem = (
                f"The row has {count} cells but the header has {width}, and the extra "
                "cells are not blank, so cells may be in the wrong columns"
            )
        if problem is not None:
            if sid and self._sid_problem(sid) is None:
                if sid not in self.seen:
                    self.seen.add(sid)
                    self.summary.skipped_ids.append(sid)
            else:
                self.summary.unreadable_rows += 1
            self.issue(line, None, None, problem, IssueAction.ROW_SKIPPED, sid or None)
            return False
        self.issue(
            line,
            None,
            None,
            f"The row has {count} cells but the header has {width}; the missing cells "
            "were read as blank",
            IssueAction.ROW_KEPT,
            sid or None,
        )
        row.extend([""] * (width - count))
        return True

    def _status(self, raw: str, line: int, sid: str) -> str | None:
        value = raw.strip()
        if not value:
            self.blank("status", line)
            return _ACTIVE
        lower = value.lower()
        if lower in _STATUS:
            return lower
        if lower == "inactive":
            self.issue(
                line,
                "status",
                value,
                "inactive is OneRoster 1.0's word for tobedeleted; read as tobedeleted",
                IssueAction.VALUE_FIXED,
                sid,
            )
            return _TOBEDELETED
        self.issue(
            line,
            "status",
            value,
            f"{value!r} is not a OneRoster status (active or tobedeleted), so whether the "
            "record should be deleted is unknown",
            IssueAction.ROW_SKIPPED,
            sid,
        )
        return None

    def part_read(self) -> PartRead:
        """What this pass over a part gave (``OneRosterBundle.finish_parts``)."""
        return PartRead(
            summary=self.summary,
            header=self.header.raw,
            header_line=self.header_line,
            delimiter=self.delimiter,
            blanks=self.blanks,
            trailing_blank_cells=self.trailing_blank_cells,
            thin_deletions=self.thin_deletions,
            decoded=self.decoded,
            distrust=self.distrust,
            stopped=self.stopped,
        )

    def seen_first(self) -> list[str] | None:
        """Ids this part's rows had first in the file, where other files refer to them."""
        if self.entity not in _REFERENCED or self.mode is not FileMode.BULK:
            return None
        repeated = set(self.part.repeated) if self.part is not None else set()
        return [sid for sid in self.seen if sid not in repeated]

    def _finish(self, decoded: int) -> None:
        if self.distrust:
            self.summary.untrusted = "; ".join(self.distrust)
        for key, (count, line) in self.blanks.items():
            present = key in self.header.index
            # A blank status or date is routine (read as OneRoster says): a note.
            severity = Severity.NOTE if key in ("status", "dateLastModified") else None
            if key == "status":
                message = (
                    f"{_rows_have(count)} a blank status; read as active"
                    if present
                    else "The file has no status column; "
                    + ("its row was" if count == 1 else f"all {count} rows")
                    + " read as active"
                )
            elif key == "dateLastModified":
                message = (
                    f"{_rows_have(count)} a blank dateLastModified, which OneRoster requires "
                    "in delta files; left empty"
                )
            elif present:
                message = f"{_rows_have(count)} a blank {key}, which OneRoster requires; left empty"
            else:
                continue
            self.issue(line, key, None, message, IssueAction.KEPT_DEFAULT, severity=severity)
        count, line = self.trailing_blank_cells
        if count:
            self.issue(
                line,
                None,
                None,
                f"{_rows_have(count)} more cells than the header, all extra ones blank; "
                "the extra cells were ignored",
                IssueAction.NOTED,
            )
        count, line = self.thin_deletions
        if count:
            self.issue(
                line,
                None,
                None,
                f"{_rows_have(count, 'tobedeleted row')} too few fields for a record; passed on "
                "as deletions by sourcedId only",
                IssueAction.NOTED,
            )
        if decoded > 0:
            self.issue(
                None,
                None,
                None,
                f"{decoded} bytes of the file are not valid UTF-8 and were read as "
                "Windows-1252; check names for wrong characters",
                IssueAction.NOTED,
            )


def _misspelled(key: str, unknown: list[str]) -> str:
    """`` (its header has X: a misspelling?)`` when an unknown column looks like ``key``."""
    close = difflib.get_close_matches(key.lower(), [u.lower() for u in unknown], 1, 0.75)
    if not close:
        return ""
    written = next(u for u in unknown if u.lower() == close[0])
    return f" (its header has {written!r}: a misspelling of {key}?)"


def _rows_have(count: int, noun: str = "row") -> str:
    return f"1 {noun} has" if count == 1 else f"{count} {noun}s have"


def _refers_to_itself(entity: Entity) -> bool:
    """Whether rows of the entity's file refer to other rows of it."""
    return any(target is entity for _, _, target in _REFERENCE_COLUMNS[entity])


_SKIP_FILE: Final = IssueAction.FILE_SKIPPED
_REFERENCED: Final = frozenset(
    {Entity.ORGS, Entity.ACADEMIC_SESSIONS, Entity.COURSES, Entity.CLASSES, Entity.USERS}
)


# --- per-entity converters -------------------------------------------------------------
#
# Each builds its record as one dict literal, keys in the model's field order, straight
# from the cells: this is the hot path, so no per-row validation and no per-cell calls
# beyond what a field needs.


def _orgs(cx: _FileReader) -> _Converter:
    col, skip = cx.col, cx.skip
    i_name, i_type, i_ident, i_parent = (
        col("name"),
        col("type"),
        col("identifier"),
        col("parentSourcedId"),
    )
    seen = cx.seen
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        name = row[i_name].strip()
        if not name:
            skip(status, line, sid, "name", None, "The org has no name")
            return None
        raw_type = row[i_type].strip()
        org_type = _ORG_TYPES.get(raw_type) or _ORG_TYPES.get(raw_type.lower())
        if org_type is None:
            skip(status, line, sid, "type", raw_type or None, _type_message(raw_type, "org"))
            return None
        parent: str | None = row[i_parent].strip() or None
        if parent and status == _ACTIVE and not cx.in_this_file(parent, seen):
            cx.dangling(parent, "parentSourcedId", line, sid, Entity.ORGS)
            parent = None
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "name": name,
            "type": org_type,
            "identifier": row[i_ident].strip() or None,
            "parent_source_id": parent,
        }

    return convert


def _academic_sessions(cx: _FileReader) -> _Converter:
    col, skip, blank = cx.col, cx.skip, cx.blank
    i_title, i_type, i_start, i_end = col("title"), col("type"), col("startDate"), col("endDate")
    i_parent, i_year = col("parentSourcedId"), col("schoolYear")
    has_year = cx.has("schoolYear")
    seen = cx.seen
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        title = row[i_title].strip()
        if not title:
            skip(status, line, sid, "title", None, "The session has no title")
            return None
        raw_type = row[i_type].strip()
        session_type = _SESSION_TYPES.get(raw_type) or _SESSION_TYPES.get(raw_type.lower())
        if session_type is None:
            skip(status, line, sid, "type", raw_type or None, _type_message(raw_type, "session"))
            return None
        start = row[i_start].strip()
        if not start:
            blank("startDate", line)
        end = row[i_end].strip()
        if not end:
            blank("endDate", line)
        year = row[i_year].strip() or None
        if year is None and has_year:
            blank("schoolYear", line)
        parent: str | None = row[i_parent].strip() or None
        if parent and status == _ACTIVE and not cx.in_this_file(parent, seen):
            cx.dangling(parent, "parentSourcedId", line, sid, Entity.ACADEMIC_SESSIONS)
            parent = None
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "title": title,
            "type": session_type,
            "start_date": cx.date_value(start, "startDate", line, sid) if start else None,
            "end_date": cx.date_value(end, "endDate", line, sid) if end else None,
            "parent_source_id": parent,
            "school_year": year,
        }

    return convert


def _courses(cx: _FileReader) -> _Converter:
    col, skip, blank = cx.col, cx.skip, cx.blank
    i_title, i_year, i_code = col("title"), col("schoolYearSourcedId"), col("courseCode")
    i_grades, i_org = col("grades"), col("orgSourcedId")
    i_subjects, i_codes = col("subjects"), col("subjectCodes")
    has_org = cx.has("orgSourcedId")
    known_orgs = cx.known(Entity.ORGS)
    known_sessions = cx.known(Entity.ACADEMIC_SESSIONS)
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        title = row[i_title].strip()
        if not title:
            skip(status, line, sid, "title", None, "The course has no title")
            return None
        active = status == _ACTIVE
        year: str | None = row[i_year].strip() or None
        if year and known_sessions is not None and active and year not in known_sessions:
            cx.dangling(year, "schoolYearSourcedId", line, sid, Entity.ACADEMIC_SESSIONS)
            year = None
        org: str | None = row[i_org].strip() or None
        if org is None:
            if has_org:
                blank("orgSourcedId", line)
        elif known_orgs is not None and active and org not in known_orgs:
            cx.dangling(org, "orgSourcedId", line, sid, Entity.ORGS)
            org = None
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "title": title,
            "course_code": row[i_code].strip() or None,
            "grades": _split(row[i_grades]),
            "org_source_id": org,
            "school_year_source_id": year,
            "subjects": _split(row[i_subjects]),
            "subject_codes": _split(row[i_codes]),
        }

    return convert


def _classes(cx: _FileReader) -> _Converter:
    col, skip, blank = cx.col, cx.skip, cx.blank
    i_title, i_code, i_type, i_location = (
        col("title"),
        col("classCode"),
        col("classType"),
        col("location"),
    )
    i_grades, i_course, i_school, i_terms = (
        col("grades"),
        col("courseSourcedId"),
        col("schoolSourcedId"),
        col("termSourcedIds"),
    )
    i_subjects, i_codes, i_periods = col("subjects"), col("subjectCodes"), col("periods")
    has_type, has_course, has_terms = (
        cx.has("classType"),
        cx.has("courseSourcedId"),
        cx.has("termSourcedIds"),
    )
    known_orgs = cx.known(Entity.ORGS)
    known_courses = cx.known(Entity.COURSES)
    known_sessions = cx.known(Entity.ACADEMIC_SESSIONS)
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        title = row[i_title].strip()
        if not title:
            skip(status, line, sid, "title", None, "The class has no title")
            return None
        school = row[i_school].strip()
        if not school:
            skip(status, line, sid, "schoolSourcedId", None, "The class has no school")
            return None
        active = status == _ACTIVE
        if known_orgs is not None and active and school not in known_orgs:
            skip(
                status,
                line,
                sid,
                "schoolSourcedId",
                school,
                f"No org {school!r} in orgs.csv, and a class needs its school",
            )
            return None
        raw_type = row[i_type].strip()
        class_type = None
        if raw_type:
            class_type = _CLASS_TYPES.get(raw_type) or _CLASS_TYPES.get(raw_type.lower())
            if class_type is None:
                cx.issue(
                    line,
                    "classType",
                    raw_type,
                    f"{raw_type!r} is not a OneRoster class type (homeroom or scheduled); "
                    "left empty",
                    IssueAction.KEPT_DEFAULT,
                    sid,
                )
        elif has_type:
            blank("classType", line)
        course: str | None = row[i_course].strip() or None
        if course is None:
            if has_course:
                blank("courseSourcedId", line)
        elif known_courses is not None and active and course not in known_courses:
            cx.dangling(course, "courseSourcedId", line, sid, Entity.COURSES)
            course = None
        terms = _split(row[i_terms])
        if not terms:
            if has_terms:
                blank("termSourcedIds", line)
        elif known_sessions is not None and active and not known_sessions.issuperset(terms):
            terms = cx.drop_dangling(
                terms, known_sessions, "termSourcedIds", line, sid, Entity.ACADEMIC_SESSIONS
            )
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "title": title,
            "class_code": row[i_code].strip() or None,
            "class_type": class_type,
            "location": row[i_location].strip() or None,
            "grades": _split(row[i_grades]),
            "course_source_id": course,
            "school_source_id": school,
            "term_source_ids": terms,
            "subjects": _split(row[i_subjects]),
            "subject_codes": _split(row[i_codes]),
            "periods": _split(row[i_periods]),
        }

    return convert


def _users(cx: _FileReader) -> _Converter:
    col, skip, blank = cx.col, cx.skip, cx.blank
    i_given, i_family, i_role = col("givenName"), col("familyName"), col("role")
    i_enabled, i_orgs, i_primary_org = (
        col("enabledUser"),
        col("orgSourcedIds"),
        col("primaryOrgSourcedId"),
    )
    i_username, i_user_ids, i_middle = col("username"), col("userIds"), col("middleName")
    i_pref_given, i_pref_family = col("preferredGivenName"), col("preferredFamilyName")
    i_ident, i_email, i_sms, i_phone = col("identifier"), col("email"), col("sms"), col("phone")
    i_agents, i_grades = col("agentSourcedIds"), col("grades")
    has_enabled, has_orgs, has_username = (
        cx.has("enabledUser"),
        cx.has("orgSourcedIds"),
        cx.has("username"),
    )
    # OneRoster 1.2 moved roles (and with them a user's orgs) out to roles.csv.
    roles = None if cx.has("role") else cx.bundle._roles_lookup()
    known_orgs = cx.known(Entity.ORGS)
    seen = cx.seen
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        given = row[i_given].strip()
        if not given:
            skip(status, line, sid, "givenName", None, "The user has no givenName")
            return None
        family = row[i_family].strip()
        if not family:
            skip(status, line, sid, "familyName", None, "The user has no familyName")
            return None
        word = row[i_role].strip()
        role_orgs: tuple[str, ...] = ()
        if roles is not None:
            entry = roles.get(sid)
            if entry is None:
                skip(status, line, sid, "role", None, "roles.csv gives this user no role")
                return None
            word, role_orgs = entry
        if not word:
            skip(status, line, sid, "role", None, "The user has no role")
            return None
        role = _ROLES.get(word) or _ROLES.get(word.lower())
        if role is None:
            skip(status, line, sid, "role", word, f"{word!r} is not a OneRoster role")
            return None
        active = status == _ACTIVE
        enabled = True
        value = row[i_enabled].strip()
        if value:
            flag = _BOOLS.get(value)
            if flag is None:
                flag = cx.bool_value(value, "enabledUser", line, sid, "read as enabled")
            if flag is not None:
                enabled = flag
        elif has_enabled:
            blank("enabledUser", line)
        if has_orgs:
            value = row[i_orgs].strip()
            orgs = ([value] if "," not in value else _split(value)) if value else []
        else:
            orgs = list(role_orgs)
        value = row[i_primary_org].strip()
        if value and value not in orgs:
            orgs.insert(0, value)
        if not orgs:
            if has_orgs:
                blank("orgSourcedIds", line)
        elif known_orgs is not None and active and not known_orgs.issuperset(orgs):
            orgs = cx.drop_dangling(orgs, known_orgs, "orgSourcedIds", line, sid, Entity.ORGS)
        username = row[i_username].strip() or None
        if username is None and has_username:
            blank("username", line)
        value = row[i_user_ids].strip()
        user_ids = _parse_user_ids(value) if value else []
        if user_ids is None:
            cx.issue(
                line,
                "userIds",
                value,
                "userIds must look like {type:id},{type:id}; the value was dropped",
                IssueAction.FIELD_DROPPED,
                sid,
            )
            user_ids = []
        value = row[i_agents].strip()
        # Single values are the common case: skip the split for them.
        agents = ([value] if "," not in value else _split(value)) if value else []
        if agents and active and not seen.issuperset(agents):
            agents = cx.drop_dangling_in_this_file(agents, "agentSourcedIds", line, sid)
        value = row[i_grades].strip()
        grades = ([value] if "," not in value else _split(value)) if value else []
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "enabled": enabled,
            "role": role[0],
            "source_role": role[1],
            "org_source_ids": orgs,
            "username": username,
            "user_ids": user_ids,
            "given_name": given,
            "family_name": family,
            "middle_name": row[i_middle].strip() or None,
            "preferred_given_name": row[i_pref_given].strip() or None,
            "preferred_family_name": row[i_pref_family].strip() or None,
            "identifier": row[i_ident].strip() or None,
            "email": row[i_email].strip() or None,
            "sms": row[i_sms].strip() or None,
            "phone": row[i_phone].strip() or None,
            "agent_source_ids": agents,
            "grades": grades,
        }

    return convert


def _enrollments(cx: _FileReader) -> _Converter:
    col, skip, blank = cx.col, cx.skip, cx.blank
    i_class, i_school, i_user = col("classSourcedId"), col("schoolSourcedId"), col("userSourcedId")
    i_role, i_primary, i_begin, i_end = (
        col("role"),
        col("primary"),
        col("beginDate"),
        col("endDate"),
    )
    has_school = cx.has("schoolSourcedId")
    known_classes = cx.known(Entity.CLASSES)
    known_users = cx.known(Entity.USERS)
    known_orgs = cx.known(Entity.ORGS)
    system = cx.bundle.source_system
    dates = cx.bundle._dates

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        klass = row[i_class].strip()
        if not klass:
            skip(status, line, sid, "classSourcedId", None, "The enrollment has no class")
            return None
        user = row[i_user].strip()
        if not user:
            skip(status, line, sid, "userSourcedId", None, "The enrollment has no user")
            return None
        word = row[i_role].strip()
        if not word:
            skip(status, line, sid, "role", None, "The enrollment has no role")
            return None
        role = _ROLES.get(word) or _ROLES.get(word.lower())
        if role is None:
            skip(status, line, sid, "role", word, f"{word!r} is not a OneRoster role")
            return None
        active = status == _ACTIVE
        if active and known_classes is not None and klass not in known_classes:
            skip(status, line, sid, "classSourcedId", klass, f"No class {klass!r} in classes.csv")
            return None
        if active and known_users is not None and user not in known_users:
            skip(status, line, sid, "userSourcedId", user, f"No user {user!r} in users.csv")
            return None
        school: str | None = row[i_school].strip() or None
        if school is None:
            if has_school:
                blank("schoolSourcedId", line)
        elif active and known_orgs is not None and school not in known_orgs:
            cx.dangling(school, "schoolSourcedId", line, sid, Entity.ORGS)
            school = None
        # Cached values first, as the row loop does: a call only for what is new.
        value = row[i_primary].strip()
        primary = None
        if value:
            primary = _BOOLS.get(value)
            if primary is None:
                primary = cx.bool_value(value, "primary", line, sid, "left empty")
        value = row[i_begin].strip()
        begin = (
            (dates.get(value) or cx.date_value(value, "beginDate", line, sid)) if value else None
        )
        value = row[i_end].strip()
        end = (dates.get(value) or cx.date_value(value, "endDate", line, sid)) if value else None
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "class_source_id": klass,
            "school_source_id": school,
            "user_source_id": user,
            "role": role[0],
            "primary": primary,
            "begin_date": begin,
            "end_date": end,
        }

    return convert


def _demographics(cx: _FileReader) -> _Converter:
    col, skip = cx.col, cx.skip
    i_birth, i_sex = col("birthDate"), col("sex")
    i_country, i_state = col("countryOfBirthCode"), col("stateOfBirthAbbreviation")
    i_city, i_residence = col("cityOfBirth"), col("publicSchoolResidenceStatus")
    race_keys = (
        "americanIndianOrAlaskaNative",
        "asian",
        "blackOrAfricanAmerican",
        "nativeHawaiianOrOtherPacificIslander",
        "white",
        "demographicRaceTwoOrMoreRaces",
        "hispanicOrLatinoEthnicity",
    )
    races = [(col(key), key) for key in race_keys]
    known_users = cx.known(Entity.USERS)
    system = cx.bundle.source_system

    def convert(row: list[str], sid: str, status: str, line: int) -> Record | None:
        if known_users is not None and status == _ACTIVE and sid not in known_users:
            skip(
                status,
                line,
                sid,
                "sourcedId",
                sid,
                f"No user {sid!r} in users.csv for these demographics",
            )
            return None
        flags: list[bool | None] = []
        for i, key in races:
            value = row[i].strip()
            flag = _BOOLS.get(value) if value else None
            if flag is None and value:
                flag = cx.bool_value(value, key, line, sid, "left empty")
            flags.append(flag)
        birth = row[i_birth].strip()
        return {
            "source_system": system,
            "source_id": sid,
            "status": status,
            "date_last_modified": None,
            "extensions": {},
            "birth_date": cx.date_value(birth, "birthDate", line, sid) if birth else None,
            "sex": row[i_sex].strip() or None,
            "american_indian_or_alaska_native": flags[0],
            "asian": flags[1],
            "black_or_african_american": flags[2],
            "native_hawaiian_or_other_pacific_islander": flags[3],
            "white": flags[4],
            "two_or_more_races": flags[5],
            "hispanic_or_latino": flags[6],
            "country_of_birth_code": row[i_country].strip() or None,
            "state_of_birth_abbreviation": row[i_state].strip() or None,
            "city_of_birth": row[i_city].strip() or None,
            "public_school_residence_status": row[i_residence].strip() or None,
        }

    return convert


def _type_message(raw: str, what: str) -> str:
    if not raw:
        return f"The {what} has no type"
    return f"{raw!r} is not a OneRoster {what} type"


_CONVERTERS: Final[dict[Entity, Callable[[_FileReader], _Converter]]] = {
    Entity.ORGS: _orgs,
    Entity.ACADEMIC_SESSIONS: _academic_sessions,
    Entity.COURSES: _courses,
    Entity.CLASSES: _classes,
    Entity.USERS: _users,
    Entity.ENROLLMENTS: _enrollments,
    Entity.DEMOGRAPHICS: _demographics,
}
