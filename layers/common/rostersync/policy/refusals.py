"""Archive refusals: when the absences in an input cannot be trusted at all."""

from __future__ import annotations

from rostersync.models import Entity
from rostersync.sources.base import ReadSummary


def archive_refusal(entity: Entity, summary: ReadSummary, active: int) -> str | None:
    """Why the absences in this entity's input cannot be trusted to archive anything, or
    None. (How many archives are too many is a hold threshold, not a refusal.)"""
    label = summary.label or f"the {entity.value} input"
    if summary.missing:
        return f"{label} is announced but missing; nothing archived"
    if summary.rows == 0 and active > 0:
        return f"{label} has no rows; its {active} active records are not archived"
    if summary.unreadable_rows:
        return (
            f"{summary.unreadable_rows} rows of {label} could not be read (no id); "
            "absent records might be among them"
        )
    if summary.untrusted:
        return f"{label}: {summary.untrusted}; nothing archived"
    return None
