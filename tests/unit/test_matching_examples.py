"""Links an admin confirmed (and key links) as labelled examples: the match model learns
the district's own habits from them."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest

from rostersync.matching.people import match_people
from rostersync.matching.records import PersonKind, PersonRecord
from rostersync.pipeline.identity_match import confirmed_examples

SYLLABLES = ["ba", "ko", "ri", "ma", "nu", "se", "lo", "vi", "da", "te", "mo", "ka"]


def canonical(source_id: str, given: str, family: str) -> dict[str, Any]:
    return {"source_id": source_id, "role": "student", "given_name": given, "family_name": family}


def app_row(app_id: str, given: str, family: str, born: date | None) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "kind": "student",
        "given_name": given,
        "family_name": family,
        "birth_date": born.isoformat() if born else None,
    }


def shifted_district(n: int) -> tuple[list[tuple[dict[str, Any], str]], list[dict[str, Any]], dict]:
    """``n`` confirmed links of a district whose app stored every birth date a day early
    (local midnight written as UTC): (canonical record, app id) links, app rows, births."""
    rng = random.Random(11)
    confirmed, app, birth = [], [], {}
    for i in range(n):
        given = "".join(rng.choices(SYLLABLES, k=3)).capitalize()
        family = "".join(rng.choices(SYLLABLES, k=3)).capitalize()
        born = date(2010, 1, 1) + timedelta(days=rng.randrange(6 * 365))
        confirmed.append((canonical(f"s{i}", given, family), f"a{i}"))
        app.append(app_row(f"a{i}", given, family, born - timedelta(days=1)))
        birth[f"s{i}"] = born
    return confirmed, app, birth


def test_confirmed_links_become_source_and_app_record_pairs():
    confirmed = [
        (canonical("s1", "Maya", "Brennan"), "a1"),
        (canonical("s2", "Liam", "Okafor"), "gone"),  # the app no longer holds it
        (canonical("s3", "Ann", "Lee"), "c3"),  # an app class, not a person
    ]
    app = [
        app_row("a1", "Maya", "Brennan", date(2013, 5, 6)),
        {**app_row("c3", "Ann", "Lee", None), "kind": "class"},
    ]
    pairs = confirmed_examples(confirmed, app, {"s1": date(2013, 5, 7)}, {})
    assert [(s.key, t.key) for s, t in pairs] == [("s1", "a1")]
    source, target = pairs[0]
    assert source.kind is target.kind is PersonKind.STUDENT
    assert (source.birth_date, target.birth_date) == (date(2013, 5, 7), date(2013, 5, 6))


@pytest.mark.parametrize("links", [20, 300])
def test_a_habit_taught_by_confirmed_links_ranks_the_true_record_first(links):
    # The app has two Maya Brennans: one born a day before the SIS's date (this app's
    # habit), one whose birth date is the SIS's with day and month swapped. Untaught,
    # the swapped date is the likelier typo; taught by the district's confirmed links,
    # the record a day early is hers. With many links nearly none agreeing exactly, the
    # links overrule the guard against learning that exact birth dates are rare.
    source = [
        PersonRecord(key="s", given_name="Maya", family_name="Brennan", birth_date=date(2013, 5, 7))
    ]
    true = PersonRecord(
        key="t-true", given_name="Maya", family_name="Brennan", birth_date=date(2013, 5, 6)
    )
    other = PersonRecord(
        key="t-other", given_name="Maya", family_name="Brennan", birth_date=date(2013, 7, 5)
    )
    untaught = match_people(source, [true, other]).decisions["s"]
    assert untaught.target_key == "t-other"

    confirmed, app, birth = shifted_district(links)
    examples = confirmed_examples(confirmed, app, birth, {})
    assert len(examples) == links
    taught = match_people(source, [true, other], examples=examples).decisions["s"]
    assert taught.target_key == "t-true"
    assert taught.evidence is not None
    assert "birth date: one digit or one day off" in taught.evidence.notes
