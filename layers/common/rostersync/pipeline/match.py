"""match: give every normalized record its app identity (a target id) and say how.

The step streams each entity's records through a ``Matcher`` and writes one compact
decision per record: ``[source_system, source_id, target_id, tier, score]``. The default
matcher (``identity_match.IdentityMatcher``) links by known identities, admins'
decisions, exact keys and fuzzy scores; another plugs in through the same protocol. The
default matcher's lines are written by DuckDB where they are a plain link or a new id
(``match_columnar``; the ``COLUMNAR_MATCH`` setting), row by row otherwise. The match
summary counts each entity's decisions by tier and says under ``written`` how each
entity's lines were written (``columnar`` or ``rows``).
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from typing import Any

from rostersync.errors import RunStateError
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.identity_match import IdentityMatcher
from rostersync.pipeline.match_columnar import IdTables
from rostersync.pipeline.match_decisions import MatchDecision, Matcher, new_target_id
from rostersync.storage import keys

__all__ = ["MatchDecision", "Matcher", "match", "new_target_id"]


def match(state: RunState, deps: Deps, matcher: Matcher | None = None) -> RunState:
    """Write the decisions for every entity and count them by tier."""
    _check_normalized(deps, state)
    with ExitStack() as stack:
        tables = None
        if matcher is None:
            identity = IdentityMatcher(deps, state)
            if deps.settings.columnar_match:
                tables = identity.tables = stack.enter_context(
                    IdTables(deps.store, state.tenant, state.run_id, identity.baseline)
                )
            identity.prepare()
            deps.store.write_jsonl(
                keys.match_review_key(state.tenant, state.run_id), identity.review_rows()
            )
            matcher = identity
        # The entities whose tables the matcher has loaded already are written first:
        # the engine then holds one entity's tables at a time (their memory is what a
        # large district's run is bounded by). What is counted is in the entities' order.
        loaded = tables.loaded() if tables is not None else []
        by_entity: dict[Entity, dict[str, int]] = {}
        #: How each entity's lines were written: ``columnar`` or ``rows``.
        how: dict[Entity, str] = {}
        for entity in [*loaded, *(e for e in ENTITY_ORDER if e not in loaded)]:
            by_entity[entity] = {}
            how[entity] = _write_entity(state, deps, matcher, tables, entity, by_entity[entity])
        tiers: dict[str, int] = {}
        summary: dict[str, Any] = {}
        written: dict[str, str] = {}
        for entity in ENTITY_ORDER:
            written[entity.value] = how[entity]
            summary[entity.value] = by_entity[entity]
            for tier, count in by_entity[entity].items():
                tiers[tier] = tiers.get(tier, 0) + count
    summary["written"] = written
    deps.store.put_json(keys.match_summary_key(state.tenant, state.run_id), summary)
    state.counts["match"] = tiers
    return state


def _check_normalized(deps: Deps, state: RunState) -> None:
    """Normalize writes every entity's records and id lines, none or many: one gone is
    an error, never an entity read as empty (its every record would be archived)."""
    for entity in ENTITY_ORDER:
        for key in (
            keys.normalized_key(state.tenant, state.run_id, entity),
            keys.normalized_ids_key(state.tenant, state.run_id, entity),
        ):
            if not deps.store.exists(key):
                raise RunStateError(
                    f"run {state.run_id} has no normalized {entity.value} (its records or"
                    " their ids are gone): sync again"
                )


def _write_entity(
    state: RunState,
    deps: Deps,
    matcher: Matcher,
    tables: IdTables | None,
    entity: Entity,
    tiers: dict[str, int],
) -> str:
    matched_key = keys.matched_key(state.tenant, state.run_id, entity)
    if isinstance(matcher, IdentityMatcher) and tables is not None and tables.usable(entity):
        tables.write_decisions(
            entity,
            matched_key,
            matcher.special_ids(entity),
            partial(matcher.special_line, entity),
            tiers,
        )
        return "columnar"
    # Matchers decide by id here; whatever needs whole records reads them itself.
    ids = deps.store.iter_jsonl(keys.normalized_ids_key(state.tenant, state.run_id, entity))
    deps.store.write_jsonl(matched_key, matcher.decision_lines(entity, ids, tiers))
    return "rows"
