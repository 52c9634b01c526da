"""The change set: what a run would do to the committed roster, one action per record.

One vocabulary for stage, review, commit, report, the API and the CLI. An action is a
``TypedDict`` (``Action``): it is written and read a million times per large run as a
JSON line, where a model per action would cost seconds; the API validates it at its
boundary with ``ActionView``. ``ChangeSummary`` and ``HoldTrip`` describe a run's change
set as a whole.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal, NotRequired, TypedDict, get_args

from pydantic import BaseModel, ConfigDict, Field

from rostersync.models import META_FIELDS, Entity, Tier

ActionKind = Literal["add", "update", "archive", "reactivate"]
#: Every kind of action, in the order reports show them.
ACTION_KINDS: Final[tuple[ActionKind, ...]] = get_args(ActionKind)
#: The change event each kind publishes (``user.created``).
EVENT_VERBS: Final[dict[ActionKind, str]] = {
    "add": "created",
    "update": "updated",
    "archive": "archived",
    "reactivate": "reactivated",
}
#: Which ``changes_to_sync`` setting governs each kind.
SETTING_OF_ACTION: Final[dict[ActionKind, str]] = {
    "add": "add",
    "reactivate": "add",
    "update": "update",
    "archive": "archive",
}


class Action(TypedDict):
    """One change to one record. ``changes`` is field → ``[before, after]``."""

    id: str
    entity: str
    action: ActionKind
    source_system: str
    source_id: str
    target_id: str
    tier: str | None
    included: bool
    held: bool
    reason: str | None
    changes: dict[str, list[Any]]
    record: dict[str, Any] | None
    #: The source id the record was known by before the source re-issued it.
    relinked_from: NotRequired[str]
    #: Applied by an earlier commit (a held run's safe part).
    applied: NotRequired[bool]
    decided_by: NotRequired[str]
    decided_at: NotRequired[str]
    #: Why an archive follows from another (``user u1 archived``: its enrollments).
    cascade_of: NotRequired[str]


def action_id(entity: Entity, source_system: str, source_id: str, kind: str) -> str:
    """A stable id: the same change staged twice gets the same id."""
    digest = hashlib.blake2b(
        f"{entity.value}|{source_system}|{source_id}|{kind}".encode(), digest_size=8
    ).hexdigest()
    return f"{entity.value}-{kind}-{digest}"


#: Tiers by which an added source record links to an app record that already exists.
LINKING_TIERS = frozenset({Tier.KEY.value, Tier.AUTO.value, Tier.MANUAL.value, Tier.LINKED.value})


def links_existing(action: Any) -> bool:
    """Whether an add links to an existing app record (rather than creating one)."""
    return bool(action.get("action") == "add" and action.get("tier") in LINKING_TIERS)


def make_action(
    entity: Entity,
    kind: ActionKind,
    source_system: str,
    source_id: str,
    target_id: str,
    *,
    tier: str | None = None,
    record: dict[str, Any] | None = None,
    changes: dict[str, list[Any]] | None = None,
) -> Action:
    return {
        "id": action_id(entity, source_system, source_id, kind),
        "entity": entity.value,
        "action": kind,
        "source_system": source_system,
        "source_id": source_id,
        "target_id": target_id,
        "tier": tier,
        "included": True,
        "held": False,
        "reason": None,
        "changes": changes or {},
        "record": record,
    }


#: ``META_FIELDS`` in a fixed order: the keys ``content_of`` deletes from its copy.
_META_NAMES: Final[tuple[str, ...]] = tuple(sorted(META_FIELDS))


def content_of(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record that make up its content (what a change is about), in the
    record's order. A copy less the metadata: a million records a run go through here,
    and copying the dict then deleting four keys is three times faster than a
    comprehension testing each key."""
    content = record.copy()
    pop = content.pop
    for name in _META_NAMES:
        pop(name, None)
    return content


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """Field-level diff of two records' content: ``{field: [before, after]}``."""
    old, new = content_of(before), content_of(after)
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(ACTION_KINDS, 0)


def action_totals(counts: dict[str, dict[str, int]] | None) -> dict[str, int]:
    """Actions of each kind over every entity of a run's counts."""
    return {a: sum(int(row.get(a, 0)) for row in (counts or {}).values()) for a in ACTION_KINDS}


class HoldTrip(BaseModel):
    """One hold threshold a run tripped, with what was measured."""

    model_config = ConfigDict(extra="forbid")

    check: str
    entity: str | None = None
    measured: float
    threshold: float
    message: str


class ChangeSummary(BaseModel):
    """A run's change set as a whole (``changes/summary.json``)."""

    model_config = ConfigDict(extra="ignore")

    baseline_run_id: str | None = None
    #: Included actions per entity and kind.
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: Unticked actions per entity and kind (after review).
    excluded: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: Archives refused per entity: ``{"archive": n, "reason": ...}``.
    refused: dict[str, dict[str, Any]] = Field(default_factory=dict)
    hold: list[HoldTrip] = Field(default_factory=list)
    #: Actions held back per entity.
    held: dict[str, int] = Field(default_factory=dict)
    rows: int = 0
    unchanged: dict[str, int] = Field(default_factory=dict)
    out_of_scope: int = 0
    #: How each entity's records were compared with the committed state: ``columnar``
    #: (the DuckDB diff: only new and changed records parsed) or ``rows`` (one by one).
    compared: dict[str, str] = Field(default_factory=dict)
