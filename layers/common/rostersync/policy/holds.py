"""Hold checks: the thresholds a run trips, and what a hold keeps back for an admin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rostersync.changes import SETTING_OF_ACTION, Action, HoldTrip, empty_counts
from rostersync.models import Entity
from rostersync.pipeline.contracts import NormalizedSummary
from rostersync.settings import HoldThresholds, TenantSettings


@dataclass
class EntityOutcome:
    """What staging one entity gave: counts per kind of action, and what hold checks
    need to know."""

    counts: dict[str, int] = field(default_factory=lambda: empty_counts())
    refused: int = 0
    refused_reason: str | None = None
    unchanged: int = 0
    active_before: int = 0
    merged: int = 0
    #: Updates that take links away (counted with the archives by the hold checks).
    link_removals: int = 0


#: Fields that hold a record's links to other records.
LINK_FIELDS: tuple[str, ...] = ("agent_source_ids",)


def removed_links(action: Action) -> dict[str, list[Any]]:
    """The links an update takes away, per field (empty: it removes none)."""
    if action["action"] != "update":
        return {}
    removed: dict[str, list[Any]] = {}
    for name in LINK_FIELDS:
        change = action["changes"].get(name)
        if change is None:
            continue
        before, after = change[0] or [], change[1] or []
        gone = sorted(set(before) - set(after))
        if gone:
            removed[name] = gone
    return removed


def removes_links(action: Action) -> bool:
    """An update that takes a link away: as risky as an archive."""
    return bool(removed_links(action))


def hold_checks(
    thresholds: HoldThresholds,
    outcomes: dict[Entity, EntityOutcome],
    normalized: NormalizedSummary,
    last_rows: int | None,
    *,
    full: bool = True,
) -> list[dict[str, Any]]:
    """Every hold threshold the run trips, with what was measured."""
    tripped: list[dict[str, Any]] = []
    for entity, outcome in outcomes.items():
        active = outcome.active_before
        # An update taking links away is as risky as an archive: counted with them.
        archives = outcome.counts["archive"] + outcome.link_removals
        changes = (
            outcome.counts["archive"] + outcome.counts["update"] + outcome.counts["reactivate"]
        )
        what = "would be archived or lose links" if outcome.link_removals else "would be archived"
        if active and archives > thresholds.archive_share * active:
            tripped.append(
                _trip(
                    "archive_share",
                    entity,
                    archives / active,
                    thresholds.archive_share,
                    f"{archives} of {active} active {entity.value} {what} "
                    f"({archives / active:.0%}, limit {thresholds.archive_share:.0%})",
                )
            )
        if thresholds.archive_count is not None and archives > thresholds.archive_count:
            tripped.append(
                _trip(
                    "archive_count",
                    entity,
                    archives,
                    thresholds.archive_count,
                    f"{archives} {entity.value} {what} (limit {thresholds.archive_count})",
                )
            )
        if (
            thresholds.change_share is not None
            and active
            and changes > thresholds.change_share * active
        ):
            tripped.append(
                _trip(
                    "change_share",
                    entity,
                    changes / active,
                    thresholds.change_share,
                    f"{changes} of {active} {entity.value} would change "
                    f"({changes / active:.0%}, limit {thresholds.change_share:.0%})",
                )
            )
        if thresholds.change_count is not None and changes > thresholds.change_count:
            tripped.append(
                _trip(
                    "change_count",
                    entity,
                    changes,
                    thresholds.change_count,
                    f"{changes} {entity.value} would change (limit {thresholds.change_count})",
                )
            )
    if normalized.any_delta or not full:
        # A delta read or a quick run carries only changes: small and partial by design.
        return tripped
    for entity in thresholds.required_files:
        summary = normalized.of(entity)
        if summary.missing or summary.is_absent:
            tripped.append(
                _trip(
                    "required_file",
                    entity,
                    0,
                    1,
                    f"the {entity.value} file is required but missing",
                )
            )
        elif summary.rows == 0:
            tripped.append(
                _trip(
                    "required_file", entity, 0, 1, f"the {entity.value} file is required but empty"
                )
            )
    rows = normalized.rows
    if last_rows and rows < thresholds.min_bundle_ratio * last_rows:
        tripped.append(
            _trip(
                "bundle_size",
                None,
                rows / last_rows,
                thresholds.min_bundle_ratio,
                f"the bundle has {rows} rows, {rows / last_rows:.0%} of the last "
                f"committed one ({last_rows}); limit {thresholds.min_bundle_ratio:.0%}",
            )
        )
    return tripped


def _trip(
    check: str, entity: Entity | None, measured: float, threshold: float, message: str
) -> dict[str, Any]:
    return HoldTrip(
        check=check,
        entity=entity.value if entity else None,
        measured=round(measured, 4),
        threshold=threshold,
        message=message,
    ).model_dump()


HELD_REASON = "held: the run tripped a hold threshold"


def untick(action: Action, settings: TenantSettings, *, held: bool) -> tuple[str | None, bool]:
    """Why an included action does not go through this run (None: it does), and whether
    it waits for an admin's approval (a hold) rather than being left out by settings.

    A held run keeps back its archives and the updates that take links away
    (everything, when ``hold.apply_safe_changes`` is off); a kind of change the tenant
    does not sync is left out."""
    setting = SETTING_OF_ACTION[action["action"]]
    if setting not in set(settings.changes_to_sync):
        return f"{setting} changes are not synced (settings)", False
    if held and (
        not settings.hold.apply_safe_changes
        or action["action"] == "archive"
        or removes_links(action)
    ):
        return HELD_REASON, True
    return None, False


def keep_links_to_absent(
    before: dict[str, Any], after: dict[str, Any], present: set[str]
) -> dict[str, Any]:
    """``after`` with the links ``before`` had to records absent from this run put back:
    when a read cannot be trusted, a link whose target is missing from it was lost with
    the damage, not removed by the source."""
    kept = dict(after)
    for name in LINK_FIELDS:
        old, new = before.get(name) or [], after.get(name) or []
        lost = [ref for ref in old if ref not in set(new) and ref not in present]
        if lost:
            kept[name] = [*new, *lost]
    return kept
