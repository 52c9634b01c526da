"""Match quality and speed of ``rostersync.matching`` on FEBRL and on generated districts.

Run: ``.venv/bin/python bench/match_quality.py [--students N] [--skip-febrl] [--skip-district]``

Per data set it prints precision and recall of the automatic tier, of the suggested tier
and of both together, blocking recall (the share of true pairs that reach scoring at all),
the number of candidate pairs scored, the time of ``match_people`` (wall clock, and the CPU
time of all its threads: on a busy machine the wall clock says more about the machine)
and the peak memory of the process that ran it (each data set runs in a fresh process).
Suggestions include the suggestion floor's (``rostersync.matching.floor``: pairs below
``suggest`` agreeing strongly on one axis). Below the table, per labelled set, where the
true pairs not linked automatically went (``explain_pairs``; "floor sug" is a floor
suggestion), and FEBRL's true pairs by how a duplicate differs from its original.
``--sweep`` runs with a low automatic threshold and prints what each higher one would have
given: how the default was chosen (``auto_without_birth_date`` applies as the lower of it
and ``auto``, so the sweep's run uses ``auto`` for every pair, and its columns move
``auto`` alone).

(a) FEBRL (``shared/data/febrl``, names and birth date only). Each file holds original
    records (``rec-N-org``) and duplicates (``rec-N-dup-k``) of the same person N. The
    duplicates are matched against the originals of their own file. FEBRL 2 has up to five
    duplicates of one original; since matching is one-to-one (several sources wanting one
    target is a conflict, never automatic), its duplicates are matched in rounds by ``k``
    (each round holds at most one duplicate per original). Two precision checks with no
    or fewer true matches: "held out" removes every odd-numbered original from the
    targets (every match of a duplicate of one is wrong), and "negative control" matches
    FEBRL 2's duplicates against FEBRL 1's originals (the files are independent: a shared
    rec number is a different person, so every match is wrong).
(b) A generated district (deterministic seed): the app holds N students, the SIS N
    students, 5% of the app's students are gone from the SIS and 5% of the SIS's students
    are new; the SIS copies of the others carry typos, nicknames, swapped day and month,
    missing birth dates, stale grades, accents dropped, double family names shortened;
    1.5% of students are twins, and 1% of the app's students get a new twin or sibling
    born the same day in the SIS (same family name, grade and school: a different child,
    so any match of theirs is wrong). The negative control matches the SIS of a district
    generated with another seed against the app: every match is wrong.
(c) A generated Japanese district of 5,000 (``generate_japanese_district``): the SIS writes
    names in kanji and kana with the school's kana reading of each (``metadata.phonetic*``
    columns, as Japanese exports carry them; 3% of records lack them), the app in romaji
    (long vowels written any of Hepburn's ways) and katakana. A name in kanji meets the
    app's through its reading only; without one, never automatically.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import os
import random
import re
import resource
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from rapidfuzz.distance import OSA

from rostersync.matching.nicknames import are_nicknames
from rostersync.matching.normalize import fold_name
from rostersync.matching.people import (
    MatchResult,
    PairOutcome,
    candidate_keys,
    explain_pairs,
    match_people,
)
from rostersync.matching.records import PersonRecord
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS, Thresholds
from rostersync.models import Tier


def shared_data() -> Path:
    """The shared test data folder (``ROSTERSYNC_SHARED_DATA`` overrides)."""
    override = os.environ.get("ROSTERSYNC_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# --- scoring a run against the truth ---------------------------------------------------


@dataclass
class Quality:
    """Counts of one or more match runs against a known truth."""

    sources: int = 0
    matchable: int = 0  # sources whose true target is among the targets
    auto_right: int = 0
    auto_wrong: int = 0
    suggested_right: int = 0
    suggested_wrong: int = 0
    blocked: int = 0  # matchable sources whose true pair reached scoring
    pairs: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_mb: float = 0.0
    #: (score, right) of every automatic decision, for the threshold sweep.
    auto_scores: list[tuple[float, bool]] = field(default_factory=list)
    #: True pairs not linked automatically, by what became of them (``explain_pairs``).
    losses: Counter[str] = field(default_factory=Counter)
    #: FEBRL only: per corruption class of the true pairs, (count, auto right, suggested
    #: right).
    classes: dict[str, list[int]] = field(default_factory=dict)

    def add(
        self,
        result: MatchResult,
        truth: dict[str, str | None],
        seconds: float,
        cpu_seconds: float,
        candidates: set[tuple[str, str]],
    ) -> None:
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds
        self.pairs += result.candidate_pairs
        for source_key, decision in result.decisions.items():
            self.sources += 1
            expected = truth.get(source_key)
            self.matchable += expected is not None
            self.blocked += expected is not None and (source_key, expected) in candidates
            right = decision.target_key is not None and decision.target_key == expected
            if decision.tier is Tier.AUTO:
                self.auto_scores.append((decision.score, right))
                self.auto_right += right
                self.auto_wrong += not right
            elif decision.tier is Tier.SUGGESTED:
                self.suggested_right += right
                self.suggested_wrong += not right

    def merge(self, other: Quality) -> None:
        for name in self.__dataclass_fields__:
            if name == "peak_mb":
                self.peak_mb = max(self.peak_mb, other.peak_mb)
            elif name == "auto_scores":
                self.auto_scores.extend(other.auto_scores)
            elif name == "losses":
                self.losses.update(other.losses)
            elif name == "classes":
                for label, counts in other.classes.items():
                    mine = self.classes.setdefault(label, [0, 0, 0])
                    mine[:] = [a + b for a, b in zip(mine, counts, strict=True)]
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self, name: str) -> str:
        auto = self.auto_right + self.auto_wrong
        suggested = self.suggested_right + self.suggested_wrong
        both_right = self.auto_right + self.suggested_right
        return (
            f"{name:<36} {self.sources:>7} {self.matchable:>7} "
            f"{_ratio(self.auto_right, auto):>7} {_ratio(self.auto_right, self.matchable):>7} "
            f"{self.auto_wrong:>5} "
            f"{_ratio(self.suggested_right, suggested):>7} "
            f"{_ratio(self.suggested_right, self.matchable):>7} {suggested:>6} "
            f"{_ratio(both_right, auto + suggested):>7} {_ratio(both_right, self.matchable):>7} "
            f"{_ratio(self.blocked, self.matchable):>7} {self.pairs:>9,} "
            f"{self.seconds:>6.2f} {self.cpu_seconds:>6.2f} {self.peak_mb:>6.0f}"
        )

    def loss_row(self, name: str) -> str:
        """The true pairs not linked automatically, by outcome, as shares of the
        matchable sources."""
        cells = [
            f"{self.losses.get(o.value, 0) / self.matchable:>9.4f}" if self.matchable else "-"
            for o in LOSS_COLUMNS
        ]
        return f"{name:<36} " + " ".join(cells)

    def sweep(self, name: str) -> str:
        """Automatic recall and wrong matches had ``auto`` been each of ``SWEEP`` (the run
        itself used the lowest)."""
        cells = []
        for threshold in SWEEP:
            kept = [right for score, right in self.auto_scores if score >= threshold]
            cells.append(f"{_ratio(sum(kept), self.matchable):>7}/{len(kept) - sum(kept):<3}")
        return f"{name:<36} " + " ".join(cells)


#: The ``auto`` thresholds of the sweep (``--sweep``).
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


#: Marks a report's sweep rows (printed in a table of their own).
_SWEEP_MARK = "sweep:"


#: Marks a report's loss rows (printed in a table of their own).
_LOSS_MARK = "losses:"
#: The outcomes of the loss table, in the order the decision applies them.
LOSS_COLUMNS = tuple(o for o in PairOutcome if o not in (PairOutcome.LINKED, PairOutcome.AUTO))
_LOSS_LABELS = (
    "blocking",
    "twins",
    "other 1st",
    "<suggest",
    "floor sug",
    "sibling",
    "no given",
    "initial",
    "othername",
    "birthdate",
    "floor",
    "<auto",
    "contested",
    "runner-up",
)


#: Marks the FEBRL corruption-class rows (printed in a table of their own).
_CLASS_MARK = "classes:"


def _class_rows(quality: Quality) -> list[str]:
    """Per corruption class of FEBRL's true pairs: count, automatic and automatic +
    suggested recall."""
    rows = []
    for label, (n, auto, suggested) in sorted(quality.classes.items(), key=lambda kv: -kv[1][0]):
        rows.append(f"{label:<36} {n:>7} {_ratio(auto, n):>7} {_ratio(auto + suggested, n):>7}")
    return rows


def _rows(quality: Quality, name: str) -> list[str]:
    """A data set's table row, its sweep row and its loss row."""
    rows = [quality.row(name), _SWEEP_MARK + quality.sweep(name)]
    if quality.matchable:
        rows.append(_LOSS_MARK + quality.loss_row(name))
    return rows


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.4f}" if whole else "-"


HEADER = (
    f"{'':<36} {'sources':>7} {'match-':>7} {'auto':>7} {'auto':>7} {'auto':>5} "
    f"{'sugg':>7} {'sugg':>7} {'sugg':>6} {'+sugg':>7} {'+sugg':>7} {'block':>7} {'candidate':>9} "
    f"{'match':>6} {'match':>6} {'peak':>6}\n"
    f"{'':<36} {'':>7} {'able':>7} {'prec':>7} {'recall':>7} {'wrong':>5} "
    f"{'prec':>7} {'recall':>7} {'n':>6} {'prec':>7} {'recall':>7} {'recall':>7} {'pairs':>9} "
    f"{'s':>6} {'cpu s':>6} {'MB':>6}"
)


def _match(
    quality: Quality,
    sources: Sequence[PersonRecord],
    targets: Sequence[PersonRecord],
    truth: dict[str, str | None],
    thresholds: Thresholds,
) -> MatchResult:
    started, cpu_started = time.perf_counter(), time.process_time()
    result = match_people(sources, targets, thresholds=thresholds)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    quality.peak_mb = max(quality.peak_mb, _peak_mb())  # before the explaining below
    quality.add(result, truth, seconds, cpu, candidate_keys(sources, targets))
    lost = [
        (source_key, expected)
        for source_key, expected in truth.items()
        if expected is not None
        and not (
            result.decisions[source_key].tier is Tier.AUTO
            and result.decisions[source_key].target_key == expected
        )
    ]
    if lost:
        outcomes = explain_pairs(sources, targets, lost, thresholds=thresholds)
        quality.losses.update(outcome.value for outcome in outcomes.values())
    return result


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- (a) FEBRL -------------------------------------------------------------------------


def _febrl_date(text: str) -> date | None:
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def load_febrl(path: Path) -> list[PersonRecord]:
    """FEBRL rows as people: rec_id as the key, given name, surname, birth date."""
    with path.open(newline="") as handle:
        return [
            PersonRecord(
                key=row["rec_id"].strip(),
                given_name=row["given_name"],
                family_name=row["surname"],
                birth_date=_febrl_date(row["date_of_birth"]),
            )
            for row in csv.DictReader(handle, skipinitialspace=True)
        ]


def _febrl_person(key: str) -> str:
    return key.split("-")[1]


def _febrl_rounds(records: Sequence[PersonRecord]) -> Iterator[list[PersonRecord]]:
    """The duplicates in rounds by duplicate number, so no round holds two of one person."""
    dups = [r for r in records if "-dup-" in r.key]
    for k in sorted({r.key.rsplit("-", 1)[1] for r in dups}, key=int):
        yield [r for r in dups if r.key.endswith(f"-dup-{k}")]


def _run_febrl(
    quality: Quality,
    sources: Sequence[PersonRecord],
    targets: Sequence[PersonRecord],
    thresholds: Thresholds,
    same_file: bool,
) -> None:
    target_of = {_febrl_person(t.key): t.key for t in targets} if same_file else {}
    truth: dict[str, str | None] = {s.key: target_of.get(_febrl_person(s.key)) for s in sources}
    result = _match(quality, sources, targets, truth, thresholds)
    by_key = {t.key: t for t in targets}
    for source in sources:
        expected = truth[source.key]
        if expected is None:
            continue
        decision = result.decisions[source.key]
        counts = quality.classes.setdefault(febrl_class(source, by_key[expected]), [0, 0, 0])
        right = decision.target_key == expected
        counts[0] += 1
        counts[1] += right and decision.tier is Tier.AUTO
        counts[2] += right and decision.tier is Tier.SUGGESTED


def _field_change(dup: str, org: str) -> str:
    """How a duplicate's name differs from its original's: "" (equal), "missing", "typo"
    (one or two keyboard slips) or "replaced"."""
    if dup == org:
        return ""
    if not dup or not org:
        return "missing"
    return "typo" if OSA.distance(dup, org) <= 2 else "replaced"


def _date_change(dup: date | None, org: date | None) -> str:
    if dup == org:
        return ""
    if dup is None or org is None:
        return "missing"
    differing = sum(a != b for a, b in zip(f"{dup:%Y%m%d}", f"{org:%Y%m%d}", strict=True))
    return "typo" if differing <= 2 else "replaced"


def febrl_class(dup: PersonRecord, org: PersonRecord) -> str:
    """The corruption class of a FEBRL duplicate against its original, on the fields
    matched (given name, surname, birth date): the one field changed and how, "names
    swapped", "none" or "two or more"."""
    given, family = dup.given_name.strip(), dup.family_name.strip()
    org_given, org_family = org.given_name.strip(), org.family_name.strip()
    if (given, family) != (org_given, org_family) and (
        _field_change(given, org_family) in ("", "typo")
        and _field_change(family, org_given) in ("", "typo")
    ):
        return "names swapped"
    changes = [
        f"{label} {change}"
        for label, change in (
            ("given name", _field_change(given, org_given)),
            ("surname", _field_change(family, org_family)),
            ("birth date", _date_change(dup.birth_date, org.birth_date)),
        )
        if change
    ]
    if not changes:
        return "none"
    return changes[0] if len(changes) == 1 else "two or more"


def febrl_report(data: Path, thresholds: Thresholds) -> list[str]:
    """Rows of the FEBRL table."""
    first = load_febrl(data / "febrl" / "dataset1.csv")
    second = load_febrl(data / "febrl" / "dataset2.csv")
    rows: list[str] = []
    total, held, negative = Quality(), Quality(), Quality()
    for name, records in (("FEBRL 1 (500 dups vs 500 orgs)", first), ("FEBRL 2", second)):
        orgs = [r for r in records if r.key.endswith("-org")]
        kept = [r for r in orgs if int(_febrl_person(r.key)) % 2 == 0]
        quality = Quality()
        for dups in _febrl_rounds(records):
            _run_febrl(quality, dups, orgs, thresholds, same_file=True)
            _run_febrl(held, dups, kept, thresholds, same_file=True)
        if name == "FEBRL 2":
            name = f"FEBRL 2 ({quality.sources} dups vs {len(orgs)} orgs)"
        rows += _rows(quality, name)
        total.merge(quality)
    rows += _rows(total, "FEBRL 1 + 2")
    rows += [_CLASS_MARK + row for row in _class_rows(total)]
    rows += _rows(held, "held out (odd orgs removed)")
    first_orgs = [r for r in first if r.key.endswith("-org")]
    second_dups = [r for r in second if "-dup-" in r.key]
    _run_febrl(negative, second_dups, first_orgs, thresholds, same_file=False)
    rows += _rows(negative, "negative control (2's dups vs 1's)")
    return rows


# --- (b) a synthetic district ----------------------------------------------------------

GIVEN = tuple(
    """
Olivia Emma Charlotte Amelia Sophia Mia Isabella Ava Evelyn Luna Harper Sofia Camila
Eleanor Elizabeth Violet Scarlett Emily Hazel Lily Gianna Aurora Penelope Aria Nora
Chloe Ellie Mila Avery Layla Abigail Ella Isla Eliana Nova Madison Zoe Ivy Grace Lucy
Willow Emilia Riley Naomi Victoria Stella Elena Hannah Valentina Maya Zoey Delilah Leah
Lainey Lillian Paisley Genesis Madelyn Sadie Sophie Leilani Addison Natalie Josephine
Alice Ruby Claire Kinsley Everly Emery Adeline Kennedy Maeve Audrey Autumn Athena Eden
Iris Kehlani Jade Freya Katherine Margaret Rebecca Samantha Patricia Jessica Jennifer
Liam Noah Oliver James Elijah Mateo Theodore Henry Lucas William Benjamin Levi Sebastian
Jack Ezra Michael Daniel Leo Owen Samuel Hudson Alexander Asher Luca Ethan John David
Jackson Joseph Mason Luke Matthew Julian Dylan Elias Jacob Maverick Gabriel Logan Aiden
Thomas Isaac Miles Grayson Santiago Anthony Wyatt Carter Jayden Ezekiel Caleb Cooper
Josiah Charles Christopher Isaiah Nolan Cameron Nathan Joshua Kai Waylon Angel Lincoln
Andrew Roman Adrian Aaron Wesley Ian Thiago Axel Brooks Bennett Weston Rowan Christian
Robert Richard Edward Nicholas Timothy Zachary Jonathan Frederick Stephen Peter Philip
""".split()  # noqa: SIM905
)
ACCENTED_GIVEN = ("José", "Zoë", "Chloé", "Renée", "Adrián", "Sofía", "Iñaki", "Björn", "Anaïs")
FAMILY = tuple(
    """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott
Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter
Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart
Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed
Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray
Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez
Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales
Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds
Griffin Wallace
""".split()  # noqa: SIM905
)
ACCENTED_FAMILY = ("Núñez", "Muñoz", "Müller", "Peña", "Ibáñez", "Gómez", "Søndergaard", "O'Brien")
NICKNAMES = {
    "William": "Bill",
    "Robert": "Bob",
    "Elizabeth": "Liz",
    "Katherine": "Kate",
    "James": "Jim",
    "Michael": "Mike",
    "Margaret": "Maggie",
    "Samuel": "Sam",
    "Benjamin": "Ben",
    "Alexander": "Alex",
    "Jonathan": "Jon",
    "Nicholas": "Nick",
    "Zachary": "Zach",
    "Josephine": "Josie",
    "Christopher": "Chris",
    "Daniel": "Danny",
    "Matthew": "Matt",
    "Joshua": "Josh",
    "Timothy": "Tim",
    "Edward": "Ed",
    "Victoria": "Tori",
    "Rebecca": "Becky",
    "Jennifer": "Jen",
    "Jessica": "Jess",
    "Samantha": "Sam",
    "Anthony": "Tony",
    "Thomas": "Tom",
}
_SYLLABLES = tuple(
    """
ab al an ar ber bur car chen dal den dor el en er fal fer gan gar ham har hol kin lan
lar ley lin lock man mar mer mon nes ney ol or ow per ran ril ros sen son stan ter ton
val ver wal well win wood yar zel
""".split()  # noqa: SIM905
)


def _weighted(names: Sequence[str], rng: random.Random, count: int) -> list[str]:
    """``count`` names drawn with Zipf-like frequencies (the first is the most common; with
    these pools the commonest given and family names each hold about 2% of students)."""
    weights = [1.0 / (rank + 1) ** 0.75 for rank in range(len(names))]
    return rng.choices(names, weights=weights, k=count)


def _typo(name: str, rng: random.Random) -> str:
    """One keyboard slip: a letter substituted, deleted, inserted, or two transposed."""
    if len(name) < 3:
        return name + rng.choice("aeiou")
    i = rng.randrange(1, len(name) - 1)
    kind = rng.randrange(4)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    if kind == 0:
        return name[:i] + letter + name[i + 1 :]
    if kind == 1:
        return name[:i] + name[i + 1 :]
    if kind == 2:
        return name[:i] + letter + name[i:]
    return name[: i - 1] + name[i] + name[i - 1] + name[i + 1 :]


def _strip_accents(name: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)
    ).replace("'", "")


@dataclass(frozen=True)
class District:
    """Both sides of a synthetic district and the truth (source key → target key)."""

    app: list[PersonRecord]
    sis: list[PersonRecord]
    truth: dict[str, str | None]


def generate_district(students: int, seed: int = 20240901) -> District:
    """A deterministic synthetic district of ``students`` app students (see the module
    docstring for what differs between the two sides)."""
    rng = random.Random(seed)
    leavers = arrivals = students // 20
    population = students + arrivals
    long_tail = [
        (
            rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(("", "s", "er", "son"))
        ).capitalize()
        for _ in range(6000)
    ]
    rare_given = [
        (
            rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(("", "a", "ie", "y"))
        ).capitalize()
        for _ in range(1500)
    ]
    family_pool = [*FAMILY, *long_tail]
    givens = _weighted([*GIVEN, *rare_given], rng, population)
    families = _weighted(family_pool, rng, population)
    school_year_start = date(2024, 9, 1)
    people: list[PersonRecord] = []
    index = 0
    while index < population:
        grade = rng.randrange(13)
        # Born between Sep 1 and Aug 31 of the cohort year.
        born = school_year_start - timedelta(days=365 * (grade + 6) - rng.randrange(365))
        school = f"school-{grade // 6}-{rng.randrange(8)}"
        family = families[index]
        if rng.random() < 0.03:
            family = rng.choice(ACCENTED_FAMILY)
        elif rng.random() < 0.03:
            family = f"{family}-{rng.choice(FAMILY)}"
        twins = 2 if rng.random() < 0.015 else 1
        used: set[str] = set()
        for _ in range(min(twins, population - index)):
            given = givens[index]
            if rng.random() < 0.03:
                given = rng.choice(ACCENTED_GIVEN)
            while given in used:
                given = rng.choice(GIVEN)
            used.add(given)
            email = None
            if rng.random() < 0.7:
                local = _strip_accents(f"{given}.{family}").lower().replace(" ", "")
                email = f"{local}{rng.randrange(100):02d}@district.example"
            people.append(
                PersonRecord(
                    key=f"A{index}",
                    given_name=given,
                    family_name=family,
                    middle_name=rng.choice(GIVEN) if rng.random() < 0.5 else None,
                    email=email,
                    birth_date=born,
                    grade=f"{grade:02d}" if grade else "KG",
                    school=school,
                )
            )
            index += 1

    app = [replace(p, birth_date=None) if rng.random() < 0.03 else p for p in people[:students]]
    sis: list[PersonRecord] = []
    truth: dict[str, str | None] = {}
    for number, person in enumerate(people[leavers:], start=leavers):
        key = f"S{number}"
        truth[key] = person.key if number < students else None
        sis.append(_sis_copy(person, key, rng))
    # New twins and same-day siblings of app students: a different child each.
    for number, person in enumerate(people[leavers:students], start=leavers):
        if rng.random() >= 0.01:
            continue
        given = rng.choice(GIVEN)
        while given[:2] == person.given_name[:2] or are_nicknames(given, person.given_name):
            given = rng.choice(GIVEN)
        key = f"N{number}"
        truth[key] = None
        sibling = replace(person, given_name=given, middle_name=None, email=None)
        sis.append(_sis_copy(sibling, key, rng))
    rng.shuffle(sis)
    return District(app, sis, truth)


def _sis_copy(person: PersonRecord, key: str, rng: random.Random) -> PersonRecord:
    """The SIS's version of a student: the app's record with the noise of two systems."""
    given, family = person.given_name, person.family_name
    birth = person.birth_date
    grade, school, email = person.grade, person.school, person.email
    if rng.random() < 0.5:
        given, family = _strip_accents(given), _strip_accents(family)
    if "-" in family and rng.random() < 0.5:
        family = rng.choice((family.replace("-", " "), family.split("-")[0]))
    if given in NICKNAMES and rng.random() < 0.3:
        given = NICKNAMES[given]
    if rng.random() < 0.06:
        given = _typo(given, rng)
    if rng.random() < 0.06:
        family = _typo(family, rng)
    if rng.random() < 0.005:
        given, family = family, given
    if birth is not None:
        roll = rng.random()
        if roll < 0.02 and birth.day <= 12 and birth.day != birth.month:
            birth = date(birth.year, birth.day, birth.month)
        elif roll < 0.04:
            try:
                birth = date.fromisoformat(
                    _digit_typo(birth.strftime("%Y%m%d"), rng.choice((3, 5, 7)))
                )
            except ValueError:
                birth = person.birth_date
        elif roll < 0.05:
            birth = birth + timedelta(days=1)
        elif roll < 0.09:
            birth = None
    if grade is not None and rng.random() < 0.1:
        # The app still shows last year's grade for some students.
        grade = "KG" if grade in ("KG", "01") else f"{int(grade) - 1:02d}"
    if rng.random() < 0.03:
        school = f"{school}-moved"
    if email is not None and rng.random() < 0.3:
        email = None
    return replace(
        person,
        key=key,
        given_name=given,
        family_name=family,
        birth_date=birth,
        grade=grade,
        school=school,
        email=email,
        middle_name=person.middle_name if rng.random() < 0.7 else None,
    )


def _digit_typo(text: str, i: int) -> str:
    digits = list(text)
    digits[i] = str((int(digits[i]) + 1) % 10)
    joined = "".join(digits)
    return f"{joined[:4]}-{joined[4:6]}-{joined[6:]}"


def district_report(students: int, thresholds: Thresholds) -> list[str]:
    """Rows of one generated district of ``students`` app students."""
    district = generate_district(students)
    quality = Quality()
    result = _match(quality, district.sis, district.app, district.truth, thresholds)
    k = f"{students / 1000:g}k"
    rows = _rows(quality, f"district {k} vs {k}")
    new_matched = sum(
        1
        for key, decision in result.decisions.items()
        if key.startswith("N") and decision.tier is not Tier.UNMATCHED
    )
    new_twins = sum(key.startswith("N") for key in district.truth)
    rows.append(
        f"{'':<36} conflicts {len(result.conflicts):,}; new twins and same-day siblings "
        f"{new_twins}, of them auto or suggested {new_matched}"
    )
    return rows


def negative_district_report(students: int, thresholds: Thresholds) -> list[str]:
    """The SIS of another district against the app: every match is wrong."""
    district = generate_district(students)
    other = generate_district(students, seed=7)
    quality = Quality()
    truth: dict[str, str | None] = dict.fromkeys(other.truth)
    _match(quality, other.sis, district.app, truth, thresholds)
    k = f"{students / 1000:g}k"
    return _rows(quality, f"negative control (another {k} district)")


# --- (c) A Japanese district: kanji and kana against romaji and katakana ---------------

#: (kanji, kana) of common Japanese family and given names: the SIS writes kanji or
#: kana with the kana as the name's reading, the app romaji or katakana. Several given
#: names share a reading (陽斗 and 陽翔 are both Haruto), as in any Japanese school.
JAPANESE_FAMILY: tuple[tuple[str, str], ...] = (
    ("佐藤", "さとう"),
    ("鈴木", "すずき"),
    ("高橋", "たかはし"),
    ("田中", "たなか"),
    ("伊藤", "いとう"),
    ("渡辺", "わたなべ"),
    ("山本", "やまもと"),
    ("中村", "なかむら"),
    ("小林", "こばやし"),
    ("加藤", "かとう"),
    ("吉田", "よしだ"),
    ("山田", "やまだ"),
    ("佐々木", "ささき"),
    ("山口", "やまぐち"),
    ("松本", "まつもと"),
    ("井上", "いのうえ"),
    ("木村", "きむら"),
    ("林", "はやし"),
    ("斎藤", "さいとう"),
    ("清水", "しみず"),
    ("山崎", "やまざき"),
    ("森", "もり"),
    ("池田", "いけだ"),
    ("橋本", "はしもと"),
    ("阿部", "あべ"),
    ("石川", "いしかわ"),
    ("山下", "やました"),
    ("中島", "なかじま"),
    ("小川", "おがわ"),
    ("大野", "おおの"),
    ("本間", "ほんま"),
    ("後藤", "ごとう"),
    ("近藤", "こんどう"),
    ("工藤", "くどう"),
    ("遠藤", "えんどう"),
)
JAPANESE_GIVEN: tuple[tuple[str, str], ...] = (
    ("大翔", "ひろと"),
    ("陽斗", "はると"),
    ("蓮", "れん"),
    ("湊", "みなと"),
    ("悠真", "ゆうま"),
    ("陽翔", "はると"),
    ("翔太", "しょうた"),
    ("颯太", "そうた"),
    ("優斗", "ゆうと"),
    ("悠人", "ゆうと"),
    ("太郎", "たろう"),
    ("健太", "けんた"),
    ("拓海", "たくみ"),
    ("大和", "やまと"),
    ("陸", "りく"),
    ("結衣", "ゆい"),
    ("陽葵", "ひまり"),
    ("凛", "りん"),
    ("美咲", "みさき"),
    ("花子", "はなこ"),
    ("桜", "さくら"),
    ("葵", "あおい"),
    ("結菜", "ゆいな"),
    ("芽依", "めい"),
    ("莉子", "りこ"),
    ("杏", "あん"),
    ("美羽", "みう"),
    ("京子", "きょうこ"),
    ("優子", "ゆうこ"),
    ("愛", "あい"),
    ("翔", "しょう"),
    ("恵", "めぐみ"),
    ("楓", "かえで"),
    ("琴音", "ことね"),
    ("心春", "こはる"),
    ("咲良", "さくら"),
)


def _katakana(kana: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in kana)


#: A long o or u in Hepburn romaji: "ou", "oo", "uu" not followed by a vowel (the "ou" of
#: いのうえ, Inoue, is two syllables).
_LONG_VOWEL = re.compile("(ou|oo|uu)(?![aeiou])")
_LONG_STYLES = ({"ou": "ō", "oo": "ō", "uu": "ū"}, {"ou": "o", "oo": "o", "uu": "u"})


def _romaji(kana: str, rng: random.Random) -> str:
    """A kana name in romaji as an app may hold it: Hepburn with its long vowels written
    as a macron, dropped, as "ou"/"uu", or (a long o) as "oh"."""
    text = fold_name(kana)
    style = rng.randrange(4)
    if style < 2:
        text = _LONG_VOWEL.sub(lambda m: _LONG_STYLES[style][m.group(1)], text)
    elif style == 2:
        text = _LONG_VOWEL.sub(lambda m: "oh" if m.group(1) != "uu" else "uu", text)
    return text.capitalize()


def generate_japanese_district(students: int, seed: int = 20250401) -> District:
    """A deterministic Japanese district of ``students`` app students. The SIS writes
    family names in kanji (85%) or hiragana, given names in kanji (50%), hiragana (35%)
    or katakana, each with its kana reading (97% of records: the others have none); the
    app writes both in romaji (70%, long vowels any way) or katakana.
    5% leave, 5% arrive, 1.5% are twins (another given name and reading), 1% get a new
    same-day sibling in the SIS; 3% of the app's birth dates are missing, 3% of the
    SIS's a digit off."""
    rng = random.Random(seed)
    leavers = arrivals = students // 20
    population = students + arrivals
    start = date(2024, 4, 1)
    people: list[tuple[PersonRecord, tuple[str, str], tuple[str, str]]] = []
    index = 0
    while index < population:
        grade = rng.randrange(1, 7)
        born = start - timedelta(days=365 * (grade + 6) - rng.randrange(365))
        school = f"school-{rng.randrange(12)}"
        family = rng.choice(JAPANESE_FAMILY)
        used: set[str] = set()
        for _ in range(min(2 if rng.random() < 0.015 else 1, population - index)):
            given = rng.choice(JAPANESE_GIVEN)
            while given[1] in used:
                given = rng.choice(JAPANESE_GIVEN)
            used.add(given[1])
            record = PersonRecord(
                key=f"A{index}", birth_date=born, grade=f"{grade:02d}", school=school
            )
            people.append((record, family, given))
            index += 1

    def app_side(record: PersonRecord, family: tuple[str, str], given: tuple[str, str]):
        if rng.random() < 0.3:
            names = _katakana(given[1]), _katakana(family[1])
        else:
            names = _romaji(given[1], rng), _romaji(family[1], rng)
        born = None if rng.random() < 0.03 else record.birth_date
        return replace(record, given_name=names[0], family_name=names[1], birth_date=born)

    def sis_side(record: PersonRecord, key: str, family: tuple[str, str], given: tuple[str, str]):
        family_name = family[0] if rng.random() < 0.85 else family[1]
        roll = rng.random()
        given_name = given[0] if roll < 0.5 else given[1] if roll < 0.85 else _katakana(given[1])
        born = record.birth_date
        if born is not None and rng.random() < 0.03:
            with contextlib.suppress(ValueError):
                born = date.fromisoformat(_digit_typo(born.strftime("%Y%m%d"), 7))
        readings = (None, None) if rng.random() < 0.03 else (given[1], family[1])
        return replace(
            record,
            key=key,
            given_name=given_name,
            family_name=family_name,
            birth_date=born,
            given_name_reading=readings[0],
            family_name_reading=readings[1],
        )

    app = [app_side(*entry) for entry in people[:students]]
    sis: list[PersonRecord] = []
    truth: dict[str, str | None] = {}
    for number, (record, family, given) in enumerate(people[leavers:], start=leavers):
        key = f"S{number}"
        truth[key] = record.key if number < students else None
        sis.append(sis_side(record, key, family, given))
    for number, (record, family, given) in enumerate(people[leavers:students], start=leavers):
        if rng.random() >= 0.01:
            continue
        other = rng.choice(JAPANESE_GIVEN)
        while other[1] == given[1]:
            other = rng.choice(JAPANESE_GIVEN)
        key = f"N{number}"
        truth[key] = None
        sis.append(sis_side(record, key, family, other))
    rng.shuffle(sis)
    return District(app, sis, truth)


def japanese_district_report(students: int, thresholds: Thresholds) -> list[str]:
    """Rows of the generated Japanese district."""
    district = generate_japanese_district(students)
    quality = Quality()
    result = _match(quality, district.sis, district.app, district.truth, thresholds)
    rows = _rows(quality, f"Japanese {students / 1000:g}k (kanji+kana)")
    new_matched = sum(
        1
        for key, decision in result.decisions.items()
        if key.startswith("N") and decision.tier is not Tier.UNMATCHED
    )
    new_twins = sum(key.startswith("N") for key in district.truth)
    rows.append(
        f"{'':<36} conflicts {len(result.conflicts):,}; new same-day siblings "
        f"{new_twins}, of them auto or suggested {new_matched}"
    )
    return rows


def _in_fresh_process(report: Callable[..., list[str]], *args: object) -> list[str]:
    """Run one report in a process of its own, so its peak memory is its own."""
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        rows: list[str] = pool.apply(report, args)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--skip-febrl", action="store_true")
    parser.add_argument("--skip-district", action="store_true")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"run with auto={SWEEP[0]} and print, per data set, the automatic recall and "
        f"wrong matches had auto been each of {', '.join(map(str, SWEEP))}",
    )
    args = parser.parse_args(argv)
    thresholds = PEOPLE_THRESHOLDS
    if args.sweep:
        thresholds = thresholds.model_copy(update={"auto": SWEEP[0]})
    print(f"thresholds: {thresholds.model_dump()}")
    print(HEADER)
    data = shared_data()
    sweeps: list[str] = []
    losses: list[str] = []
    classes: list[str] = []

    def show(rows: list[str]) -> None:
        for row in rows:
            if row.startswith(_SWEEP_MARK):
                sweeps.append(row.removeprefix(_SWEEP_MARK))
            elif row.startswith(_LOSS_MARK):
                losses.append(row.removeprefix(_LOSS_MARK))
            elif row.startswith(_CLASS_MARK):
                classes.append(row.removeprefix(_CLASS_MARK))
            else:
                print(row, flush=True)

    if not args.skip_febrl:
        if (data / "febrl" / "dataset1.csv").exists():
            show(_in_fresh_process(febrl_report, data, thresholds))
        else:
            print(f"FEBRL data not found under {data}")
    if not args.skip_district:
        sizes = sorted({min(10_000, args.students), args.students})
        for size in sizes:
            show(_in_fresh_process(district_report, size, thresholds))
        show(_in_fresh_process(negative_district_report, args.students, thresholds))
        show(_in_fresh_process(japanese_district_report, 5_000, thresholds))
    print("peak MB: the process that generated and matched the data set, generation included")
    print(
        "\nwhere the true pairs not linked automatically went (share of matchable sources; "
        "the first reason in the order the decision applies them):"
    )
    print(f"{'':<36} " + " ".join(f"{label:>9}" for label in _LOSS_LABELS))
    for row in losses:
        print(row)
    if classes:
        print("\nFEBRL 1 + 2 by how a duplicate differs from its original (names and birth date):")
        print(f"{'':<36} {'n':>7} {'auto':>7} {'+sugg':>7}")
        print(f"{'':<36} {'':>7} {'recall':>7} {'recall':>7}")
        for row in classes:
            print(row)
    if args.sweep:
        print("\nauto recall / auto wrong had auto been (margin and gates as run):")
        print(f"{'':<36} " + " ".join(f"{t:>11}" for t in SWEEP))
        for row in sweeps:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
