"""Blocking on a name's first letter (keys 16 to 19): pairs sharing no exact name and no
Soundex code reach scoring, in blocks of at most ``LOOSE_CAP`` records a side."""

from __future__ import annotations

from datetime import date

from rostersync.matching.blocking import LOOSE_CAP
from rostersync.matching.people import candidate_keys
from rostersync.matching.records import PersonRecord


def person(key: str, given: str, family: str, born: date | None) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born)


BORN = date(1990, 2, 16)


def test_a_given_name_typo_beside_a_replaced_family_name_is_a_candidate_by_birth_date():
    # "Betie"/"Bertie": other Soundex codes (B300, B630) and other prefixes; the family
    # name replaced. Only the birth date and the first letter are shared.
    source = [person("s", "Betie", "Nguyen", BORN)]
    target = [person("t", "Bertie", "Whetstone", BORN)]
    assert ("s", "t") in candidate_keys(source, target)


def test_the_first_letter_is_also_read_from_the_other_name():
    # The names written in each other's places, the given name mistyped, the family name
    # replaced.
    source = [person("s", "Nguyen", "Betie", BORN)]
    target = [person("t", "Bertie", "Whetstone", BORN)]
    assert ("s", "t") in candidate_keys(source, target)


def test_another_birth_date_and_no_shared_name_is_no_candidate():
    source = [person("s", "Betie", "Nguyen", date(1991, 2, 16))]
    target = [person("t", "Bertie", "Whetstone", BORN)]
    assert ("s", "t") not in candidate_keys(source, target)


def test_a_crowded_first_letter_block_is_skipped():
    # Three children born that day whose given names start with a B: the block is above
    # the cap, and nothing else ties the typo to its original.
    source = [person("s", "Betie", "Nguyen", BORN)]
    target = [
        person("t", "Bertie", "Whetstone", BORN),
        person("t2", "Boris", "Young", BORN),
        person("t3", "Bella", "Ward", BORN),
    ]
    assert len(target) > LOOSE_CAP
    assert ("s", "t") not in candidate_keys(source, target)
    assert ("s", "t") in candidate_keys(source, target[:LOOSE_CAP])


def test_a_family_name_and_an_initial_reach_a_replaced_birth_date():
    # "Imzogen"/"Imogen": other Soundex codes and prefixes; the birth dates six years
    # apart.
    source = [person("s", "Imzogen", "Akroyd", date(1930, 12, 6))]
    target = [person("t", "Imogen", "Akroyd", date(1936, 12, 18))]
    assert ("s", "t") in candidate_keys(source, target)
    swapped = [person("s", "Akroyd", "Imzogen", date(1930, 12, 6))]
    assert ("s", "t") in candidate_keys(swapped, target)


def test_a_record_without_a_birth_date_is_not_blocked_on_a_name_and_an_initial():
    # Its pairs would count as rivals at what they could reach had the birth dates
    # agreed, holding back other records' automatic links.
    target = [person("t", "Imogen", "Akroyd", date(1936, 12, 18))]
    assert ("s", "t") not in candidate_keys([person("s", "Imzogen", "Akroyd", None)], target)
    source = [person("s", "Imzogen", "Akroyd", date(1930, 12, 6))]
    assert ("s", "t") not in candidate_keys(source, [person("t", "Imogen", "Akroyd", None)])
