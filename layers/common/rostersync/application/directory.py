"""Edits the app makes to directory records (a teacher fixes a parent's email).

Contact fields edited in the app are kept by later syncs unless the tenant lets the
sync overwrite them (``overwrite_app_contact_edits``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rostersync.models import Entity
from rostersync.pipeline.deps import Deps


def record_app_edit(
    deps: Deps, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str
) -> None:
    """Apply the app's edit to the directory record and remember which fields it owns."""
    Entity(entity)
    if not fields:
        raise ValueError("no fields to edit")
    deps.directory.set_fields(tenant, entity, target_id, fields)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    deps.app_edits.put(tenant, entity, target_id, fields, who, at)
