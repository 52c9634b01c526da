"""Field similarities and the score of candidate pairs of people, vectorized.

The score is a weighted sum of per-field similarities in [0, 1] with fixed weights
(``WEIGHTS``, summing to 1). A field missing on either side contributes 0: a missing field
can only lower a score, never raise it, and the best score a pair can reach is the sum of
the weights of the fields both sides have.

* given and family name: the mean of Jaro-Winkler (forgiving of typos late in a name) and
  Indel similarity (strict on short names, where one letter makes another name), on
  accent- and case-folded names; for multi-token names also 0.9 times the token-set ratio
  (hyphenated and double names, a middle name written into the given name) and the
  similarity with spaces removed ("Mc Donald"); 0.95 for nickname-equivalent given names;
  0.5 for an initial agreeing with the other side's name (never enough to be automatic);
  a preferred given name on either side counts like the given name; given and family
  name swapped as a whole score 0.95 of the swapped similarities.
* birth date: 1 exact; 0.85 day and month swapped; 0.8 one day apart or one digit of
  YYYYMMDD different; 0.75 two adjacent digits transposed; 0 otherwise.
* grade: 1 same level; 0.5 one level apart (the app may still show last year's); else 0.
* school and email local part: 1 equal, else 0.

Name similarities are computed once per distinct pair of names with
``rapidfuzz.process.cpdist`` (multi-threaded); everything else is numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Indel, JaroWinkler

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
from rostersync.matching.thresholds import Thresholds

#: Field weights. Names and birth date carry the identity; grade and school are weak
#: context (many children share them); an email local part is strong when both sides
#: have one, but many students have none.
WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "given_name": 0.25,
        "family_name": 0.25,
        "birth_date": 0.30,
        "email": 0.10,
        "grade": 0.05,
        "school": 0.05,
    }
)
FIELDS: Final[tuple[str, ...]] = tuple(WEIGHTS)

SWAP_FACTOR: Final[float] = 0.95
NICKNAME_SIMILARITY: Final[float] = 0.95
INITIAL_SIMILARITY: Final[float] = 0.5
TOKEN_SET_FACTOR: Final[float] = 0.9

# Outcomes of a name comparison.
NAME_MISSING, NAME_EXACT, NAME_NICKNAME, NAME_INITIAL, NAME_FUZZY = range(5)
# Outcomes of a birth-date comparison.
DATE_MISSING, DATE_EXACT, DATE_SWAPPED, DATE_NEXT_DAY, DATE_DIGIT, DATE_TRANSPOSED = range(6)
DATE_DIFFERENT = 6

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
    """Similarity and outcome of name pairs by id, computed once per distinct pair."""
    similarity = np.zeros(len(ids_a), dtype=np.float64)
    outcome = np.full(len(ids_a), NAME_MISSING, dtype=np.int8)
    present = (ids_a >= 0) & (ids_b >= 0)
    if not present.any():
        return similarity, outcome
    size = np.int64(len(tables.strings))
    distinct, inverse = np.unique(ids_a[present] * size + ids_b[present], return_inverse=True)
    a, b = distinct // size, distinct % size
    strings = tables.strings
    strings_a = [strings[i] for i in a.tolist()]
    strings_b = [strings[i] for i in b.tolist()]
    sim = string_similarity(strings_a, strings_b)
    kind = np.full(len(distinct), NAME_FUZZY, dtype=np.int8)

    multi = np.flatnonzero(tables.multi_token[a] | tables.multi_token[b])
    if len(multi):
        multi_a = [strings_a[i] for i in multi.tolist()]
        multi_b = [strings_b[i] for i in multi.tolist()]
        token_set = process.cpdist(
            multi_a, multi_b, scorer=fuzz.token_set_ratio, workers=workers_for(len(multi_a))
        )
        joined = string_similarity(
            [x.replace(" ", "") for x in multi_a], [y.replace(" ", "") for y in multi_b]
        )
        sim[multi] = np.maximum.reduce([sim[multi], token_set / 100 * TOKEN_SET_FACTOR, joined])

    groups_a, groups_b = tables.nicknames[a], tables.nicknames[b]
    shared_group = np.zeros(len(distinct), dtype=bool)
    for i in range(groups_a.shape[1]):
        for j in range(groups_b.shape[1]):
            shared_group |= (groups_a[:, i] >= 0) & (groups_a[:, i] == groups_b[:, j])
    nickname = shared_group & (sim < NICKNAME_SIMILARITY)
    sim[nickname] = NICKNAME_SIMILARITY
    kind[nickname] = NAME_NICKNAME

    # An initial is weak evidence whatever a string measure makes of it.
    initial = tables.initial[a] | tables.initial[b]
    agreeing = tables.first_char[a] == tables.first_char[b]
    sim[initial] = np.where(agreeing[initial], INITIAL_SIMILARITY, 0.0)
    kind[initial] = NAME_INITIAL

    exact = (a == b) & ~initial
    sim[exact] = 1.0
    kind[exact] = NAME_EXACT

    similarity[present] = sim[inverse]
    outcome[present] = kind[inverse]
    return similarity, outcome


def birth_date_similarity(
    source: PeopleColumns, target: PeopleColumns, si: IntArray, ti: IntArray
) -> tuple[FloatArray, Int8Array]:
    """Similarity and outcome of the birth dates of pairs."""
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
    exact = present & (s_birth == t_birth)
    swapped = present & ~exact & (source.birth_swapped[si] == t_birth)
    next_day = present & (np.abs(s_birth - t_birth) == 1)
    digit = present & (different_digits == 1)
    transposed &= present & (different_digits == 2)
    outcome = np.select(
        [exact, swapped, next_day, digit, transposed, present],
        [DATE_EXACT, DATE_SWAPPED, DATE_NEXT_DAY, DATE_DIGIT, DATE_TRANSPOSED, DATE_DIFFERENT],
        DATE_MISSING,
    ).astype(np.int8)
    similarity = np.select(
        [exact, swapped, next_day | digit, transposed], [1.0, 0.85, 0.8, 0.75], 0.0
    )
    return np.asarray(similarity, dtype=np.float64), outcome


@dataclass(frozen=True, slots=True)
class PairScores:
    """Per candidate pair: each field's similarity (columns in ``FIELDS`` order), which
    fields both sides have, the outcomes behind the name and date similarities, the score."""

    fields: FloatArray  # (pairs, len(FIELDS))
    present: BoolArray  # (pairs, len(FIELDS))
    given_outcome: Int8Array
    family_outcome: Int8Array
    birth_outcome: Int8Array
    swapped_names: BoolArray
    score: FloatArray

    def potential(self) -> FloatArray:
        """Per pair: the score it would reach if the identity fields (names, birth date)
        missing on either side agreed; what a rival could turn out to be."""
        identity = self.present[:, :3]
        weights = np.array([WEIGHTS[name] for name in FIELDS[:3]], dtype=np.float64)
        return np.asarray(self.score + (~identity).astype(np.float64) @ weights, dtype=np.float64)


def _better_given(
    given: FloatArray, outcome: Int8Array, other: FloatArray, other_outcome: Int8Array
) -> tuple[FloatArray, Int8Array]:
    better = other > given
    return np.where(better, other, given), np.where(better, other_outcome, outcome).astype(np.int8)


def score_pairs(
    source: PeopleColumns, target: PeopleColumns, tables: NameTables, si: IntArray, ti: IntArray
) -> PairScores:
    """Score the pairs (``si[k]``, ``ti[k]``)."""
    given, given_outcome = name_similarity(tables, source.given[si], target.given[ti])
    # A double given name, or a middle name written into the given name on one side
    # (only pairs where a side has a middle name can gain from it).
    with_middle = np.flatnonzero(
        (source.given_full[si] != source.given[si]) | (target.given_full[ti] != target.given[ti])
    )
    if len(with_middle):
        full, _ = name_similarity(
            tables, source.given_full[si[with_middle]], target.given_full[ti[with_middle]]
        )
        full = np.where(given_outcome[with_middle] == NAME_INITIAL, 0.0, full * TOKEN_SET_FACTOR)
        given[with_middle] = np.maximum(given[with_middle], full)
    for s_col, t_col in (
        (source.preferred, target.given),
        (source.given, target.preferred),
        (source.preferred, target.preferred),
    ):
        s_ids, t_ids = s_col[si], t_col[ti]
        if ((s_ids >= 0) & (t_ids >= 0)).any():
            other, other_outcome = name_similarity(tables, s_ids, t_ids)
            given, given_outcome = _better_given(given, given_outcome, other, other_outcome)
    family, family_outcome = name_similarity(tables, source.family[si], target.family[ti])

    # Given and family name swapped, tried only where the straight reading is poor and a
    # name sounds like the other side's other name.
    swapped_names = np.zeros(len(si), dtype=bool)
    poor = np.flatnonzero(
        (given + family < 1.6)
        & (
            ((source.family_sound[si] == target.given_sound[ti]) & (source.family_sound[si] >= 0))
            | ((source.given_sound[si] == target.family_sound[ti]) & (source.given_sound[si] >= 0))
        )
    )
    if len(poor):
        sw_given, sw_given_outcome = name_similarity(
            tables, source.family[si[poor]], target.given[ti[poor]]
        )
        sw_family, sw_family_outcome = name_similarity(
            tables, source.given[si[poor]], target.family[ti[poor]]
        )
        better = (sw_given + sw_family) * SWAP_FACTOR > given[poor] + family[poor]
        chosen = poor[better]
        swapped_names[chosen] = True
        given[chosen] = sw_given[better] * SWAP_FACTOR
        family[chosen] = sw_family[better] * SWAP_FACTOR
        given_outcome[chosen] = sw_given_outcome[better]
        family_outcome[chosen] = sw_family_outcome[better]

    birth, birth_outcome = birth_date_similarity(source, target, si, ti)

    s_grade, t_grade = source.grade[si], target.grade[ti]
    grade_present = (s_grade != NO_GRADE) & (t_grade != NO_GRADE)
    gap = np.abs(s_grade - t_grade)
    grade = np.select([grade_present & (gap == 0), grade_present & (gap == 1)], [1.0, 0.5], 0.0)
    s_school, t_school = source.school[si], target.school[ti]
    school_present = (s_school >= 0) & (t_school >= 0)
    s_email, t_email = source.email[si], target.email[ti]
    email_present = (s_email >= 0) & (t_email >= 0)

    fields = np.column_stack(
        [
            given,
            family,
            birth,
            email_present & (s_email == t_email),
            grade,
            school_present & (s_school == t_school),
        ]
    ).astype(np.float64)
    present = np.column_stack(
        [
            given_outcome != NAME_MISSING,
            family_outcome != NAME_MISSING,
            birth_outcome != DATE_MISSING,
            email_present,
            grade_present,
            school_present,
        ]
    )
    score = fields @ np.array([WEIGHTS[name] for name in FIELDS], dtype=np.float64)
    return PairScores(
        fields, present, given_outcome, family_outcome, birth_outcome, swapped_names, score
    )


def auto_gates(scores: PairScores, thresholds: Thresholds) -> BoolArray:
    """Per pair: whether it may be automatic at all, whatever its score. Both names must
    reach ``name_floor`` (and neither be a bare initial), so a family name and a birth date
    cannot carry a different given name (twins); a birth date both sides have must reach
    ``birth_date_floor``."""
    given, family, birth = scores.fields[:, 0], scores.fields[:, 1], scores.fields[:, 2]
    names_ok = (given >= thresholds.name_floor) & (family >= thresholds.name_floor)
    names_ok &= (scores.given_outcome != NAME_INITIAL) & (scores.family_outcome != NAME_INITIAL)
    birth_ok = (scores.birth_outcome == DATE_MISSING) | (birth >= thresholds.birth_date_floor)
    return np.asarray(names_ok & birth_ok, dtype=bool)
