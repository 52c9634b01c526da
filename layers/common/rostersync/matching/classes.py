"""One-to-one matching of classes: source (SIS) classes to the classes already in the app.

Candidates: by default a class is only paired with app classes sharing at least one of its
teachers (``teacher_keys`` are app ids on both sides, so a teacher not linked yet gives no
candidates: classes wait for their teachers). With ``teacher_required=False`` classes of
the same school sharing a class code or a title are candidates too. Pairs in different
schools, or whose term dates (start or end) are more than ``date_window_days`` apart, are
never candidates: the same course taught next year is a different class, with different
children.

Score (weights sum to 1; a field missing on either side gives no credit):
title 0.35 (token-set ratio of folded titles, so "Math 7" meets "Math 7 - Period 2"),
subject 0.10 (token-set ratio), class code 0.20 (equal), teachers 0.20 (Jaccard overlap),
term dates 0.15 (both within the window). Automatic matches need a title similarity of at
least ``thresholds.name_floor`` and a shared teacher or class code; sections of one
teacher's course with equal titles are told apart only by their class codes, otherwise
the margin keeps them in review.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import numpy as np
from rapidfuzz import fuzz, process

from rostersync.matching.assign import TIER_AUTO, TIER_SUGGESTED, assign_tiers
from rostersync.matching.normalize import fold_name, normalize_identifier
from rostersync.matching.people import AGREEMENT, Decision, Evidence, MatchConflict, MatchResult
from rostersync.matching.records import ClassRecord, in_key_order
from rostersync.matching.scoring import workers_for
from rostersync.matching.thresholds import CLASS_THRESHOLDS, Thresholds
from rostersync.models import Tier

CLASS_WEIGHTS: Final[Mapping[str, float]] = MappingProxyType(
    {"title": 0.35, "subject": 0.10, "class_code": 0.20, "teachers": 0.20, "term": 0.15}
)
_FIELDS = tuple(CLASS_WEIGHTS)
#: A title or code block larger than this (without a shared teacher) is not selective.
_BLOCK_CAP = 64


def _term_gaps(source: ClassRecord, target: ClassRecord) -> list[int]:
    """Days between the terms' start dates and between their end dates, where both known."""
    return [
        abs((a - b).days)
        for a, b in ((source.start_date, target.start_date), (source.end_date, target.end_date))
        if a is not None and b is not None
    ]


def _candidates(
    source: Sequence[ClassRecord], target: Sequence[ClassRecord], teacher_required: bool
) -> list[tuple[int, int]]:
    by_teacher: dict[str, list[int]] = {}
    by_code: dict[tuple[str, str], list[int]] = {}
    by_title: dict[tuple[str, str], list[int]] = {}
    for index, record in enumerate(target):
        for teacher in record.teacher_keys:
            by_teacher.setdefault(teacher, []).append(index)
        if not teacher_required:
            school = fold_name(record.school or "")
            code = normalize_identifier(record.class_code)
            if code:
                by_code.setdefault((school, code), []).append(index)
            title = fold_name(record.title)
            if title:
                by_title.setdefault((school, title), []).append(index)
    pairs: list[tuple[int, int]] = []
    for index, record in enumerate(source):
        found: set[int] = set()
        for teacher in record.teacher_keys:
            found.update(by_teacher.get(teacher, ()))
        if not teacher_required:
            school = fold_name(record.school or "")
            for block in (
                by_code.get((school, normalize_identifier(record.class_code))),
                by_title.get((school, fold_name(record.title))),
            ):
                if block and len(block) <= _BLOCK_CAP:
                    found.update(block)
        pairs.extend((index, other) for other in sorted(found))
    return pairs


def match_classes(
    source: Sequence[ClassRecord],
    target: Sequence[ClassRecord],
    *,
    teacher_required: bool = True,
    date_window_days: int = 30,
    thresholds: Thresholds = CLASS_THRESHOLDS,
    exclude_pairs: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    fixed: Mapping[str, str] | None = None,
) -> MatchResult:
    """Match each source class to at most one app class, one-to-one (see the module
    docstring for candidates, score and tiers). ``exclude_pairs`` and ``fixed`` work as in
    ``match_people``."""
    fixed = dict(fixed or {})
    taken = set(fixed.values())
    # In key order: the outcome is the same whatever order the records come in, and a
    # tie goes to the lowest key.
    open_source = in_key_order(record for record in source if record.key not in fixed)
    open_target = in_key_order(record for record in target if record.key not in taken)

    kept: list[tuple[int, int]] = []
    fields: list[tuple[float, float, float, float, float]] = []
    present: list[tuple[bool, ...]] = []
    for s_index, t_index in _candidates(open_source, open_target, teacher_required):
        s, t = open_source[s_index], open_target[t_index]
        if (s.key, t.key) in exclude_pairs:
            continue
        if s.school and t.school and fold_name(s.school) != fold_name(t.school):
            continue
        gaps = _term_gaps(s, t)
        if gaps and max(gaps) > date_window_days:
            continue
        term = 1.0 if gaps else 0.0
        code_s, code_t = normalize_identifier(s.class_code), normalize_identifier(t.class_code)
        union = s.teacher_keys | t.teacher_keys
        kept.append((s_index, t_index))
        fields.append(
            (
                0.0,  # title and subject are filled in below, vectorized
                0.0,
                float(bool(code_s) and code_s == code_t),
                len(s.teacher_keys & t.teacher_keys) / len(union) if union else 0.0,
                term,
            )
        )
        present.append(
            (
                bool(s.title and t.title),
                bool(s.subject and t.subject),
                bool(code_s and code_t),
                bool(s.teacher_keys and t.teacher_keys),
                bool(gaps),
            )
        )

    n_pairs = len(kept)
    si = np.array([p[0] for p in kept], dtype=np.int64)
    ti = np.array([p[1] for p in kept], dtype=np.int64)
    matrix = np.array(fields, dtype=np.float64).reshape(n_pairs, len(_FIELDS))
    if n_pairs:
        for column, attribute in ((0, "title"), (1, "subject")):
            a = [fold_name(getattr(open_source[i], attribute) or "") for i in si.tolist()]
            b = [fold_name(getattr(open_target[i], attribute) or "") for i in ti.tolist()]
            similarity = (
                process.cpdist(a, b, scorer=fuzz.token_set_ratio, workers=workers_for(len(a))) / 100
            )
            has_both = np.array([bool(x and y) for x, y in zip(a, b, strict=True)], dtype=bool)
            matrix[:, column] = np.where(has_both, similarity, 0.0)
    score = matrix @ np.array([CLASS_WEIGHTS[name] for name in _FIELDS], dtype=np.float64)
    gates = (matrix[:, 0] >= thresholds.name_floor) & ((matrix[:, 3] > 0) | (matrix[:, 2] > 0))
    assignment = assign_tiers(len(open_source), len(open_target), si, ti, score, gates, thresholds)

    decided: dict[str, Decision] = {}
    for index, record in enumerate(open_source):
        pair = int(assignment.best_pair[index])
        runner_up = round(float(assignment.runner_up[index]), 4)
        tier = int(assignment.tier[index])
        if pair < 0:
            decided[record.key] = Decision(record.key, Tier.UNMATCHED, None, 0.0, 0.0)
            continue
        value = round(float(score[pair]), 4)
        if tier in (TIER_AUTO, TIER_SUGGESTED):
            decided[record.key] = Decision(
                record.key,
                Tier.AUTO if tier == TIER_AUTO else Tier.SUGGESTED,
                open_target[int(ti[pair])].key,
                value,
                runner_up,
                _evidence(matrix[pair].tolist(), present[pair]),
            )
        else:
            decided[record.key] = Decision(record.key, Tier.UNMATCHED, None, value, runner_up)

    decisions: dict[str, Decision] = {}
    for record in source:
        linked = fixed.get(record.key)
        if linked is not None:
            decisions[record.key] = Decision(record.key, Tier.LINKED, linked, 1.0, 0.0)
        else:
            decisions[record.key] = decided[record.key]
    conflicts = tuple(
        MatchConflict(
            target_key=open_target[target_index].key,
            source_keys=tuple(open_source[i].key for i in sources),
            scores=tuple(decisions[open_source[i].key].score for i in sources),
        )
        for target_index, sources in sorted(assignment.conflicts.items())
    )
    return MatchResult(MappingProxyType(decisions), conflicts, n_pairs)


def _evidence(values: list[float], present: tuple[bool, ...]) -> Evidence:
    field_scores = {name: round(value, 4) for name, value in zip(_FIELDS, values, strict=True)}
    missing = tuple(name for name, here in zip(_FIELDS, present, strict=True) if not here)
    return Evidence(
        field_scores,
        tuple(name for name, value in field_scores.items() if value >= AGREEMENT),
        missing,
        (),
        round(sum(CLASS_WEIGHTS[name] for name in _FIELDS if name not in missing), 4),
    )
