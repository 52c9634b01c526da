"""Edits the app makes to directory records (a teacher fixes a parent's email).

Contact fields edited in the app are kept by later syncs unless the tenant lets the
sync overwrite them (``overwrite_app_contact_edits``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rostersync.errors import FatalError
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps
from rostersync.settings import CONTACT_FIELDS


class UnknownRecord(FatalError):
    """No directory record with this app id."""


class InvalidEdit(FatalError):
    """An edit the app may not make (a field that is not a contact detail)."""


def record_app_edit(
    deps: Deps, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str
) -> dict[str, Any]:
    """Apply the app's edit of a record's contact details (email, phone, sms) to the
    directory and remember that the app owns those fields: later syncs keep them unless
    the tenant lets the sync overwrite them. Returns the edited record."""
    kind = Entity(entity)
    if not fields:
        raise InvalidEdit("no fields to edit")
    others = sorted(set(fields) - set(CONTACT_FIELDS))
    if kind is not Entity.USERS or others:
        raise InvalidEdit(
            "the app may edit users' contact details only "
            f"({', '.join(CONTACT_FIELDS)})" + (f"; not {', '.join(others)}" if others else "")
        )
    if deps.directory.get(tenant, kind.value, target_id) is None:
        raise UnknownRecord(f"no {kind.value} record {target_id}")
    deps.directory.set_fields(tenant, kind.value, target_id, fields)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    deps.app_edits.put(tenant, kind.value, target_id, fields, who, at)
    record = dict(deps.directory.get(tenant, kind.value, target_id) or {})
    record.pop("pk", None)
    record.pop("sk", None)
    return record
