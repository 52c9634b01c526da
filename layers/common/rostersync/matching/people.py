"""Fuzzy, one-to-one matching of people: source (SIS) records to existing app records.

``match_people`` encodes both sides into integer columns (``encoding``), generates
candidate pairs from blocking keys (``blocking``), scores them (``scoring``) and decides
a tier per source record one-to-one (``assign``). Blocking, scoring and assignment are
vectorized; the Python loops left are over records (encoding, building decisions) and
over distinct strings, never over pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from rostersync.matching.assign import TIER_AUTO, TIER_SUGGESTED, assign_tiers
from rostersync.matching.blocking import candidate_pairs
from rostersync.matching.encoding import (
    FloatArray,
    IntArray,
    Vocabularies,
    encode_people,
)
from rostersync.matching.records import PersonRecord
from rostersync.matching.scoring import (
    DATE_DIGIT,
    DATE_NEXT_DAY,
    DATE_SWAPPED,
    DATE_TRANSPOSED,
    FIELDS,
    NAME_INITIAL,
    NAME_NICKNAME,
    WEIGHTS,
    PairScores,
    auto_gates,
    name_tables,
    score_pairs,
)
from rostersync.matching.thresholds import PEOPLE_THRESHOLDS, Thresholds
from rostersync.models import Tier

#: A field "agrees" (for ``Evidence.agreed``) at or above this similarity.
AGREEMENT = 0.8

_DATE_NOTES = {
    DATE_SWAPPED: "birth date: day and month swapped",
    DATE_NEXT_DAY: "birth date: one day apart",
    DATE_DIGIT: "birth date: one digit differs",
    DATE_TRANSPOSED: "birth date: two digits transposed",
}
_NAME_NOTES = {NAME_NICKNAME: "nickname", NAME_INITIAL: "initial only"}


class Evidence(NamedTuple):
    """Why a pair scored what it did.

    ``field_scores``: each field's similarity in [0, 1] (0 when missing on either side);
    ``agreed``: the fields at or above ``AGREEMENT``; ``missing``: the fields absent on
    either side; ``notes``: how names and dates agreed when not exactly (nickname, names
    swapped, day and month swapped, ...); ``max_score``: the highest score the fields
    present on both sides allow."""

    field_scores: Mapping[str, float]
    agreed: tuple[str, ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]
    max_score: float


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


def _build_evidence(scores: PairScores, pairs: IntArray) -> list[Evidence]:
    """``Evidence`` for each of ``pairs``. Everything but the per-field scores depends on a
    few small codes (which fields are missing or agree, the outcomes behind names and
    dates), computed vectorized and turned into tuples once per distinct code."""
    bits = np.array([1 << i for i in range(len(FIELDS))], dtype=np.int64)
    fields = np.round(scores.fields[pairs], 4)
    missing: list[int] = ((~scores.present[pairs]).astype(np.int64) @ bits).tolist()
    agreed: list[int] = ((fields >= AGREEMENT).astype(np.int64) @ bits).tolist()
    outcome: list[int] = (
        scores.swapped_names[pairs].astype(np.int64) << 12
        | scores.given_outcome[pairs].astype(np.int64) << 8
        | scores.family_outcome[pairs].astype(np.int64) << 4
        | scores.birth_outcome[pairs].astype(np.int64)
    ).tolist()
    names_of = {
        mask: tuple(name for i, name in enumerate(FIELDS) if mask >> i & 1)
        for mask in {*missing, *agreed}
    }
    top_of = {
        mask: round(sum(WEIGHTS[name] for name in FIELDS if name not in names_of[mask]), 4)
        for mask in set(missing)
    }
    notes_of = {
        code: _notes(bool(code >> 12), code >> 8 & 15, code >> 4 & 15, code & 15)
        for code in set(outcome)
    }
    return [
        Evidence(
            dict(zip(FIELDS, values, strict=True)), names_of[a], names_of[m], notes_of[o], top_of[m]
        )
        for values, a, m, o in zip(fields.tolist(), agreed, missing, outcome, strict=True)
    ]


def _notes(swapped: bool, given: int, family: int, birth: int) -> tuple[str, ...]:
    notes: list[str] = []
    if swapped:
        notes.append("given and family name swapped")
    for label, outcome in (("given name", given), ("family name", family)):
        if outcome in _NAME_NOTES:
            notes.append(f"{label}: {_NAME_NOTES[outcome]}")
    if birth in _DATE_NOTES:
        notes.append(_DATE_NOTES[birth])
    return tuple(notes)


def _check_unique_keys(records: Sequence[PersonRecord], side: str) -> None:
    if len({record.key for record in records}) != len(records):
        raise ValueError(f"{side} records have duplicate keys")


def match_people(
    source: Sequence[PersonRecord],
    target: Sequence[PersonRecord],
    *,
    thresholds: Thresholds = PEOPLE_THRESHOLDS,
    exclude_pairs: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    fixed: Mapping[str, str] | None = None,
) -> MatchResult:
    """Match each source person to at most one target person, one-to-one.

    ``exclude_pairs``: (source key, target key) pairs an admin rejected; they are never
    scored, so never suggested again, and do not compete with other pairs. ``fixed``:
    source key → target key links already made (identity links, key matches); those
    sources get ``Tier.LINKED`` without being scored and their targets are offered to no
    one else. People of different kinds are never paired. Keys must be unique per side.
    """
    _check_unique_keys(source, "source")
    _check_unique_keys(target, "target")
    fixed = dict(fixed or {})
    taken = set(fixed.values())
    open_source = [record for record in source if record.key not in fixed]
    open_target = [record for record in target if record.key not in taken]

    vocab = Vocabularies()
    s_side = encode_people(open_source, vocab)
    t_side = encode_people(open_target, vocab)
    tables = name_tables(vocab.names)
    si, ti = candidate_pairs(s_side, t_side, tables.nicknames)

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
    si, ti = si[keep], ti[keep]

    scores = score_pairs(s_side, t_side, tables, si, ti)
    gates = auto_gates(scores, thresholds)
    assignment = assign_tiers(
        len(s_side), len(t_side), si, ti, scores.score, gates, thresholds, scores.potential()
    )
    alternatives = _alternatives(si, ti, scores.score, assignment.tier, t_side.keys)
    chosen = assignment.best_pair[assignment.tier != 0]
    evidence_of = dict(zip(chosen.tolist(), _build_evidence(scores, chosen), strict=True))

    decided: dict[str, Decision] = {}
    target_keys = t_side.keys
    pair_targets = ti.tolist()
    pair_scores = np.round(scores.score, 4).tolist()
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


def score_pair(source: PersonRecord, target: PersonRecord) -> tuple[float, Evidence]:
    """The score and evidence of one pair, exactly as ``match_people`` computes them (for
    explanations and tests; use ``match_people`` for many pairs)."""
    vocab = Vocabularies()
    s_side, t_side = encode_people([source], vocab), encode_people([target], vocab)
    tables = name_tables(vocab.names)
    zero = np.zeros(1, dtype=np.int64)
    scores = score_pairs(s_side, t_side, tables, zero, zero)
    return round(float(scores.score[0]), 4), _build_evidence(scores, zero)[0]
