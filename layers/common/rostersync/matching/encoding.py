"""People as integer columns: the form blocking and scoring work on.

Strings are interned in vocabularies shared by both sides of one match, so equal names
get equal ids and every later step is integer work in numpy. All the per-string work
(folding, Soundex, prefixes) is cached per distinct raw string: a district repeats its
given and family names thousands of times, and this is what keeps encoding 100k records
to a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from rostersync.matching.normalize import (
    NameScript,
    email_local_part,
    fold_name,
    grade_level,
    name_reading,
    name_script,
    soundex,
)
from rostersync.matching.records import PersonKind, PersonRecord

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Marks an absent value in an integer column.
MISSING = -1
#: Marks an absent grade (grades can be negative: pre-kindergarten).
NO_GRADE = -100

KINDS: tuple[PersonKind, ...] = tuple(PersonKind)
_KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}


class Vocabulary:
    """Interns strings as dense integer ids (``MISSING`` for the empty string)."""

    __slots__ = ("ids", "strings")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.strings: list[str] = []

    def id(self, text: str) -> int:
        """The id of ``text``, assigning the next one if it is new."""
        if not text:
            return MISSING
        found = self.ids.get(text)
        if found is None:
            found = len(self.strings)
            self.ids[text] = found
            self.strings.append(text)
        return found


def sorted_unique(values: IntArray) -> IntArray:
    """The distinct values, ascending (a sort and a mask: faster than ``np.unique`` on
    the large int64 arrays blocking produces)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


@dataclass(slots=True)
class Vocabularies:
    """The vocabularies of one match, shared by its two sides.

    Besides the string vocabularies it keeps one row per distinct raw given name, raw
    family name and birth date (the ``*_rows`` tables, indexed by the ``*_index`` dicts), so
    a record is encoded as a few row numbers and the columns are gathered with numpy."""

    names: Vocabulary = field(default_factory=Vocabulary)
    sounds: Vocabulary = field(default_factory=Vocabulary)
    prefixes: Vocabulary = field(default_factory=Vocabulary)
    schools: Vocabulary = field(default_factory=Vocabulary)
    emails: Vocabulary = field(default_factory=Vocabulary)
    #: Names' readings (``name_reading``): where kana, romaji and the school's reading of
    #: a kanji name meet.
    readings: Vocabulary = field(default_factory=Vocabulary)
    #: Rows by raw name, or by (raw name, the school's reading) for a name with one.
    given_index: dict[str | tuple[str, str], int] = field(default_factory=dict)
    given_rows: list[tuple[int, ...]] = field(default_factory=list)
    family_index: dict[str | tuple[str, str], int] = field(default_factory=dict)
    family_rows: list[tuple[int, ...]] = field(default_factory=list)
    birth_index: dict[date, int] = field(default_factory=dict)
    birth_rows: list[tuple[int, ...]] = field(default_factory=list)
    full_index: dict[tuple[str, str], int] = field(default_factory=dict)
    school_index: dict[str, int] = field(default_factory=dict)
    grade_index: dict[str, int] = field(default_factory=dict)

    def given(self, raw: str, reading: str | None = None) -> int:
        """The row of a raw given name (and the school's ``reading`` of it): (name, first
        token, Soundex of the first token, its 3-letter prefix, reading) ids, its script
        (``reading_of``) and the code of its first letter."""
        folded = fold_name(raw)
        first = folded.split(" ", 1)[0]
        self.given_rows.append(
            (
                self.names.id(folded),
                self.names.id(first),
                self.sounds.id(soundex(first)),
                self.prefixes.id(first[:3]),
                *self.reading_of(raw, reading),
                ord(first[0]) if first else MISSING,
            )
        )
        row = self.given_index[raw if reading is None else (raw, reading)] = (
            len(self.given_rows) - 1
        )
        return row

    def reading_of(self, raw: str, reading: str | None) -> tuple[int, int]:
        """The reading id (``MISSING`` if none) and the ``NameScript`` of a raw name as
        compared by reading: the school's ``reading`` where it has one (read exactly,
        compared as kana whatever the name's own script), else the name's own."""
        if reading is not None:
            read = name_reading(reading)
            if read:
                return self.readings.id(read), int(NameScript.KANA)
        return self.readings.id(name_reading(raw)), int(name_script(raw))

    def family(self, raw: str, reading: str | None = None) -> int:
        """The row of a raw family name (and the school's ``reading`` of it): (name, first
        token, last token, Soundex of the first, of the last, of the joined tokens, first
        token's 3-letter prefix, reading) ids, its script (``reading_of``) and the code
        of its first letter. Last and joined are ``MISSING`` for a single-token name."""
        folded = fold_name(raw)
        tokens = folded.split()
        first = tokens[0] if tokens else ""
        # A double family name is blocked on its last token too; a name split by a stray
        # space ("sal t") on the joined tokens.
        last = tokens[-1] if len(tokens) > 1 else ""
        joined = folded.replace(" ", "") if last else ""
        self.family_rows.append(
            (
                self.names.id(folded),
                self.names.id(first),
                self.names.id(last),
                self.sounds.id(soundex(first)),
                self.sounds.id(soundex(last)) if last else MISSING,
                self.sounds.id(soundex(joined)) if joined else MISSING,
                self.prefixes.id(first[:3]),
                *self.reading_of(raw, reading),
                ord(first[0]) if first else MISSING,
            )
        )
        row = self.family_index[raw if reading is None else (raw, reading)] = (
            len(self.family_rows) - 1
        )
        return row

    def birth(self, value: date) -> int:
        """The row of a birth date: (ordinal, ordinal with day and month swapped or
        ``MISSING``, year, then the 8 digits of YYYYMMDD)."""
        swapped = MISSING
        if value.day <= 12 and value.day != value.month:
            swapped = date(value.year, value.day, value.month).toordinal()
        text = f"{value.year:04d}{value.month:02d}{value.day:02d}"
        self.birth_rows.append((value.toordinal(), swapped, value.year, *(int(c) for c in text)))
        row = self.birth_index[value] = len(self.birth_rows) - 1
        return row

    def given_full(self, raw_given: str, raw_middle: str) -> int:
        """The name id of the given and middle names together."""
        found = self.names.id(f"{fold_name(raw_given)} {fold_name(raw_middle)}".strip())
        self.full_index[(raw_given, raw_middle)] = found
        return found

    def school(self, raw: str) -> int:
        found = self.school_index[raw] = self.schools.id(fold_name(raw))
        return found

    def grade(self, raw: str) -> int:
        level = grade_level(raw)
        found = self.grade_index[raw] = NO_GRADE if level is None else level
        return found


@dataclass(frozen=True, slots=True)
class PeopleColumns:
    """One side of a match as integer columns (``MISSING`` marks an absent value)."""

    keys: list[str]
    kind: IntArray
    given: IntArray  # name id of the whole folded given name
    given_first: IntArray  # name id of its first token
    given_sound: IntArray
    given_prefix: IntArray
    given_reading: IntArray  # reading id of the given name (the school's, if any)
    given_script: IntArray  # NameScript of the given name (KANA with the school's reading)
    given_initial: IntArray  # code of its first letter
    given_full: IntArray  # name id of given + middle name
    preferred: IntArray
    family: IntArray
    family_first: IntArray
    family_last: IntArray
    family_sound: IntArray
    family_sound_last: IntArray
    family_sound_joined: IntArray
    family_prefix: IntArray
    family_reading: IntArray
    family_script: IntArray
    family_initial: IntArray
    birth: IntArray  # ordinal
    birth_swapped: IntArray  # ordinal with day and month swapped, MISSING if not a date
    birth_year: IntArray
    birth_digits: npt.NDArray[np.int8]  # (n, 8): the digits of YYYYMMDD
    grade: IntArray
    school: IntArray
    email: IntArray

    def __len__(self) -> int:
        return len(self.keys)


def encode_people(records: Sequence[PersonRecord], vocab: Vocabularies) -> PeopleColumns:
    """Encode one side's records into columns, in the records' order."""
    rows: list[tuple[int, ...]] = []
    append = rows.append
    given_index, family_index, birth_index = (
        vocab.given_index,
        vocab.family_index,
        vocab.birth_index,
    )
    full_index, school_index, grade_index = vocab.full_index, vocab.school_index, vocab.grade_index
    email_ids, email_id, name_id = vocab.emails.ids, vocab.emails.id, vocab.names.id
    no_birth = MISSING
    for record in records:
        raw_given, raw_family, born = record.given_name, record.family_name, record.birth_date
        given_reading, family_reading = record.given_name_reading, record.family_name_reading
        given = given_index.get(raw_given if given_reading is None else (raw_given, given_reading))
        if given is None:
            given = vocab.given(raw_given, given_reading)
        family = family_index.get(
            raw_family if family_reading is None else (raw_family, family_reading)
        )
        if family is None:
            family = vocab.family(raw_family, family_reading)
        birth = no_birth
        if born is not None:
            birth = birth_index.get(born, MISSING)
            if birth == MISSING:
                birth = vocab.birth(born)
        full = MISSING
        middle = record.middle_name
        if middle:
            full = full_index.get((raw_given, middle), MISSING)
            if full == MISSING:
                full = vocab.given_full(raw_given, middle)
        preferred = MISSING
        if record.preferred_given_name:
            preferred = name_id(fold_name(record.preferred_given_name))
        grade = NO_GRADE
        if record.grade:
            grade = grade_index.get(record.grade, NO_GRADE)
            if grade == NO_GRADE:
                grade = vocab.grade(record.grade)
        school = MISSING
        if record.school:
            school = school_index.get(record.school, MISSING)
            if school == MISSING:
                school = vocab.school(record.school)
        email = MISSING
        if record.email:
            # Emails are nearly all distinct: a cache would only add misses.
            local = email_local_part(record.email)
            email = email_ids.get(local, MISSING) if local else MISSING
            if email == MISSING and local:
                email = email_id(local)
        append(
            (_KIND_INDEX[record.kind], given, family, birth, full, preferred, grade, school, email)
        )
    n = len(records)
    columns = np.array(rows, dtype=np.int64).reshape(n, 9)
    given_rows = np.array(vocab.given_rows, dtype=np.int64).reshape(len(vocab.given_rows), 7)
    family_rows = np.array(vocab.family_rows, dtype=np.int64).reshape(len(vocab.family_rows), 10)
    # A sentinel last row of MISSING values serves records without a birth date.
    birth_rows = np.array([*vocab.birth_rows, (MISSING,) * 11], dtype=np.int64)
    g = given_rows[columns[:, 1]] if len(given_rows) else np.zeros((0, 7), dtype=np.int64)
    f = family_rows[columns[:, 2]] if len(family_rows) else np.zeros((0, 10), dtype=np.int64)
    b = birth_rows[columns[:, 3]]
    given_name = g[:, 0]
    # The middle name counts only beside a given name: alone it would stand in for one.
    given_full = np.where(
        given_name >= 0, np.where(columns[:, 4] >= 0, columns[:, 4], given_name), MISSING
    )
    preferred_name = np.where(columns[:, 5] == given_name, MISSING, columns[:, 5])
    return PeopleColumns(
        keys=[record.key for record in records],
        kind=columns[:, 0],
        given=given_name,
        given_first=g[:, 1],
        given_sound=g[:, 2],
        given_prefix=g[:, 3],
        given_reading=g[:, 4],
        given_script=g[:, 5],
        given_initial=g[:, 6],
        given_full=given_full,
        preferred=preferred_name,
        family=f[:, 0],
        family_first=f[:, 1],
        family_last=f[:, 2],
        family_sound=f[:, 3],
        family_sound_last=f[:, 4],
        family_sound_joined=f[:, 5],
        family_prefix=f[:, 6],
        family_reading=f[:, 7],
        family_script=f[:, 8],
        family_initial=f[:, 9],
        birth=b[:, 0],
        birth_swapped=b[:, 1],
        birth_year=b[:, 2],
        birth_digits=b[:, 3:].astype(np.int8),
        grade=columns[:, 6],
        school=columns[:, 7],
        email=columns[:, 8],
    )
