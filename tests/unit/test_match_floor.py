"""The suggestion floor: pairs below ``suggest`` that agree strongly on one axis are
suggested, never automatic, never for twins, never when ambiguous, never over a target
another source wants."""

from __future__ import annotations

import random
from datetime import date

from rostersync.matching.people import PairOutcome, explain_pairs, match_people
from rostersync.matching.records import PersonRecord
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS
from rostersync.models import Tier


def person(key: str, given: str, family: str, born: date | None, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def roster(size: int, seed: int = 5) -> list[PersonRecord]:
    """Unrelated app records (names no test below uses), so a pair is weighed against a
    roster, not against one record."""
    rng = random.Random(seed)
    letters = "bcdfghklmnprstvw"
    vowels = "aeiou"

    def name() -> str:
        return "".join(rng.choice(letters) + rng.choice(vowels) for _ in range(3)).capitalize()

    return [
        person(
            f"r{i}",
            name(),
            name(),
            date(1960, 1, 1).fromordinal(date(1960, 1, 1).toordinal() + rng.randrange(20_000)),
        )
        for i in range(size)
    ]


ZANE = person("s", "Zane", "Quillhiam", date(1971, 11, 12))
ZANE_APP = person("t", "Zane", "Quilliam", date(1994, 8, 30))


def test_both_names_agreeing_beside_a_replaced_birth_date_are_suggested():
    target = [ZANE_APP, *roster(300)]
    result = match_people([ZANE], target)
    decision = result.decisions["s"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t"
    # The score is the model's, below suggest: the floor decides the tier, not the score.
    assert decision.score < PEOPLE_THRESHOLDS.suggest
    outcome = explain_pairs([ZANE], target, [("s", "t")])
    assert outcome[("s", "t")] is PairOutcome.FLOOR_SUGGESTED


def test_a_floor_pair_is_never_automatic_even_with_the_lowest_thresholds():
    low = PEOPLE_THRESHOLDS.model_copy(update={"auto": 0.0, "suggest": 0.0, "margin": 0.0})
    decision = match_people([ZANE], [ZANE_APP, *roster(300)], thresholds=low).decisions["s"]
    assert decision.target_key == "t"
    assert decision.tier is Tier.SUGGESTED


def test_the_same_names_born_the_same_day_stay_automatic():
    source = person("s", "Zane", "Quillhiam", date(1994, 8, 30))
    decision = match_people([source], [ZANE_APP, *roster(300)]).decisions["s"]
    assert decision.tier is Tier.AUTO
    assert decision.target_key == "t"


def test_the_birth_date_and_a_name_written_in_the_other_names_place_are_suggested():
    # "White, Jasmine" for "Jacqueline White": the family name sits in the given name's
    # place, the given name was replaced; the birth date agrees.
    born = date(1921, 2, 8)
    source = person("s", "White", "Jasmine", born)
    target = [person("t", "Jacqueline", "White", born), *roster(300)]
    decision = match_people([source], target).decisions["s"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t"
    assert decision.score < PEOPLE_THRESHOLDS.suggest


def test_a_given_name_typo_beside_a_replaced_family_name_is_suggested_by_birth_date():
    # Only the birth date and the first letter tie these (the first-letter key), and the
    # model suggests them.
    born = date(1920, 2, 16)
    source = person("s", "Betie", "Nguyen", born)
    target = [person("t", "Bertie", "Whetstone", born), *roster(300)]
    decision = match_people([source], target).decisions["s"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t"


def test_a_given_name_and_birth_date_beside_another_family_name_are_no_floor_pair():
    # A new pupil and an app record free of its link (a leaver): the same given name and
    # birth date, another family name. In a school as often two children as one: the
    # new pupil is not kept waiting for an admin by the floor.
    born = date(2016, 5, 9)
    source = person("s", "Amara", "Lindqvist", born)
    leaver = person("t", "Amara", "Oyelaran", born)
    # A given name many pupils have (born on other days): it says little.
    namesakes = [
        person(f"a{i}", "Amara", f"Family{i}", date(2000 + i % 20, 1 + i % 12, 1 + i % 28))
        for i in range(120)
    ]
    target = [leaver, *namesakes, *roster(300)]
    decision = match_people([source], target).decisions["s"]
    assert decision.score is None or decision.score < PEOPLE_THRESHOLDS.suggest
    assert decision.tier is Tier.UNMATCHED
    outcome = explain_pairs([source], target, [("s", "t")])[("s", "t")]
    assert outcome is not PairOutcome.FLOOR_SUGGESTED


def test_two_records_of_the_name_born_on_other_days_are_no_suggestion():
    other = person("t2", "Zane", "Quilliam", date(1960, 5, 1))
    target = [ZANE_APP, other, *roster(300)]
    decision = match_people([ZANE], target).decisions["s"]
    assert decision.tier is Tier.UNMATCHED
    outcomes = explain_pairs([ZANE], target, [("s", "t"), ("s", "t2")])
    assert PairOutcome.FLOOR_SUGGESTED not in outcomes.values()


def test_two_sources_of_one_name_for_one_target_are_no_suggestion():
    second = person("s2", "Zane", "Quillhiam", date(1950, 3, 3))
    decisions = match_people([ZANE, second], [ZANE_APP, *roster(300)]).decisions
    assert decisions["s"].tier is Tier.UNMATCHED
    assert decisions["s2"].tier is Tier.UNMATCHED


def test_a_target_another_source_links_is_not_offered_again():
    exact = person("s2", "Zane", "Quilliam", date(1994, 8, 30))
    decisions = match_people([ZANE, exact], [ZANE_APP, *roster(300)]).decisions
    assert decisions["s2"].tier is Tier.AUTO
    assert decisions["s2"].target_key == "t"
    assert decisions["s"].tier is Tier.UNMATCHED


def test_twins_are_never_suggested_by_the_floor():
    # Family name and birth date agree and the given names differ, in one grade and
    # school: twins, different children, whatever the floor would make of the birth date
    # and the family name.
    born = date(2015, 3, 4)
    source = person("s", "Mia", "Okafor", born, grade="03", school="Elm")
    twin = person("t", "Zoe", "Okafor", born, grade="03", school="Elm")
    target = [twin, *roster(300)]
    decision = match_people([source], target).decisions["s"]
    assert decision.tier is Tier.UNMATCHED
    assert explain_pairs([source], target, [("s", "t")])[("s", "t")] is PairOutcome.TWINS


def test_the_sibling_pattern_is_not_raised_by_the_floor():
    # Without grade and school: a sibling pattern (the family name a typo apart, the
    # birth date agreeing, another given name), below suggest (two more children of the
    # roster were born that day), and left there.
    born = date(2015, 3, 4)
    source = person("s", "Mia", "Okaforr", born)
    others = roster(300)
    others[:2] = [person(r.key, r.given_name, r.family_name, born) for r in others[:2]]
    target = [person("t", "Zoe", "Okafor", born), *others]
    decision = match_people([source], target).decisions["s"]
    assert decision.score < PEOPLE_THRESHOLDS.suggest
    assert decision.tier is Tier.UNMATCHED
    outcome = explain_pairs([source], target, [("s", "t")])[("s", "t")]
    assert outcome is PairOutcome.BELOW_SUGGEST


def test_names_common_in_a_large_roster_are_no_suggestion():
    # One "Zane Quilliam" in a roster of 4,000, where a tenth are called Zane and a tenth
    # Quilliam: the names say little on their own, a coincidence is likelier than a
    # replaced birth date.
    crowd = roster(4000)
    crowd[:400] = [
        person(r.key, "Zane", r.family_name, r.birth_date)
        if i % 2
        else person(r.key, r.given_name, "Quilliam", r.birth_date)
        for i, r in enumerate(crowd[:400])
    ]
    target = [person("t", "Zane", "Quilliam", date(1994, 8, 30)), *crowd]
    source = person("s", "Zane", "Quilliam", date(1971, 11, 12))
    assert match_people([source], target).decisions["s"].tier is Tier.UNMATCHED
    # In a roster where they are rare, the same pair is suggested.
    rare = [person("t", "Zane", "Quilliam", date(1994, 8, 30)), *roster(4000)]
    assert match_people([source], rare).decisions["s"].tier is Tier.SUGGESTED


def test_a_grade_and_school_far_apart_keep_a_same_named_child_from_the_floor():
    # Same names, another birth date, twelve grades and another school apart: another
    # child of the name.
    source = person("s", "Zane", "Quillhiam", date(2018, 4, 11), grade="01", school="Elm")
    target = [
        person("t", "Zane", "Quilliam", date(2006, 11, 22), grade="12", school="Oak"),
        *roster(300),
    ]
    assert match_people([source], target).decisions["s"].tier is Tier.UNMATCHED
