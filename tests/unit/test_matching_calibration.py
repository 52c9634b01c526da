"""The match model's calibration: u without the run's own true pairs, term frequencies
without the pair's own two values, plausibility of learned m, and twins."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

import numpy as np

from rostersync.matching.blocking import candidate_pairs
from rostersync.matching.encoding import Vocabularies, encode_people
from rostersync.matching.model import M_EXACT_MIN, random_pairs, train
from rostersync.matching.people import match_people, score_pair
from rostersync.matching.records import PersonRecord
from rostersync.matching.scoring import BIRTH, FAMILY, FIELDS, GIVEN, compare_pairs, name_tables
from rostersync.models import Tier

BORN = date(2014, 6, 9)
SYLLABLES = ["ba", "ko", "ri", "ma", "nu", "se", "lo", "vi", "da", "te", "mo", "ka"]


def person(key: str, given: str, family: str, born: date | None = BORN, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def roster(n: int, seed: int, prefix: str) -> list[PersonRecord]:
    """``n`` distinct made-up children: three-syllable names, birth dates over six years."""
    rng = random.Random(seed)
    return [
        person(
            f"{prefix}{i}",
            "".join(rng.choices(SYLLABLES, k=3)).capitalize(),
            "".join(rng.choices(SYLLABLES, k=3)).capitalize(),
            date(2010, 1, 1) + timedelta(days=rng.randrange(6 * 365)),
        )
        for i in range(n)
    ]


def model_of(source: list[PersonRecord], target: list[PersonRecord]):
    vocab = Vocabularies()
    s, t = encode_people(source, vocab), encode_people(target, vocab)
    tables = name_tables(vocab.names)
    si, ti = candidate_pairs(s, t, tables.nicknames)
    comparisons = compare_pairs(s, t, tables, si, ti)
    return s, t, tables, train(s, t, tables, comparisons, (si, ti))


def test_random_pairs_of_a_small_run_leave_its_true_pairs_out_of_u():
    # Both sides the same 400 children: among all 160,000 pairs, the 400 true ones agree
    # on the birth date about as often as the coincidences do.
    people = roster(400, seed=1, prefix="a")
    copies = [PersonRecord(**{**_fields(p), "key": "b" + p.key[1:]}) for p in people]
    s, t, tables, model = model_of(people, copies)
    raw = random_pairs(s, t, tables).u()
    assert model.u[BIRTH][1] < raw[BIRTH][1] / 2
    assert model.level_weights()[BIRTH][1] > float(np.log2(model.m[BIRTH][1] / raw[BIRTH][1]))


def _fields(record: PersonRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in PersonRecord.__slots__}


def test_a_roster_without_true_pairs_keeps_the_default_weight_of_names():
    # Another school's roster: no child is in the app, but many share a given name and a
    # birth date with one there. The model must not learn that family names tell nothing,
    # and another family name is never automatic.
    app = roster(600, seed=2, prefix="t")
    rng = random.Random(3)
    other = [
        person(f"s{i}", rng.choice(app).given_name, "Zz" + "".join(rng.choices(SYLLABLES, k=2)))
        for i in range(300)
    ]
    other = [
        PersonRecord(
            **{**_fields(p), "birth_date": app[i].birth_date, "given_name": app[i].given_name}
        )
        for i, p in enumerate(other)
    ]
    *_, model = model_of(other, app)
    assert model.m[FAMILY][1] >= M_EXACT_MIN
    assert model.level_weights()[FAMILY][-1] < -3
    result = match_people(other, app)
    assert result.counts().get(Tier.AUTO.value, 0) == 0


def test_learned_weights_rank_the_true_pair_first():
    # A tiny labelled set: this district's SIS writes the birth date with day and month
    # swapped for most children. Taught so, the model prefers the swapped birth date of
    # the true record over an exact birth date with another family name.
    known = []
    for i in range(40):
        born = date(2012, 1 + i % 12, 13 + i % 15)
        app = person(f"t-known{i}", f"Given{i}", f"Family{i}", born)
        swapped = date(born.year, born.day, born.month) if born.day <= 12 else born
        sis_born = swapped if swapped != born else born.replace(day=born.month)
        known.append((person(f"s-known{i}", f"Given{i}", f"Family{i}", sis_born), app))
    source = [person("s1", "Maya", "Brennan", date(2013, 5, 7))]
    true = person("t-true", "Maya", "Brennan", date(2013, 7, 5))
    other = person("t-other", "Maya", "Okafor", date(2013, 5, 7))
    taught = match_people(source, [true, other], examples=known).decisions["s1"]
    assert taught.target_key == "t-true"
    assert taught.evidence is not None
    assert "birth date: day and month swapped" in taught.evidence.notes


def test_twins_in_one_grade_and_school_are_not_held_for_review():
    pupil = person("t1", "Charlotte", "Ferlars", grade="03", school="Elm")
    # Last year's grade in the app still counts as the same class year.
    for grade in ("03", "02"):
        twin = person("s1", "Santiago", "Ferlars", grade=grade, school="Elm")
        assert match_people([twin], [pupil]).decisions["s1"].tier is Tier.UNMATCHED
    # Without grade and school the same pattern may be one child whose given name was
    # replaced: it is an admin's call, never automatic.
    bare = match_people(
        [person("s1", "Santiago", "Ferlars")], [person("t1", "Charlotte", "Ferlars")]
    ).decisions["s1"]
    assert bare.tier is not Tier.AUTO
    _, evidence = score_pair(
        person("s1", "Santiago", "Ferlars", grade="03", school="Elm"),
        person("t1", "Charlotte", "Ferlars", grade="03", school="Elm"),
    )
    assert any("twins" in note for note in evidence.notes)


def test_a_learned_model_finds_the_share_of_sources_with_a_match():
    # Half of the sources are in the app: EM estimates about that share, and exact
    # agreement weighs for a match and outright difference against, field by field.
    people = roster(400, seed=4, prefix="a")
    app = [PersonRecord(**{**_fields(p), "key": "t" + p.key[1:]}) for p in people[:200]]
    *_, model = model_of(people, app + roster(200, seed=5, prefix="u"))
    assert 0.4 < model.match_rate < 0.6
    for f in (GIVEN, FAMILY, BIRTH):
        weights = model.level_weights()[f]
        assert weights[1] > 5 and weights[-1] < -3, FIELDS[f]


def test_a_record_without_a_given_name_is_never_linked_automatically_to_a_twin_or_anyone():
    # The app holds one twin; the SIS sends the other without a given name. Family name,
    # birth date, grade, school and the family's email agree: only the given name could
    # tell them apart, so an admin decides.
    home = "ferlars.family@home.example"
    pupil = person("t1", "Charlotte", "Ferlars", grade="03", school="Elm", email=home)
    nameless = person("s1", "", "Ferlars", grade="03", school="Elm", email=home)
    decision = match_people([nameless], [pupil]).decisions["s1"]
    assert decision.tier is Tier.SUGGESTED
    assert decision.target_key == "t1"
    assert decision.evidence is not None
    assert "given_name" in decision.evidence.missing
    # Its given name there, the same record is automatic.
    named = replace(nameless, given_name="Charlotte")
    assert match_people([named], [pupil]).decisions["s1"].tier is Tier.AUTO
