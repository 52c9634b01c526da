"""Wonde objects → canonical roster records (pure functions, no I/O).

Source ids are Wonde ids (``A1749191433``). Included relations come wrapped
(``education_details: {"data": {...}}``, ``contacts: {"data": [...]}``); a relation that
was not included is a bare id or absent. Dates are objects (``{"date": "2023-09-30
05:06:45.000000", "timezone": "UTC"}``).

- the school → an org of type ``school``;
- students → users (``student``) with their UK identifiers in ``user_ids``: the Wonde id,
  the MIS id (``mis_id``), the UPN (``education_details.data.upn``), a former UPN, a
  candidate number and an admission number where given, and ``wonde_upi`` (Wonde's own
  hash, ``upi``, which is **not** the DfE UPN); the legal names are the names, the
  preferred ones (``forename``/``surname``) kept where they differ; the NC year as grade;
- employees → users: ``teacher`` when they teach a class (or are teaching staff), else
  ``administrator`` with ``source_role`` ``staff``;
- contacts → users ``parent``, ``relative`` or ``guardian`` by their relationship, with
  guardian links both ways;
- classes → classes (subject name and code), their students and employees → enrollments;
- a student's date of birth and gender → demographics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rostersync.models import ClassType, IssueAction, OrgType, Role
from rostersync.sources.base import Record
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes

SOURCE_SYSTEM = "wonde"

_PARENTS = frozenset(
    {
        "mother",
        "father",
        "parent",
        "step mother",
        "step father",
        "stepmother",
        "stepfather",
        "adoptive mother",
        "adoptive father",
    }
)
_RELATIVES = frozenset(
    {
        "grandmother",
        "grandfather",
        "grandparent",
        "aunt",
        "uncle",
        "brother",
        "sister",
        "sibling",
        "cousin",
        "other relative",
        "relative",
    }
)
_SEX = {"male": "male", "m": "male", "female": "female", "f": "female"}


def text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    found = str(value).strip()
    return found or None


def wonde_id(obj: Any) -> str:
    value = text(obj.get("id")) if isinstance(obj, Mapping) else None
    if value is None:
        raise ItemRejected("id", "no Wonde id")
    return value


def included(obj: Mapping[str, Any], key: str) -> Any:
    """An included relation's data (``{"data": ...}``), or None when not included."""
    value = obj.get(key)
    if isinstance(value, Mapping) and "data" in value:
        return value["data"]
    return None


def included_list(obj: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = included(obj, key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def wonde_moment(value: Any) -> datetime | None:
    """A Wonde date object (or string) as an aware datetime."""
    raw = value.get("date") if isinstance(value, Mapping) else value
    found = text(raw)
    if found is None:
        return None
    try:
        moment = datetime.fromisoformat(found.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        zone = text(value.get("timezone")) if isinstance(value, Mapping) else None
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone) if zone else UTC)
        except (ZoneInfoNotFoundError, ValueError):
            moment = moment.replace(tzinfo=UTC)
    return moment


def _modified(obj: Mapping[str, Any]) -> str | None:
    moment = wonde_moment(obj.get("updated_at"))
    return moment.astimezone(UTC).isoformat() if moment else None


def _day(value: Any, column: str, notes: Notes) -> str | None:
    raw = value.get("date") if isinstance(value, Mapping) else value
    found = text(raw)
    if found is None:
        return None
    try:
        return date.fromisoformat(found[:10]).isoformat()
    except ValueError:
        notes.append(FieldNote(column, "not a date", IssueAction.FIELD_DROPPED))
        return None


def _base(obj: Mapping[str, Any]) -> Record:
    return {
        "source_system": SOURCE_SYSTEM,
        "source_id": wonde_id(obj),
        "status": "active",
        "date_last_modified": _modified(obj),
        "extensions": {},
    }


def _ids(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for kind, value in pairs:
        identifier = text(value)
        if identifier is not None and {"type": kind, "identifier": identifier} not in found:
            found.append({"type": kind, "identifier": identifier})
    return found


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def org_from_school(obj: Mapping[str, Any]) -> Record:
    record = _base(obj)
    name = text(obj.get("name"))
    if name is None:
        raise ItemRejected("name", "a school with no name")
    extensions = {
        key: found
        for key in ("urn", "establishment_number", "la_code", "mis", "phase_of_education")
        if (found := text(obj.get(key))) is not None
    }
    urn = text(obj.get("urn"))
    establishment = text(obj.get("establishment_number"))
    la_code = text(obj.get("la_code"))
    dfe = f"{la_code}{establishment}" if la_code and establishment else None
    return {
        **record,
        "extensions": extensions,
        "name": name,
        "type": OrgType.SCHOOL.value,
        "identifier": urn or dfe,
        "parent_source_id": None,
    }


def _contact_details(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    details = included(obj, "contact_details") or {}
    emails = details.get("emails") if isinstance(details, Mapping) else None
    phones = details.get("phones") if isinstance(details, Mapping) else None
    emails = emails if isinstance(emails, Mapping) else {}
    phones = phones if isinstance(phones, Mapping) else {}
    email = next(
        (v for k in ("email", "primary", "work", "home") if (v := text(emails.get(k)))), None
    )
    phone = next(
        (v for k in ("phone", "primary", "mobile", "home", "work") if (v := text(phones.get(k)))),
        None,
    )
    return email, phone


def _names(obj: Mapping[str, Any]) -> dict[str, str | None]:
    preferred_given, preferred_family = text(obj.get("forename")), text(obj.get("surname"))
    given = text(obj.get("legal_forename")) or preferred_given
    family = text(obj.get("legal_surname")) or preferred_family
    if given is None and family is None:
        raise ItemRejected("surname", "a person with no name")
    return {
        "given_name": given or "",
        "family_name": family or "",
        "middle_name": text(obj.get("middle_names")),
        "preferred_given_name": preferred_given if preferred_given != given else None,
        "preferred_family_name": preferred_family if preferred_family != family else None,
    }


def student_user(obj: Mapping[str, Any], school: str, agents: Iterable[str]) -> Record:
    record = _base(obj)
    education = included(obj, "education_details")
    education = education if isinstance(education, Mapping) else {}
    email, phone = _contact_details(obj)
    upn = text(education.get("upn"))
    ids = _ids(
        [
            ("wonde_id", record["source_id"]),
            ("mis_id", obj.get("mis_id")),
            ("upn", upn),
            ("former_upn", education.get("former_upn")),
            ("candidate_number", education.get("candidate_number")),
            ("admission_number", education.get("admission_number")),
            ("wonde_upi", obj.get("upi")),
        ]
    )
    year = text(education.get("current_nc_year"))
    return {
        **record,
        "enabled": True,
        "role": Role.STUDENT.value,
        "source_role": None,
        "org_source_ids": [school],
        "username": None,
        "user_ids": ids,
        **_names(obj),
        "identifier": upn or text(obj.get("mis_id")),
        "email": email,
        "sms": None,
        "phone": phone,
        "agent_source_ids": _unique(agents),
        "grades": [year] if year else [],
    }


def employee_user(obj: Mapping[str, Any], school: str, teaches: bool) -> Record:
    record = _base(obj)
    employment = included(obj, "employment_details")
    employment = employment if isinstance(employment, Mapping) else {}
    teacher = (
        teaches or employment.get("teaching_staff") is True or bool(included_list(obj, "classes"))
    )
    email, phone = _contact_details(obj)
    staff_code = text(employment.get("staff_code")) or text(obj.get("staff_code"))
    return {
        **record,
        "enabled": True,
        "role": Role.TEACHER.value if teacher else Role.ADMINISTRATOR.value,
        "source_role": None if teacher else "staff",
        "org_source_ids": [school],
        "username": None,
        "user_ids": _ids(
            [
                ("wonde_id", record["source_id"]),
                ("mis_id", obj.get("mis_id")),
                ("staff_code", staff_code),
                ("wonde_upi", obj.get("upi")),
            ]
        ),
        **_names(obj),
        "identifier": staff_code or text(obj.get("mis_id")),
        "email": email,
        "sms": None,
        "phone": phone,
        "agent_source_ids": [],
        "grades": [],
    }


def relationship_word(link: Mapping[str, Any]) -> str | None:
    """The relationship a contact link states (``{"relationship": {"relationship":
    "Mother", ...}}`` or a plain word)."""
    value = link.get("relationship")
    if isinstance(value, Mapping):
        value = value.get("data", value)
        if isinstance(value, Mapping):
            value = value.get("relationship")
    return text(value)


def contact_role(words: Iterable[str | None]) -> Role:
    found = [w.lower() for w in words if w]
    if any(w in _PARENTS for w in found):
        return Role.PARENT
    if found and all(w in _RELATIVES for w in found):
        return Role.RELATIVE
    return Role.GUARDIAN


def contact_user(
    obj: Mapping[str, Any],
    school: str,
    students: Iterable[str],
    relationships: Iterable[str | None],
) -> Record:
    record = _base(obj)
    email, phone = _contact_details(obj)
    names = _names(obj)
    return {
        **record,
        "enabled": True,
        "role": contact_role(relationships).value,
        "source_role": "contact",
        "org_source_ids": [school],
        "username": None,
        "user_ids": _ids(
            [
                ("wonde_id", record["source_id"]),
                ("mis_id", obj.get("mis_id")),
                ("wonde_upi", obj.get("upi")),
            ]
        ),
        **names,
        "identifier": text(obj.get("mis_id")),
        "email": email,
        "sms": None,
        "phone": phone,
        "agent_source_ids": _unique(students),
        "grades": [],
    }


def class_record(obj: Mapping[str, Any], school: str, notes: Notes) -> Record:
    record = _base(obj)
    code = text(obj.get("code"))
    title = text(obj.get("name")) or text(obj.get("description")) or code
    if title is None:
        title = record["source_id"]
        notes.append(FieldNote("name", "no name: the Wonde id is used", IssueAction.KEPT_DEFAULT))
    subject = included(obj, "subject")
    subject = subject if isinstance(subject, Mapping) else {}
    subject_name, subject_code = text(subject.get("name")), text(subject.get("code"))
    return {
        **record,
        "title": title,
        "class_code": code,
        "class_type": ClassType.SCHEDULED.value,
        "location": None,
        "grades": [],
        "course_source_id": None,
        "school_source_id": school,
        "term_source_ids": [],
        "subjects": [subject_name] if subject_name else [],
        "subject_codes": [subject_code] if subject_code else [],
        "periods": [],
    }


def enrollment_id(class_id: str, user_id: str) -> str:
    return f"{class_id}-{user_id}"


def class_members(obj: Mapping[str, Any]) -> dict[str, Role]:
    """The class's students and employees (an employee listed as a student too is a
    teacher)."""
    members: dict[str, Role] = {}
    for key, role in (("students", Role.STUDENT), ("employees", Role.TEACHER)):
        for member in included_list(obj, key):
            if (member_id := text(member.get("id"))) is not None:
                members[member_id] = role
    return members


def enrollments_from_class(obj: Mapping[str, Any], school: str) -> list[Record]:
    class_id = wonde_id(obj)
    modified = _modified(obj)
    return [
        {
            "source_system": SOURCE_SYSTEM,
            "source_id": enrollment_id(class_id, user_id),
            "status": "active",
            "date_last_modified": modified,
            "extensions": {},
            "class_source_id": class_id,
            "school_source_id": school,
            "user_source_id": user_id,
            "role": role.value,
            "primary": None,
            "begin_date": None,
            "end_date": None,
        }
        for user_id, role in class_members(obj).items()
    ]


def demographics_from_student(obj: Mapping[str, Any], notes: Notes) -> Record | None:
    birth = _day(obj.get("date_of_birth"), "date_of_birth", notes)
    sex = _SEX.get((text(obj.get("gender")) or "").lower())
    if birth is None and sex is None:
        return None
    return {
        **_base(obj),
        "birth_date": birth,
        "sex": sex,
        "american_indian_or_alaska_native": None,
        "asian": None,
        "black_or_african_american": None,
        "native_hawaiian_or_other_pacific_islander": None,
        "white": None,
        "two_or_more_races": None,
        "hispanic_or_latino": None,
        "country_of_birth_code": None,
        "state_of_birth_abbreviation": None,
        "city_of_birth": None,
        "public_school_residence_status": None,
    }
