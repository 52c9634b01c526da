"""The suggestion floor: pairs below ``suggest`` that agree strongly on one axis, offered
to an admin as a suggestion (never automatic).

A pair's score weighs a match against at least ``MIN_POPULATION`` people, and a replaced
birth date or a replaced name costs it most of its odds: a duplicate whose names agree
but whose birth date is another child's, or whose birth date agrees while one name was
written in the other's place and the other replaced, ends below ``suggest`` though it is,
more often than not, the same child. The floor offers such a pair to an admin when:

* it agrees strongly on one axis: both names (exact, a nickname or an equivalent, or one
  of them a typo) while the birth date differs beyond a typo or is missing on one side;
  or the birth date exactly and one name (exact or a typo) written in the other name's
  place ("White, Jasmine" for "Jacqueline White"); not the given name beside another
  family name, which in a school is as often a leaver and a new pupil born the same day;
* it is no sibling pattern (twins never reach scoring at all);
* its weight without the disagreeing axis (the birth date, or the replaced name; email,
  grade and school still count), against the run's own number of targets instead of
  ``MIN_POPULATION``, reaches ``FLOOR_BITS`` (a birth date missing on a side disagrees
  with nothing: such a pair needs the odds of ``suggest``, ``least_bits``): a full
  name shared by dozens of a district's children says nothing, one held once in a
  roster of a thousand does, and a child of the same name twelve grades and another
  school away is another child;
* it is unambiguous: it leads every other floor pair of its source and of its target by
  ``FLOOR_LEAD`` bits, its source has nothing at ``suggest`` or above, and no source at
  ``suggest`` or above wants its target.

Floor suggestions are decided after the tiers, so they contest nothing: no automatic
match is held back by one.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from rostersync.matching.encoding import BoolArray, FloatArray, IntArray, PeopleColumns
from rostersync.matching.model import SWAP_PENALTY, MatchModel
from rostersync.matching.scoring import (
    BIRTH,
    DATE_DIFFERENT,
    DATE_EXACT,
    DATE_MISSING,
    DATE_MONTH_YEAR,
    DATE_YEAR,
    FAMILY,
    GIVEN,
    NAME_CLOSE,
    NAME_DIFFERENT,
    NAME_EQUIVALENT,
    NAME_EXACT,
    NAME_NICKNAME,
    NAME_SIMILAR,
    Comparisons,
    NameTables,
    name_similarity,
)

#: Names agreeing as one child's: exact, a nickname, an equivalent writing.
STRONG_NAME: Final[tuple[int, ...]] = (NAME_EXACT, NAME_NICKNAME, NAME_EQUIVALENT)
#: A typo.
TYPO_NAME: Final[tuple[int, ...]] = (NAME_CLOSE, NAME_SIMILAR)
#: The least weight (bits, without the disagreeing axis, the prior against the run's own
#: targets included) of a floor pair.
FLOOR_BITS: Final[float] = 1.0
#: How far (bits) a floor pair must lead every other floor pair of its source and of its
#: target: two records of one name, born on other days, are an admin's guess, not a
#: suggestion.
FLOOR_LEAD: Final[float] = 3.0


def crossed_names(
    source: PeopleColumns,
    target: PeopleColumns,
    tables: NameTables,
    si: IntArray,
    ti: IntArray,
    comparisons: Comparisons,
) -> tuple[IntArray, IntArray]:
    """Per pair, the level of the source's family name against the target's given name
    and of the source's given name against the target's family name (``NAME_DIFFERENT``
    where not compared): computed only where both names differ as read and the birth
    dates agree exactly."""
    levels = comparisons.levels
    wanted = np.flatnonzero(
        (levels[:, GIVEN] == NAME_DIFFERENT)
        & (levels[:, FAMILY] == NAME_DIFFERENT)
        & (levels[:, BIRTH] == DATE_EXACT)
    )
    as_given = np.full(len(si), NAME_DIFFERENT, dtype=np.int64)
    as_family = np.full(len(si), NAME_DIFFERENT, dtype=np.int64)
    if len(wanted):
        _, given_level = name_similarity(
            tables, source.family[si[wanted]], target.given[ti[wanted]]
        )
        _, family_level = name_similarity(
            tables, source.given[si[wanted]], target.family[ti[wanted]]
        )
        as_given[wanted] = given_level
        as_family[wanted] = family_level
    return as_given, as_family


def least_bits(suggest: float) -> float:
    """The least weight (bits, against the run's own targets) of a floor pair whose names
    agree while a side has no birth date: nothing disagrees, so it is held to ``suggest``'s
    own odds (``log2(0.2 / 0.8)``, -2 bits, at the default), never to more than
    ``FLOOR_BITS``."""
    share = min(max(suggest, 1e-9), 1.0 - 1e-9)
    return min(FLOOR_BITS, float(np.log2(share / (1.0 - share))))


def floor_pairs(
    comparisons: Comparisons,
    contributions: FloatArray,
    weight: FloatArray,
    model: MatchModel,
    n_targets: int,
    crossed: tuple[IntArray, IntArray],
    suggest: float,
) -> tuple[BoolArray, FloatArray]:
    """Per pair: whether it qualifies for the floor (its kind and its evidence; the
    one-to-one rule is ``unambiguous``'s), and its weight in bits without the axis that
    disagrees, against the run's own ``n_targets`` (``weight``: the pair's weight, prior
    included; ``crossed``: from ``crossed_names``; ``suggest``: the threshold, for
    ``least_bits``)."""
    levels = comparisons.levels
    given, family, birth = levels[:, GIVEN], levels[:, FAMILY], levels[:, BIRTH]
    agreeing = (*STRONG_NAME, *TYPO_NAME)
    strong_given, strong_family = np.isin(given, STRONG_NAME), np.isin(family, STRONG_NAME)
    names = (strong_given & np.isin(family, agreeing)) | (strong_family & np.isin(given, agreeing))
    birth_off = np.isin(birth, (DATE_MISSING, DATE_MONTH_YEAR, DATE_YEAR, DATE_DIFFERENT))
    by_names = names & birth_off & ~comparisons.sibling
    # The birth date and one name, the other name written in its place. Not the birth
    # date and the given name beside another family name: in a school that is as often a
    # leaver and a new pupil born the same day with the same given name (a district of
    # 100,000 has dozens), and a suggestion keeps the new pupil waiting for an admin.
    as_given, as_family = crossed
    crossed_name = np.isin(as_given, agreeing) | np.isin(as_family, agreeing)
    by_birth = (birth == DATE_EXACT) & crossed_name & ~comparisons.sibling

    # The pair's weight without the axis that disagrees: the birth date, or the name that
    # was replaced (both names where the other name agrees in the other name's place,
    # which then counts as that name, at the swapped reading's cost). Email, grade and
    # school still count, against as much as for.
    rest = weight - model.prior
    names_bits = rest - contributions[:, BIRTH]
    straight = np.where(
        np.isin(given, agreeing) & (family == NAME_DIFFERENT),
        rest - contributions[:, FAMILY],
        np.where(np.isin(family, agreeing), rest - contributions[:, GIVEN], -np.inf),
    )
    level_weights = model.level_weights()
    cross = np.maximum(
        np.where(np.isin(as_given, agreeing), level_weights[GIVEN][as_given], -np.inf),
        np.where(np.isin(as_family, agreeing), level_weights[FAMILY][as_family], -np.inf),
    )
    crossed_bits = rest - contributions[:, GIVEN] - contributions[:, FAMILY] + cross
    birth_bits = np.maximum(straight, crossed_bits - SWAP_PENALTY)
    pool_prior = float(np.log2(model.match_rate) - np.log2(max(n_targets, 1)))
    bits = pool_prior + np.where(by_names, names_bits, np.where(by_birth, birth_bits, -np.inf))
    # A birth date missing on a side disagrees with nothing: such a pair is weighed as
    # ``suggest`` weighs a pair, but against the run's own targets instead of
    # ``MIN_POPULATION`` (the same at 10,000 targets and more). A birth date or a name
    # that disagrees is removed from the weight, and what is left must say more.
    least = np.where(by_names & (birth == DATE_MISSING), least_bits(suggest), FLOOR_BITS)
    eligible = (by_names | by_birth) & (bits >= least)
    return np.asarray(eligible, dtype=bool), np.asarray(bits, dtype=np.float64)


def _rival(group: IntArray, bits: FloatArray, size: int) -> FloatArray:
    """Per pair, the best ``bits`` among the other pairs of its group (-inf if none)."""
    order = np.lexsort((-bits, group))
    g, b = group[order], bits[order]
    first = np.r_[True, g[1:] != g[:-1]]
    top = np.full(size, -np.inf)
    second = np.full(size, -np.inf)
    top[g[first]] = b[first]
    later = np.flatnonzero(~first & np.r_[False, first[:-1]])
    second[g[later]] = b[later]
    is_top = np.zeros(len(order), dtype=bool)
    is_top[order[first]] = True
    return np.asarray(np.where(is_top, second[group], top[group]), dtype=np.float64)


def unambiguous(
    eligible: BoolArray,
    bits: FloatArray,
    si: IntArray,
    ti: IntArray,
    n_sources: int,
    n_targets: int,
    open_source: BoolArray,
    open_target: BoolArray,
) -> IntArray:
    """Per source, the index of its floor pair (-1 for none): the eligible pair that leads
    every other eligible pair of its source and of its target by ``FLOOR_LEAD`` bits,
    among the ``open`` sources (nothing at ``suggest`` or above) and targets (no source at
    ``suggest`` or above wants it)."""
    chosen = np.full(n_sources, -1, dtype=np.int64)
    pairs = np.flatnonzero(eligible & open_source[si] & open_target[ti])
    if len(pairs) == 0:
        return chosen
    b = bits[pairs]
    rival = np.maximum(_rival(si[pairs], b, n_sources), _rival(ti[pairs], b, n_targets))
    alone = pairs[b - rival >= FLOOR_LEAD]
    chosen[si[alone]] = alone
    return chosen
