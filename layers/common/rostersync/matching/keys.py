"""Identifier keys: discover which source id matches which app id, and match on them.

``propose_keys`` measures, for every (source identifier, target identifier) pair of names
(the email included, as ``"email"``), how many values coincide exactly, after trimming and
case folding and, as a second variant, after stripping leading zeros. It works by hash
joins on values (an inverted index value → identifier names per side), never by comparing
records pairwise. A pair of names is proposed only when the coinciding values are unique
on both sides; it is *strong* when it covers enough of the smaller side and the records it
pairs agree on their names (a decoy, such as two unrelated sequences of small integers,
coincides on values but pairs records that have nothing else in common).

``match_by_keys`` links records on an ordered list of confirmed keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from rapidfuzz.distance import JaroWinkler

from rostersync.matching.normalize import (
    fold_name,
    normalize_email,
    normalize_identifier,
    strip_leading_zeros,
)

EMAIL: Final[str] = "email"

#: A proposal is strong when its unique coinciding values are at least this many...
STRONG_MIN_SUPPORT: Final[int] = 5
#: ...cover at least this share of the records of the smaller side that have a value...
STRONG_MIN_COVERAGE: Final[float] = 0.5
#: ...and at least this share of the records it pairs agree on their family name.
STRONG_MIN_AGREEMENT: Final[float] = 0.9
#: A key is proposed only if at most this share of its coinciding values is shared by
#: several records on either side.
MAX_AMBIGUOUS_SHARE: Final[float] = 0.001

_NAME_AGREEMENT = 0.85
_AGREEMENT_SAMPLE = 2000


class Keyed(Protocol):
    """Anything with a key and identifiers: people and classes alike."""

    @property
    def key(self) -> str: ...

    @property
    def identifiers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One confirmed key: a source identifier name, a target identifier name, and whether
    values are compared with leading zeros stripped."""

    source_field: str
    target_field: str
    strip_leading_zeros: bool = False


@dataclass(frozen=True, slots=True)
class KeyProposal:
    """How well one source identifier lines up with one target identifier.

    ``support``: values present on both sides, each held by exactly one record per side;
    ``ambiguous``: coinciding values held by several records on either side;
    ``source_overlap``/``target_overlap``: ``support`` over the number of records of each
    side (all records, with a value or not); ``agreement``: of the pairs the key makes, the
    share whose family names agree (None when names are not available); ``strong``: worth
    proposing to the admin as the matching key."""

    source_field: str
    target_field: str
    strip_leading_zeros: bool
    support: int
    ambiguous: int
    source_overlap: float
    target_overlap: float
    agreement: float | None
    strong: bool

    @property
    def spec(self) -> KeySpec:
        """The key this proposal describes, for ``match_by_keys``."""
        return KeySpec(self.source_field, self.target_field, self.strip_leading_zeros)


def _identifier_values(record: Keyed) -> Iterator[tuple[str, str]]:
    """(identifier name, normalized value) of a record, the email included."""
    email = _value(record, EMAIL, strip=False)
    if email:
        yield EMAIL, email
    for name, raw in record.identifiers.items():
        value = normalize_identifier(raw)
        if value and name != EMAIL:
            yield name, value


def _value(record: Keyed, name: str, strip: bool) -> str:
    """A record's normalized value of one identifier ("" when it has none). The email is
    the record's ``email`` or, failing that, an identifier named ``"email"``."""
    if name == EMAIL:
        return normalize_email(getattr(record, "email", None)) or normalize_email(
            record.identifiers.get(EMAIL)
        )
    value = normalize_identifier(record.identifiers.get(name))
    return strip_leading_zeros(value) if strip and value else value


def _index(
    records: Sequence[Keyed], strip: bool
) -> tuple[dict[str, dict[str, list[int]]], Counter[str]]:
    """value → identifier name → record indexes, and how many records have each name."""
    index: dict[str, dict[str, list[int]]] = {}
    with_value: Counter[str] = Counter()
    for position, record in enumerate(records):
        for name, value in _identifier_values(record):
            if strip and name != EMAIL:
                value = strip_leading_zeros(value)
            index.setdefault(value, {}).setdefault(name, []).append(position)
            with_value[name] += 1
    return index, with_value


def _family(record: Keyed) -> str:
    return fold_name(getattr(record, "family_name", "") or "")


def propose_keys(source: Sequence[Keyed], target: Sequence[Keyed]) -> list[KeyProposal]:
    """Every (source identifier, target identifier) pair whose values coincide uniquely,
    sorted by support (then by agreement), strongest first."""
    proposals: dict[tuple[str, str, bool], KeyProposal] = {}
    for strip in (False, True):
        s_index, s_with = _index(source, strip)
        t_index, t_with = _index(target, strip)
        unique_pairs: dict[tuple[str, str], list[tuple[int, int]]] = {}
        ambiguous: Counter[tuple[str, str]] = Counter()
        for value, s_names in s_index.items():
            t_names = t_index.get(value)
            if t_names is None:
                continue
            for s_name, s_records in s_names.items():
                for t_name, t_records in t_names.items():
                    if len(s_records) == 1 and len(t_records) == 1:
                        unique_pairs.setdefault((s_name, t_name), []).append(
                            (s_records[0], t_records[0])
                        )
                    else:
                        ambiguous[(s_name, t_name)] += 1
        for (s_name, t_name), pairs in unique_pairs.items():
            support = len(pairs)
            unclear = ambiguous[(s_name, t_name)]
            if unclear > MAX_AMBIGUOUS_SHARE * (support + unclear):
                continue
            exact = proposals.get((s_name, t_name, False))
            if strip and exact is not None and exact.support >= support:
                # Stripping zeros adds nothing over the exact comparison.
                continue
            agreement = _agreement(source, target, pairs)
            smaller = min(s_with[s_name], t_with[t_name])
            strong = (
                support >= STRONG_MIN_SUPPORT
                and support >= STRONG_MIN_COVERAGE * smaller
                and (agreement is None or agreement >= STRONG_MIN_AGREEMENT)
            )
            proposals[(s_name, t_name, strip)] = KeyProposal(
                source_field=s_name,
                target_field=t_name,
                strip_leading_zeros=strip,
                support=support,
                ambiguous=unclear,
                source_overlap=round(support / len(source), 4) if source else 0.0,
                target_overlap=round(support / len(target), 4) if target else 0.0,
                agreement=agreement,
                strong=strong,
            )
    return sorted(
        proposals.values(),
        key=lambda p: (-p.strong, -p.support, -(p.agreement or 0.0), p.strip_leading_zeros),
    )


def _agreement(
    source: Sequence[Keyed], target: Sequence[Keyed], pairs: list[tuple[int, int]]
) -> float | None:
    """The share of (a sample of) the key's pairs whose family names agree."""
    compared = agreeing = 0
    step = max(1, len(pairs) // _AGREEMENT_SAMPLE)
    for s_index, t_index in pairs[::step]:
        a, b = _family(source[s_index]), _family(target[t_index])
        if not a or not b:
            continue
        compared += 1
        agreeing += JaroWinkler.normalized_similarity(a, b) >= _NAME_AGREEMENT
    return round(agreeing / compared, 4) if compared else None


@dataclass(frozen=True, slots=True)
class KeyConflict:
    """A key that could not link a source record: its value is shared by several records
    on one side (``ambiguous``), its target is already linked to another source
    (``taken``), or a later key points elsewhere than the key that linked it
    (``disagrees``). Values are not repeated here: they identify children."""

    reason: str
    source_field: str
    target_field: str
    source_keys: tuple[str, ...]
    target_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KeyMatchResult:
    """Source key → target key links, the key that made each, and the conflicts."""

    links: Mapping[str, str]
    linked_by: Mapping[str, KeySpec]
    conflicts: tuple[KeyConflict, ...]


def _groups(records: Sequence[Keyed], name: str, strip: bool) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for record in records:
        value = _value(record, name, strip)
        if value:
            groups.setdefault(value, []).append(record.key)
    return groups


def match_by_keys(
    source: Sequence[Keyed],
    target: Sequence[Keyed],
    keys: Sequence[tuple[str, str] | KeySpec],
) -> KeyMatchResult:
    """Link source records to target records by exact key, trying ``keys`` in order.

    For each source record the first key giving a unique one-to-one hit wins. A key value
    held by several records on either side is ambiguous: it links none of them (a
    conflict), and the next key is tried. A hit on a target already linked by an earlier
    key is a conflict too. Where a later key uniquely points to a different target than
    the key that linked a record, the link stands and the disagreement is reported."""
    specs = [k if isinstance(k, KeySpec) else KeySpec(k[0], k[1]) for k in keys]
    links: dict[str, str] = {}
    linked_by: dict[str, KeySpec] = {}
    taken: dict[str, str] = {}
    conflicts: list[KeyConflict] = []
    for spec in specs:
        s_groups = _groups(source, spec.source_field, spec.strip_leading_zeros)
        t_groups = _groups(target, spec.target_field, spec.strip_leading_zeros)
        for value, s_keys in s_groups.items():
            t_keys = t_groups.get(value)
            if t_keys is None:
                continue
            if len(s_keys) > 1 or len(t_keys) > 1:
                fresh = tuple(k for k in s_keys if k not in links)
                if fresh:
                    conflicts.append(
                        KeyConflict(
                            "ambiguous",
                            spec.source_field,
                            spec.target_field,
                            tuple(s_keys),
                            tuple(t_keys),
                        )
                    )
                continue
            s_key, t_key = s_keys[0], t_keys[0]
            if s_key in links:
                if links[s_key] != t_key:
                    conflicts.append(
                        KeyConflict(
                            "disagrees",
                            spec.source_field,
                            spec.target_field,
                            (s_key,),
                            (links[s_key], t_key),
                        )
                    )
                continue
            if t_key in taken:
                conflicts.append(
                    KeyConflict(
                        "taken",
                        spec.source_field,
                        spec.target_field,
                        (s_key, taken[t_key]),
                        (t_key,),
                    )
                )
                continue
            links[s_key] = t_key
            linked_by[s_key] = spec
            taken[t_key] = s_key
    return KeyMatchResult(links, linked_by, tuple(conflicts))
