"""Matching: link source (SIS) people and classes to the records already in the app.

A pure library (no I/O). The usual order for people:

1. ``propose_keys(source, target)``: which source identifier lines up with which app
   identifier; the admin confirms one or more;
2. ``match_by_keys(source, target, keys)``: exact, unambiguous links on those keys;
3. ``match_people(source, target, fixed=links, exclude_pairs=rejected)``: fuzzy,
   blocked and one-to-one for the rest, each source record ending ``auto``,
   ``suggested`` or ``unmatched`` (``linked`` for the fixed ones).

Classes come after their teachers: ``match_classes(source, target)`` with the teachers
already mapped to app ids.
"""

from rostersync.matching.classes import CLASS_WEIGHTS, match_classes
from rostersync.matching.keys import (
    KeyConflict,
    KeyMatchResult,
    KeyProposal,
    KeySpec,
    match_by_keys,
    propose_keys,
)
from rostersync.matching.people import (
    Decision,
    Evidence,
    MatchConflict,
    MatchResult,
    match_people,
    score_pair,
)
from rostersync.matching.records import ClassRecord, PersonKind, PersonRecord, person_from_user
from rostersync.matching.scoring import FIELDS
from rostersync.matching.thresholds import CLASS_THRESHOLDS, PEOPLE_THRESHOLDS, Thresholds

__all__ = [
    "CLASS_THRESHOLDS",
    "CLASS_WEIGHTS",
    "FIELDS",
    "PEOPLE_THRESHOLDS",
    "ClassRecord",
    "Decision",
    "Evidence",
    "KeyConflict",
    "KeyMatchResult",
    "KeyProposal",
    "KeySpec",
    "MatchConflict",
    "MatchResult",
    "PersonKind",
    "PersonRecord",
    "Thresholds",
    "match_by_keys",
    "match_classes",
    "match_people",
    "person_from_user",
    "propose_keys",
    "score_pair",
]
