"""One-to-one tier assignment over scored candidate pairs, shared by people and classes.

Given every scored candidate pair (source index, target index, score, whether the pair
passes the per-field gates of the automatic tier), decide for each source record its best
target and its tier:

* **auto**: score ≥ ``auto``, the margin over the runner-up ≥ ``margin`` (the runner-up is
  the better of the source's next candidate and the best other source competing for the
  same target, each counted at what it could reach had its missing fields agreed), the
  pair passes the gates, and no other source wants the same target;
* **suggested**: score ≥ ``suggest`` but not auto;
* **unmatched**: everything else.

A source *wants* a target when that target is its best candidate at a score ≥
``suggest``. Two sources wanting one target are a conflict: neither is automatic, since
at most one of them can be right and the numbers cannot tell which.

Everything is vectorized with numpy; the cost is a few sorts of the pair arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rostersync.matching.thresholds import Thresholds

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

TIER_UNMATCHED = 0
TIER_SUGGESTED = 1
TIER_AUTO = 2


@dataclass(frozen=True, slots=True)
class Assignment:
    """Per source record (by index): the chosen pair, the runner-up score and the tier."""

    #: Index into the pair arrays of the source's best candidate, -1 when it has none.
    best_pair: IntArray
    #: The runner-up score (0 when there is no competitor).
    runner_up: FloatArray
    #: TIER_UNMATCHED, TIER_SUGGESTED or TIER_AUTO.
    tier: npt.NDArray[np.int8]
    #: Target index → the source indexes that want it, for every contested target.
    conflicts: dict[int, list[int]]


_BITS = 21  # group and other indexes below 2**21; score quantized to 21 bits


def _group_order(group: IntArray, other: IntArray, score: FloatArray) -> IntArray:
    """Pair order by group, then score descending, then ``other``: one argsort of a packed
    key (much faster than a three-key lexsort), falling back to lexsort for sides too large
    to pack."""
    limit = 1 << _BITS
    if len(group) == 0 or max(int(group.max()), int(other.max())) >= limit:
        return np.asarray(np.lexsort((other, -score, group)), dtype=np.int64)
    rank = np.rint((1.0 - np.clip(score, 0.0, 1.0)) * (limit - 1)).astype(np.int64)
    packed = (group << (2 * _BITS)) | (rank << _BITS) | other
    return np.asarray(np.argsort(packed, kind="stable"), dtype=np.int64)


def best_per_group(
    group: IntArray, other: IntArray, score: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """For each distinct ``group`` value: the index of its best pair (highest score, ties
    to the lowest ``other``) and the score of its second-best pair (0 when alone).

    Returns (groups, best pair index, second score), groups ascending."""
    order = _group_order(group, other, score)
    sorted_group = group[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_group[1:] != sorted_group[:-1]
    first_pos = np.flatnonzero(first)
    second_pos = first_pos + 1
    has_second = second_pos < len(order)
    has_second[has_second] = (
        sorted_group[second_pos[has_second]] == sorted_group[first_pos[has_second]]
    )
    second_score = np.zeros(len(first_pos), dtype=np.float64)
    second_score[has_second] = score[order[second_pos[has_second]]]
    return sorted_group[first_pos], order[first_pos], second_score


def _runner_up(
    n_sources: int,
    n_targets: int,
    source: IntArray,
    target: IntArray,
    rival: FloatArray,
    best_of_source: IntArray,
    sources: IntArray,
) -> FloatArray:
    """Per source in ``sources`` (its best pair at ``best_of_source``): the better of its
    other candidates and of the other sources' pairs with the same target, by ``rival``."""
    others = rival.copy()
    others[best_of_source] = -np.inf
    source_rival = np.zeros(n_sources, dtype=np.float64)
    np.maximum.at(source_rival, source, others)
    # The target's best rival source: its top, or the second when the top is this very
    # source.
    targets, top_of_target, second_of_target = best_per_group(target, source, rival)
    target_top_source = np.full(n_targets, -1, dtype=np.int64)
    target_top = np.zeros(n_targets, dtype=np.float64)
    target_second = np.zeros(n_targets, dtype=np.float64)
    target_top_source[targets] = source[top_of_target]
    target_top[targets] = rival[top_of_target]
    target_second[targets] = second_of_target
    chosen_target = target[best_of_source]
    competitor = np.where(
        target_top_source[chosen_target] == sources,
        target_second[chosen_target],
        target_top[chosen_target],
    )
    return np.asarray(np.maximum(source_rival[sources], competitor), dtype=np.float64)


def assign_tiers(
    n_sources: int,
    n_targets: int,
    source: IntArray,
    target: IntArray,
    score: FloatArray,
    auto_ok: BoolArray,
    thresholds: Thresholds,
    potential: FloatArray | None = None,
    rival_ceiling: float | None = None,
    dominant: BoolArray | None = None,
    auto_at: FloatArray | None = None,
) -> Assignment:
    """Decide every source's best target and tier from its scored candidate pairs.

    ``potential`` (per pair, ≥ ``score``): the score a competing pair could reach if the
    fields it is missing agreed. Competitors are measured by it, so a rival that merely
    lacks a birth date still counts as the threat it may be; the chosen pair itself is
    measured by its actual score. ``rival_ceiling``: when given, an automatic match also
    needs its runner-up below it (people: no rival that would itself be worth a
    suggestion). ``auto_at``: when given, the lowest automatic score per pair (instead of
    ``thresholds.auto`` for every pair)."""
    best_pair = np.full(n_sources, -1, dtype=np.int64)
    runner_up = np.zeros(n_sources, dtype=np.float64)
    tier = np.zeros(n_sources, dtype=np.int8)
    if len(source) == 0:
        return Assignment(best_pair, runner_up, tier, {})
    rival = score if potential is None else potential

    sources, best_of_source, _ = best_per_group(source, target, score)
    best_pair[sources] = best_of_source

    chosen_target = target[best_of_source]
    chosen_score = score[best_of_source]
    runner_up[sources] = _runner_up(
        n_sources, n_targets, source, target, rival, best_of_source, sources
    )
    plain = np.zeros(len(sources), dtype=bool)
    if dominant is not None:
        plain = dominant[best_of_source]
        if plain.any() and potential is not None:
            actual = _runner_up(
                n_sources, n_targets, source, target, score, best_of_source, sources
            )
            runner_up[sources[plain]] = actual[plain]

    wanting = chosen_score >= thresholds.suggest
    wanted_by = np.bincount(chosen_target[wanting], minlength=n_targets)
    contested = wanted_by[chosen_target] > 1

    auto = (
        wanting
        & ~contested
        & (chosen_score >= (thresholds.auto if auto_at is None else auto_at[best_of_source]))
        & (chosen_score - runner_up[sources] >= thresholds.margin)
        & auto_ok[best_of_source]
    )
    if rival_ceiling is not None:
        auto &= (runner_up[sources] < rival_ceiling) | plain
    tier[sources[wanting]] = TIER_SUGGESTED
    tier[sources[auto]] = TIER_AUTO

    conflicts: dict[int, list[int]] = {}
    for source_index, target_index in zip(
        sources[wanting & contested].tolist(),
        chosen_target[wanting & contested].tolist(),
        strict=True,
    ):
        conflicts.setdefault(target_index, []).append(source_index)
    return Assignment(best_pair, runner_up, tier, conflicts)
