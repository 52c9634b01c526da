"""People matching gives the same outcome for the same records, whatever their order and
whatever the process: the same scores, tiers, explanations, alternatives, runner-ups and
chosen targets, byte for byte.

A district's export order is not stable from one day to the next, and a caller may hand
the records over in the order of a set of ids (which differs between processes of
different ``PYTHONHASHSEED``). The district here is a generated one
(``rostersync.generator`` and the app ``rostersync.existing_app`` builds from it), matched
the way the second day of a sync matches: some records linked already, a few pairs an
admin rejected, the links an admin confirmed given as examples."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from rostersync.existing_app import build_existing_app
from rostersync.generator import generate_district
from rostersync.matching.classes import match_classes
from rostersync.matching.encoding import Vocabularies, encode_people
from rostersync.matching.model import U_SAMPLE, random_pairs
from rostersync.matching.people import MatchResult, explain_pairs, match_people
from rostersync.matching.records import ClassRecord, PersonKind, PersonRecord
from rostersync.matching.scoring import BIRTH, DATE_EXACT, name_tables

REPO = Path(__file__).resolve().parents[2]
#: Large enough that the model's ``u`` comes from a sample of the pairs (more than
#: 200,000 pairs), small enough to match in about a second.
STUDENTS = 3000

T = TypeVar("T")


@dataclass(frozen=True)
class Day:
    """One match's input: both sides, the links made already, the pairs rejected, the
    confirmed examples, and the true pairs (for ``explain_pairs``)."""

    source: list[PersonRecord]
    target: list[PersonRecord]
    fixed: dict[str, str]
    rejected: frozenset[tuple[str, str]]
    examples: list[tuple[PersonRecord, PersonRecord]]
    truth: list[tuple[str, str]]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def load_day(folder: Path) -> Day:
    """The district in ``folder`` (a bundle in ``bundle``, the app in ``app.csv``) as a
    second day's match, in file order."""
    bundle = folder / "bundle"
    schools = {o["sourcedId"]: o["name"] for o in _rows(bundle / "orgs.csv")}
    born = {d["sourcedId"]: d["birthDate"] for d in _rows(bundle / "demographics.csv")}
    source = [
        PersonRecord(
            key=u["sourcedId"],
            kind=PersonKind.STUDENT if u["role"] == "student" else PersonKind.TEACHER,
            given_name=u["givenName"],
            family_name=u["familyName"],
            middle_name=u["middleName"] or None,
            email=u["email"] or None,
            birth_date=_date(born.get(u["sourcedId"])),
            grade=u["grades"].split(",")[0] or None,
            school=next(
                (schools[o].casefold() for o in u["orgSourcedIds"].split(",") if o in schools),
                None,
            ),
        )
        for u in _rows(bundle / "users.csv")
        if u["role"] in ("student", "teacher")
    ]
    app_rows = [a for a in _rows(folder / "app.csv") if a["kind"] in ("student", "teacher")]
    target = [
        PersonRecord(
            key=a["app_id"],
            kind=PersonKind(a["kind"]),
            given_name=a["given_name"],
            family_name=a["family_name"],
            email=a["email"] or None,
            birth_date=_date(a["birth_date"]),
            grade=a["grade"] or None,
            school=a["school"].casefold() or None,
        )
        for a in app_rows
    ]
    of_app = _rows(folder / "truth.csv")
    truth = [(t["source_id"], t["app_id"]) for t in of_app if t["source_id"]]
    by_source = {r.key: r for r in source}
    by_target = {r.key: r for r in target}
    # Day two: a fifth of the true pairs linked already, another tenth confirmed by an
    # admin in an earlier run (examples, still to be matched), and a wrong pair of a
    # hundred students rejected.
    fixed = dict(truth[: len(truth) // 5])
    confirmed = truth[len(truth) // 5 : len(truth) * 3 // 10]
    examples = [(by_source[s], by_target[t]) for s, t in confirmed]
    students = [r.key for r in target if r.kind is PersonKind.STUDENT]
    rejected = frozenset(
        (s, students[(n * 7 + 3) % len(students)])
        for n, (s, _) in enumerate(truth[len(truth) // 2 : len(truth) // 2 + 100])
    )
    return Day(source, target, fixed, rejected, examples, truth)


def match_day(day: Day) -> tuple[MatchResult, str]:
    """The match of ``day`` and its whole outcome as text, by source key: every decision
    (tier, target, score, runner-up, evidence with its contributions, alternatives), the
    contested targets, the number of candidate pairs and ``explain_pairs`` of the true
    pairs."""
    result = match_people(
        day.source, day.target, fixed=day.fixed, exclude_pairs=day.rejected, examples=day.examples
    )
    explained = explain_pairs(
        day.source,
        day.target,
        day.truth,
        fixed=day.fixed,
        exclude_pairs=day.rejected,
        examples=day.examples,
    )
    lines = [repr(result.decisions[key]) for key in sorted(result.decisions)]
    lines += sorted(
        repr((c.target_key, sorted(zip(c.source_keys, c.scores, strict=True))))
        for c in result.conflicts
    )
    lines.append(f"candidate pairs: {result.candidate_pairs}")
    lines += [f"{pair}: {explained[pair].value}" for pair in sorted(explained)]
    return result, "\n".join(lines)


def shuffled(day: Day, seed: int) -> Day:
    """``day`` with its rows (both sides, the links, the examples, the rejected pairs) in
    another order."""
    rng = random.Random(seed)

    def mixed(values: Sequence[T]) -> list[T]:
        out = list(values)
        rng.shuffle(out)
        return out

    return Day(
        mixed(day.source),
        mixed(day.target),
        dict(mixed(list(day.fixed.items()))),
        frozenset(mixed(sorted(day.rejected))),
        mixed(day.examples),
        day.truth,
    )


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("district")
    generate_district(folder / "bundle", students=STUDENTS, seed=11)
    app = build_existing_app(folder / "bundle", folder / "app.csv")
    with (folder / "truth.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["app_id", "source_id"])
        writer.writerows((app_id, source_id or "") for app_id, source_id in app.truth.items())
    return folder


#: A process matching the district in its folder, the rows in the order of a set of their
#: ids (which follows the process's string hashing), printing the outcome.
_CHILD = """
import sys
from pathlib import Path
from tests.unit.test_match_determinism import Day, load_day, match_day

day = load_day(Path(sys.argv[1]))

def by_set(records):
    by_key = {record.key: record for record in records}
    return [by_key[key] for key in set(by_key)]

day = Day(by_set(day.source), by_set(day.target), day.fixed, day.rejected, day.examples,
          day.truth)
sys.stdout.write(match_day(day)[1])
"""


def test_processes_of_different_string_hashing_give_the_same_outcome(district: Path) -> None:
    """Given one district matched in two processes with different ``PYTHONHASHSEED``,
    each handing the matcher its rows in the order of a set of their ids, when both print
    their whole outcome, then the two are identical, and identical to this process's
    match of the rows in file order."""
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        runs.append(
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(district)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        outputs.append(out)
    result, here = match_day(load_day(district))
    assert result.counts()["auto"] > STUDENTS // 2  # a real match, not an empty one
    assert outputs[0] == outputs[1]
    assert outputs[0] == here


def test_rows_in_another_order_give_the_same_outcome_by_id(district: Path) -> None:
    """Given one district's second day, when it is matched with its rows (both sides, the
    links made, the examples, the rejected pairs) in file order and in two shuffled
    orders, then every source record's outcome is the same, byte for byte, and the
    decisions still come in the order the source records were given."""
    day = load_day(district)
    first, expected = match_day(day)
    assert first.counts()["suggested"] > 0
    for seed in (5, 6):
        other = shuffled(day, seed)
        result, outcome = match_day(other)
        assert outcome == expected
        assert list(result.decisions) == [record.key for record in other.source]


def _class(key: str, title: str) -> ClassRecord:
    return ClassRecord(
        key=key, title=title, subject="Math", teacher_keys=frozenset({"teacher-1"}), school="s"
    )


def test_classes_tied_for_a_source_are_decided_by_key_not_by_order() -> None:
    """Given an SIS class and two app classes it matches equally well, when they are
    matched with the app classes in either order, then the same app class is suggested
    with the same alternatives and runner-up."""
    source = [_class("sis-1", "Math 7")]
    target = [_class("app-b", "Math 7"), _class("app-a", "Math 7")]
    outcomes = {repr(match_classes(source, order).decisions) for order in (target, target[::-1])}
    assert len(outcomes) == 1
    (decision,) = match_classes(source, target).decisions.values()
    assert decision.target_key == "app-a"


def test_the_birthday_coincidences_u_weighs_are_counted_not_sampled(district: Path) -> None:
    """Given a district too large for ``u`` to compare every pair, when the random pairs
    are drawn with different seeds, then the pairs agreeing exactly on the birth date are
    the share of the sample of all the pairs born the same day (counted here pair by
    value), whatever the sample: an exact birth date's weight depends on that number, and
    sampled, a few coincidences in 200,000 pairs, it moved a pupil's score by bits."""
    day = load_day(district)
    vocab = Vocabularies()
    source, target = encode_people(day.source, vocab), encode_people(day.target, vocab)
    tables = name_tables(vocab.names)
    total = len(source) * len(target)
    assert total > U_SAMPLE
    born_s = Counter(r.birth_date for r in day.source if r.birth_date is not None)
    born_t = Counter(r.birth_date for r in day.target if r.birth_date is not None)
    same_day = sum(n * born_t[value] for value, n in born_s.items())
    assert same_day > 0
    samples = [random_pairs(source, target, tables, seed) for seed in range(4)]
    for sample in samples:
        assert sample.fraction == U_SAMPLE / total
        assert sample.counts[BIRTH][DATE_EXACT] == pytest.approx(same_day * sample.fraction)
        # As many pairs as the sample drew (those with both birth dates).
        assert sample.counts[BIRTH][1:].sum() == pytest.approx(
            samples[0].counts[BIRTH][1:].sum(), rel=0.01
        )
    # What is left to the sample is how many pairs have both birth dates.
    bits = [float(np.log2(s.u()[BIRTH][DATE_EXACT])) for s in samples]
    assert max(bits) - min(bits) < 0.01
