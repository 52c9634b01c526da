"""Key discovery and exact key matching."""

from __future__ import annotations

import random

from rostersync.matching.keys import KeySpec, match_by_keys, propose_keys
from rostersync.matching.records import PersonRecord

FAMILIES = ["Okafor", "Brennan", "Nguyen", "Kowalski", "Haddad", "Silva", "Moreau", "Tanaka"]


def roster(size: int = 40) -> tuple[list[PersonRecord], list[PersonRecord]]:
    """A SIS and an app roster of the same children. The SIS's ``sis_id`` is the app's
    ``sis_id``; the SIS's ``state_id`` is zero-padded where the app's is not; and the SIS's
    ``student_number`` coincides value for value with the app's ``row`` number, but on
    different children (a decoy)."""
    rng = random.Random(11)
    people = [(f"Child{i}", rng.choice(FAMILIES) + str(i)) for i in range(size)]
    source = [
        PersonRecord(
            key=f"S{i}",
            given_name=given,
            family_name=family,
            email=f"child{i}@school.example",
            identifiers={
                "sis_id": f"SIS-{i:04d}",
                "state_id": f"{i + 1000:08d}",
                "student_number": str(i + 1),
            },
        )
        for i, (given, family) in enumerate(people)
    ]
    order = list(range(size))
    rng.shuffle(order)
    target = [
        PersonRecord(
            key=f"T{i}",
            given_name=people[i][0],
            family_name=people[i][1],
            email=f"Child{i}@School.example " if i % 2 else None,
            identifiers={
                "sis_id": f"sis-{i:04d}",
                "state": str(i + 1000),
                "row": str(position + 1),
            },
        )
        for position, i in enumerate(order)
    ]
    return source, target


def test_the_real_keys_are_strong_and_the_decoy_is_not():
    source, target = roster()
    proposals = {(p.source_field, p.target_field): p for p in propose_keys(source, target)}

    real = proposals[("sis_id", "sis_id")]
    assert real.strong
    assert real.support == 40
    assert real.source_overlap == real.target_overlap == 1.0
    assert real.agreement == 1.0

    zeros = proposals[("state_id", "state")]
    assert zeros.strip_leading_zeros
    assert zeros.strong
    assert zeros.spec == KeySpec("state_id", "state", strip_leading_zeros=True)

    email = proposals[("email", "email")]
    assert email.support == 20
    assert email.strong

    decoy = proposals[("student_number", "row")]
    assert decoy.support == 40
    assert not decoy.strong
    assert decoy.agreement is not None and decoy.agreement < 0.5


def test_proposals_are_sorted_strongest_first():
    source, target = roster()
    proposals = propose_keys(source, target)
    strong = [p.strong for p in proposals]
    assert strong == sorted(strong, reverse=True)
    assert proposals[0].support == 40


def test_a_key_with_shared_values_is_not_proposed():
    source = [
        PersonRecord(key=f"S{i}", family_name="A", identifiers={"homeroom": str(i % 3)})
        for i in range(30)
    ]
    target = [
        PersonRecord(key=f"T{i}", family_name="A", identifiers={"homeroom": str(i % 3)})
        for i in range(30)
    ]
    assert propose_keys(source, target) == []


def test_match_by_keys_uses_the_first_key_that_links_uniquely():
    source, target = roster()
    result = match_by_keys(source, target, [("email", "email"), ("sis_id", "sis_id")])
    assert len(result.links) == 40
    assert all(result.links[f"S{i}"] == f"T{i}" for i in range(40))
    assert result.linked_by["S1"] == KeySpec("email", "email")
    assert result.linked_by["S0"] == KeySpec("sis_id", "sis_id")
    assert result.conflicts == ()


def test_stripping_leading_zeros_is_a_key_option():
    source, target = roster()
    result = match_by_keys(source, target, [KeySpec("state_id", "state", True)])
    assert len(result.links) == 40
    assert match_by_keys(source, target, [("state_id", "state")]).links == {}


def test_a_shared_value_is_ambiguous_and_links_nothing():
    source = [
        PersonRecord(key="S1", identifiers={"id": "7", "alt": "a"}),
        PersonRecord(key="S2", identifiers={"id": "8"}),
    ]
    target = [
        PersonRecord(key="T1", identifiers={"id": "7", "alt": "a"}),
        PersonRecord(key="T2", identifiers={"id": "7"}),
        PersonRecord(key="T3", identifiers={"id": "8"}),
    ]
    result = match_by_keys(source, target, [("id", "id"), ("alt", "alt")])
    assert result.links == {"S2": "T3", "S1": "T1"}
    assert result.linked_by["S1"] == KeySpec("alt", "alt")
    ambiguous = [c for c in result.conflicts if c.reason == "ambiguous"]
    assert len(ambiguous) == 1
    assert ambiguous[0].target_keys == ("T1", "T2")


def test_a_taken_target_and_a_disagreeing_key_are_reported():
    source = [
        PersonRecord(key="S1", identifiers={"a": "1", "b": "x"}),
        PersonRecord(key="S2", identifiers={"b": "y"}),
    ]
    target = [
        PersonRecord(key="T1", identifiers={"a": "1", "b": "y"}),
        PersonRecord(key="T2", identifiers={"b": "x"}),
    ]
    result = match_by_keys(source, target, [("a", "a"), ("b", "b")])
    assert result.links == {"S1": "T1"}
    assert {c.reason for c in result.conflicts} == {"taken", "disagrees"}
