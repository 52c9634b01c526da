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
        archives = outcome.counts["archive"]
        changes = archives + outcome.counts["update"] + outcome.counts["reactivate"]
        if active and archives > thresholds.archive_share * active:
            tripped.append(
                _trip(
                    "archive_share",
                    entity,
                    archives / active,
                    thresholds.archive_share,
                    f"{archives} of {active} active {entity.value} would be archived "
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
                    f"{archives} {entity.value} would be archived "
                    f"(limit {thresholds.archive_count})",
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

    A held run keeps back its archives (everything, when ``hold.apply_safe_changes`` is
    off); a kind of change the tenant does not sync is left out."""
    setting = SETTING_OF_ACTION[action["action"]]
    if setting not in set(settings.changes_to_sync):
        return f"{setting} changes are not synced (settings)", False
    if held and (not settings.hold.apply_safe_changes or action["action"] == "archive"):
        return HELD_REASON, True
    return None, False
