"""Blocking keys 20 and 21: a record without a birth date meets a record of both names
mistyped (two Soundex codes) or of a family name one letter off; such pairs count as
rivals at their own score, and pairs of another name are dropped."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

from rostersync.matching.people import PairOutcome, candidate_keys, explain_pairs, match_people
from rostersync.matching.records import PersonRecord
from rostersync.models import Tier


def person(key: str, given: str, family: str, born: date | None, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def school(
    size: int, seed: int = 23, typos: float = 0.0
) -> tuple[list[PersonRecord], list[PersonRecord]]:
    """A school's SIS and app records (names no test below uses); the SIS mistypes a
    share ``typos`` of its names (a letter doubled), so the run learns that it does."""
    rng = random.Random(seed)
    letters, vowels = "bcdfghklmnprstvw", "aeiou"

    def name() -> str:
        return "".join(rng.choice(letters) + rng.choice(vowels) for _ in range(3)).capitalize()

    app = [
        person(
            f"t{i}",
            name(),
            name(),
            date.fromordinal(date(2008, 1, 1).toordinal() + rng.randrange(4000)),
        )
        for i in range(size)
    ]
    sis = []
    for i, record in enumerate(app):
        copy = replace(record, key=f"s{i}")
        if rng.random() < typos:
            field = rng.choice(("given_name", "family_name"))
            name = getattr(copy, field)
            at = rng.randrange(1, len(name))
            copy = replace(copy, **{field: name[:at] + name[at - 1 :]})
        sis.append(copy)
    return sis, app


CONNOR = person("t-connor", "Connor", "Hilton", date(2013, 9, 8))
ROBERT = person("t-robert", "Robert", "Alves", date(2012, 4, 30))


def test_both_names_mistyped_without_a_birth_date_reach_scoring_and_are_suggested():
    sis, app = school(200, typos=0.3)
    source = [person("s-conor", "Conor", "Hilotn", None), *sis]
    target = [CONNOR, *app]
    assert ("s-conor", "t-connor") in candidate_keys(source, target)
    decision = match_people(source, target).decisions["s-conor"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t-connor"
    # With a birth date on both sides the pair is found through the birth date; these
    # keys are not needed for it, and a birth date far off is not made a candidate here.
    far = [person("s-conor", "Conor", "Hilotn", date(1990, 1, 1)), *sis]
    assert ("s-conor", "t-connor") not in candidate_keys(far, target)


def test_a_slip_early_in_the_family_name_without_a_birth_date_reaches_scoring():
    sis, app = school(200)
    source = [person("s-robert", "Robert", "Ales", None), *sis]
    target = [ROBERT, *app]
    assert ("s-robert", "t-robert") in candidate_keys(source, target)
    decision = match_people(source, target).decisions["s-robert"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t-robert"
    # The app's side without the birth date finds it too.
    flipped = match_people(
        [replace(ROBERT, key="s-robert"), *sis],
        [
            person("t-robert", "Robert", "Ales", None),
            *app,
        ],
    ).decisions["s-robert"]
    assert flipped.target_key == "t-robert"
    assert flipped.tier is Tier.SUGGESTED


def test_another_name_of_the_same_soundex_is_no_candidate_and_no_rival():
    # Tuckwell and Tossell share a Soundex code (T240): a pair of another family name is
    # dropped, so it cannot hold back the record's own pair.
    sis, app = school(200)
    source = [person("s-thomas", "Thomas", "Tuckwell", None), *sis]
    alone = [person("t-thomas", "Thomas", "Tuckwell", date(2011, 10, 30)), *app]
    with_other = [*alone, person("t-tossell", "Thomas", "Tossell", date(2010, 6, 19))]
    assert ("s-thomas", "t-tossell") not in candidate_keys(source, with_other)
    outcome = explain_pairs(source, with_other, [("s-thomas", "t-tossell")])
    assert outcome[("s-thomas", "t-tossell")] is PairOutcome.NOT_A_CANDIDATE
    before = match_people(source, alone).decisions["s-thomas"]
    after = match_people(source, with_other).decisions["s-thomas"]
    assert (after.tier, after.target_key) == (before.tier, before.target_key)


def test_a_mistyped_rival_counts_at_its_own_score():
    # "Maia Okafur" reaches a record without a birth date only through two Soundex codes;
    # counted as if its birth date agreed it would hold back Maya Okafor's own record.
    sis, app = school(200)
    source = [person("s-maya", "Maya", "Okafor", None), *sis]
    maya = person("t-maya", "Maya", "Okafor", date(2015, 3, 4))
    rival = person("t-maia", "Maia", "Okafur", date(2014, 7, 1))
    assert ("s-maya", "t-maia") in candidate_keys(source, [maya, rival, *app])
    before = match_people(source, [maya, *app]).decisions["s-maya"]
    after = match_people(source, [maya, rival, *app]).decisions["s-maya"]
    assert before.tier is Tier.AUTO
    assert (after.tier, after.target_key) == (Tier.AUTO, "t-maya")
