"""fetch: bring the run's source data into ``raw/{tenant}/{run}/`` as received."""

from __future__ import annotations

from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.sources.registry import source_for
from rostersync.storage import keys
from rostersync.storage.raw import ObjectRawArea


def fetch(state: RunState, deps: Deps) -> RunState:
    """Let the run's source fetch its input into the run's raw area."""
    raw = keys.raw_prefix(state.tenant, state.run_id)
    source = source_for(state.source.kind)
    counts = source.fetch(state.source, state.tenant, ObjectRawArea(deps.store, state.tenant, raw))
    state.raw_prefix = raw
    state.counts["fetch"] = counts
    return state
