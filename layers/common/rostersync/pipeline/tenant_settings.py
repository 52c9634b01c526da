"""The tenant's settings as the pipeline steps read them."""

from __future__ import annotations

from rostersync.pipeline.deps import Deps
from rostersync.settings import TenantSettings


def load_settings(deps: Deps, tenant: str) -> TenantSettings:
    """The tenant's settings (defaults until the admin changes them)."""
    stored = deps.tenants.get_settings(tenant)
    return TenantSettings() if stored is None else TenantSettings.model_validate(stored)
