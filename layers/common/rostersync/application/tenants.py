"""Tenants and their settings (kept with every change: who, when, which fields)."""

from __future__ import annotations

from datetime import UTC, datetime

from rostersync.pipeline.deps import Deps
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.settings import TenantSettings


def load_tenant_settings(deps: Deps, tenant: str) -> TenantSettings:
    """The tenant's settings (defaults until changed)."""
    return load_settings(deps, tenant)


def _changed_fields(
    before: dict[str, object], after: dict[str, object], prefix: str = ""
) -> list[str]:
    changed: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_fields(old, new, f"{prefix}{name}.")
        elif old != new:
            changed.append(prefix + name)
    return changed


def save_tenant_settings(
    deps: Deps, tenant: str, settings: TenantSettings, *, who: str
) -> list[str]:
    """Store validated settings; record the change; return the changed field names."""
    before = load_settings(deps, tenant).model_dump(mode="json")
    after = settings.model_dump(mode="json")
    changed = _changed_fields(before, after)
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    if "schedule" in {name.split(".")[0] for name in changed}:
        # Validate with the scheduler before the settings are stored.
        from rostersync.application.schedules import sync_schedule

        sync_schedule(None, tenant, settings)
    deps.tenants.put_settings(tenant, after, who=who, at=at, changed=changed)
    return changed
