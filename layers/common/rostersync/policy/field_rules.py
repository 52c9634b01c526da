"""Field rules: what of a source record's change is applied to the committed one."""

from __future__ import annotations

from typing import Any

from rostersync.models import Entity
from rostersync.settings import TenantSettings


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def apply_field_rules(
    entity: Entity,
    before: dict[str, Any],
    after: dict[str, Any],
    settings: TenantSettings,
    app_values: dict[str, Any],
) -> dict[str, Any]:
    """The record to commit once the tenant's field rules are applied.

    ``app_values`` holds the contact fields the app edited (name → the app's value)."""
    result = dict(after)
    if settings.blank_values == "ignore":
        for name, value in after.items():
            if _blank(value) and not _blank(before.get(name)):
                result[name] = before[name]
    if entity == Entity.CLASSES and settings.ignore_class_renames and "title" in before:
        result["title"] = before["title"]
    if not settings.overwrite_app_contact_edits:
        result.update(app_values)
    return result
