"""Class matching: teachers first, term window, title and subject similarity."""

from __future__ import annotations

from datetime import date, timedelta

from rostersync.matching.classes import match_classes
from rostersync.matching.records import ClassRecord
from rostersync.models import Tier

START, END = date(2024, 9, 2), date(2025, 6, 20)


def klass(key: str, title: str, teachers: frozenset[str] = frozenset({"teacher-1"}), **fields):
    fields.setdefault("start_date", START)
    fields.setdefault("end_date", END)
    return ClassRecord(key=key, title=title, teacher_keys=teachers, **fields)


def test_same_title_subject_teacher_and_term_is_automatic():
    source = [klass("s1", "Math 7 - Period 2", subject="Mathematics", school="Elm")]
    target = [klass("t1", "Math 7", subject="Mathematics", school="Elm")]
    decision = match_classes(source, target).decisions["s1"]
    assert (decision.tier, decision.target_key) == (Tier.AUTO, "t1")


def test_a_class_whose_teacher_is_not_linked_is_not_matched_by_default():
    source = [klass("s1", "Math 7", teachers=frozenset())]
    target = [klass("t1", "Math 7", class_code="M7")]
    assert match_classes(source, target).decisions["s1"].tier is Tier.UNMATCHED
    assert match_classes(source, target).candidate_pairs == 0
    relaxed = match_classes(
        [klass("s1", "Math 7", teachers=frozenset(), class_code="M7")],
        target,
        teacher_required=False,
    ).decisions["s1"]
    assert relaxed.target_key == "t1"


def test_a_different_teacher_gives_no_candidate():
    source = [klass("s1", "Math 7", teachers=frozenset({"teacher-2"}))]
    assert match_classes(source, [klass("t1", "Math 7")]).decisions["s1"].tier is Tier.UNMATCHED


def test_terms_more_than_the_window_apart_are_denied():
    last_year = klass("t1", "Math 7", start_date=START - timedelta(days=365), end_date=END)
    assert match_classes([klass("s1", "Math 7")], [last_year]).decisions["s1"].tier is (
        Tier.UNMATCHED
    )
    shifted = klass("t1", "Math 7", start_date=START + timedelta(days=20))
    assert match_classes([klass("s1", "Math 7")], [shifted]).decisions["s1"].target_key == "t1"
    wider = match_classes([klass("s1", "Math 7")], [last_year], date_window_days=400)
    assert wider.decisions["s1"].target_key == "t1"


def test_missing_dates_lower_the_score():
    with_dates = match_classes([klass("s1", "Math 7")], [klass("t1", "Math 7")])
    without = match_classes(
        [klass("s1", "Math 7", start_date=None, end_date=None)], [klass("t1", "Math 7")]
    )
    assert without.decisions["s1"].score < with_dates.decisions["s1"].score


def test_the_most_similar_title_and_subject_win():
    source = [klass("s1", "Biology Honors", subject="Science")]
    target = [
        klass("t1", "Chemistry", subject="Science"),
        klass("t2", "Honors Biology", subject="Science"),
        klass("t3", "Art", subject="Arts"),
    ]
    decision = match_classes(source, target).decisions["s1"]
    assert (decision.tier, decision.target_key) == (Tier.AUTO, "t2")


def test_sections_are_told_apart_by_class_code_or_left_for_review():
    target = [
        klass("t1", "Math 7", class_code="M7-1"),
        klass("t2", "Math 7", class_code="M7-2"),
    ]
    by_code = match_classes([klass("s1", "Math 7", class_code="M7-2")], target)
    assert (by_code.decisions["s1"].tier, by_code.decisions["s1"].target_key) == (Tier.AUTO, "t2")
    no_code = match_classes([klass("s1", "Math 7")], target)
    assert no_code.decisions["s1"].tier is Tier.SUGGESTED


def test_classes_in_different_schools_never_match():
    source = [klass("s1", "Math 7", school="Elm")]
    target = [klass("t1", "Math 7", school="Oak")]
    assert match_classes(source, target).decisions["s1"].tier is Tier.UNMATCHED


def test_fixed_and_rejected_classes():
    source = [klass("s1", "Math 7"), klass("s2", "Math 7")]
    target = [klass("t1", "Math 7")]
    result = match_classes(source, target, fixed={"s1": "t1"})
    assert result.decisions["s1"].tier is Tier.LINKED
    assert result.decisions["s2"].tier is Tier.UNMATCHED
    rejected = match_classes([klass("s1", "Math 7")], target, exclude_pairs={("s1", "t1")})
    assert rejected.decisions["s1"].tier is Tier.UNMATCHED
