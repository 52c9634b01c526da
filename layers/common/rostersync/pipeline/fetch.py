"""fetch: bring the run's source data into ``raw/{tenant}/{run}/`` as received.

The source is picked by the run's spec. What it saved with the tenant's last commit (an
events cursor) is handed back to it; what it returns is kept in ``fetch.json`` beside
the run, and its cursor moves into the committed state when the run commits.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.sources.base import FetchContext
from rostersync.sources.registry import source_for
from rostersync.storage import keys
from rostersync.storage.objects import stored_stripped
from rostersync.storage.raw import ObjectRawArea


def last_cursor(deps: Deps, tenant: str, kind: str) -> dict[str, Any] | None:
    """The cursor the tenant's last commit kept for a source of ``kind``."""
    pointer = deps.store.get_json(keys.state_pointer_key(tenant)) or {}
    saved = pointer.get("source_cursor")
    if isinstance(saved, dict) and saved.get("kind") == kind:
        cursor = saved.get("cursor")
        return dict(cursor) if isinstance(cursor, dict) else None
    return None


def fetch(state: RunState, deps: Deps) -> RunState:
    """Let the run's source fetch its input into the run's raw area."""
    raw = keys.raw_prefix(state.tenant, state.run_id)
    kind = state.source.kind
    ctx = FetchContext(
        tenant=state.tenant,
        run_id=state.run_id,
        mode=state.mode,
        raw=ObjectRawArea(deps.store, state.tenant, raw),
        secrets=deps.secrets,
        cursor=last_cursor(deps, state.tenant, kind),
        stored_stripped=partial(stored_stripped, deps.store),
        # The size from which normalize reads a file in parts (a zip's member cannot be
        # read by byte range).
        unzip_from=2 * deps.settings.normalize_part_bytes or None,
    )
    result = source_for(kind).fetch(state.source, ctx)
    if result.mode is not None:
        state.mode = result.mode
    deps.store.put_json(
        keys.fetch_summary_key(state.tenant, state.run_id),
        {
            "kind": kind,
            "counts": result.counts,
            "cursor": result.cursor,
            "note": result.note,
            "mode": state.mode,
        },
    )
    state.raw_prefix = raw
    state.counts["fetch"] = result.counts
    return state
