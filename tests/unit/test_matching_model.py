"""Comparison levels and the learned match model of people matching."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from rostersync.matching.encoding import Vocabularies, encode_people
from rostersync.matching.people import match_people
from rostersync.matching.records import PersonRecord
from rostersync.matching.scoring import (
    BIRTH,
    DATE_DIFFERENT,
    DATE_EXACT,
    DATE_MONTH_YEAR,
    DATE_ONE_OFF,
    DATE_SWAPPED,
    DATE_TRANSPOSED,
    DATE_YEAR,
    EMAIL,
    FAMILY,
    GIVEN,
    GRADE,
    NAME_CLOSE,
    NAME_DIFFERENT,
    NAME_EQUIVALENT,
    NAME_EXACT,
    NAME_INITIAL,
    NAME_NICKNAME,
    NAME_SIMILAR,
    SCHOOL,
    Comparisons,
    compare_pairs,
    name_tables,
)
from rostersync.models import Tier

BORN = date(2015, 3, 4)


def person(key: str, given: str, family: str, born: date | None = BORN, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def compare(a: PersonRecord, b: PersonRecord) -> Comparisons:
    vocab = Vocabularies()
    s, t = encode_people([a], vocab), encode_people([b], vocab)
    zero = np.zeros(1, dtype=np.int64)
    return compare_pairs(s, t, name_tables(vocab.names), zero, zero)


@pytest.mark.parametrize(
    ("source", "target", "level"),
    [
        (BORN, BORN, DATE_EXACT),
        (date(2015, 3, 4), date(2015, 4, 3), DATE_SWAPPED),
        (date(2015, 3, 4), date(2015, 3, 5), DATE_ONE_OFF),
        (date(2015, 3, 4), date(2016, 3, 4), DATE_ONE_OFF),
        (date(2015, 3, 14), date(2015, 3, 24), DATE_ONE_OFF),
        (date(2015, 3, 12), date(2015, 3, 21), DATE_TRANSPOSED),
        (date(2015, 3, 4), date(2015, 3, 27), DATE_MONTH_YEAR),
        (date(2015, 3, 4), date(2015, 11, 27), DATE_YEAR),
        (date(2015, 3, 4), date(2012, 11, 20), DATE_DIFFERENT),
        (BORN, None, 0),
    ],
)
def test_birth_date_levels(source, target, level):
    comparisons = compare(
        person("a", "Maya", "Okafor", source), person("b", "Maya", "Okafor", target)
    )
    assert comparisons.levels[0, BIRTH] == level


@pytest.mark.parametrize(
    ("source", "target", "given", "family"),
    [
        (("Maya", "Okafor"), ("MAYA", "Okafor"), NAME_EXACT, NAME_EXACT),
        (("José", "Núñez"), ("Jose", "Nunez"), NAME_EXACT, NAME_EXACT),
        (("Иван", "Петров"), ("Ivan", "Petrov"), NAME_EXACT, NAME_EXACT),
        (("さくら", "たなか"), ("Sakura", "Tanaka"), NAME_EXACT, NAME_EXACT),
        (("Bob", "Okafor"), ("Robert", "Okafor"), NAME_NICKNAME, NAME_EXACT),
        (("Maya", "Garcia"), ("Maya", "Garcia-Lopez"), NAME_EXACT, NAME_EQUIVALENT),
        (("Maya", "Mc Donald"), ("Maya", "McDonald"), NAME_EXACT, NAME_EQUIVALENT),
        (("Alexandra", "Okafor"), ("Alexanpdra", "Okafor"), NAME_CLOSE, NAME_EXACT),
        (("Ben", "Okafor"), ("Bne", "Okafor"), NAME_SIMILAR, NAME_EXACT),
        (("M", "Okafor"), ("Maya", "Okafor"), NAME_INITIAL, NAME_EXACT),
        # A stray space after the first letter is a typo, not an initial.
        (("E mma", "Okafor"), ("Emma", "Okafor"), NAME_EQUIVALENT, NAME_EXACT),
        (("Maya", "B laqe"), ("Maya", "Blake"), NAME_EXACT, NAME_SIMILAR),
        (("Charles", "Okafor"), ("Charlotte", "Okafor"), NAME_DIFFERENT, NAME_EXACT),
        (("Liam", "Okafor"), ("Noah", "Okafor"), NAME_DIFFERENT, NAME_EXACT),
    ],
)
def test_name_levels(source, target, given, family):
    levels = compare(person("a", *source), person("b", *target)).levels[0]
    assert (levels[GIVEN], levels[FAMILY]) == (given, family)


def test_a_preferred_name_counts_as_an_equivalent_given_name():
    source = person("a", "Robert", "Okafor", preferred_given_name="Kit")
    assert compare(source, person("b", "Kit", "Okafor")).levels[0, GIVEN] == NAME_EQUIVALENT


def test_names_are_read_swapped_only_when_both_swapped_names_agree():
    swapped = compare(person("a", "Okafor", "Maya"), person("b", "Maya", "Okafor"))
    assert swapped.swapped_names[0]
    # A shared family name is never read as a given name.
    siblings = compare(person("a", "Liam", "Okafor"), person("b", "Noah", "Okafor"))
    assert not siblings.swapped_names[0]
    assert siblings.sibling[0]


def test_a_new_twin_waits_for_no_one():
    # A new child of the same family, birth date, grade and school as a pupil already in
    # the app: another child, created at once rather than held for an admin.
    pupil = person("t1", "Charlotte", "Ferlars", grade="KG", school="Elm")
    twin = person("s1", "Santiago", "Ferlars", grade="KG", school="Elm")
    decision = match_people([twin], [pupil]).decisions["s1"]
    assert decision.tier is Tier.UNMATCHED


def test_a_rare_family_name_weighs_more_than_a_common_one():
    # Same given name and birth date each time, family name agreeing: the rare one
    # ("Okonkwo-Barrett") is stronger evidence than the common one ("Smith").
    common = [person(f"c{i}", f"Name{i}", "Smith", date(2010, 1, 1 + i)) for i in range(20)]
    source = [person("s1", "Maya", "Smith"), person("s2", "Maya", "Okonkwoba")]
    target = [person("t1", "Maya", "Smith"), person("t2", "Maya", "Okonkwoba"), *common]
    result = match_people(source, target)
    smith, rare = result.decisions["s1"], result.decisions["s2"]
    assert smith.evidence is not None and rare.evidence is not None
    assert rare.evidence.contributions["family_name"] > smith.evidence.contributions["family_name"]


def test_the_explanation_adds_up_to_the_probability():
    decision = match_people(
        [person("s1", "Maya", "Okafor", grade="03")], [person("t1", "Maya", "Okafor", grade="03")]
    ).decisions["s1"]
    evidence = decision.evidence
    assert evidence is not None
    bits = evidence.prior + sum(evidence.contributions.values())
    assert decision.score == pytest.approx(1 / (1 + 2**-bits), abs=2e-3)
    assert evidence.contributions["given_name"] > 0
    assert evidence.contributions["birth_date"] > 0


def _family_habit(n: int) -> list[tuple[PersonRecord, PersonRecord]]:
    """Known pairs of a district whose SIS writes another family name (a step-parent's)
    for many children."""
    pairs = []
    for i in range(n):
        born = date(2012, 1 + i % 12, 1 + i % 27)
        app = person(f"t-known{i}", f"Given{i}", f"Family{i}", born)
        sis = person(f"s-known{i}", f"Given{i}", f"Other{i}" if i % 2 else f"Family{i}", born)
        pairs.append((sis, app))
    return pairs


def test_labelled_pairs_teach_the_model_the_districts_habits():
    # The source's true record has another family name; the other candidate shares its
    # names but only the month and year of its birth date. Taught by known pairs that
    # this district often writes another family name, the model ranks the true record
    # first.
    source = [person("s1", "Maya", "Brennan", date(2013, 5, 17))]
    true = person("t-true", "Maya", "Okafor", date(2013, 5, 17))
    other = person("t-other", "Maya", "Brennan", date(2013, 5, 2))
    untaught = match_people(source, [true, other]).decisions["s1"]
    taught = match_people(source, [true, other], examples=_family_habit(200)).decisions["s1"]
    assert untaught.target_key != "t-true"
    assert taught.target_key == "t-true"


@pytest.mark.parametrize(
    ("source", "target", "levels"),
    [
        # (email, grade, school) on each side -> (email, grade, school) levels
        (("jo.smith+art@x.org", "07", "Elm"), ("josmith@y.org", "7", "elm"), (1, 1, 1)),
        (("maya@x.org", "KG", "Elm"), ("maya.o@x.org", "01", "Oak"), (2, 2, 2)),
        (("maya@x.org", "Year 9", "Elm"), (None, "05", None), (0, 3, 0)),
        ((None, "PK", None), ("maya@x.org", "TK", "Elm"), (0, 1, 0)),
        ((None, None, "Elm"), (None, "03", "Elm"), (0, 0, 1)),
    ],
)
def test_email_grade_and_school_levels(source, target, levels):
    def with_context(key, email, grade, school):
        return person(key, "Maya", "Okafor", email=email, grade=grade, school=school)

    compared = compare(with_context("a", *source), with_context("b", *target)).levels[0]
    assert (compared[EMAIL], compared[GRADE], compared[SCHOOL]) == levels
