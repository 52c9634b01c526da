"""The suggestion floor for both names agreeing while a side has no birth date: held to
the odds of ``suggest`` against the run's own targets (``floor.least_bits``), not to the
``FLOOR_BITS`` a pair needs once a disagreeing birth date is taken out of its weight."""

from __future__ import annotations

import random
from datetime import date

from rostersync.matching.floor import FLOOR_BITS, least_bits
from rostersync.matching.people import PairOutcome, explain_pairs, match_people
from rostersync.matching.records import PersonRecord
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS
from rostersync.models import Tier


def person(key: str, given: str, family: str, born: date | None) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born)


def roster(size: int, seed: int = 5) -> list[PersonRecord]:
    """Unrelated app records (names no test below uses)."""
    rng = random.Random(seed)
    letters, vowels = "bcdfghklmnprstvw", "aeiou"

    def name() -> str:
        return "".join(rng.choice(letters) + rng.choice(vowels) for _ in range(3)).capitalize()

    start = date(1960, 1, 1).toordinal()
    return [
        person(f"r{i}", name(), name(), date.fromordinal(start + rng.randrange(20_000)))
        for i in range(size)
    ]


def namesakes(count: int) -> list[PersonRecord]:
    """App records sharing Georgia's given name or her family name, ``count`` of each:
    the more of them, the less the full name says."""
    return [person(f"g{i}", "Georgia", f"Fam{i}x", date(1980, 1, 1)) for i in range(count)] + [
        person(f"w{i}", f"Giv{i}y", "Whitlam", date(1981, 1, 1)) for i in range(count)
    ]


GEORGIA = person("s", "Georgia", "Whitlam", date(1994, 9, 18))
GEORGIA_APP = person("t", "Georgia", "Whitlam", None)


def test_the_bar_is_suggest_s_odds_and_never_above_floor_bits():
    assert least_bits(PEOPLE_THRESHOLDS.suggest) == -2.0
    assert least_bits(0.5) == 0.0
    assert least_bits(0.9) == FLOOR_BITS


def test_names_agreeing_without_a_birth_date_below_suggest_are_a_floor_suggestion():
    # 1,000 other records and 24 namesakes of each name: below ``suggest`` against
    # 10,000 people, about even odds against the run's own targets.
    target = [GEORGIA_APP, *namesakes(24), *roster(1000)]
    decision = match_people([GEORGIA], target).decisions["s"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t"
    assert decision.score < PEOPLE_THRESHOLDS.suggest
    outcome = explain_pairs([GEORGIA], target, [("s", "t")])
    assert outcome[("s", "t")] is PairOutcome.FLOOR_SUGGESTED


def test_a_full_name_too_common_stays_unmatched():
    target = [GEORGIA_APP, *namesakes(64), *roster(1000)]
    decision = match_people([GEORGIA], target).decisions["s"]
    assert decision.tier is Tier.UNMATCHED


def test_a_second_record_of_the_name_makes_it_no_suggestion():
    other = person("t2", "Georgia", "Whitlam", None)
    target = [GEORGIA_APP, other, *namesakes(24), *roster(1000)]
    decision = match_people([GEORGIA], target).decisions["s"]
    assert decision.tier is Tier.UNMATCHED


def test_a_birth_date_that_disagrees_is_held_to_floor_bits():
    # The same names beside another child's birth date: the birth date is taken out of
    # the weight, and what is left must reach ``FLOOR_BITS``.
    born_else = person("t", "Georgia", "Whitlam", date(1971, 2, 3))
    target = [born_else, *namesakes(24), *roster(1000)]
    decision = match_people([GEORGIA], target).decisions["s"]
    assert decision.tier is Tier.UNMATCHED
