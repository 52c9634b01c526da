"""stage: diff the matched records against the last committed state → a change set.

``stage_entity`` stages one entity (or one part of it) and decides what follows;
``stage_fanout`` plans the parts, runs them (in this process, or over the state
machine's Distributed Map) and finishes. ``stage`` here is the whole of it in one
process: a re-stage after a match decision, tools and tests.
"""

from __future__ import annotations

from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.stage_entity import RELINK_TIERS, EntityStager, decide
from rostersync.pipeline.stage_fanout import stage_inline

__all__ = ["RELINK_TIERS", "EntityStager", "decide", "stage"]


def stage(state: RunState, deps: Deps) -> RunState:
    """Stage every entity in this process (its parts one after the other); apply hold
    checks and settings; decide commit or prepared."""
    return stage_inline(state, deps)
