"""Candidate pairs for people: a union of exact joins on blocking keys, never all pairs.

Each blocking key is a packed integer built from encoded columns; a block is the set of
records sharing a key. Pairs come from joining the source's keys with the target's
(sort + searchsorted), so the cost grows with the number of candidate pairs, not with
the product of the sides. A block holding more than ``BLOCK_CAP`` records on either side
is skipped as unselective; a true pair in it is still found through another key on which
it agrees specifically.

The keys (the source side also emits each with given and family name swapped):

1. family-name Soundex (first, last or joined tokens) + birth date: a typo in the given name;
2. given-name Soundex + birth date: a typo in the family name;
3. nickname group + birth date: "Bob" for "Robert";
4. family-name token + given-name prefix: a wrong or missing birth date;
5. given name + family-name prefix: the same with a double family name;
6. family or given Soundex + birth date with day and month swapped;
7. both Soundex codes + birth year: a typo in a name and in the day or month;
8. given-name prefix + birth date, and 9. family-name prefix + birth date: typos that
   change a Soundex code;
10. email local part;
11. family-name token + nickname group: a nickname and a wrong or missing birth date;
12. family-name token + given-name Soundex: a typo early in the given name ("Laim" for
    "Liam") and a wrong or missing birth date;
13. family-name reading + birth date, 14. given-name reading + birth date, and 15. both
    readings (``normalize.name_reading``, or the school's reading of a name in kanji):
    one name written in kana, or in kanji read by the school, on one side and in romaji
    or the other kana on the other ("佐藤" read "さとう"/"サトウ"/"Sato"). Only when
    either side has a name read as kana: other rosters never pay for them;
16. birth date + first letter of the given name, and 17. of the family name: a name
    replaced or mistyped beyond its Soundex code and the other name mistyped ("Betie
    Nguyen"/"Bertie Whetstone", "Ruy"/"Ruby");
18. family-name token + first letter of the given name, and 19. given-name token + first
    letter of the family name, for records with a birth date on both sides: a typo early
    in the other name and a replaced birth date ("Imzogen"/"Imogen Akroyd", born six
    years apart). A record without a birth date is left out of these two: its pairs
    would count as rivals at what they could reach had the birth dates agreed.
    Blocks of these four keys are capped at ``LOOSE_CAP`` records a side;
20. both Soundex codes, and 21. the given-name token + the family-name token or the
    family-name token with one letter deleted ("Ales"/"Alves": deleting a letter of
    either side meets the other, so one slip anywhere in the name agrees), between a
    record without a birth date and any record: both names mistyped ("Conor
    Hilotn"/"Connor Hilton"), or a slip early in the family name, where every other
    key without a birth date needs a name's first three letters or its Soundex code.
    A record with a birth date on both sides is found through its birth date.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from rostersync.matching.encoding import (
    MISSING,
    BoolArray,
    IntArray,
    PeopleColumns,
    sorted_unique,
)
from rostersync.matching.normalize import NameScript

#: Blocks with more records than this on either side are skipped as unselective.
BLOCK_CAP: Final[int] = 64
#: The cap of the loose keys (a name's first letter, 16 to 19): they pair a record only
#: with the one or two records of its block, so a large district, where such blocks hold
#: dozens, pays little for them (7% more candidate pairs at 100,000 students).
LOOSE_CAP: Final[int] = 2

_PART_BITS = 29


def block_key(tag: int, a: IntArray, b: IntArray) -> IntArray:
    """Packs (tag, a, b) into one int64 (a, b < 2**29); ``MISSING`` where a or b is."""
    packed = (np.int64(tag) << (2 * _PART_BITS)) | (a << _PART_BITS) | b
    return np.where((a >= 0) & (b >= 0), packed, np.int64(MISSING))


def _entries(columns: list[IntArray]) -> tuple[IntArray, IntArray]:
    """(key, record index) entries of one side, sorted by key. A record giving one key in
    two columns appears twice; the duplicate pairs this makes are removed at the end."""
    keys = np.concatenate(columns)
    index = np.tile(np.arange(len(columns[0]), dtype=np.int64), len(columns))
    present = keys >= 0
    keys, index = keys[present], index[present]
    order = np.argsort(keys)
    return keys[order], index[order]


def _runs(sorted_keys: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(distinct key, start, length) of each run of equal keys in a sorted array."""
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_keys)])
    return sorted_keys[starts], starts, lengths


def join_blocks(
    source_keys: list[IntArray], target_keys: list[IntArray], cap: int = BLOCK_CAP
) -> tuple[IntArray, IntArray]:
    """All (source index, target index) pairs sharing a key, skipping blocks holding more
    than ``cap`` records on either side."""
    return _join_entries(_entries(source_keys), _entries(target_keys), cap)


def _join_entries(
    source: tuple[IntArray, IntArray], target: tuple[IntArray, IntArray], cap: int
) -> tuple[IntArray, IntArray]:
    """``join_blocks`` on (key, record index) entries sorted by key."""
    empty = np.zeros(0, dtype=np.int64)
    (s_key, s_index), (t_key, t_index) = source, target
    if len(s_key) == 0 or len(t_key) == 0:
        return empty, empty
    t_blocks, t_start, t_count = _runs(t_key)
    _, _, s_count = _runs(s_key)
    s_size = np.repeat(s_count, s_count)
    position = np.searchsorted(t_blocks, s_key)
    position[position == len(t_blocks)] = 0
    hit = (t_blocks[position] == s_key) & (t_count[position] <= cap) & (s_size <= cap)
    counts = t_count[position[hit]]
    starts = t_start[position[hit]]
    pair_source = np.repeat(s_index[hit], counts)
    offsets = np.arange(counts.sum(), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    pair_target = t_index[np.repeat(starts, counts) + offsets]
    return pair_source, pair_target


class _Deletions:
    """Name tokens and their one-letter deletions as ids, per name id (``names``: the
    strings of the match's name vocabulary)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.ids: dict[str, int] = {}
        self.of: dict[int, list[int]] = {}

    def variants(self, name: int) -> list[int]:
        found = self.of.get(name)
        if found is None:
            text = self.names[name]
            spellings = {text, *(text[:i] + text[i + 1 :] for i in range(len(text)))}
            found = self.of[name] = [
                self.ids.setdefault(spelling, len(self.ids)) for spelling in sorted(spellings)
            ]
        return found

    def entries(
        self,
        tag: int,
        exact: IntArray,
        varied: IntArray,
        wanted: IntArray,
        among: IntArray | None = None,
    ) -> tuple[IntArray, IntArray]:
        """(key, record index) entries sorted by key: (``exact`` id, each variant of the
        ``varied`` name) of the records ``wanted`` (indexes) that have both, and whose
        ``exact`` id is one of ``among`` when given (the other side's: no other key can
        meet)."""
        wanted = wanted[(exact[wanted] >= 0) & (varied[wanted] >= 0)]
        if among is not None:
            wanted = wanted[np.isin(exact[wanted], among)]
        distinct, inverse = np.unique(varied[wanted], return_inverse=True)
        lists = [self.variants(name) for name in distinct.tolist()]
        sizes = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
        table = np.fromiter((v for vs in lists for v in vs), dtype=np.int64, count=int(sizes.sum()))
        starts = np.cumsum(sizes) - sizes
        counts = sizes[inverse]
        offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(counts) - counts, counts
        )
        index = np.repeat(wanted, counts)
        flat = table[np.repeat(starts[inverse], counts) + offsets]
        keys = block_key(tag, exact[index], flat)
        order = np.argsort(keys, kind="stable")
        return keys[order], index[order]


def _merge(*entries: tuple[IntArray, IntArray]) -> tuple[IntArray, IntArray]:
    keys = np.concatenate([k for k, _ in entries])
    index = np.concatenate([i for _, i in entries])
    order = np.argsort(keys, kind="stable")
    return keys[order], index[order]


def _undated_pairs(
    source: PeopleColumns, target: PeopleColumns, names: Sequence[str], cap: int
) -> list[tuple[IntArray, IntArray]]:
    """The pairs of keys 20 and 21 (see the module docstring): each between a record
    without a birth date on one side and any record on the other."""
    s, t = source, target
    s_all, t_all = np.arange(len(s), dtype=np.int64), np.arange(len(t), dtype=np.int64)
    s_undated, t_undated = np.flatnonzero(s.birth < 0), np.flatnonzero(t.birth < 0)

    def sound_pair(given: IntArray, family: IntArray) -> IntArray:
        return block_key(20, family, given)

    def sound_entries(
        side: PeopleColumns, wanted: IntArray, swap: bool
    ) -> tuple[IntArray, IntArray]:
        keys = [sound_pair(side.given_sound, side.family_sound)]
        if swap:
            keys.append(sound_pair(side.family_sound, side.given_sound))
        mask = np.zeros(len(side), dtype=bool)
        mask[wanted] = True
        return _entries([np.where(mask, key, np.int64(MISSING)) for key in keys])

    deletions = _Deletions(names)

    def deletion_entries(
        side: PeopleColumns, wanted: IntArray, swap: bool, among: IntArray | None = None
    ) -> tuple[IntArray, IntArray]:
        found = [deletions.entries(21, side.given_first, side.family_first, wanted, among)]
        if swap:
            found.append(deletions.entries(21, side.family_first, side.given_first, wanted, among))
        return _merge(*found)

    pairs = []
    if len(s_undated):
        pairs.append(
            _join_entries(sound_entries(s, s_undated, True), sound_entries(t, t_all, False), cap)
        )
        # Only the target records whose given name a source without a birth date has
        # (as its given or, read swapped, its family name) can meet one.
        names_of = np.concatenate([s.given_first[s_undated], s.family_first[s_undated]])
        pairs.append(
            _join_entries(
                deletion_entries(s, s_undated, True),
                deletion_entries(t, t_all, False, names_of),
                cap,
            )
        )
    if len(t_undated):
        pairs.append(
            _join_entries(sound_entries(s, s_all, True), sound_entries(t, t_undated, False), cap)
        )
        pairs.append(
            _join_entries(
                deletion_entries(s, s_all, True, t.given_first[t_undated]),
                deletion_entries(t, t_undated, False),
                cap,
            )
        )
    return pairs


def _nickname_columns(side: PeopleColumns, nicknames: IntArray) -> list[IntArray]:
    groups = np.where(side.given_first[:, None] >= 0, nicknames[side.given_first], MISSING)
    return [groups[:, i] for i in range(groups.shape[1])]


def _has_japanese(side: PeopleColumns) -> bool:
    """Whether any record of ``side`` has a name read as kana (written in kana, or in
    kanji with the school's reading)."""
    kana = NameScript.KANA
    return bool((side.given_script == kana).any() or (side.family_script == kana).any())


def candidate_pairs(
    source: PeopleColumns,
    target: PeopleColumns,
    nicknames: IntArray,
    cap: int = BLOCK_CAP,
    names: Sequence[str] = (),
) -> tuple[IntArray, IntArray]:
    """The distinct candidate (source index, target index) pairs, ordered by source.

    ``nicknames`` maps a name id to its nickname group ids (``MISSING``-padded rows);
    ``names``, the strings of the name vocabulary, for key 21 (left out without them)."""
    si, ti, _ = candidate_pairs_by_origin(source, target, nicknames, cap, names)
    return si, ti


def candidate_pairs_by_origin(
    source: PeopleColumns,
    target: PeopleColumns,
    nicknames: IntArray,
    cap: int = BLOCK_CAP,
    names: Sequence[str] = (),
) -> tuple[IntArray, IntArray, BoolArray]:
    """``candidate_pairs``, and per pair whether a key but 20 and 21 formed it: the pairs
    the model learns from. Pairs of a record without a birth date formed on two Soundex
    codes or a name one letter off are mostly coincidences in a run with no true pairs
    (another school's roster); learned from, they would teach the model that names
    disagree among matches."""
    s, t = source, target
    if len(s) == 0 or len(t) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=bool)
    s_nick, t_nick = _nickname_columns(s, nicknames), _nickname_columns(t, nicknames)
    s_sound_pair = np.where(
        (s.family_sound >= 0) & (s.given_sound >= 0),
        (s.family_sound << 14) | s.given_sound,
        MISSING,
    )
    t_sound_pair = np.where(
        (t.family_sound >= 0) & (t.given_sound >= 0),
        (t.family_sound << 14) | t.given_sound,
        MISSING,
    )
    no_part = np.zeros(len(s), dtype=np.int64), np.zeros(len(t), dtype=np.int64)
    family_sounds = (s.family_sound, s.family_sound_last, s.family_sound_joined)
    t_family_sounds = (t.family_sound, t.family_sound_last, t.family_sound_joined)
    blocks: list[tuple[list[IntArray], list[IntArray]]] = [
        (
            [block_key(1, c, s.birth) for c in (*family_sounds, s.given_sound)],
            [block_key(1, c, t.birth) for c in t_family_sounds],
        ),
        (
            [block_key(2, c, s.birth) for c in (s.given_sound, s.family_sound)],
            [block_key(2, t.given_sound, t.birth)],
        ),
        ([block_key(3, c, s.birth) for c in s_nick], [block_key(3, c, t.birth) for c in t_nick]),
        (
            [
                block_key(4, s.family_first, s.given_prefix),
                block_key(4, s.family_last, s.given_prefix),
                block_key(4, s.given_first, s.family_prefix),
            ],
            [
                block_key(4, t.family_first, t.given_prefix),
                block_key(4, t.family_last, t.given_prefix),
            ],
        ),
        (
            [
                block_key(5, s.given_first, s.family_prefix),
                block_key(5, s.family_first, s.given_prefix),
            ],
            [block_key(5, t.given_first, t.family_prefix)],
        ),
        (
            [block_key(6, c, s.birth_swapped) for c in (s.family_sound, s.given_sound)],
            [block_key(6, c, t.birth) for c in (t.family_sound, t.given_sound)],
        ),
        ([block_key(7, s_sound_pair, s.birth_year)], [block_key(7, t_sound_pair, t.birth_year)]),
        (
            [block_key(8, c, s.birth) for c in (s.given_prefix, s.family_prefix)],
            [block_key(8, t.given_prefix, t.birth)],
        ),
        (
            [block_key(9, c, s.birth) for c in (s.family_prefix, s.given_prefix)],
            [block_key(9, t.family_prefix, t.birth)],
        ),
        ([block_key(10, s.email, no_part[0])], [block_key(10, t.email, no_part[1])]),
        (
            [block_key(11, s.family_first, c) for c in s_nick],
            [block_key(11, t.family_first, c) for c in t_nick],
        ),
        (
            [
                block_key(12, s.family_first, s.given_sound),
                block_key(12, s.given_first, s.family_sound),
            ],
            [block_key(12, t.family_first, t.given_sound)],
        ),
    ]
    # A record without a birth date is never blocked on a name and an initial alone: the
    # pairs it would form, counted as rivals at what they could reach had the birth
    # dates agreed, would hold back true pairs from being linked automatically.
    s_dated = np.where(s.birth >= 0, 0, np.int64(MISSING))
    t_dated = np.where(t.birth >= 0, 0, np.int64(MISSING))
    loose: list[tuple[list[IntArray], list[IntArray]]] = [
        (
            [block_key(16, s.given_initial, s.birth), block_key(16, s.family_initial, s.birth)],
            [block_key(16, t.given_initial, t.birth)],
        ),
        (
            [block_key(17, s.family_initial, s.birth), block_key(17, s.given_initial, s.birth)],
            [block_key(17, t.family_initial, t.birth)],
        ),
        (
            [
                block_key(18, s.family_first, s.given_initial) | s_dated,
                block_key(18, s.given_first, s.family_initial) | s_dated,
            ],
            [block_key(18, t.family_first, t.given_initial) | t_dated],
        ),
        (
            [
                block_key(19, s.given_first, s.family_initial) | s_dated,
                block_key(19, s.family_first, s.given_initial) | s_dated,
            ],
            [block_key(19, t.given_first, t.family_initial) | t_dated],
        ),
    ]
    if _has_japanese(s) or _has_japanese(t):
        blocks += [
            (
                [block_key(13, s.family_reading, s.birth)],
                [block_key(13, t.family_reading, t.birth)],
            ),
            ([block_key(14, s.given_reading, s.birth)], [block_key(14, t.given_reading, t.birth)]),
            (
                [block_key(15, s.family_reading, s.given_reading)],
                [block_key(15, t.family_reading, t.given_reading)],
            ),
        ]
    codes: list[IntArray] = []
    width = np.int64(len(t))
    for source_keys, target_keys in blocks:
        pair_source, pair_target = join_blocks(source_keys, target_keys, cap)
        codes.append(pair_source * width + pair_target)
    for source_keys, target_keys in loose:
        pair_source, pair_target = join_blocks(source_keys, target_keys, min(cap, LOOSE_CAP))
        codes.append(pair_source * width + pair_target)
    core = sorted_unique(np.concatenate(codes))
    extra = [core]
    if names:
        for pair_source, pair_target in _undated_pairs(s, t, names, cap):
            extra.append(pair_source * width + pair_target)
    code = sorted_unique(np.concatenate(extra)) if len(extra) > 1 else core
    learned = np.zeros(len(code), dtype=bool)
    learned[np.searchsorted(code, core)] = True
    return code // width, code % width, learned
