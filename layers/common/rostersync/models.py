"""The canonical roster model.

Every source (OneRoster CSV and REST, Clever, Wonde) is normalized into these records.
Each record keeps the system it came from and its id there (``source_system``,
``source_id``); the app-side identity (``target_id``) is attached by matching.

The hot path of the pipeline moves records as plain dicts shaped exactly like
``Model.model_dump(mode="json")``; the models here define and validate that shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Entity(StrEnum):
    """The kinds of roster record, in dependency order (parents before children)."""

    ORGS = "orgs"
    ACADEMIC_SESSIONS = "academic_sessions"
    COURSES = "courses"
    CLASSES = "classes"
    USERS = "users"
    ENROLLMENTS = "enrollments"
    DEMOGRAPHICS = "demographics"


ENTITY_ORDER: tuple[Entity, ...] = tuple(Entity)

#: Singular names used in change events (``user.created``).
ENTITY_SINGULAR: dict[Entity, str] = {
    Entity.ORGS: "org",
    Entity.ACADEMIC_SESSIONS: "academic_session",
    Entity.COURSES: "course",
    Entity.CLASSES: "class",
    Entity.USERS: "user",
    Entity.ENROLLMENTS: "enrollment",
    Entity.DEMOGRAPHICS: "demographics",
}


class SourceStatus(StrEnum):
    """A record's status as the source states it (OneRoster 1.0's ``inactive`` maps to
    ``tobedeleted``)."""

    ACTIVE = "active"
    TOBEDELETED = "tobedeleted"


class OrgType(StrEnum):
    DISTRICT = "district"
    SCHOOL = "school"
    DEPARTMENT = "department"
    LOCAL = "local"
    STATE = "state"
    NATIONAL = "national"


class SessionType(StrEnum):
    SCHOOL_YEAR = "schoolYear"
    SEMESTER = "semester"
    TERM = "term"
    GRADING_PERIOD = "gradingPeriod"


class Role(StrEnum):
    """Canonical user roles. OneRoster 1.2's administrator variants collapse into
    ``administrator`` (the source's own word is kept in ``source_role``)."""

    STUDENT = "student"
    TEACHER = "teacher"
    ADMINISTRATOR = "administrator"
    AIDE = "aide"
    GUARDIAN = "guardian"
    PARENT = "parent"
    RELATIVE = "relative"
    PROCTOR = "proctor"


GUARDIAN_ROLES = frozenset({Role.GUARDIAN, Role.PARENT, Role.RELATIVE})
STAFF_ROLES = frozenset({Role.TEACHER, Role.ADMINISTRATOR, Role.AIDE, Role.PROCTOR})


class ClassType(StrEnum):
    HOMEROOM = "homeroom"
    SCHEDULED = "scheduled"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_system: str
    source_id: Annotated[str, Field(min_length=1)]
    status: SourceStatus = SourceStatus.ACTIVE
    date_last_modified: datetime | None = None
    #: Vendor columns (``ext_*``, ``metadata.*``) kept verbatim, by column name.
    extensions: dict[str, str] = Field(default_factory=dict)


class Org(_Record):
    name: str
    type: OrgType
    identifier: str | None = None
    parent_source_id: str | None = None


class AcademicSession(_Record):
    title: str
    type: SessionType
    start_date: date | None = None
    end_date: date | None = None
    parent_source_id: str | None = None
    school_year: str | None = None


class Course(_Record):
    title: str
    course_code: str | None = None
    grades: list[str] = Field(default_factory=list)
    org_source_id: str | None = None
    school_year_source_id: str | None = None
    subjects: list[str] = Field(default_factory=list)
    subject_codes: list[str] = Field(default_factory=list)


class Class(_Record):
    title: str
    class_code: str | None = None
    class_type: ClassType | None = None
    location: str | None = None
    grades: list[str] = Field(default_factory=list)
    course_source_id: str | None = None
    school_source_id: str
    term_source_ids: list[str] = Field(default_factory=list)
    subjects: list[str] = Field(default_factory=list)
    subject_codes: list[str] = Field(default_factory=list)
    periods: list[str] = Field(default_factory=list)


class UserIdentifier(BaseModel):
    """One of the user's ids in another system (OneRoster ``userIds``: ``{type:id}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    identifier: str


class User(_Record):
    enabled: bool = True
    role: Role
    #: The role word the source used (``siteAdministrator``), when it differs from ``role``.
    source_role: str | None = None
    org_source_ids: list[str] = Field(default_factory=list)
    username: str | None = None
    user_ids: list[UserIdentifier] = Field(default_factory=list)
    given_name: str
    family_name: str
    middle_name: str | None = None
    preferred_given_name: str | None = None
    preferred_family_name: str | None = None
    identifier: str | None = None
    email: str | None = None
    sms: str | None = None
    phone: str | None = None
    #: Guardian relationships: for a student, the guardians/parents/relatives; for those,
    #: the students they look after.
    agent_source_ids: list[str] = Field(default_factory=list)
    grades: list[str] = Field(default_factory=list)


class Enrollment(_Record):
    class_source_id: str
    school_source_id: str | None = None
    user_source_id: str
    role: Role
    primary: bool | None = None
    begin_date: date | None = None
    end_date: date | None = None


class Demographics(_Record):
    """Keyed by the user's source id (OneRoster's ``demographics.sourcedId``)."""

    birth_date: date | None = None
    sex: str | None = None
    american_indian_or_alaska_native: bool | None = None
    asian: bool | None = None
    black_or_african_american: bool | None = None
    native_hawaiian_or_other_pacific_islander: bool | None = None
    white: bool | None = None
    two_or_more_races: bool | None = None
    hispanic_or_latino: bool | None = None
    country_of_birth_code: str | None = None
    state_of_birth_abbreviation: str | None = None
    city_of_birth: str | None = None
    public_school_residence_status: str | None = None


RECORD_MODELS: dict[Entity, type[_Record]] = {
    Entity.ORGS: Org,
    Entity.ACADEMIC_SESSIONS: AcademicSession,
    Entity.COURSES: Course,
    Entity.CLASSES: Class,
    Entity.USERS: User,
    Entity.ENROLLMENTS: Enrollment,
    Entity.DEMOGRAPHICS: Demographics,
}

#: Fields that describe where a record came from rather than what it says; a change in
#: them alone is not a change to the roster.
META_FIELDS = frozenset({"source_system", "source_id", "status", "date_last_modified"})


def validate_record(entity: Entity, record: dict[str, Any]) -> _Record:
    """Validate a record dict against its canonical model (used by tests and tools)."""
    return RECORD_MODELS[entity].model_validate(record)


class IssueAction(StrEnum):
    """What was done about a problem found in the input."""

    KEPT_DEFAULT = "kept with a default"
    FIELD_DROPPED = "field dropped"
    VALUE_FIXED = "value normalized"
    ROW_SKIPPED = "row skipped"
    ROW_KEPT = "row kept"
    FILE_SKIPPED = "file skipped"
    READ_AS_BULK = "read as bulk"
    NOTED = "noted"


class Severity(StrEnum):
    """What an issue cost, worst first: the one vocabulary of reports, the CLI and the API.

    * ``blocking``: a file or an entity was unusable; nothing of it was applied.
    * ``row``: a record was skipped.
    * ``field``: a value was kept with a default, or dropped.
    * ``note``: read as intended; worth knowing.
    """

    BLOCKING = "blocking"
    ROW = "row"
    FIELD = "field"
    NOTE = "note"


#: Worst first: the order summaries and reports list issues in.
SEVERITY_ORDER: tuple[Severity, ...] = tuple(Severity)

#: The severity an action implies unless the issue says otherwise.
SEVERITY_OF_ACTION: dict[IssueAction, Severity] = {
    IssueAction.FILE_SKIPPED: Severity.BLOCKING,
    IssueAction.ROW_SKIPPED: Severity.ROW,
    IssueAction.KEPT_DEFAULT: Severity.FIELD,
    IssueAction.FIELD_DROPPED: Severity.FIELD,
    IssueAction.VALUE_FIXED: Severity.NOTE,
    IssueAction.ROW_KEPT: Severity.NOTE,
    IssueAction.READ_AS_BULK: Severity.NOTE,
    IssueAction.NOTED: Severity.NOTE,
}


def severity_of(issue: Mapping[str, Any]) -> Severity:
    """An issue's severity, as stored or (issues kept before severities) from its action."""
    given = issue.get("severity")
    if given:
        try:
            return Severity(given)
        except ValueError:
            pass
    try:
        return SEVERITY_OF_ACTION[IssueAction(str(issue.get("action")))]
    except ValueError:
        return Severity.NOTE


def severity_counts(issues: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{severity: count}`` for every severity, worst first."""
    counts = {s.value: 0 for s in SEVERITY_ORDER}
    for issue in issues:
        counts[severity_of(issue).value] += 1
    return counts


def worst_first(issues: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The issues ordered worst first, in their own order within a severity."""
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    return sorted(issues, key=lambda i: rank[severity_of(i)])


class RowIssue(BaseModel):
    """A problem in one place of the input. ``value`` is never set for secret columns.
    ``severity`` defaults to what ``action`` implies (``SEVERITY_OF_ACTION``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    line: int | None = None
    column: str | None = None
    value: str | None = None
    message: str
    action: IssueAction
    entity: Entity | None = None
    source_id: str | None = None
    severity: Severity = Severity.NOTE

    @model_validator(mode="before")
    @classmethod
    def _default_severity(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("severity") is None and "action" in data:
            return {**data, "severity": severity_of({"action": data["action"]})}
        return data


class Tier(StrEnum):
    """How a source record came to its app identity."""

    LINKED = "linked"  # an existing identity link
    KEY = "key"  # exact match on a confirmed key
    AUTO = "auto"  # fuzzy, confident and unambiguous
    SUGGESTED = "suggested"  # fuzzy, for an admin to confirm or reject
    UNMATCHED = "unmatched"  # nothing found: created as new unless held
    MANUAL = "manual"  # linked by an admin


SyncMode = Literal["full", "quick"]
