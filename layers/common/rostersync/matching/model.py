"""The people match model: Fellegi-Sunter match weights learned from each run's data.

For every field and agreement level (``rostersync.matching.scoring``) the model holds
``m``, the probability of that level when the two records are the same person, and ``u``,
its probability when they are not. A pair's match weight is the sum over fields of
``log2(m / u)`` (0 for a field missing on either side: a missing field neither helps nor
hurts), plus the prior log-odds that a given source record is a given target record; the
match probability is the logistic of that sum, in bits.

Estimated per run, from the data itself:

* ``u`` from random pairs of the two sides (nearly all of them different people), the
  pairs born the same day counted over every pair (``same_value_pairs``);
* ``m`` by expectation-maximization over the blocked candidate pairs, with ``u`` held
  fixed, plus the pairs already known to be the same person (linked by key, confirmed by
  an admin) counted as labelled examples: the model learns how this district types;
* term frequencies: agreeing exactly on a rare given name, family name or birth date
  weighs ``log2(m / frequency)``, more than agreeing on a common one.

Every estimate is smoothed towards ``DEFAULT_M`` and ``DEFAULT_U`` (measured on generated
districts) with a fixed number of pseudo-observations, so a run of a handful of records
still gets sensible weights, and a large district's own data dominates.

Rules the independence assumption cannot express: grade and school are weak context
(each adds at most ``WEAK_CAP`` bits, and nothing when the birth dates disagree or the
pair is a sibling pattern: twins share them); an agreeing email adds at most
``EMAIL_CAP``; names read swapped cost ``SWAP_PENALTY``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from rostersync.matching.encoding import BoolArray, FloatArray, IntArray, PeopleColumns
from rostersync.matching.scoring import (
    BIRTH,
    DATE_DIFFERENT,
    DATE_EXACT,
    EMAIL,
    FAMILY,
    FIELDS,
    GIVEN,
    GRADE,
    IDENTITY_FIELDS,
    LEVELS,
    NAME_INITIAL,
    SCHOOL,
    Comparisons,
    NameTables,
    compare_pairs,
)

#: Default m per field and level (index 0, missing, is unused), from generated districts.
DEFAULT_M: Final[tuple[tuple[float, ...], ...]] = (
    (1.0, 0.86, 0.04, 0.02, 0.03, 0.02, 0.005, 0.025),  # given name
    (1.0, 0.87, 0.001, 0.03, 0.04, 0.03, 0.002, 0.027),  # family name
    (1.0, 0.88, 0.015, 0.035, 0.005, 0.005, 0.01, 0.05),  # birth date
    (1.0, 0.9, 0.1),  # email local part
    (1.0, 0.85, 0.13, 0.02),  # grade
    (1.0, 0.92, 0.08),  # school
)
#: Default u per field and level: how often two different people agree so.
DEFAULT_U: Final[tuple[tuple[float, ...], ...]] = (
    (1.0, 0.012, 0.001, 0.002, 0.003, 0.015, 0.03, 0.937),
    (1.0, 0.006, 0.0001, 0.001, 0.002, 0.01, 0.005, 0.9759),
    (1.0, 0.0003, 0.0003, 0.003, 0.001, 0.006, 0.07, 0.9194),
    (1.0, 0.0001, 0.9999),
    (1.0, 0.08, 0.14, 0.78),
    (1.0, 0.06, 0.94),
)
#: Pseudo-observations of the defaults in each estimate. A term frequency is smoothed
#: with 200 records at the field's average: a daily sync of a few dozen records keeps the
#: average, a roster of a thousand says how rare its names are (2,000 measured worse on
#: FEBRL and no different on generated districts).
M_PSEUDO: Final[float] = 50.0
U_PSEUDO: Final[float] = 5_000.0
TF_PSEUDO: Final[float] = 200.0
#: Random pairs drawn to estimate ``u``.
U_SAMPLE: Final[int] = 200_000
EM_ITERATIONS: Final[int] = 12
#: EM stops early once a step moves no estimate by this much.
EM_TOLERANCE: Final[float] = 1e-4
#: A match is judged against at least this many people: a small candidate pool (a daily
#: sync's few unlinked app records) makes a coincidence no less likely in the world.
MIN_POPULATION: Final[int] = 10_000
#: Grade and school each add at most this much evidence (bits).
WEAK_CAP: Final[float] = 1.0
#: An email agreeing adds at most this much (bits): siblings share a family address, and a
#: generated or recycled address can name another child; it supports names and a birth
#: date, it never carries a match alone.
EMAIL_CAP: Final[float] = 6.0
SWAP_PENALTY: Final[float] = 2.0
#: The least ``m`` a field's exact agreement may have when learned from a run: the same
#: child agrees exactly on their name, birth date, email, grade and school far more often
#: than not. A run with few or no true pairs (another district's roster, a daily sync of
#: new children) otherwise lets EM explain its coincidences as matches ("same given name
#: and birth date, any family name, any school") and learn that a family name or a school
#: tells nothing; such a field keeps its default ``m`` instead.
M_EXACT_MIN: Final[float] = 0.5
#: Labelled pairs (key links, admins' confirmed links) having a field that overrule
#: ``M_EXACT_MIN`` for it when most of them disagree on it.
LABELLED_TRUSTED: Final[int] = 20
_FLOOR = 1e-6
_TF_FIELDS = (GIVEN, FAMILY, BIRTH)


@dataclass(frozen=True, slots=True)
class TermFrequencies:
    """How often each value of one field occurs, over both sides of a match, smoothed
    towards the field's average agreement rate."""

    values: IntArray  # sorted distinct values
    counts: IntArray
    total: int
    average: float  # the default u of an exact agreement on the field

    @classmethod
    def of(cls, columns: list[IntArray], average: float) -> TermFrequencies:
        joined = np.concatenate(columns)
        joined = joined[joined >= 0]
        values, counts = np.unique(joined, return_counts=True)
        return cls(values, counts.astype(np.int64), len(joined), average)

    def count(self, ids: IntArray) -> FloatArray:
        """How often each value occurs (ids absent from the table count 0)."""
        count = np.zeros(len(ids), dtype=np.float64)
        if len(self.values):
            position = np.clip(np.searchsorted(self.values, ids), 0, len(self.values) - 1)
            found = self.values[position] == ids
            count[found] = self.counts[position[found]]
        return count

    def frequency(self, ids: IntArray) -> FloatArray:
        """The smoothed frequency of each value among the records other than an exactly
        agreeing pair's own two."""
        return self.smoothed(self.count(ids))

    def smoothed(self, count: FloatArray) -> FloatArray:
        """``frequency`` from the values' counts (``count``)."""
        others = np.maximum(count - 2.0, 0.0)
        return (others + TF_PSEUDO * self.average) / (self.total + TF_PSEUDO)


#: Per term-frequency field: the pairs agreeing exactly and how often their value occurs.
ExactValues = tuple[tuple[IntArray, FloatArray], ...]


@dataclass(frozen=True, slots=True)
class MatchModel:
    """m and u per field and level, term frequencies, and the prior of one run."""

    m: tuple[FloatArray, ...]
    u: tuple[FloatArray, ...]
    frequencies: tuple[TermFrequencies, TermFrequencies, TermFrequencies]
    #: The prior log-odds (bits) that a source record is a given target record.
    prior: float
    #: The share of source records estimated to have a match among the targets.
    match_rate: float

    def level_weights(self) -> list[FloatArray]:
        """``log2(m / u)`` per field and level (0 for missing)."""
        out = []
        for m, u in zip(self.m, self.u, strict=True):
            weight = np.log2(np.maximum(m, _FLOOR)) - np.log2(np.maximum(u, _FLOOR))
            weight[0] = 0.0
            out.append(weight)
        return out

    def exact_values(self, comparisons: Comparisons) -> ExactValues:
        """The pairs agreeing exactly on each term-frequency field, with their value's
        count (the same for every model of one run: EM computes it once)."""
        levels = comparisons.levels
        ids = (comparisons.given_id, comparisons.family_id, comparisons.birth_id)
        out = []
        for f, frequencies, value in zip(_TF_FIELDS, self.frequencies, ids, strict=True):
            exact = np.flatnonzero(levels[:, f] == 1)
            out.append((exact, frequencies.count(value[exact])))
        return tuple(out)

    def contributions(
        self, comparisons: Comparisons, exact_values: ExactValues | None = None
    ) -> FloatArray:
        """Per pair, each field's match weight in bits (columns in ``FIELDS`` order, then
        the swapped-names adjustment). ``exact_values``: ``self.exact_values(comparisons)``
        when already known."""
        levels = comparisons.levels
        weights = self.level_weights()
        out = np.zeros((len(comparisons), len(FIELDS) + 1), dtype=np.float64)
        for f, table in enumerate(weights):
            out[:, f] = table[levels[:, f]]
        if exact_values is None:
            exact_values = self.exact_values(comparisons)
        for f, frequencies, (exact, count) in zip(
            _TF_FIELDS, self.frequencies, exact_values, strict=True
        ):
            if len(exact):
                m_exact = max(float(self.m[f][1]), _FLOOR)
                frequency = frequencies.smoothed(count)
                out[exact, f] = np.log2(m_exact) - np.log2(frequency)
        # A nickname, a double name or a typo never weighs more than exact agreement on
        # an average name; an agreeing initial is weak evidence, never evidence against.
        for f in (GIVEN, FAMILY):
            inexact = levels[:, f] > 1
            out[inexact, f] = np.minimum(out[inexact, f], weights[f][1])
            initial = levels[:, f] == NAME_INITIAL
            out[initial, f] = np.maximum(out[initial, f], 0.0)
        # Grade and school: weak context, never outweighing a birth-date disagreement nor
        # telling twins apart.
        muted = (levels[:, BIRTH] == DATE_DIFFERENT) | comparisons.sibling
        for f in (GRADE, SCHOOL):
            capped = np.minimum(out[:, f], WEAK_CAP)
            out[:, f] = np.where(muted, np.minimum(capped, 0.0), capped)
        out[:, EMAIL] = np.minimum(out[:, EMAIL], EMAIL_CAP)
        out[:, -1] = np.where(comparisons.swapped_names, -SWAP_PENALTY, 0.0)
        return out

    def exact_weights(self) -> FloatArray:
        """Per field, the weight of exact agreement at the field's average frequency (what
        a missing field could have added)."""
        weights = np.array([table[1] for table in self.level_weights()], dtype=np.float64)
        weights[EMAIL] = min(weights[EMAIL], EMAIL_CAP)
        weights[GRADE] = min(weights[GRADE], WEAK_CAP)
        weights[SCHOOL] = min(weights[SCHOOL], WEAK_CAP)
        return np.maximum(weights, 0.0)

    def potential(self, comparisons: Comparisons, weight: FloatArray) -> FloatArray:
        """Per pair, the weight it would reach had its missing names and birth date agreed:
        what a rival lacking them could turn out to be."""
        exact = self.exact_weights()
        missing = ~comparisons.present()[:, list(IDENTITY_FIELDS)]
        return np.asarray(weight + missing.astype(np.float64) @ exact[list(IDENTITY_FIELDS)])

    def best_possible(self, present: BoolArray) -> FloatArray:
        """Per pair, the weight (prior included) if every field both sides have agreed."""
        return np.asarray(self.prior + present.astype(np.float64) @ self.exact_weights())


def one_to_one_posterior(weight: FloatArray, source: IntArray, target: IntArray) -> FloatArray:
    """Per pair, the probability that it is the match when each source and each target
    has at most one: its odds over one plus the odds of every pair sharing its source or
    its target (itself included)."""
    odds = np.exp2(np.clip(weight, -60.0, 60.0))
    by_source = np.bincount(source, weights=odds)
    by_target = np.bincount(target, weights=odds)
    return np.asarray(odds / (1.0 + by_source[source] + by_target[target] - odds))


def probability(weight: FloatArray) -> FloatArray:
    """Match probability of a total weight in bits (prior included)."""
    return np.asarray(1.0 / (1.0 + np.exp2(-np.clip(weight, -60.0, 60.0))), dtype=np.float64)


def _defaults(table: tuple[tuple[float, ...], ...]) -> list[FloatArray]:
    return [np.array(row, dtype=np.float64) for row in table]


def _level_counts(levels: np.ndarray, f: int, weights: FloatArray | None = None) -> FloatArray:
    counts = np.bincount(levels[:, f], weights=weights, minlength=LEVELS[f]).astype(np.float64)
    counts[0] = 0.0
    return counts


def _smoothed(counts: FloatArray, default: FloatArray, pseudo: float) -> FloatArray:
    present = counts[1:].sum()
    out = np.asarray((counts + pseudo * default) / (present + pseudo), dtype=np.float64)
    out[0] = 1.0
    return out


def _plausible(m: FloatArray, default: FloatArray, labelled: FloatArray | None) -> FloatArray:
    """``m`` as learned, or ``default`` when it puts less than ``M_EXACT_MIN`` on exact
    agreement (see ``M_EXACT_MIN``), unless the labelled pairs (``labelled``: their level
    counts) say so themselves: at least ``LABELLED_TRUSTED`` of them have the field and
    fewer than ``M_EXACT_MIN`` of those agree exactly. Known matches are no coincidences:
    a district whose app holds birth months only, or parents' emails where the SIS has
    the children's, teaches the model that through the links its admins confirmed."""
    if m[1] >= M_EXACT_MIN:
        return m
    if labelled is not None:
        present = float(labelled[1:].sum())
        if present >= LABELLED_TRUSTED and labelled[1] < M_EXACT_MIN * present:
            return m
    return default


@dataclass(frozen=True, slots=True)
class RandomPairs:
    """Level counts of random pairs of the two sides, the raw material of ``u``.

    ``fraction``: the share of all pairs they are (1 when every pair was compared)."""

    counts: list[FloatArray]
    fraction: float

    def u(self, matched: list[FloatArray] | None = None) -> list[FloatArray]:
        """u per field and level, smoothed towards ``DEFAULT_U``. ``matched``: the
        posterior-weighted level counts of the candidate pairs, taken out first: random
        pairs of a small run hold its true pairs too (500 of 250,000 pairs in a 500 by
        500 run, as many as the coincidences on a birth date), and left in they make an
        agreement look common."""
        defaults = _defaults(DEFAULT_U)
        out = []
        for f, counts in enumerate(self.counts):
            if matched is not None:
                counts = np.maximum(counts - self.fraction * matched[f], 0.0)
            out.append(_smoothed(counts, defaults[f], U_PSEUDO))
        return out


def random_pairs(
    source: PeopleColumns,
    target: PeopleColumns,
    tables: NameTables,
    seed: int = 0,
) -> RandomPairs:
    """The level counts of random pairs (every pair of a small run; deterministic for a
    seed)."""
    n_s, n_t = len(source), len(target)
    if n_s == 0 or n_t == 0:
        return RandomPairs([np.zeros(n, dtype=np.float64) for n in LEVELS], 1.0)
    total = n_s * n_t
    if total <= U_SAMPLE:
        code = np.arange(total, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        code = rng.integers(0, total, size=U_SAMPLE, dtype=np.int64)
    si, ti = code // n_t, code % n_t
    levels = compare_pairs(source, target, tables, si, ti).levels
    counts = [_level_counts(levels, f) for f in range(len(FIELDS))]
    fraction = len(code) / float(total)
    if fraction < 1.0:
        counts[BIRTH] = _exact_births(counts[BIRTH], source.birth, target.birth, fraction)
    return RandomPairs(counts, fraction)


def same_value_pairs(a: IntArray, b: IntArray) -> int:
    """How many (a, b) pairs hold one value (``MISSING`` values left out)."""
    values_a, counts_a = np.unique(a[a >= 0], return_counts=True)
    values_b, counts_b = np.unique(b[b >= 0], return_counts=True)
    _, in_a, in_b = np.intersect1d(values_a, values_b, assume_unique=True, return_indices=True)
    return int((counts_a[in_a].astype(np.int64) * counts_b[in_b].astype(np.int64)).sum())


def _exact_births(
    counts: FloatArray, source: IntArray, target: IntArray, fraction: float
) -> FloatArray:
    """The birth-date level counts of a sample of the pairs (``fraction`` of them) with
    the exact agreements counted over every pair instead: two children born the same day
    are a handful to a few dozen of 200,000 pairs, and counted in the sample alone, with
    the run's true pairs taken out (``RandomPairs.u``), their number moved by more than
    itself with the sample drawn. It is what an exact birth date weighs (its
    term frequency is smoothed towards it), so a pupil's score moved by three bits when
    the records came in another order. The pairs the sample holds stay as many: the
    difference goes to ``DATE_DIFFERENT``."""
    out = counts.copy()
    expected = fraction * same_value_pairs(source, target)
    out[DATE_DIFFERENT] = max(out[DATE_DIFFERENT] + out[DATE_EXACT] - expected, 0.0)
    out[DATE_EXACT] = expected
    return out


def estimate_u(
    source: PeopleColumns,
    target: PeopleColumns,
    tables: NameTables,
    seed: int = 0,
) -> list[FloatArray]:
    """u per field and level from random pairs (deterministic for a seed)."""
    return random_pairs(source, target, tables, seed).u()


def _with_averages(
    frequencies: tuple[TermFrequencies, TermFrequencies, TermFrequencies], u: list[FloatArray]
) -> tuple[TermFrequencies, TermFrequencies, TermFrequencies]:
    """The term frequencies smoothed towards this run's u of exact agreement."""
    given, family, birth = (
        replace(table, average=float(u[f][1]))
        for table, f in zip(frequencies, _TF_FIELDS, strict=True)
    )
    return given, family, birth


def frequencies_of(
    source: PeopleColumns, target: PeopleColumns
) -> tuple[TermFrequencies, TermFrequencies, TermFrequencies]:
    """Term frequencies of given names, family names and birth dates over both sides."""
    return (
        TermFrequencies.of([source.given, target.given], DEFAULT_U[GIVEN][1]),
        TermFrequencies.of([source.family, target.family], DEFAULT_U[FAMILY][1]),
        TermFrequencies.of([source.birth, target.birth], DEFAULT_U[BIRTH][1]),
    )


def _prior(match_rate: float, n_targets: int, floor: int = MIN_POPULATION) -> float:
    population = max(n_targets, floor, 1)
    return float(np.log2(match_rate) - np.log2(population))


def train(
    source: PeopleColumns,
    target: PeopleColumns,
    tables: NameTables,
    candidates: Comparisons,
    candidate_index: tuple[IntArray, IntArray],
    labelled: Comparisons | None = None,
) -> MatchModel:
    """Learn the run's model: u from random pairs, term frequencies, then m and the match
    rate by EM over the candidate pairs (``candidate_index``: their source and target
    indexes), with ``labelled`` (pairs known to be the same person) counted as matches.

    The expectation step takes the population prior (u comes from random pairs, so the
    weights are odds against a random pair, not against a candidate) and lets the pairs
    of one source, and of one target, share one match between them: a twin's pair with
    the other twin's record gives way to that record's own, stronger pair, instead of
    teaching the model that given names often differ."""
    pairs = random_pairs(source, target, tables)
    u = pairs.u()
    frequencies = _with_averages(frequencies_of(source, target), u)
    default_m = _defaults(DEFAULT_M)
    labelled_counts = [
        _level_counts(labelled.levels, f) if labelled is not None and len(labelled) else None
        for f in range(len(FIELDS))
    ]
    m = [
        default_m[f]
        if counts is None
        else _plausible(_smoothed(counts, default_m[f], M_PSEUDO), default_m[f], counts)
        for f, counts in enumerate(labelled_counts)
    ]
    n_sources = max(len(source), 1)
    match_rate = 0.5
    model = MatchModel(tuple(m), tuple(u), frequencies, _prior(match_rate, len(target)), match_rate)
    if len(candidates) == 0:
        return model
    pair_source, pair_target = candidate_index
    exact_values = model.exact_values(candidates)
    for _ in range(EM_ITERATIONS):
        previous = model
        # The expectation step weighs a pair against this run's own targets (no
        # ``MIN_POPULATION`` floor): the floor is a safety margin for decisions, and
        # applied here it would teach the model that a true pair never disagrees (a
        # disagreeing true pair would stay below one half and count as a non-match).
        em_prior = _prior(match_rate, len(target), floor=1)
        weight = em_prior + model.contributions(candidates, exact_values).sum(axis=1)
        posterior = one_to_one_posterior(weight, pair_source, pair_target)
        matched = [_level_counts(candidates.levels, f, posterior) for f in range(len(FIELDS))]
        u = pairs.u(matched)
        frequencies = _with_averages(frequencies, u)
        m = []
        for f in range(len(FIELDS)):
            counts = matched[f]
            extra = labelled_counts[f]
            if extra is not None:
                counts = counts + extra
            m.append(_plausible(_smoothed(counts, default_m[f], M_PSEUDO), default_m[f], extra))
        # The share of sources with a match, smoothed towards one half for tiny runs.
        found = float(np.clip(posterior.sum(), 0.0, n_sources))
        match_rate = float(np.clip((found + 0.5 * 20) / (n_sources + 20), 0.01, 0.99))
        model = MatchModel(
            tuple(m), tuple(u), frequencies, _prior(match_rate, len(target)), match_rate
        )
        if _converged(previous, model):
            break
    return model


def _converged(before: MatchModel, after: MatchModel) -> bool:
    """Whether an EM step moved no m, u or the match rate by ``EM_TOLERANCE`` or more."""
    if abs(before.match_rate - after.match_rate) >= EM_TOLERANCE:
        return False
    return all(
        float(np.max(np.abs(a - b))) < EM_TOLERANCE
        for pair in ((before.m, after.m), (before.u, after.u))
        for a, b in zip(*pair, strict=True)
    )
