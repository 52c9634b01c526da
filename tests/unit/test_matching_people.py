"""Fuzzy people matching: tiers, one-to-one rules, evidence, and the guards for precision."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

import pytest

from rostersync.matching.people import PairOutcome, explain_pairs, match_people, score_pair
from rostersync.matching.records import PersonKind, PersonRecord
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS, Thresholds
from rostersync.models import Tier


def person(key: str, given: str, family: str, born: date | None = None, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


BORN = date(2015, 3, 4)


def decide(source, target, **options):
    return match_people(source, target, **options).decisions


def test_an_exact_match_is_automatic():
    result = decide([person("s1", "Maya", "Okafor", BORN)], [person("t1", "Maya", "Okafor", BORN)])
    decision = result["s1"]
    assert decision.tier is Tier.AUTO
    assert decision.target_key == "t1"
    assert decision.evidence is not None
    assert set(decision.evidence.agreed) >= {"given_name", "family_name", "birth_date"}


def test_a_plausible_but_unsure_match_is_suggested():
    # Same names, same grade and school, but no birth date on the app side: pretty
    # confident, not certain.
    source = person("s1", "Maya", "Okafor", BORN, grade="03", school="Elm")
    target = person("t1", "Maya", "Okafor", None, grade="03", school="Elm")
    decision = decide([source], [target])["s1"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t1"
    assert decision.evidence is not None
    assert "birth_date" in decision.evidence.missing
    assert decision.evidence.max_score < PEOPLE_THRESHOLDS.auto


def test_an_unrelated_record_is_unmatched():
    source = person("s1", "Maya", "Okafor", BORN)
    target = person("t1", "Liam", "Brennan", date(2011, 9, 30))
    decision = decide([source], [target])["s1"]
    assert decision.tier is Tier.UNMATCHED
    assert decision.target_key is None


def test_every_source_record_gets_a_decision_in_input_order():
    source = [person(f"s{i}", "Ann", f"Name{i}", BORN) for i in range(5)]
    decisions = decide(source, [])
    assert list(decisions) == [f"s{i}" for i in range(5)]
    assert all(d.tier is Tier.UNMATCHED for d in decisions.values())


FIELD_REMOVALS = {
    "given_name": "",
    "family_name": "",
    "middle_name": None,
    "preferred_given_name": None,
    "email": None,
    "birth_date": None,
    "grade": None,
    "school": None,
}
NAMES = ["Anna", "Ana", "Hannah", "Robert", "Bob", "Rob", "Liam", "J", "Mary Anne", "José"]
FAMILIES = ["Smith", "Smyth", "Smith-Jones", "Nguyen", "Núñez", "Nunez", "O'Brien", "Obrien"]


def random_person(rng: random.Random, key: str) -> PersonRecord:
    return PersonRecord(
        key=key,
        given_name=rng.choice(NAMES),
        family_name=rng.choice(FAMILIES),
        middle_name=rng.choice([None, "Lee", "Anne"]),
        preferred_given_name=rng.choice([None, None, "Bob", "Annie"]),
        email=rng.choice([None, "a.smith@x.org", "asmith@x.org"]),
        birth_date=rng.choice([None, BORN, date(2015, 4, 3), date(2015, 3, 5), date(2016, 3, 4)]),
        grade=rng.choice([None, "KG", "01", "02"]),
        school=rng.choice([None, "Elm", "Oak"]),
    )


def test_a_missing_field_never_scores_above_the_same_field_agreeing():
    rng = random.Random(7)
    for trial in range(150):
        a, b = random_person(rng, "a"), random_person(rng, "b")
        for field, blank in FIELD_REMOVALS.items():
            if getattr(a, field) in (None, ""):
                continue
            agreeing, _ = score_pair(a, replace(b, **{field: getattr(a, field)}))
            missing, _ = score_pair(replace(a, **{field: blank}), replace(b, **{field: blank}))
            assert missing <= agreeing + 1e-9, (trial, field, a, b)


def test_a_missing_field_lowers_the_best_achievable_score():
    full = person("a", "Maya", "Okafor", BORN)
    score_full, evidence_full = score_pair(full, full)
    score_partial, evidence_partial = score_pair(full, replace(full, birth_date=None))
    assert score_partial < score_full
    assert evidence_partial.max_score < evidence_full.max_score


def test_two_sources_wanting_one_target_are_a_conflict_and_neither_is_automatic():
    source = [person("s1", "Maya", "Okafor", BORN), person("s2", "Maya", "Okafor", BORN)]
    result = match_people(source, [person("t1", "Maya", "Okafor", BORN)])
    assert {d.tier for d in result.decisions.values()} == {Tier.SUGGESTED}
    assert len(result.conflicts) == 1
    assert result.conflicts[0].target_key == "t1"
    assert set(result.conflicts[0].source_keys) == {"s1", "s2"}


def test_a_close_runner_up_keeps_a_match_out_of_the_automatic_tier():
    source = [person("s1", "Jon", "Okafor", BORN)]
    target = [person("t1", "John", "Okafor", BORN), person("t2", "Jonn", "Okafor", BORN)]
    decision = decide(source, target)["s1"]
    assert decision.tier is Tier.SUGGESTED
    # The rival is either too close or plausible enough to be a suggestion itself.
    assert (
        decision.score - decision.runner_up < PEOPLE_THRESHOLDS.margin
        or decision.runner_up >= PEOPLE_THRESHOLDS.suggest
    )


def test_rejected_pairs_are_never_suggested_again():
    source = [person("s1", "Maya", "Okafor", BORN)]
    target = [person("t1", "Maya", "Okafor", BORN)]
    decision = decide(source, target, exclude_pairs={("s1", "t1")})["s1"]
    assert decision.tier is Tier.UNMATCHED
    assert decision.target_key is None


def test_a_rejected_pair_does_not_block_the_right_one():
    source = [person("s1", "Maya", "Okafor", BORN)]
    target = [person("t1", "Maya", "Okafor", BORN), person("t2", "Maya", "Okafor", BORN)]
    decision = decide(source, target, exclude_pairs={("s1", "t1")})["s1"]
    assert decision.tier is Tier.AUTO
    assert decision.target_key == "t2"


def test_fixed_links_are_not_rescored_and_their_targets_not_reused():
    source = [person("s1", "Completely", "Different"), person("s2", "Maya", "Okafor", BORN)]
    target = [person("t1", "Maya", "Okafor", BORN)]
    result = match_people(source, target, fixed={"s1": "t1"})
    linked = result.decisions["s1"]
    assert (linked.tier, linked.target_key, linked.evidence) == (Tier.LINKED, "t1", None)
    # s2 is t1's exact twin record, but t1 is taken.
    assert result.decisions["s2"].tier is Tier.UNMATCHED
    assert result.links() == {"s1": "t1"}


def test_twins_are_never_matched_automatically_to_each_other():
    # One twin in the SIS, the other in the app: same family name and birth date.
    for given_a, given_b in (("Liam", "Noah"), ("Ella", "Emma"), ("Mia", "Maya")):
        decision = decide(
            [person("s1", given_a, "Okafor", BORN, grade="03", school="Elm")],
            [person("t1", given_b, "Okafor", BORN, grade="03", school="Elm")],
        )["s1"]
        assert decision.tier is not Tier.AUTO, (given_a, given_b)


def test_a_new_twin_keeps_the_other_twin_in_review():
    # Both twins in the SIS, only one in the app yet. Names one letter apart could be a
    # typo ("Aiden" for "Aidan"), so both want the one app record: neither is automatic.
    source = [person("s1", "Aidan", "Okafor", BORN), person("s2", "Aiden", "Okafor", BORN)]
    result = match_people(source, [person("t1", "Aidan", "Okafor", BORN)])
    assert Tier.AUTO not in {d.tier for d in result.decisions.values()}
    assert [c.target_key for c in result.conflicts] == ["t1"]


def test_twins_on_both_sides_each_find_their_own_record():
    source = [person("s1", "Liam", "Okafor", BORN), person("s2", "Noah", "Okafor", BORN)]
    target = [person("t1", "Noah", "Okafor", BORN), person("t2", "Liam", "Okafor", BORN)]
    result = match_people(source, target)
    assert result.links() == {"s1": "t2", "s2": "t1"}


def test_swapped_day_and_month_still_match_with_a_note():
    decision = decide(
        [person("s1", "Maya", "Okafor", date(2015, 3, 4))],
        [person("t1", "Maya", "Okafor", date(2015, 4, 3))],
    )["s1"]
    assert decision.tier is Tier.AUTO
    assert decision.evidence is not None
    assert "birth date: day and month swapped" in decision.evidence.notes


def test_a_far_birth_date_is_never_automatic():
    decision = decide(
        [person("s1", "Maya", "Okafor", date(2015, 3, 4), email="maya.okafor@x.org")],
        [person("t1", "Maya", "Okafor", date(2012, 11, 20), email="maya.okafor@x.org")],
    )["s1"]
    assert decision.tier is not Tier.AUTO


@pytest.mark.parametrize(
    ("source_name", "target_name", "note"),
    [
        (("José", "Núñez"), ("Jose", "Nunez"), None),
        (("Anne-Marie", "Smith-Jones"), ("Anne Marie", "Smith Jones"), None),
        (("Bob", "Okafor"), ("Robert", "Okafor"), "given name: nickname"),
        (("Liz", "Okafor"), ("Elizabeth", "Okafor"), "given name: nickname"),
        (("Okafor", "Maya"), ("Maya", "Okafor"), "given and family name swapped"),
        (("Maya", "O'Brien"), ("MAYA", "OBrien"), None),
    ],
)
def test_accents_hyphens_nicknames_and_swaps_match(source_name, target_name, note):
    decision = decide([person("s1", *source_name, BORN)], [person("t1", *target_name, BORN)])["s1"]
    assert decision.tier is Tier.AUTO
    assert decision.evidence is not None
    if note:
        assert note in decision.evidence.notes


def test_a_double_family_name_shortened_is_found():
    decision = decide(
        [person("s1", "Maya", "Garcia", BORN)], [person("t1", "Maya", "Garcia-Lopez", BORN)]
    )["s1"]
    assert decision.target_key == "t1"
    assert decision.tier in (Tier.AUTO, Tier.SUGGESTED)


def test_an_initial_is_never_enough_for_the_automatic_tier():
    decision = decide([person("s1", "M", "Okafor", BORN)], [person("t1", "Maya", "Okafor", BORN)])[
        "s1"
    ]
    assert decision.tier is not Tier.AUTO
    assert decision.target_key in (None, "t1")


def test_people_of_different_kinds_are_never_paired():
    source = [person("s1", "Maya", "Okafor", BORN, kind=PersonKind.GUARDIAN)]
    target = [person("t1", "Maya", "Okafor", BORN, kind=PersonKind.STUDENT)]
    assert decide(source, target)["s1"].tier is Tier.UNMATCHED


def test_suggestions_list_their_alternatives():
    source = [person("s1", "Maya", "Okafor", None, school="Elm", grade="03")]
    target = [
        person("t1", "Maya", "Okafor", None, school="Elm", grade="03"),
        person("t2", "Maya", "Okafor", None, school="Elm", grade="04"),
    ]
    decision = decide(source, target)["s1"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t1"
    assert [key for key, _ in decision.alternatives] == ["t2"]


def test_thresholds_refuse_suggest_above_auto():
    with pytest.raises(ValueError):
        Thresholds(auto=0.5, suggest=0.6)


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError):
        match_people([person("s", "A", "B"), person("s", "C", "D")], [])


def test_candidates_come_from_blocks_not_all_pairs():
    rng = random.Random(3)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def random_name() -> str:
        return "".join(rng.choice(letters) for _ in range(7))

    people = [
        person(
            f"p{i}",
            random_name(),
            random_name(),
            date(2010 + rng.randrange(8), 1 + rng.randrange(12), 1 + rng.randrange(28)),
        )
        for i in range(2000)
    ]
    result = match_people(people, [replace(p, key=f"t{p.key}") for p in people])
    assert result.candidate_pairs < 10 * len(people)
    assert result.counts() == {"auto": len(people)}


def test_a_same_named_app_record_without_a_birth_date_does_not_hold_an_exact_match():
    # The app has Maya Okafor born BORN and another Maya Okafor without a birth date: the
    # source agreeing on names and birth date with the first is that child (the second
    # could be her only if the first were another child born the same day).
    source = [person("s1", "Maya", "Okafor", BORN)]
    target = [person("t1", "Maya", "Okafor", BORN), person("t2", "Maya", "Okafor", None)]
    decision = decide(source, target)["s1"]
    assert decision.tier is Tier.AUTO
    assert decision.target_key == "t1"


def test_a_rival_without_a_birth_date_still_holds_a_match_not_far_ahead_of_it():
    # A birth date one day off leads the same names without a birth date by a few bits,
    # not the 1,024 to 1 that would make the rival's missing birth date not matter.
    source = [person("s1", "Maya", "Okafor", BORN)]
    target = [
        person("t1", "Maya", "Okafor", date(2015, 3, 5)),
        person("t2", "Maya", "Okafor", None),
    ]
    decision = decide(source, target)["s1"]
    assert decision.target_key == "t1"
    assert decision.tier is Tier.SUGGESTED
    assert decision.runner_up >= PEOPLE_THRESHOLDS.suggest


def test_a_source_without_a_birth_date_is_not_automatic_between_two_same_named_records():
    source = [person("s1", "Maya", "Okafor", None)]
    target = [person("t1", "Maya", "Okafor", BORN), person("t2", "Maya", "Okafor", None)]
    assert decide(source, target)["s1"].tier is not Tier.AUTO


def test_two_app_records_agreeing_exactly_leave_the_match_to_an_admin():
    source = [person("s1", "Maya", "Okafor", BORN)]
    target = [person("t1", "Maya", "Okafor", BORN), person("t2", "Maya", "Okafor", BORN)]
    assert decide(source, target)["s1"].tier is Tier.SUGGESTED


def test_explain_pairs_names_the_first_reason_a_pair_is_not_automatic():
    # A shared email (a family address) lifts the pairs the gates hold above ``suggest``.
    def mail(name: str) -> dict[str, str]:
        return {"email": f"{name}@home.example"}

    source = [
        person("exact", "Maya", "Okafor", BORN),
        person("no-date", "Liam", "Brennan", None),
        person("twin-ish", "Santiago", "Ferlars", BORN, **mail("ferlars")),
        person("far", "Zoe", "Quill", BORN, **mail("quill")),
        person("moved", "Ada", "Nwosu", BORN, **mail("ada")),
        person("linked", "Ben", "Ito", BORN),
    ]
    target = [
        person("t-exact", "Maya", "Okafor", BORN),
        person("t-no-date", "Liam", "Brennan", date(2012, 1, 2)),
        person("t-twin", "Charlotte", "Ferlars", BORN, **mail("ferlars")),
        person("t-far", "Zoe", "Quill", date(2001, 11, 30), **mail("quill")),
        person("t-moved", "Ada", "Pemberton", BORN, **mail("ada")),
        person("t-linked", "Ben", "Ito", BORN),
    ]
    pairs = [(s.key, t.key) for s, t in zip(source, target, strict=True)]
    pairs += [("exact", "t-far"), ("exact", "no-such-record")]
    fixed = {"linked": "t-linked"}
    outcomes = explain_pairs(source, target, pairs, fixed=fixed)
    decisions = decide(source, target, fixed=fixed)
    assert outcomes == {
        ("exact", "t-exact"): PairOutcome.AUTO,
        ("no-date", "t-no-date"): PairOutcome.BELOW_AUTO,
        ("twin-ish", "t-twin"): PairOutcome.SIBLING,
        ("far", "t-far"): PairOutcome.BIRTH_DATE,
        ("moved", "t-moved"): PairOutcome.OTHER_NAME,
        ("linked", "t-linked"): PairOutcome.LINKED,
        ("exact", "t-far"): PairOutcome.NOT_A_CANDIDATE,
        ("exact", "no-such-record"): PairOutcome.NOT_A_CANDIDATE,
    }
    # The outcomes are the decisions': automatic, suggested (held by a gate or below
    # ``auto``), linked.
    assert decisions["exact"].tier is Tier.AUTO
    for key in ("no-date", "twin-ish", "far", "moved"):
        assert decisions[key].tier is Tier.SUGGESTED, key
    assert decisions["linked"].tier is Tier.LINKED
