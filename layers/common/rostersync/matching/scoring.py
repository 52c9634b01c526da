"""Field comparisons of candidate pairs of people, vectorized: the evidence the match
model (``rostersync.matching.model``) weighs.

Each field of a pair is compared into an *agreement level* (0 always means "missing on
either side"), and, for explanations, a similarity in [0, 1]:

* given and family name (``NAME_*``): exact; a nickname ("Bob" for "Robert");
  equivalent (a preferred name, a double or hyphenated name sharing its tokens with the
  other side, a middle name written into the given name); close (similarity ≥ 0.92: a
  typo in a long name); similar (≥ 0.80 and at most two keyboard slips apart, or one
  slip apart whatever the similarity); an initial agreeing with the other side's name;
  different. Names are compared accent-
  and case-folded and transliterated to Latin letters (``normalize.fold_name``).
  Japanese names also by reading (``normalize.name_reading``), where either side is
  written in kana or carries the school's kana reading of its kanji
  (``PersonRecord.given_name_reading``): kana, romaji and the school's reading of one
  sound ("さとう", "サトー", "Satō", "Satoh", 佐藤 read さとう) agree exactly, the same
  name transliterated. A name in kanji without a reading is compared only as written:
  no kanji is ever read by a guess.
  Similarity is the mean of Jaro-Winkler (forgiving of typos late in a name) and Indel
  (strict on short names, where one letter makes another name); for multi-token names
  also the token-set ratio and the similarity with spaces removed ("Mc Donald"). Given
  and family name swapped as a whole are read swapped when both swapped names are
  compatible and the straight reading is worse.
* birth date (``DATE_*``): exact; day and month swapped; one digit of YYYYMMDD or one day
  off; two adjacent digits transposed; same month and year; same year; different.
* email local part: equal or different. Grade: same level, one apart (the app may still
  show last year's), further. School: same or different.

A pair is a *sibling pattern* when the family names agree, the birth dates agree (or are
one typo apart) and the given names are incompatible (not equal, a nickname, an initial,
a typo or a transliteration; a given name in kanji without a reading against one in
kana or Latin letters is undecided, not incompatible: only the school knows how its
kanji are read): twins look exactly like that. The names are checked as
written and as read swapped, so a swapped reading never hides the pattern. With grade and
school agreeing too (at least one of them on both sides, neither differing; a grade one
apart agrees, since the app may still show last year's) the pair is
*twins* (also when a birth date is missing: a missing field must not look better than an
agreeing one): the model counts that as evidence against a match, so a new twin is created at
once instead of waiting for an admin. Name similarities are computed
once per distinct pair of names with ``rapidfuzz.process.cpdist``; everything else is
numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, Indel, JaroWinkler

from rostersync.matching.encoding import (
    MISSING,
    NO_GRADE,
    BoolArray,
    FloatArray,
    IntArray,
    PeopleColumns,
    Vocabulary,
)
from rostersync.matching.nicknames import MAX_GROUPS_PER_NAME, nickname_groups
from rostersync.matching.normalize import NameScript

FIELDS: Final[tuple[str, ...]] = (
    "given_name",
    "family_name",
    "birth_date",
    "email",
    "grade",
    "school",
)
GIVEN, FAMILY, BIRTH, EMAIL, GRADE, SCHOOL = range(len(FIELDS))
#: The identity fields: what a rival missing them could still turn out to agree on.
IDENTITY_FIELDS: Final[tuple[int, ...]] = (GIVEN, FAMILY, BIRTH)

# Agreement levels of a name, best first (0: missing).
NAME_MISSING, NAME_EXACT, NAME_NICKNAME, NAME_EQUIVALENT, NAME_CLOSE = range(5)
NAME_SIMILAR, NAME_INITIAL, NAME_DIFFERENT = 5, 6, 7
NAME_LEVELS: Final[int] = 8
# Agreement levels of a birth date, best first (0: missing).
DATE_MISSING, DATE_EXACT, DATE_SWAPPED, DATE_ONE_OFF, DATE_TRANSPOSED = range(5)
DATE_MONTH_YEAR, DATE_YEAR, DATE_DIFFERENT = 5, 6, 7
DATE_LEVELS: Final[int] = 8
# Email, grade and school levels (0: missing).
EMAIL_SAME, EMAIL_DIFFERENT = 1, 2
GRADE_SAME, GRADE_ONE_APART, GRADE_DIFFERENT = 1, 2, 3
SCHOOL_SAME, SCHOOL_DIFFERENT = 1, 2
#: The number of levels of each field, in ``FIELDS`` order.
LEVELS: Final[tuple[int, ...]] = (NAME_LEVELS, NAME_LEVELS, DATE_LEVELS, 3, 4, 3)

#: Name similarity at or above which a name is "close" (a typo) or "similar".
CLOSE: Final[float] = 0.92
SIMILAR: Final[float] = 0.80
TOKEN_SET_FACTOR: Final[float] = 0.9
NICKNAME_SIMILARITY: Final[float] = 0.95
INITIAL_SIMILARITY: Final[float] = 0.5
#: Names that are compatible: the same child may be written so.
COMPATIBLE_NAME: Final[tuple[int, ...]] = (
    NAME_EXACT,
    NAME_NICKNAME,
    NAME_EQUIVALENT,
    NAME_CLOSE,
    NAME_SIMILAR,
)
_DATE_SIMILARITY = np.array([0.0, 1.0, 0.85, 0.8, 0.75, 0.4, 0.2, 0.0], dtype=np.float64)

Int8Array = npt.NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class NameTables:
    """Per name id: its string, nickname groups, whether it is an initial, first letter."""

    strings: list[str]
    nicknames: IntArray  # (names, MAX_GROUPS_PER_NAME), MISSING-padded
    initial: BoolArray
    multi_token: BoolArray
    first_char: IntArray


def name_tables(names: Vocabulary) -> NameTables:
    """The tables of every name in the vocabulary."""
    strings = names.strings
    nicknames = np.full((len(strings), MAX_GROUPS_PER_NAME), MISSING, dtype=np.int64)
    for i, name in enumerate(strings):
        for j, group in enumerate(sorted(nickname_groups(name))):
            nicknames[i, j] = group
    initial = np.fromiter(
        (len(name.split(" ", 1)[0]) == 1 for name in strings), dtype=bool, count=len(strings)
    )
    multi = np.fromiter((" " in name for name in strings), dtype=bool, count=len(strings))
    first = np.fromiter((ord(name[0]) for name in strings), dtype=np.int64, count=len(strings))
    return NameTables(strings, nicknames, initial, multi, first)


def workers_for(size: int) -> int:
    """Threads for a ``cpdist`` call: all cores for large batches; one for small ones,
    where starting threads costs more than it saves."""
    return -1 if size >= 20_000 else 1


def string_similarity(a: list[str], b: list[str]) -> FloatArray:
    """Element-wise similarity of folded names in [0, 1]."""
    workers = workers_for(len(a))
    jaro = process.cpdist(a, b, scorer=JaroWinkler.normalized_similarity, workers=workers)
    indel = process.cpdist(a, b, scorer=Indel.normalized_similarity, workers=workers)
    return np.asarray((jaro + indel) / 2, dtype=np.float64)


def name_similarity(
    tables: NameTables, ids_a: IntArray, ids_b: IntArray
) -> tuple[FloatArray, Int8Array]:
    """Similarity and agreement level (``NAME_*``) of name pairs by id, computed once per
    distinct pair."""
    similarity = np.zeros(len(ids_a), dtype=np.float64)
    level = np.full(len(ids_a), NAME_MISSING, dtype=np.int8)
    present = (ids_a >= 0) & (ids_b >= 0)
    if not present.any():
        return similarity, level
    size = np.int64(len(tables.strings))
    distinct, inverse = np.unique(ids_a[present] * size + ids_b[present], return_inverse=True)
    a, b = distinct // size, distinct % size
    strings = tables.strings
    strings_a = [strings[i] for i in a.tolist()]
    strings_b = [strings[i] for i in b.tolist()]
    sim = string_similarity(strings_a, strings_b)
    kind = np.where(
        sim >= CLOSE, NAME_CLOSE, np.where(sim >= SIMILAR, NAME_SIMILAR, NAME_DIFFERENT)
    ).astype(np.int8)

    multi = np.flatnonzero(tables.multi_token[a] | tables.multi_token[b])
    # A name split by a stray space ("e mma", "p aine") whose letters agree with the
    # other side: a typo, not an initial.
    split = np.zeros(len(distinct), dtype=bool)
    if len(multi):
        multi_a = [strings_a[i] for i in multi.tolist()]
        multi_b = [strings_b[i] for i in multi.tolist()]
        token_set = process.cpdist(
            multi_a, multi_b, scorer=fuzz.token_set_ratio, workers=workers_for(len(multi_a))
        )
        joined = string_similarity(
            [x.replace(" ", "") for x in multi_a], [y.replace(" ", "") for y in multi_b]
        )
        best = np.maximum.reduce([sim[multi], token_set / 100 * TOKEN_SET_FACTOR, joined])
        sim[multi] = best
        # One side's tokens all among the other's ("Garcia" in "Garcia Lopez"), or the
        # same letters split differently ("Mc Donald"): the same name written two ways.
        part = (token_set >= 100) | (joined >= 1.0)
        split[multi] = joined >= SIMILAR
        kind[multi] = np.where(
            part,
            NAME_EQUIVALENT,
            np.where(
                best >= CLOSE, NAME_CLOSE, np.where(best >= SIMILAR, NAME_SIMILAR, kind[multi])
            ),
        )

    # Typos are a letter or two: one keyboard slip (a letter substituted, dropped, added,
    # or two swapped) is a typo whatever the length of the name ("Bne" for "Ben"), and a
    # name more than two slips away is another name however alike it looks ("Charles",
    # "Charlotte").
    edits = process.cpdist(strings_a, strings_b, scorer=OSA.distance, workers=workers_for(len(a)))
    kind[(kind == NAME_DIFFERENT) & (edits <= 1)] = NAME_SIMILAR
    kind[(kind == NAME_SIMILAR) & (edits > 2)] = NAME_DIFFERENT

    groups_a, groups_b = tables.nicknames[a], tables.nicknames[b]
    shared_group = np.zeros(len(distinct), dtype=bool)
    for i in range(groups_a.shape[1]):
        for j in range(groups_b.shape[1]):
            shared_group |= (groups_a[:, i] >= 0) & (groups_a[:, i] == groups_b[:, j])
    sim[shared_group] = np.maximum(sim[shared_group], NICKNAME_SIMILARITY)
    kind[shared_group] = NAME_NICKNAME

    # An initial is weak evidence whatever a string measure makes of it.
    initial = (tables.initial[a] | tables.initial[b]) & ~split
    agreeing = tables.first_char[a] == tables.first_char[b]
    sim[initial] = np.where(agreeing[initial], INITIAL_SIMILARITY, 0.0)
    kind[initial] = np.where(agreeing[initial], NAME_INITIAL, NAME_DIFFERENT)

    exact = (a == b) & ~initial
    sim[exact] = 1.0
    kind[exact] = NAME_EXACT

    similarity[present] = sim[inverse]
    level[present] = kind[inverse]
    return similarity, level


def birth_date_level(
    source: PeopleColumns, target: PeopleColumns, si: IntArray, ti: IntArray
) -> Int8Array:
    """The agreement level (``DATE_*``) of the birth dates of pairs."""
    s_birth, t_birth = source.birth[si], target.birth[ti]
    present = (s_birth >= 0) & (t_birth >= 0)
    s_digits, t_digits = source.birth_digits[si], target.birth_digits[ti]
    differing = s_digits != t_digits
    different_digits = differing.sum(axis=1)
    transposed = np.zeros(len(si), dtype=bool)
    for i in range(7):
        transposed |= (
            differing[:, i]
            & (s_digits[:, i] == t_digits[:, i + 1])
            & (s_digits[:, i + 1] == t_digits[:, i])
        )
    exact = s_birth == t_birth
    swapped = source.birth_swapped[si] == t_birth
    one_off = (np.abs(s_birth - t_birth) == 1) | (different_digits == 1)
    transposed &= different_digits == 2
    same_year = source.birth_year[si] == target.birth_year[ti]
    same_month = same_year & (differing[:, 4:6].sum(axis=1) == 0)
    level = np.select(
        [~present, exact, swapped, one_off, transposed, same_month, same_year],
        [
            DATE_MISSING,
            DATE_EXACT,
            DATE_SWAPPED,
            DATE_ONE_OFF,
            DATE_TRANSPOSED,
            DATE_MONTH_YEAR,
            DATE_YEAR,
        ],
        DATE_DIFFERENT,
    )
    return np.asarray(level, dtype=np.int8)


@dataclass(frozen=True, slots=True)
class Comparisons:
    """Per candidate pair: each field's agreement level and similarity (columns in
    ``FIELDS`` order), whether the names were read swapped, the sibling pattern (and
    whether grade and school make it twins), and the
    name and date ids behind exact agreements (for term frequencies)."""

    levels: Int8Array  # (pairs, len(FIELDS)), 0 = missing on either side
    similarity: FloatArray  # (pairs, len(FIELDS))
    swapped_names: BoolArray
    sibling: BoolArray
    #: The sibling pattern with grade and school agreeing too: twins, evidence against.
    twins: BoolArray
    given_id: IntArray  # the target's given name id (an exact given agreement is on it)
    family_id: IntArray
    birth_id: IntArray  # the target's birth ordinal

    def __len__(self) -> int:
        return len(self.swapped_names)

    def take(self, index: IntArray) -> Comparisons:
        """The comparisons of the pairs at ``index``, in that order."""
        return Comparisons(
            self.levels[index],
            self.similarity[index],
            self.swapped_names[index],
            self.sibling[index],
            self.twins[index],
            self.given_id[index],
            self.family_id[index],
            self.birth_id[index],
        )

    def present(self) -> BoolArray:
        """Which fields both sides have, per pair."""
        return np.asarray(self.levels != 0, dtype=bool)


def _better(
    level: Int8Array, sim: FloatArray, other: Int8Array, other_sim: FloatArray
) -> tuple[Int8Array, FloatArray]:
    """Per pair, the better of two readings of a name (a lower non-missing level)."""
    better = (other != NAME_MISSING) & ((level == NAME_MISSING) | (other < level))
    better |= (other == level) & (other_sim > sim)
    return (
        np.where(better, other, level).astype(np.int8),
        np.where(better, other_sim, sim).astype(np.float64),
    )


def _given_readings(
    source: PeopleColumns, target: PeopleColumns, tables: NameTables, si: IntArray, ti: IntArray
) -> tuple[Int8Array, FloatArray]:
    """The best reading of the given names: as written, with the middle name (a double
    given name on one side), or a preferred name on either side."""
    given, level = name_similarity(tables, source.given[si], target.given[ti])
    with_middle = np.flatnonzero(
        (source.given_full[si] != source.given[si]) | (target.given_full[ti] != target.given[ti])
    )
    if len(with_middle):
        full, full_level = name_similarity(
            tables, source.given_full[si[with_middle]], target.given_full[ti[with_middle]]
        )
        # Agreeing with a middle name counts as an equivalent reading, never as exact;
        # an initial stays an initial.
        full_level = np.where(full_level == NAME_EXACT, NAME_EQUIVALENT, full_level).astype(np.int8)
        keep = level[with_middle] != NAME_INITIAL
        full_level = np.where(keep, full_level, level[with_middle]).astype(np.int8)
        merged_level, merged = _better(
            level[with_middle], given[with_middle], full_level, full * TOKEN_SET_FACTOR
        )
        level[with_middle], given[with_middle] = merged_level, merged
    for s_col, t_col in (
        (source.preferred, target.given),
        (source.given, target.preferred),
        (source.preferred, target.preferred),
    ):
        s_ids, t_ids = s_col[si], t_col[ti]
        if ((s_ids >= 0) & (t_ids >= 0)).any():
            other, other_level = name_similarity(tables, s_ids, t_ids)
            other_level = np.where(other_level == NAME_EXACT, NAME_EQUIVALENT, other_level).astype(
                np.int8
            )
            level, given = _better(level, given, other_level, other)
    return level, given


def reading_levels(
    level: Int8Array,
    similarity: FloatArray,
    readings: tuple[IntArray, IntArray],
    scripts: tuple[IntArray, IntArray],
) -> tuple[Int8Array, FloatArray]:
    """Name levels raised to ``NAME_EXACT`` where the two names have one reading
    (``readings``: the two sides' reading ids; ``scripts``: their ``NameScript``, kana
    for a name with the school's reading): kana, romaji and a school's reading of one
    sound are the name itself, as "José" is "Jose". Only where a side is read as kana (a
    name in kanji without a reading has none); a level is never lowered, and two names
    in Latin letters keep theirs ("Satou"/"Sato" stay a close spelling)."""
    s_read, t_read = readings
    s_script, t_script = scripts
    japanese = (s_script == NameScript.KANA) | (t_script == NameScript.KANA)
    if not japanese.any():
        return level, similarity
    up = japanese & (s_read >= 0) & (s_read == t_read) & (level > NAME_EXACT)
    return (
        np.where(up, NAME_EXACT, level).astype(np.int8),
        np.where(up, 1.0, similarity).astype(np.float64),
    )


#: A name in kanji without a reading.
_UNREAD = (NameScript.MIXED, NameScript.KANJI)


def _sibling_pattern(
    family_level: Int8Array, given_level: Int8Array, undecided: BoolArray
) -> BoolArray:
    """Family names agreeing (exactly, or a nickname, double name or small typo apart)
    and given names incompatible (not equal, a nickname, an initial, a typo or a
    transliteration): with agreeing birth dates, what twins look like. Not where the
    given names are ``undecided``: one in kanji without a reading, the other not in
    kanji (陽斗 may be Haruto or Hiroto): another name or the same, only an admin can
    tell."""
    return np.asarray(
        np.isin(family_level, (NAME_EXACT, NAME_NICKNAME, NAME_EQUIVALENT, NAME_CLOSE))
        & (given_level == NAME_DIFFERENT)
        & ~undecided,
        dtype=bool,
    )


def compare_pairs(
    source: PeopleColumns, target: PeopleColumns, tables: NameTables, si: IntArray, ti: IntArray
) -> Comparisons:
    """Compare the pairs (``si[k]``, ``ti[k]``) field by field."""
    given_level, given = _given_readings(source, target, tables, si, ti)
    family, family_level = name_similarity(tables, source.family[si], target.family[ti])
    given_level, given = reading_levels(
        given_level,
        given,
        (source.given_reading[si], target.given_reading[ti]),
        (source.given_script[si], target.given_script[ti]),
    )
    family_level, family = reading_levels(
        family_level,
        family,
        (source.family_reading[si], target.family_reading[ti]),
        (source.family_script[si], target.family_script[ti]),
    )

    # Given and family name swapped, tried only where the straight reading is poor and a
    # name sounds like the other side's other name; taken only when both swapped names
    # are compatible, so a shared family name is never read as a given name.
    # The sibling pattern of the names as written: a swapped reading never hides it.
    s_unread = np.isin(source.given_script[si], _UNREAD)
    undecided = s_unread != np.isin(target.given_script[ti], _UNREAD)
    straight_sibling = _sibling_pattern(family_level, given_level, undecided)
    swapped_names = np.zeros(len(si), dtype=bool)
    poor = np.flatnonzero(
        ((given_level > NAME_SIMILAR) | (family_level > NAME_SIMILAR))
        & (
            ((source.family_sound[si] == target.given_sound[ti]) & (source.family_sound[si] >= 0))
            | ((source.given_sound[si] == target.family_sound[ti]) & (source.given_sound[si] >= 0))
        )
    )
    if len(poor):
        sw_given, sw_given_level = name_similarity(
            tables, source.family[si[poor]], target.given[ti[poor]]
        )
        sw_family, sw_family_level = name_similarity(
            tables, source.given[si[poor]], target.family[ti[poor]]
        )
        straight = given_level[poor].astype(np.int64) + family_level[poor]
        straight = np.where(
            (given_level[poor] == NAME_MISSING) | (family_level[poor] == NAME_MISSING),
            2 * NAME_DIFFERENT,
            straight,
        )
        compatible = np.isin(sw_given_level, COMPATIBLE_NAME) & np.isin(
            sw_family_level, COMPATIBLE_NAME
        )
        better = compatible & (sw_given_level.astype(np.int64) + sw_family_level < straight)
        chosen = poor[better]
        swapped_names[chosen] = True
        given[chosen], family[chosen] = sw_given[better], sw_family[better]
        given_level[chosen] = sw_given_level[better]
        family_level[chosen] = sw_family_level[better]

    birth_level = birth_date_level(source, target, si, ti)

    s_grade, t_grade = source.grade[si], target.grade[ti]
    gap = np.abs(s_grade - t_grade)
    grade_level = np.select(
        [(s_grade == NO_GRADE) | (t_grade == NO_GRADE), gap == 0, gap == 1],
        [0, GRADE_SAME, GRADE_ONE_APART],
        GRADE_DIFFERENT,
    )
    s_school, t_school = source.school[si], target.school[ti]
    school_level = np.select(
        [(s_school < 0) | (t_school < 0), s_school == t_school], [0, SCHOOL_SAME], SCHOOL_DIFFERENT
    )
    s_email, t_email = source.email[si], target.email[ti]
    email_level = np.select(
        [(s_email < 0) | (t_email < 0), s_email == t_email], [0, EMAIL_SAME], EMAIL_DIFFERENT
    )
    levels = np.column_stack(
        [given_level, family_level, birth_level, email_level, grade_level, school_level]
    ).astype(np.int8)
    similarity = np.column_stack(
        [
            given,
            family,
            _DATE_SIMILARITY[birth_level],
            email_level == EMAIL_SAME,
            np.select([grade_level == GRADE_SAME, grade_level == GRADE_ONE_APART], [1.0, 0.5], 0.0),
            school_level == SCHOOL_SAME,
        ]
    ).astype(np.float64)
    near_birth = np.isin(birth_level, (DATE_EXACT, DATE_SWAPPED, DATE_ONE_OFF))
    names = straight_sibling | (
        _sibling_pattern(family_level, given_level, undecided) & ~swapped_names
    )
    sibling = near_birth & names
    # Twins: the sibling pattern in one class year of one school. Grade (or last year's
    # grade: the app may lag a year) and school agree where both sides have them, and at
    # least one of them is there.
    near_grade = np.isin(grade_level, (GRADE_SAME, GRADE_ONE_APART))
    context = (near_grade | (school_level == SCHOOL_SAME)) & ~(
        (grade_level == GRADE_DIFFERENT) | (school_level == SCHOOL_DIFFERENT)
    )
    # Without a birth date on one side the pattern counts as twins too: a missing birth
    # date must not make the pair look more alike than an agreeing one.
    twins = names & context & (near_birth | (birth_level == DATE_MISSING))
    return Comparisons(
        levels,
        similarity,
        swapped_names,
        sibling,
        twins,
        target.given[ti],
        target.family[ti],
        target.birth[ti],
    )
