"""Tenant settings: what a district admin chooses about their sync.

One pydantic model, validated on every change; stored in the tenants table with every
change kept (who, when, what). Validation errors name the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rostersync.matching.thresholds import CLASS_THRESHOLDS, PEOPLE_THRESHOLDS, Thresholds
from rostersync.models import Entity, Role

ChangeKind = Literal["add", "update", "archive"]
RunOutcomeKind = Literal["committed", "prepared", "held", "failed"]
_ALL_CHANGES: tuple[ChangeKind, ...] = ("add", "update", "archive")
_DEFAULT_NOTIFY: tuple[RunOutcomeKind, ...] = ("prepared", "held", "failed")


KeyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}(:strip)?$")]


class MatchKeys(BaseModel):
    """Exact keys tried in order before fuzzy matching, per kind of person: each
    ``source_identifier:app_identifier``, with ``:strip`` to compare without leading
    zeros. Staff and guardians link by email unless changed; students by the key the
    admin confirms (``rostersync keys --confirm`` writes it here)."""

    model_config = ConfigDict(extra="forbid")

    students: list[KeyName] = Field(default_factory=list)
    teachers: list[KeyName] = Field(default_factory=lambda: ["email:email"])
    guardians: list[KeyName] = Field(default_factory=lambda: ["email:email"])

    @model_validator(mode="before")
    @classmethod
    def _earlier_shape(cls, value: Any) -> Any:
        # Settings stored before keys were read held bare names and a classes list.
        if not isinstance(value, dict):
            return value
        kept = {k: v for k, v in value.items() if k != "classes"}
        for name, keys in kept.items():
            if isinstance(keys, list) and keys and all(":" not in str(k) for k in keys):
                kept[name] = cls.model_fields[name].get_default(call_default_factory=True)
        return kept


class ClassFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    homerooms_only: bool = False
    #: Only these class types (empty: all).
    class_types: list[Literal["homeroom", "scheduled"]] = Field(default_factory=list)
    #: Only classes teaching one of these grades (empty: all).
    grades: list[str] = Field(default_factory=list)


class SchoolSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Source ids of the schools to sync (empty: all).
    include: list[str] = Field(default_factory=list)
    #: Source school id → app school id; two source schools mapped to one app school
    #: are merged into it.
    mapping: dict[str, str] = Field(default_factory=dict)


class HoldThresholds(BaseModel):
    """When a run is put on hold for an admin instead of applied."""

    model_config = ConfigDict(extra="forbid")

    archive_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.10
    archive_count: Annotated[int, Field(ge=0)] | None = None
    change_share: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.50
    change_count: Annotated[int, Field(ge=0)] | None = None
    #: Hold if the bundle has fewer rows than this share of the last committed one.
    min_bundle_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    #: Files whose absence or emptiness holds the run.
    required_files: list[Entity] = Field(
        default_factory=lambda: [Entity.ORGS, Entity.USERS, Entity.CLASSES, Entity.ENROLLMENTS]
    )
    #: While held, let adds and updates through; only the risky actions wait.
    apply_safe_changes: bool = True


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Daily time, 24-hour ``HH:MM``.
    time: str
    timezone: str = "UTC"
    mode: Literal["full", "quick"] = "full"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        # A zone the scheduler cannot resolve would be skipped every day, silently.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone (an IANA name such as Europe/London)"
            ) from None
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{2}):(\d{2})", value)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError("must be HH:MM (24-hour)")
        return value


class Notifications(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list
    )
    on: list[RunOutcomeKind] = Field(default_factory=lambda: list(_DEFAULT_NOTIFY))


class TenantSettings(BaseModel):
    """Every option of a tenant's sync."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    items_to_sync: list[Entity] = Field(default_factory=lambda: list(Entity))
    changes_to_sync: list[ChangeKind] = Field(default_factory=lambda: list(_ALL_CHANGES))
    #: ``ignore``: a blank source value erases nothing; ``replace``: blanks clear fields.
    blank_values: Literal["ignore", "replace"] = "replace"
    ignore_class_renames: bool = False
    match_keys: MatchKeys = Field(default_factory=MatchKeys)
    #: Where fuzzy scores turn into tiers, for people and for classes (defaults measured:
    #: see rostersync.matching.thresholds).
    people_thresholds: Thresholds = Field(default_factory=lambda: PEOPLE_THRESHOLDS)
    class_thresholds: Thresholds = Field(default_factory=lambda: CLASS_THRESHOLDS)
    #: Hold source records nothing matched (for an admin to link) instead of creating them.
    hold_unmatched: bool = False
    #: Connect a class only when its teacher is linked.
    classes_need_linked_teacher: bool = True
    #: Largest gap, in days, between a source class's term dates and an app class's.
    class_date_window_days: Annotated[int, Field(ge=0, le=365)] = 30
    schools: SchoolSelection = Field(default_factory=SchoolSelection)
    class_filters: ClassFilters = Field(default_factory=ClassFilters)
    primary_school_only: bool = False
    guardian_contact_types: list[Role] = Field(
        default_factory=lambda: [Role.GUARDIAN, Role.PARENT, Role.RELATIVE]
    )
    #: May the sync overwrite contact details (email, phone, sms) edited in the app?
    overwrite_app_contact_edits: bool = False
    auto_commit: bool = True
    schedule: Schedule | None = None
    notifications: Notifications = Field(default_factory=Notifications)
    hold: HoldThresholds = Field(default_factory=HoldThresholds)
    #: One change event per change up to this many changes in a run; above it none, and
    #: ``run.committed`` carries the keys of the run's change files. None: always events.
    change_events_limit: Annotated[int, Field(ge=0)] | None = 5000
    #: Send ``run.committed`` for a run that changed nothing (no action at all: none
    #: applied, refused, unticked or held)? Off, such a run sends no event: a daily
    #: sync of an unchanged roster is silent; its run is in the history either way.
    announce_unchanged_runs: bool = False

    @field_validator("guardian_contact_types")
    @classmethod
    def _guardian_roles(cls, value: list[Role]) -> list[Role]:
        bad = [r for r in value if r not in {Role.GUARDIAN, Role.PARENT, Role.RELATIVE}]
        if bad:
            raise ValueError(f"not a guardian contact type: {', '.join(bad)}")
        return value


CONTACT_FIELDS = ("email", "phone", "sms")


class SettingsError(ValueError):
    """Settings that do not validate; ``errors`` names each field and what was wrong."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(settings)", "message": err["msg"]}
        for err in exc.errors()
    ]


def validate_settings(data: dict[str, Any]) -> TenantSettings:
    """Validate a whole settings document; SettingsError names the bad fields."""
    try:
        return TenantSettings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_errors(exc)) from exc


def _parse_value(text: str) -> Any:
    """A CLI value: JSON where it parses (numbers, booleans, lists), else the string."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_assignments(current: TenantSettings, assignments: list[str]) -> TenantSettings:
    """Apply ``dotted.field=value`` assignments; return the validated result."""
    data = current.model_dump(mode="json")
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise SettingsError([{"field": assignment, "message": "expected field=value"}])
        target: Any = data
        parts = name.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(target, dict) or part not in target:
                raise SettingsError([{"field": name, "message": "no such setting"}])
            if target[part] is None:
                target[part] = {}
            target = target[part]
        if not isinstance(target, dict) or (
            parts[-1] not in target and parts[-1] not in _optional_children(parts)
        ):
            raise SettingsError([{"field": name, "message": "no such setting"}])
        target[parts[-1]] = _parse_value(raw.strip())
    return validate_settings(data)


def _optional_children(parts: list[str]) -> set[str]:
    """Fields of a settings group that may be absent from a dump (optional groups)."""
    if parts[:1] == ["schedule"]:
        return set(Schedule.model_fields)
    return set()
