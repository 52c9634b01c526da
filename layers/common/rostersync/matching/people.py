"""Fuzzy, one-to-one matching of people: source (SIS) records to existing app records.

``match_people`` encodes both sides into integer columns (``encoding``), generates
candidate pairs from blocking keys (``blocking``), scores them (``scoring``) and decides
a tier per source record one-to-one (``assign``); the suggestion floor (``floor``) then
suggests, among the records left unmatched, pairs below ``suggest`` that agree strongly
on one axis. Blocking, scoring and assignment are
vectorized; the Python loops left are over records (encoding, building decisions) and
over distinct strings, never over pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from rostersync.matching.assign import (
    TIER_AUTO,
    TIER_SUGGESTED,
    TIER_UNMATCHED,
    Assignment,
    assign_tiers,
)
from rostersync.matching.blocking import candidate_pairs_by_origin
from rostersync.matching.encoding import (
    BoolArray,
    FloatArray,
    IntArray,
    PeopleColumns,
    Vocabularies,
    encode_people,
)
from rostersync.matching.floor import STRONG_NAME, crossed_names, floor_pairs, unambiguous
from rostersync.matching.model import MatchModel, probability, train
from rostersync.matching.records import PersonRecord, in_key_order
from rostersync.matching.scoring import (
    BIRTH,
    COMPATIBLE_NAME,
    DATE_DIFFERENT,
    DATE_MISSING,
    DATE_MONTH_YEAR,
    DATE_ONE_OFF,
    DATE_SWAPPED,
    DATE_TRANSPOSED,
    DATE_YEAR,
    FAMILY,
    FIELDS,
    GIVEN,
    NAME_DIFFERENT,
    NAME_EQUIVALENT,
    NAME_INITIAL,
    NAME_MISSING,
    NAME_NICKNAME,
    Comparisons,
    NameTables,
    compare_pairs,
    name_tables,
)
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS, Thresholds
from rostersync.models import Tier

#: How far (bits of odds) a pair with names and birth date on both sides must lead its
#: rivals together for their missing fields not to count (``dominant_pairs``).
DOMINANCE_BITS = 10.0

#: A field "agrees" (for ``Evidence.agreed``) at or above this similarity.
AGREEMENT = 0.8

_DATE_NOTES = {
    DATE_SWAPPED: "birth date: day and month swapped",
    DATE_ONE_OFF: "birth date: one digit or one day off",
    DATE_TRANSPOSED: "birth date: two digits transposed",
    DATE_MONTH_YEAR: "birth date: same month and year only",
    DATE_YEAR: "birth date: same year only",
}
_NAME_NOTES = {
    NAME_NICKNAME: "nickname",
    NAME_EQUIVALENT: "preferred, middle or double name",
    NAME_INITIAL: "initial only",
}
_SIBLING_NOTE = "same family name and birth date, another given name (twins?)"
_TWINS_NOTE = "same family name, birth date, grade and school, another given name: twins"
#: The explanation's name of the swapped-names adjustment.
SWAPPED = "names_swapped"


class Evidence(NamedTuple):
    """Why a pair scored what it did.

    ``field_scores``: each field's similarity in [0, 1] (0 when missing on either side);
    ``agreed``: the fields at or above ``AGREEMENT``; ``missing``: the fields absent on
    either side; ``notes``: how names and dates agreed when not exactly (nickname, names
    swapped, day and month swapped, ...); ``max_score``: the highest score the fields
    present on both sides allow. People only: ``contributions``, each field's match
    weight in bits (positive for, negative against; ``names_swapped`` when the names were
    read swapped), and ``prior``, the prior log-odds in bits, together the score: a match
    probability of ``1 / (1 + 2 ** -(prior + sum(contributions)))``."""

    field_scores: Mapping[str, float]
    agreed: tuple[str, ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]
    max_score: float
    contributions: Mapping[str, float] = MappingProxyType({})
    prior: float = 0.0


class Decision(NamedTuple):
    """The outcome for one source record, person or class (a named tuple: a large district
    has hundreds of thousands of them).

    ``tier``: ``Tier.LINKED`` (a fixed link, not scored), ``Tier.AUTO``,
    ``Tier.SUGGESTED`` or ``Tier.UNMATCHED``. ``target_key`` is None when unmatched, and
    ``score`` is then the best candidate's score (0 without candidates). ``runner_up``:
    the better of the source's next candidate and the best other source competing for the
    same target, each at what it could reach had its missing names or birth date agreed
    (classes: at its score). ``alternatives``: a suggestion's next-best candidates
    (target key, score), for review."""

    source_key: str
    tier: Tier
    target_key: str | None
    score: float
    runner_up: float
    evidence: Evidence | None = None
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class MatchConflict:
    """Several source records wanting one target: none of them is matched automatically."""

    target_key: str
    source_keys: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Every source record's decision (by source key, in input order), the contested
    targets, and how many candidate pairs were scored."""

    decisions: Mapping[str, Decision]
    conflicts: tuple[MatchConflict, ...]
    candidate_pairs: int

    def counts(self) -> dict[str, int]:
        """The number of decisions per tier."""
        counts: dict[str, int] = {}
        for decision in self.decisions.values():
            counts[decision.tier.value] = counts.get(decision.tier.value, 0) + 1
        return counts

    def links(self, *tiers: Tier) -> dict[str, str]:
        """Source key → target key of the decisions in ``tiers`` (default: linked and
        auto, the ones that need no review)."""
        wanted = set(tiers or (Tier.LINKED, Tier.AUTO))
        return {
            key: decision.target_key
            for key, decision in self.decisions.items()
            if decision.tier in wanted and decision.target_key is not None
        }


@dataclass(frozen=True, slots=True)
class _Scored:
    """The scored candidate pairs of one match."""

    comparisons: Comparisons
    contributions: FloatArray  # (pairs, len(FIELDS) + 1), bits
    weight: FloatArray  # total weight in bits, prior included
    score: FloatArray  # match probability
    model: MatchModel


def _score(model: MatchModel, comparisons: Comparisons) -> _Scored:
    contributions = model.contributions(comparisons)
    weight = model.prior + contributions.sum(axis=1)
    return _Scored(comparisons, contributions, weight, probability(weight), model)


def _build_evidence(scored: _Scored, pairs: IntArray) -> list[Evidence]:
    """``Evidence`` for each of ``pairs``. Everything but the per-field numbers depends on
    a few small codes (which fields are missing or agree, the levels behind names and
    dates), computed vectorized and turned into tuples once per distinct code."""
    comparisons = scored.comparisons
    bits = np.array([1 << i for i in range(len(FIELDS))], dtype=np.int64)
    fields = np.round(comparisons.similarity[pairs], 4)
    present = comparisons.present()[pairs]
    missing: list[int] = ((~present).astype(np.int64) @ bits).tolist()
    agreed: list[int] = ((fields >= AGREEMENT).astype(np.int64) @ bits).tolist()
    levels = comparisons.levels[pairs].astype(np.int64)
    outcome: list[int] = (
        comparisons.twins[pairs].astype(np.int64) << 14
        | comparisons.sibling[pairs].astype(np.int64) << 13
        | comparisons.swapped_names[pairs].astype(np.int64) << 12
        | levels[:, GIVEN] << 8
        | levels[:, FAMILY] << 4
        | levels[:, BIRTH]
    ).tolist()
    names_of = {
        mask: tuple(name for i, name in enumerate(FIELDS) if mask >> i & 1)
        for mask in {*missing, *agreed}
    }
    best = np.round(probability(scored.model.best_possible(present)), 4).tolist()
    notes_of = {
        code: _notes(
            2 if code >> 14 & 1 else code >> 13 & 1,
            bool(code >> 12 & 1),
            code >> 8 & 15,
            code >> 4 & 15,
            code & 15,
        )
        for code in set(outcome)
    }
    labels = (*FIELDS, SWAPPED)
    contributions = np.round(scored.contributions[pairs], 3).tolist()
    prior = round(scored.model.prior, 3)
    return [
        Evidence(
            dict(zip(FIELDS, values, strict=True)),
            names_of[a],
            names_of[m],
            notes_of[o],
            top,
            {
                label: value
                for label, value in zip(labels, weights, strict=True)
                if label in FIELDS or value
            },
            prior,
        )
        for values, a, m, o, top, weights in zip(
            fields.tolist(), agreed, missing, outcome, best, contributions, strict=True
        )
    ]


def _notes(sibling: int, swapped: bool, given: int, family: int, birth: int) -> tuple[str, ...]:
    """``sibling``: 0 none, 1 the sibling pattern, 2 twins (the pattern in one grade and
    school)."""
    notes: list[str] = []
    if swapped:
        notes.append("given and family name swapped")
    if sibling:
        notes.append(_TWINS_NOTE if sibling == 2 else _SIBLING_NOTE)
    for label, level in (("given name", given), ("family name", family)):
        if level in _NAME_NOTES:
            notes.append(f"{label}: {_NAME_NOTES[level]}")
    if birth in _DATE_NOTES:
        notes.append(_DATE_NOTES[birth])
    return tuple(notes)


def _check_unique_keys(records: Sequence[PersonRecord], side: str) -> None:
    if len({record.key for record in records}) != len(records):
        raise ValueError(f"{side} records have duplicate keys")


@dataclass(frozen=True, slots=True)
class _Run:
    """Everything one fuzzy match computed, from blocking to tiers."""

    source: PeopleColumns
    target: PeopleColumns
    #: The candidate pairs blocking formed (kinds agreeing, rejected pairs left out).
    candidates: tuple[IntArray, IntArray]
    #: The candidate pairs read as twins (they compete for nothing).
    twins: BoolArray
    si: IntArray  # the pairs scored: the candidates but twins
    ti: IntArray
    scored: _Scored
    gates: BoolArray
    #: Per scored pair, the lowest score at which it may be automatic.
    auto_at: FloatArray
    assignment: Assignment
    #: Per source: whether its suggestion comes from the suggestion floor.
    floored: BoolArray


def _run(
    source: Sequence[PersonRecord],
    target: Sequence[PersonRecord],
    fixed: Mapping[str, str],
    thresholds: Thresholds,
    exclude_pairs: set[tuple[str, str]] | frozenset[tuple[str, str]],
    examples: Sequence[tuple[PersonRecord, PersonRecord]],
) -> _Run:
    """Score and assign the people not linked already (``fixed``: source → target)."""
    _check_unique_keys(source, "source")
    _check_unique_keys(target, "target")
    taken = set(fixed.values())
    # In key order: the outcome is the same whatever order the records come in.
    open_source = in_key_order(record for record in source if record.key not in fixed)
    open_target = in_key_order(record for record in target if record.key not in taken)
    vocab = Vocabularies()
    s_side = encode_people(open_source, vocab)
    t_side = encode_people(open_target, vocab)
    tables = name_tables(vocab.names)
    si, ti, learned = candidate_pairs_by_origin(
        s_side, t_side, tables.nicknames, names=tables.strings
    )

    keep = s_side.kind[si] == t_side.kind[ti]
    if exclude_pairs:
        s_position = {key: i for i, key in enumerate(s_side.keys)}
        t_position = {key: i for i, key in enumerate(t_side.keys)}
        excluded = np.array(
            [
                s_position[s] * len(t_side) + t_position[t]
                for s, t in exclude_pairs
                if s in s_position and t in t_position
            ],
            dtype=np.int64,
        )
        keep &= ~np.isin(si * len(t_side) + ti, excluded)
    si, ti, learned = si[keep], ti[keep], learned[keep]

    target_by_key = {record.key: record for record in target}
    labelled = [
        (record, target_by_key[fixed[record.key]])
        for record in source
        if record.key in fixed and fixed[record.key] in target_by_key
    ] + list(examples)
    si, ti, learned, comparisons = _kept_pairs(s_side, t_side, tables, si, ti, learned)
    trained = np.flatnonzero(learned)
    model = train(
        s_side,
        t_side,
        tables,
        comparisons.take(trained) if len(trained) < len(si) else comparisons,
        (si[trained], ti[trained]),
        _labelled_comparisons(labelled, vocab),
    )
    # Twins (the sibling pattern within one grade and school) are different children:
    # the model learned from their pairs, but they compete for nothing, so a new twin is
    # created at once instead of waiting for an admin.
    candidates, twins = (si, ti), comparisons.twins
    distinct = np.flatnonzero(~twins)
    if len(distinct) < len(si):
        si, ti, comparisons = si[distinct], ti[distinct], comparisons.take(distinct)
        learned = learned[distinct]
    scored = _score(model, comparisons)
    gates = auto_gates(comparisons, thresholds)
    auto_at = auto_thresholds(comparisons, thresholds)
    potential = probability(model.potential(comparisons, scored.weight))
    # As rivals, the pairs only keys 20 and 21 formed count at their own score: they are
    # formed to find a record's own pair when a birth date is missing, and counted at
    # what they could reach had it agreed, a "Maia Okafur" would hold back the "Maya
    # Okafor" of a record without a birth date (the other keys never pair such a record
    # on so little).
    potential = np.where(learned, potential, scored.score)
    dominant = dominant_pairs(comparisons, scored.weight, si, ti)
    assignment = assign_tiers(
        len(s_side),
        len(t_side),
        si,
        ti,
        scored.score,
        gates,
        thresholds,
        potential,
        rival_ceiling=thresholds.suggest,
        dominant=dominant,
        auto_at=auto_at,
    )
    crossed = crossed_names(s_side, t_side, tables, si, ti, comparisons)
    eligible, bits = floor_pairs(
        comparisons,
        scored.contributions,
        scored.weight,
        model,
        len(t_side),
        crossed,
        thresholds.suggest,
    )
    assignment, floored = _apply_floor(
        assignment, eligible, bits, si, ti, scored.score, len(t_side)
    )
    return _Run(
        s_side, t_side, candidates, twins, si, ti, scored, gates, auto_at, assignment, floored
    )


def _kept_pairs(
    s_side: PeopleColumns,
    t_side: PeopleColumns,
    tables: NameTables,
    si: IntArray,
    ti: IntArray,
    learned: BoolArray,
) -> tuple[IntArray, IntArray, BoolArray, Comparisons]:
    """The candidate pairs compared, without those only keys 20 and 21 formed (a record
    without a birth date; two Soundex codes, or a name one letter off) whose names do not
    both agree at least as a typo: the keys are there for typos, and a pair of another
    name, counted as a rival at what it could reach had the birth date agreed, would hold
    back the record's true pair."""
    comparisons = compare_pairs(s_side, t_side, tables, si, ti)
    levels = comparisons.levels
    names = np.isin(levels[:, GIVEN], COMPATIBLE_NAME) & np.isin(levels[:, FAMILY], COMPATIBLE_NAME)
    kept = np.flatnonzero(learned | names)
    if len(kept) == len(si):
        return si, ti, learned, comparisons
    return si[kept], ti[kept], learned[kept], comparisons.take(kept)


def _apply_floor(
    assignment: Assignment,
    eligible: BoolArray,
    bits: FloatArray,
    si: IntArray,
    ti: IntArray,
    score: FloatArray,
    n_targets: int,
) -> tuple[Assignment, BoolArray]:
    """The assignment with the suggestion floor's pairs suggested (``floor``: among the
    sources left unmatched, for targets no source wants), each with the best of its
    source's other scores as its runner-up, and per source whether its suggestion is
    one."""
    n_sources = len(assignment.tier)
    open_source = assignment.tier == TIER_UNMATCHED
    wanted = np.zeros(n_targets, dtype=bool)
    deciding = assignment.best_pair[~open_source]
    wanted[ti[deciding[deciding >= 0]]] = True
    chosen = unambiguous(eligible, bits, si, ti, n_sources, n_targets, open_source, ~wanted)
    floored = chosen >= 0
    if not floored.any():
        return assignment, floored
    best_pair = assignment.best_pair.copy()
    tier = assignment.tier.copy()
    runner_up = assignment.runner_up.copy()
    best_pair[floored] = chosen[floored]
    tier[floored] = TIER_SUGGESTED
    others = score.copy()
    others[chosen[floored]] = -np.inf
    best_other = np.zeros(n_sources, dtype=np.float64)
    np.maximum.at(best_other, si, others)
    runner_up[floored] = best_other[floored]
    return Assignment(best_pair, runner_up, tier, assignment.conflicts), floored


def match_people(
    source: Sequence[PersonRecord],
    target: Sequence[PersonRecord],
    *,
    thresholds: Thresholds = PEOPLE_THRESHOLDS,
    exclude_pairs: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    fixed: Mapping[str, str] | None = None,
    examples: Sequence[tuple[PersonRecord, PersonRecord]] = (),
) -> MatchResult:
    """Match each source person to at most one target person, one-to-one.

    Scores are match probabilities from a model learned on this very run (see
    ``rostersync.matching.model``); ``examples`` are (source, target) records known to be
    the same person (confirmed by an admin, linked by key), and ``fixed`` links whose two
    records are both given count as examples too.

    ``exclude_pairs``: (source key, target key) pairs an admin rejected; they are never
    scored, so never suggested again, and do not compete with other pairs. ``fixed``:
    source key → target key links already made (identity links, key matches); those
    sources get ``Tier.LINKED`` without being scored and their targets are offered to no
    one else. People of different kinds are never paired. Keys must be unique per side.
    """
    fixed = dict(fixed or {})
    run = _run(source, target, fixed, thresholds, exclude_pairs, examples)
    s_side, t_side, si, ti = run.source, run.target, run.si, run.ti
    scored, assignment = run.scored, run.assignment
    alternatives = _alternatives(si, ti, scored.score, assignment.tier, t_side.keys)
    chosen = assignment.best_pair[assignment.tier != 0]
    evidence_of = dict(zip(chosen.tolist(), _build_evidence(scored, chosen), strict=True))

    decided: dict[str, Decision] = {}
    target_keys = t_side.keys
    pair_targets = ti.tolist()
    pair_scores = np.round(scored.score, 4).tolist()
    runner_ups = np.round(assignment.runner_up, 4).tolist()
    for index, (key, pair, tier) in enumerate(
        zip(s_side.keys, assignment.best_pair.tolist(), assignment.tier.tolist(), strict=True)
    ):
        if pair < 0:
            decided[key] = Decision(key, Tier.UNMATCHED, None, 0.0, 0.0)
        elif tier in (TIER_AUTO, TIER_SUGGESTED):
            decided[key] = Decision(
                key,
                Tier.AUTO if tier == TIER_AUTO else Tier.SUGGESTED,
                target_keys[pair_targets[pair]],
                pair_scores[pair],
                runner_ups[index],
                evidence_of[pair],
                alternatives.get(index, ()),
            )
        else:
            decided[key] = Decision(key, Tier.UNMATCHED, None, pair_scores[pair], runner_ups[index])

    decisions: dict[str, Decision] = {}
    for record in source:
        linked = fixed.get(record.key)
        if linked is not None:
            decisions[record.key] = Decision(record.key, Tier.LINKED, linked, 1.0, 0.0)
        else:
            decisions[record.key] = decided[record.key]
    conflicts = tuple(
        MatchConflict(
            target_key=target_keys[target_index],
            source_keys=tuple(s_side.keys[i] for i in source_indexes),
            scores=tuple(decisions[s_side.keys[i]].score for i in source_indexes),
        )
        for target_index, source_indexes in sorted(assignment.conflicts.items())
    )
    return MatchResult(MappingProxyType(decisions), conflicts, len(si))


class PairOutcome(StrEnum):
    """What became of one (source, target) pair, and, short of automatic, the first
    reason why (``explain_pairs``)."""

    LINKED = "linked"
    AUTO = "auto"
    NOT_A_CANDIDATE = "not a candidate"  # blocking never formed it (or it was rejected)
    TWINS = "twins"
    OTHER_TARGET = "another target first"
    BELOW_SUGGEST = "below suggest"
    #: Below ``suggest``, and suggested by the suggestion floor (``floor``).
    FLOOR_SUGGESTED = "floor suggestion"
    SIBLING = "gate: sibling pattern"
    NO_GIVEN = "gate: no given name"
    INITIAL = "gate: initial"
    OTHER_NAME = "gate: another name"
    BIRTH_DATE = "gate: birth date"
    FLOOR = "gate: similarity floor"
    BELOW_AUTO = "below auto"
    CONTESTED = "contested"
    RUNNER_UP = "runner-up"


def explain_pairs(
    source: Sequence[PersonRecord],
    target: Sequence[PersonRecord],
    pairs: Iterable[tuple[str, str]],
    *,
    thresholds: Thresholds = PEOPLE_THRESHOLDS,
    exclude_pairs: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    fixed: Mapping[str, str] | None = None,
    examples: Sequence[tuple[PersonRecord, PersonRecord]] = (),
) -> dict[tuple[str, str], PairOutcome]:
    """Per (source key, target key) pair, what ``match_people`` with the same arguments
    made of it: automatic, or the first reason it is not, in the order the decision
    applies them (blocking, twins, the source's best target, the gates, the thresholds,
    the one-to-one rule, the runner-up). For measuring where true pairs are lost and for
    answering why a record was not linked."""
    fixed = dict(fixed or {})
    run = _run(source, target, fixed, thresholds, exclude_pairs, examples)
    width = max(len(run.target), 1)
    s_position = {key: i for i, key in enumerate(run.source.keys)}
    t_position = {key: i for i, key in enumerate(run.target.keys)}

    def lookup(si: IntArray, ti: IntArray) -> tuple[IntArray, IntArray]:
        codes = si * width + ti
        order = np.argsort(codes)
        return codes[order], order

    candidate_codes, candidate_order = lookup(*run.candidates)
    scored_codes, scored_order = lookup(run.si, run.ti)
    assignment, comparisons = run.assignment, run.scored.comparisons
    gate_reasons = _gate_reasons(comparisons, thresholds)
    out: dict[tuple[str, str], PairOutcome] = {}
    for pair in pairs:
        source_key, target_key = pair
        if fixed.get(source_key) == target_key:
            out[pair] = PairOutcome.LINKED
            continue
        i, j = s_position.get(source_key), t_position.get(target_key)
        if i is None or j is None:
            out[pair] = PairOutcome.NOT_A_CANDIDATE
            continue
        code = i * width + j
        at = int(np.searchsorted(scored_codes, code))
        if at == len(scored_codes) or scored_codes[at] != code:
            found = int(np.searchsorted(candidate_codes, code))
            twin = found < len(candidate_codes) and candidate_codes[found] == code
            out[pair] = (
                PairOutcome.TWINS
                if twin and run.twins[candidate_order[found]]
                else PairOutcome.NOT_A_CANDIDATE
            )
            continue
        k = int(scored_order[at])
        tier = int(assignment.tier[i])
        score = float(run.scored.score[k])
        if int(assignment.best_pair[i]) != k:
            out[pair] = PairOutcome.OTHER_TARGET
        elif tier == TIER_AUTO:
            out[pair] = PairOutcome.AUTO
        elif run.floored[i]:
            out[pair] = PairOutcome.FLOOR_SUGGESTED
        elif score < thresholds.suggest:
            out[pair] = PairOutcome.BELOW_SUGGEST
        elif (reason := gate_reasons[k]) is not None:
            out[pair] = reason
        elif score < run.auto_at[k]:
            out[pair] = PairOutcome.BELOW_AUTO
        elif j in assignment.conflicts:
            out[pair] = PairOutcome.CONTESTED
        else:
            out[pair] = PairOutcome.RUNNER_UP
    return out


def _gate_reasons(comparisons: Comparisons, thresholds: Thresholds) -> list[PairOutcome | None]:
    """Per pair, the first of ``auto_gates``' rules it fails (None when it passes)."""
    levels = comparisons.levels
    names = levels[:, [GIVEN, FAMILY]]
    checks = [
        (comparisons.sibling, PairOutcome.SIBLING),
        (levels[:, GIVEN] == NAME_MISSING, PairOutcome.NO_GIVEN),
        ((names == NAME_INITIAL).any(axis=1), PairOutcome.INITIAL),
        ((names == NAME_DIFFERENT).any(axis=1), PairOutcome.OTHER_NAME),
        (np.isin(levels[:, BIRTH], (DATE_YEAR, DATE_DIFFERENT)), PairOutcome.BIRTH_DATE),
        (~auto_gates(comparisons, thresholds), PairOutcome.FLOOR),
    ]
    reasons: list[PairOutcome | None] = [None] * len(comparisons)
    for failed, reason in reversed(checks):
        for k in np.flatnonzero(failed).tolist():
            reasons[k] = reason
    return reasons


def _alternatives(
    si: IntArray, ti: IntArray, score: FloatArray, tier: np.ndarray, target_keys: list[str]
) -> dict[int, tuple[tuple[str, float], ...]]:
    """Up to three next-best candidates of each suggested source, for review."""
    suggested = tier[si] == TIER_SUGGESTED
    if not suggested.any():
        return {}
    s, t, sc = si[suggested], ti[suggested], score[suggested]
    order = np.lexsort((t, -sc, s))
    s, t, sc = s[order], t[order], sc[order]
    # Rank within each source's run; rank 0 is the suggestion itself.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    rank = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
    keep = (rank >= 1) & (rank <= 3)
    found: dict[int, list[tuple[str, float]]] = {}
    for source_index, target_index, value in zip(
        s[keep].tolist(), t[keep].tolist(), np.round(sc[keep], 4).tolist(), strict=True
    ):
        found.setdefault(source_index, []).append((target_keys[target_index], value))
    return {index: tuple(candidates) for index, candidates in found.items()}


def candidate_keys(
    source: Sequence[PersonRecord], target: Sequence[PersonRecord]
) -> set[tuple[str, str]]:
    """The (source key, target key) pairs blocking lets through to scoring, as
    ``match_people`` forms them (for measuring blocking: a true pair missing here can
    never be matched)."""
    vocab = Vocabularies()
    s_side = encode_people(in_key_order(source), vocab)
    t_side = encode_people(in_key_order(target), vocab)
    tables = name_tables(vocab.names)
    si, ti, learned = candidate_pairs_by_origin(
        s_side, t_side, tables.nicknames, names=tables.strings
    )
    keep = s_side.kind[si] == t_side.kind[ti]
    si, ti, _, _ = _kept_pairs(s_side, t_side, tables, si[keep], ti[keep], learned[keep])
    s_keys, t_keys = s_side.keys, t_side.keys
    return {(s_keys[i], t_keys[j]) for i, j in zip(si.tolist(), ti.tolist(), strict=True)}


def _labelled_comparisons(
    pairs: Sequence[tuple[PersonRecord, PersonRecord]], vocab: Vocabularies
) -> Comparisons | None:
    """The comparisons of pairs known to be the same person."""
    if not pairs:
        return None
    s_side = encode_people([s for s, _ in pairs], vocab)
    t_side = encode_people([t for _, t in pairs], vocab)
    index = np.arange(len(pairs), dtype=np.int64)
    return compare_pairs(s_side, t_side, name_tables(vocab.names), index, index)


def dominant_pairs(
    comparisons: Comparisons, weight: FloatArray, si: IntArray, ti: IntArray
) -> BoolArray:
    """Per pair: whether both sides have given name, family name and birth date, and
    its odds are at least ``2 ** DOMINANCE_BITS`` times those of every other pair of its
    source and of its target together, at their actual weights.

    A rival missing a field is otherwise counted at what it could reach had that field
    agreed: the worst case, right when the chosen pair lacks a field too (both are then
    judged on less than a child's identity). A chosen pair with all three has the evidence
    a rival lacks; the model's own reading of a missing field (it neither helps nor hurts:
    averaged over the values it could have, ``m / u`` is one) then says how likely the
    rival is, and leading it 1,024 to 1 leaves a rival's chance below one in a thousand.
    Counting such rivals at their potential held back, in a generated district of
    100,000, one true pair in thirty, mostly for an app record of the same name without
    a birth date. Whether the pair itself is likely enough stays with ``auto``, and the
    gates, the margin and the one-to-one rule still apply."""
    levels = comparisons.levels
    complete = (levels[:, GIVEN] != 0) & (levels[:, FAMILY] != 0) & (levels[:, BIRTH] != 0)
    if len(weight) == 0:
        return np.zeros(0, dtype=bool)
    # Odds relative to the strongest pair, so that nothing overflows.
    odds = np.exp2(np.clip(weight - float(weight.max()), -1000.0, 0.0))
    by_source = np.bincount(si, weights=odds)
    by_target = np.bincount(ti, weights=odds)
    rivals = by_source[si] + by_target[ti] - 2.0 * odds
    return np.asarray(complete & (rivals <= odds * 2.0**-DOMINANCE_BITS), dtype=bool)


def auto_gates(comparisons: Comparisons, thresholds: Thresholds) -> BoolArray:
    """Per pair: whether it may be automatic at all, whatever its probability. Never a
    bare initial for a name, never a name that is another name outright (a sibling
    pattern, same family name and birth date with another given name, is twins; a rare
    given name and a birth date agreeing beside another family name may be a changed
    family name or a coincidence, and only an admin can tell), never birth dates that
    differ beyond a typo (nothing else, not even an email, outweighs that), never a given
    name missing on either side (twins share their family name, birth date, grade, school
    and often an email: only the given name tells them apart); and, when a
    tenant sets them, both names at least ``name_floor`` alike and a birth date both sides
    have at least ``birth_date_floor``. A family name or a birth date missing on one side
    is no gate: the probability weighs what is left, and a missing field never adds to
    it."""
    levels, similarity = comparisons.levels, comparisons.similarity
    ok = ~comparisons.sibling
    ok &= levels[:, GIVEN] != NAME_MISSING
    ok &= (levels[:, GIVEN] != NAME_INITIAL) & (levels[:, FAMILY] != NAME_INITIAL)
    ok &= (levels[:, GIVEN] != NAME_DIFFERENT) & (levels[:, FAMILY] != NAME_DIFFERENT)
    ok &= ~np.isin(levels[:, BIRTH], (DATE_YEAR, DATE_DIFFERENT))
    if thresholds.name_floor > 0:
        ok &= (similarity[:, GIVEN] >= thresholds.name_floor) & (
            similarity[:, FAMILY] >= thresholds.name_floor
        )
    if thresholds.birth_date_floor > 0:
        ok &= (levels[:, BIRTH] == 0) | (similarity[:, BIRTH] >= thresholds.birth_date_floor)
    return np.asarray(ok, dtype=bool)


def names_without_birth_date(comparisons: Comparisons) -> BoolArray:
    """Per pair: whether both its names agree (exact, a nickname or an equivalent
    writing; no typo: without a birth date a name one letter off may be a sibling's,
    "Mayra" for "Maya") while a side has no birth date."""
    levels = comparisons.levels
    names = np.isin(levels[:, GIVEN], STRONG_NAME) & np.isin(levels[:, FAMILY], STRONG_NAME)
    return np.asarray(names & (levels[:, BIRTH] == DATE_MISSING), dtype=bool)


def auto_thresholds(comparisons: Comparisons, thresholds: Thresholds) -> FloatArray:
    """Per pair, the lowest score at which it may be automatic: ``auto``, or for a pair
    whose names agree while a side has no birth date (``names_without_birth_date``) the
    lower of ``auto`` and ``auto_without_birth_date``.

    Such a pair is weighed on its names (and email, grade and school) against at least
    ``MIN_POPULATION`` people, which holds a unique full name below ``auto`` in every roster
    measured: FEBRL, generated districts of 10,000 and 100,000 and a Japanese one, where
    every such pair from 0.5 up that had no rival at ``suggest`` (a rival missing a birth
    date is counted as if it agreed) was right, and the nearest wrong one (two unrelated
    districts: the same full name, grade, school and email, one birth date missing)
    scored 0.43. The margin, the rival ceiling, the gates and the one-to-one rule apply
    as to any automatic match."""
    at = np.full(len(comparisons), thresholds.auto, dtype=np.float64)
    lower = min(thresholds.auto, thresholds.auto_without_birth_date)
    at[names_without_birth_date(comparisons)] = lower
    return at


def score_pair(source: PersonRecord, target: PersonRecord) -> tuple[float, Evidence]:
    """The score and evidence of one pair, as ``match_people`` computes them when matching
    the one record against the other (for explanations and tests; use ``match_people``
    for many pairs)."""
    vocab = Vocabularies()
    s_side, t_side = encode_people([source], vocab), encode_people([target], vocab)
    tables = name_tables(vocab.names)
    zero = np.zeros(1, dtype=np.int64)
    comparisons = compare_pairs(s_side, t_side, tables, zero, zero)
    scored = _score(train(s_side, t_side, tables, comparisons, (zero, zero)), comparisons)
    return round(float(scored.score[0]), 4), _build_evidence(scored, zero)[0]
