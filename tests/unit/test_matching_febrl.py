"""FEBRL: automatic matches on real-shaped benchmark data stay precise."""

from __future__ import annotations

import csv
import time
from datetime import date
from pathlib import Path

import pytest

from rostersync.matching.people import match_people
from rostersync.matching.records import PersonRecord
from rostersync.models import Tier
from tests.bundles import SHARED_DATA

FEBRL = SHARED_DATA / "febrl"


def load(path: Path) -> list[PersonRecord]:
    def born(text: str) -> date | None:
        text = text.strip()
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
        except ValueError:
            return None

    with path.open(newline="") as handle:
        return [
            PersonRecord(
                key=row["rec_id"].strip(),
                given_name=row["given_name"],
                family_name=row["surname"],
                birth_date=born(row["date_of_birth"]),
            )
            for row in csv.DictReader(handle, skipinitialspace=True)
        ]


def person_of(key: str) -> str:
    return key.split("-")[1]


@pytest.mark.skipif(not FEBRL.is_dir(), reason="FEBRL data not found")
@pytest.mark.parametrize("name", ["dataset1.csv", "dataset2.csv"])
def test_automatic_matches_on_febrl_are_precise(name):
    records = load(FEBRL / name)
    originals = [r for r in records if r.key.endswith("-org")]
    # The first duplicate of each person: one-to-one matching expects at most one source
    # record per target.
    duplicates = [r for r in records if r.key.endswith("-dup-0")]
    started = time.perf_counter()
    result = match_people(duplicates, originals)
    elapsed = time.perf_counter() - started

    auto = [d for d in result.decisions.values() if d.tier is Tier.AUTO]
    right = sum(person_of(d.source_key) == person_of(d.target_key or "") for d in auto)
    assert right / len(auto) >= 0.999
    assert right / len(duplicates) >= 0.6
    assert elapsed < 5


@pytest.mark.skipif(not FEBRL.is_dir(), reason="FEBRL data not found")
def test_no_automatic_match_between_unrelated_febrl_files():
    # The two files are independent: a rec number in one is another person in the other.
    first = [r for r in load(FEBRL / "dataset1.csv") if r.key.endswith("-org")]
    second = [r for r in load(FEBRL / "dataset2.csv") if "-dup-" in r.key]
    result = match_people(second, first)
    assert result.counts().get("auto", 0) == 0
