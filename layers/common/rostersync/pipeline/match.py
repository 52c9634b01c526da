"""match: give every normalized record its app identity (a target id) and say how.

The step streams each entity's records through a ``Matcher`` and writes one compact
decision per record: ``[source_system, source_id, target_id, tier, score]``. The default
matcher (``identity_match.IdentityMatcher``) links by known identities, admins'
decisions, exact keys and fuzzy scores; another plugs in through the same protocol.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from rostersync.models import ENTITY_ORDER, Entity, Tier
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys

_TARGET_NAMESPACE = uuid.UUID("5b0e7c1e-8f51-4bd4-9a0a-3f0b1c7d2e61")
_NAMESPACE_BYTES = _TARGET_NAMESPACE.bytes


def new_target_id(tenant: str, entity: Entity, source_system: str, source_id: str) -> str:
    """The app id a new record gets: deterministic, so a retried step yields the same id.

    Exactly ``uuid.uuid5(namespace, name)``, computed without building UUID objects
    (several times faster on a million records)."""
    name = f"{tenant}/{entity.value}/{source_system}/{source_id}".encode()
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class MatchDecision:
    source_system: str
    source_id: str
    target_id: str | None
    tier: Tier
    score: float | None = None

    def to_line(self) -> list[Any]:
        return [self.source_system, self.source_id, self.target_id, self.tier.value, self.score]

    @classmethod
    def from_line(cls, line: list[Any]) -> MatchDecision:
        return cls(line[0], line[1], line[2], Tier(line[3]), line[4])


class Matcher(Protocol):
    """Decides the app identity of each record of one entity."""

    def decision_lines(
        self, entity: Entity, ids: Iterable[list[Any]], tiers: dict[str, int]
    ) -> Iterator[list[Any]]:
        """One decision line per record, in order, from the records' id lines
        (``[source_system, source_id, status, hash]``); counts each tier in ``tiers``."""
        ...


def match(state: RunState, deps: Deps, matcher: Matcher | None = None) -> RunState:
    """Write the decisions for every entity and count them by tier."""
    if matcher is None:
        from rostersync.pipeline.identity_match import IdentityMatcher

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
        # Matchers decide by id here; whatever needs whole records reads them itself.
        ids = deps.store.iter_jsonl(keys.normalized_ids_key(state.tenant, state.run_id, entity))
        entity_tiers: dict[str, int] = {}
        deps.store.write_jsonl(
            keys.matched_key(state.tenant, state.run_id, entity),
            chosen.decision_lines(entity, ids, entity_tiers),
        )
        per_entity[entity.value] = entity_tiers
        for tier, count in entity_tiers.items():
            tiers[tier] = tiers.get(tier, 0) + count
    deps.store.put_json(keys.match_summary_key(state.tenant, state.run_id), per_entity)
    state.counts["match"] = tiers
    return state
