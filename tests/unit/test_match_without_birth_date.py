"""Automatic matches on names when a side has no birth date: from
``auto_without_birth_date`` (0.75) instead of ``auto`` (0.9), with every other rule of the
automatic tier (no rival at ``suggest``, the margin, the gates, one source per target)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

from rostersync.matching.people import PairOutcome, explain_pairs, match_people
from rostersync.matching.records import PersonRecord
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS
from rostersync.models import Tier


def person(key: str, given: str, family: str, born: date | None, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def school(size: int, seed: int = 11) -> tuple[list[PersonRecord], list[PersonRecord]]:
    """A school's SIS and app records of ``size`` pupils (names no test below uses),
    copied exactly: the run learns from them how the two systems agree."""
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
            grade=f"{rng.randrange(1, 13):02d}",
            school="Elm",
        )
        for i in range(size)
    ]
    return [replace(record, key=f"s{i}") for i, record in enumerate(app)], app


def namesakes(count: int) -> list[PersonRecord]:
    """Pupils sharing Maya's given name or her family name (``count`` of each), so that
    "Maya Okafor" is a full name the school holds once but not a rare one."""
    letters = "abcdefgh"[:count]
    return [
        person(f"m{c}", "Maya", f"Fam{c}x", date(2010, 1, 1 + i), grade="05", school="Elm")
        for i, c in enumerate(letters)
    ] + [
        person(f"o{c}", f"Giv{c}y", "Okafor", date(2011, 2, 1 + i), grade="04", school="Elm")
        for i, c in enumerate(letters)
    ]


MAYA = person("s-maya", "Maya", "Okafor", date(2015, 3, 4), grade="03", school="Elm")
MAYA_APP = person("t-maya", "Maya", "Okafor", None, grade="03", school="Elm")


def sides(
    source: PersonRecord, *targets: PersonRecord, common: int = 2
) -> tuple[list[PersonRecord], list[PersonRecord]]:
    sis, app = school(300)
    others = namesakes(common)
    return (
        [source, *[replace(r, key=f"s-{r.key}") for r in others], *sis],
        [*targets, *others, *app],
    )


def test_agreeing_names_without_a_birth_date_on_one_side_are_automatic_below_auto():
    source, target = sides(MAYA, MAYA_APP)
    decision = match_people(source, target).decisions["s-maya"]
    assert decision.tier is Tier.AUTO
    assert decision.target_key == "t-maya"
    # The rule made it automatic, not the score: it is below ``auto``.
    assert PEOPLE_THRESHOLDS.auto_without_birth_date <= decision.score < PEOPLE_THRESHOLDS.auto
    assert explain_pairs(source, target, [("s-maya", "t-maya")])[("s-maya", "t-maya")] is (
        PairOutcome.AUTO
    )
    # At ``auto`` the same pair waits for an admin.
    strict = PEOPLE_THRESHOLDS.model_copy(update={"auto_without_birth_date": 0.9})
    held = match_people(source, target, thresholds=strict).decisions["s-maya"]
    assert held.tier is Tier.SUGGESTED
    assert (
        explain_pairs(source, target, [("s-maya", "t-maya")], thresholds=strict)[
            ("s-maya", "t-maya")
        ]
        is PairOutcome.BELOW_AUTO
    )


def test_a_second_record_of_the_name_without_a_birth_date_keeps_it_suggested():
    # Either app record could be the child: the other one counts at what it could reach
    # had its birth date agreed.
    twin_record = person("t-maya-2", "Maya", "Okafor", None, grade="03", school="Elm")
    source, target = sides(MAYA, MAYA_APP, twin_record)
    decision = match_people(source, target).decisions["s-maya"]
    assert decision.tier is Tier.SUGGESTED


def test_a_name_one_letter_off_is_held_to_auto():
    # Without a birth date a given name one letter off may be a sibling's: the lower
    # threshold is for names that agree, not for typos.
    low = PEOPLE_THRESHOLDS.model_copy(update={"auto_without_birth_date": 0.0})
    source, target = sides(replace(MAYA, given_name="Mayra"), MAYA_APP)
    decision = match_people(source, target, thresholds=low).decisions["s-maya"]
    assert decision.target_key == "t-maya"
    assert decision.score < low.auto
    assert decision.tier is Tier.SUGGESTED


def test_a_common_full_name_stays_below_the_threshold():
    # With four namesakes of each name the full name says less: below 0.75, suggested.
    source, target = sides(MAYA, MAYA_APP, common=4)
    decision = match_people(source, target).decisions["s-maya"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.score < PEOPLE_THRESHOLDS.auto_without_birth_date


def test_a_pair_with_both_birth_dates_keeps_auto():
    # The lower threshold is for a missing birth date only: a birth date one digit off
    # with the same evidence otherwise is held to ``auto``.
    off = replace(MAYA_APP, birth_date=date(2015, 3, 5))
    low = PEOPLE_THRESHOLDS.model_copy(update={"auto": 0.99999})
    source, target = sides(MAYA, off)
    decision = match_people(source, target, thresholds=low).decisions["s-maya"]
    assert decision.score < low.auto
    assert decision.tier is Tier.SUGGESTED
