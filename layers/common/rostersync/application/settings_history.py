"""Every change of a tenant's settings: who, when, and each field's old → new value."""

from __future__ import annotations

from typing import Any

from rostersync.pipeline.deps import Deps
from rostersync.settings import TenantSettings
from rostersync.storage import keys


def _value(document: dict[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def settings_changes(deps: Deps, tenant: str) -> list[dict[str, Any]]:
    """Newest first: ``{changed_at, changed_by, changes: [{field, old, new}]}``; the first
    change is compared with the defaults."""
    keys.check_tenant(tenant)
    before: dict[str, Any] = TenantSettings().model_dump(mode="json")
    out: list[dict[str, Any]] = []
    for entry in deps.tenants.settings_history(tenant):
        after = dict(entry.get("settings") or {})
        out.append(
            {
                "changed_at": entry.get("changed_at"),
                "changed_by": entry.get("changed_by"),
                "changes": [
                    {"field": name, "old": _value(before, name), "new": _value(after, name)}
                    for name in entry.get("changed") or []
                ],
            }
        )
        before = after
    return out[::-1]
