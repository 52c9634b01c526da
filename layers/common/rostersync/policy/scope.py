"""Which source records a tenant syncs: items, schools, class filters, guardian types.

A record out of scope is left out of the run as if the source had not sent it, so a
record that falls out of scope (a school deselected) is archived like any absent one,
and the hold thresholds guard against a mistaken setting archiving a district.
"""

from __future__ import annotations

from typing import Any

from rostersync.models import GUARDIAN_ROLES, Entity
from rostersync.settings import TenantSettings


class Scope:
    """Filters records entity by entity; remembers the ids it dropped (ids only)."""

    def __init__(self, settings: TenantSettings) -> None:
        self.settings = settings
        self.schools = set(settings.schools.include)
        self.school_orgs: set[str] = set()
        self.dropped_classes: set[str] = set()
        self.primary_school: dict[str, str] = {}
        self.dropped = 0

    @property
    def active(self) -> bool:
        """Whether any setting filters records (if not, every record is in scope)."""
        settings = self.settings
        filters = settings.class_filters
        return bool(
            self.schools
            or filters.homerooms_only
            or filters.class_types
            or filters.grades
            or settings.primary_school_only
            or set(settings.guardian_contact_types) != GUARDIAN_ROLES
        )

    def admit(self, entity: Entity, record: dict[str, Any]) -> dict[str, Any] | None:
        """The record as synced, or None if it is out of scope."""
        kept = self._admit(entity, record)
        if kept is None:
            self.dropped += 1
        return kept

    def _admit(self, entity: Entity, record: dict[str, Any]) -> dict[str, Any] | None:
        if entity == Entity.ORGS:
            if record.get("type") == "school":
                self.school_orgs.add(record["source_id"])
                if self.schools and record["source_id"] not in self.schools:
                    return None
            return record
        if entity == Entity.COURSES:
            org = record.get("org_source_id")
            if self.schools and org in self.school_orgs and org not in self.schools:
                return None
            return record
        if entity == Entity.CLASSES:
            return self._admit_class(record)
        if entity == Entity.USERS:
            return self._admit_user(record)
        if entity == Entity.ENROLLMENTS:
            if record.get("class_source_id") in self.dropped_classes:
                return None
            school = record.get("school_source_id")
            if self.schools and school in self.school_orgs and school not in self.schools:
                return None
            primary = self.primary_school.get(record["user_source_id"])
            if self.settings.primary_school_only and primary and school and school != primary:
                return None
            return record
        return record

    def _admit_class(self, record: dict[str, Any]) -> dict[str, Any] | None:
        filters = self.settings.class_filters
        school = record.get("school_source_id")
        out = (
            (self.schools and school not in self.schools)
            or (filters.homerooms_only and record.get("class_type") != "homeroom")
            or (filters.class_types and record.get("class_type") not in filters.class_types)
            or (filters.grades and not set(filters.grades) & set(record.get("grades") or []))
        )
        if out:
            self.dropped_classes.add(record["source_id"])
            return None
        return record

    def _admit_user(self, record: dict[str, Any]) -> dict[str, Any] | None:
        role = record.get("role")
        if role in GUARDIAN_ROLES and role not in self.settings.guardian_contact_types:
            return None
        orgs = list(record.get("org_source_ids") or [])
        schools = [o for o in orgs if o in self.school_orgs]
        if self.schools and schools and not set(schools) & self.schools:
            return None
        if self.settings.primary_school_only and schools:
            primary = next((s for s in schools if not self.schools or s in self.schools), None)
            if primary is not None:
                self.primary_school[record["source_id"]] = primary
                record = {
                    **record,
                    "org_source_ids": [o for o in orgs if o not in schools or o == primary],
                }
        elif self.schools and schools:
            record = {
                **record,
                "org_source_ids": [o for o in orgs if o not in schools or o in self.schools],
            }
        return record
