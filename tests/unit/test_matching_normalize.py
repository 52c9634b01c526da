"""Normalization helpers used by matching."""

from __future__ import annotations

import pytest

from rostersync.matching.nicknames import are_nicknames
from rostersync.matching.normalize import (
    email_local_part,
    fold_name,
    grade_level,
    soundex,
    strip_leading_zeros,
)


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        ("  Anne-Marie  O'Neil ", "anne marie oneil"),
        ("Zoë Núñez", "zoe nunez"),
        ("Søndergaard", "sondergaard"),
        ("STRASSE Straße", "strasse strasse"),
        ("--", ""),
        ("Иван Петров", "ivan petrov"),
        ("メイ01", "mei01"),
        ("さくら", "sakura"),
    ],
)
def test_fold_name(raw, folded):
    assert fold_name(raw) == folded


def test_soundex_groups_spellings_that_sound_alike():
    assert soundex("robert") == soundex("rupert") == "R163"
    assert soundex("smith") == soundex("smyth")
    assert soundex("") == ""


def test_identifier_and_email_variants():
    assert strip_leading_zeros("000123") == "123"
    assert strip_leading_zeros("000") == "0"
    assert email_local_part(" Jo.Smith+art@School.org ") == "josmith"
    assert email_local_part("not an email") == ""


@pytest.mark.parametrize(
    ("grade", "level"), [("KG", 0), ("07", 7), ("7", 7), ("PK", -1), ("Year 9", 9), ("", None)]
)
def test_grade_level(grade, level):
    assert grade_level(grade) == level


def test_nicknames():
    assert are_nicknames("Bob", "Robert")
    assert are_nicknames("liz", "ELIZABETH")
    assert are_nicknames("Kate", "Katherine")
    assert not are_nicknames("Samuel", "Samantha")
    assert not are_nicknames("", "Robert")
