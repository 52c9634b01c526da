"""match: give every normalized record its app identity (a target id) and say how.

The step streams each entity's records through a ``Matcher`` and writes one compact
decision per record: ``[source_system, source_id, target_id, tier, score]``. The default
matcher (``identity_match.IdentityMatcher``) links by known identities, admins'
decisions, exact keys and fuzzy scores; another plugs in through the same protocol. The
default matcher's lines are written by DuckDB where they are a plain link or a new id
(``match_columnar``; the ``COLUMNAR_MATCH`` setting), row by row otherwise.
"""

from __future__ import annotations

from functools import partial

from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.identity_match import IdentityMatcher
from rostersync.pipeline.match_columnar import write_decisions
from rostersync.pipeline.match_decisions import MatchDecision, Matcher, new_target_id
from rostersync.storage import keys

__all__ = ["MatchDecision", "Matcher", "match", "new_target_id"]


def match(state: RunState, deps: Deps, matcher: Matcher | None = None) -> RunState:
    """Write the decisions for every entity and count them by tier."""
    if matcher is None:
        identity = IdentityMatcher(deps, state)
        identity.prepare()
        deps.store.write_jsonl(
            keys.match_review_key(state.tenant, state.run_id), identity.review_rows()
        )
        chosen: Matcher = identity
    else:
        chosen = matcher
    tiers: dict[str, int] = {}
    per_entity: dict[str, dict[str, int]] = {}
    for entity in ENTITY_ORDER:
        ids_key = keys.normalized_ids_key(state.tenant, state.run_id, entity)
        matched_key = keys.matched_key(state.tenant, state.run_id, entity)
        entity_tiers: dict[str, int] = {}
        if not (
            isinstance(chosen, IdentityMatcher)
            and deps.settings.columnar_match
            and write_decisions(
                deps.store,
                tenant=state.tenant,
                entity=entity,
                ids_key=ids_key,
                index_key=chosen.index_key(entity),
                matched_key=matched_key,
                special_ids=chosen.special_ids(entity),
                special_line=partial(chosen.special_line, entity),
                tiers=entity_tiers,
            )
        ):
            # Matchers decide by id here; whatever needs whole records reads them itself.
            ids = deps.store.iter_jsonl(ids_key)
            deps.store.write_jsonl(matched_key, chosen.decision_lines(entity, ids, entity_tiers))
        per_entity[entity.value] = entity_tiers
        for tier, count in entity_tiers.items():
            tiers[tier] = tiers.get(tier, 0) + count
    deps.store.put_json(keys.match_summary_key(state.tenant, state.run_id), per_entity)
    state.counts["match"] = tiers
    return state
