"""Assembly Platform objects → canonical roster records (pure functions, no I/O).

Records are keyed on Assembly's own ids, never on the UPN (Assembly: "UPN can change").
Students and staff members are numbered apart, as are teaching and registration groups,
so source ids carry the kind: ``student-123``, ``staff-45``, ``tg-7``, ``rg-2``.

- the school → an org (``urn``, else ``slug``, as its id);
- students → users (``student``) with ``upn``, ``former_upn``, ``uln``, ``mis_id`` and
  ``pan`` (pupil admission number) in ``user_ids``; legal names as the names, the chosen
  ones kept as preferred where they differ; ``year_code`` as grade; ``dob`` and the
  demographics' gender → demographics;
- staff members → users: ``teacher`` when ``is_teaching_staff``, else ``administrator``
  (``source_role`` ``staff``);
- teaching groups → scheduled classes (subject name and code), registration groups →
  homeroom classes; their ``student_ids`` and ``supervisor_ids`` → enrollments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from rostersync.models import ClassType, IssueAction, OrgType, Role
from rostersync.sources.base import Record
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes

SOURCE_SYSTEM = "assembly"
_SEX = {"m": "male", "male": "male", "f": "female", "female": "female"}


def text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list | bool):
        return None
    found = str(value).strip()
    return found or None


def assembly_id(obj: Any) -> str:
    value = text(obj.get("id")) if isinstance(obj, Mapping) else None
    if value is None:
        raise ItemRejected("id", "no Assembly id")
    return value


def student_key(value: Any) -> str:
    return f"student-{value}"


def staff_key(value: Any) -> str:
    return f"staff-{value}"


def group_key(kind: str, value: Any) -> str:
    return f"{'tg' if kind == 'teaching_groups' else 'rg'}-{value}"


def _day(value: Any, column: str, notes: Notes) -> str | None:
    found = text(value)
    if found is None:
        return None
    try:
        return date.fromisoformat(found[:10]).isoformat()
    except ValueError:
        notes.append(FieldNote(column, "not a date", IssueAction.FIELD_DROPPED))
        return None


def _base(source_id: str) -> Record:
    return {
        "source_system": SOURCE_SYSTEM,
        "source_id": source_id,
        "status": "active",
        "date_last_modified": None,
        "extensions": {},
    }


def _ids(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    for kind, value in pairs:
        identifier = text(value)
        if identifier is not None and {"type": kind, "identifier": identifier} not in found:
            found.append({"type": kind, "identifier": identifier})
    return found


def _email(obj: Mapping[str, Any]) -> str | None:
    emails = [e for e in obj.get("emails") or [] if isinstance(e, Mapping) and text(e.get("email"))]
    emails.sort(key=lambda e: not e.get("is_primary"))
    return text(emails[0].get("email")) if emails else text(obj.get("email"))


def _names(obj: Mapping[str, Any]) -> dict[str, str | None]:
    chosen_given, chosen_family = text(obj.get("first_name")), text(obj.get("last_name"))
    given = text(obj.get("legal_first_name")) or chosen_given
    family = text(obj.get("legal_last_name")) or chosen_family
    if given is None and family is None:
        raise ItemRejected("last_name", "a person with no name")
    return {
        "given_name": given or "",
        "family_name": family or "",
        "middle_name": text(obj.get("middle_name")),
        "preferred_given_name": chosen_given if chosen_given != given else None,
        "preferred_family_name": chosen_family if chosen_family != family else None,
    }


def school_org_id(school: Mapping[str, Any]) -> str:
    found = text(school.get("urn")) or text(school.get("slug"))
    if found is None:
        raise ItemRejected("urn", "a school with neither URN nor slug")
    return found


def org_from_school(school: Mapping[str, Any]) -> Record:
    name = text(school.get("name"))
    if name is None:
        raise ItemRejected("name", "a school with no name")
    extensions = {
        key: found
        for key in ("urn", "slug", "la_code", "establishment_number", "mis_provider", "phase")
        if (found := text(school.get(key))) is not None
    }
    return {
        **_base(school_org_id(school)),
        "extensions": extensions,
        "name": name,
        "type": OrgType.SCHOOL.value,
        "identifier": text(school.get("urn")),
        "parent_source_id": None,
    }


def student_user(obj: Mapping[str, Any], school: str) -> Record:
    source_id = student_key(assembly_id(obj))
    upn = text(obj.get("upn"))
    year = text(obj.get("year_code"))
    return {
        **_base(source_id),
        "enabled": True,
        "role": Role.STUDENT.value,
        "source_role": None,
        "org_source_ids": [school],
        "username": None,
        "user_ids": _ids(
            [
                ("assembly_id", obj.get("id")),
                ("upn", upn),
                ("former_upn", obj.get("former_upn")),
                ("uln", obj.get("uln")),
                ("mis_id", obj.get("mis_id")),
                ("pan", obj.get("pan")),
            ]
        ),
        **_names(obj),
        "identifier": upn or text(obj.get("mis_id")),
        "email": _email(obj),
        "sms": None,
        "phone": None,
        "agent_source_ids": [],
        "grades": [year] if year else [],
    }


def staff_user(obj: Mapping[str, Any], school: str) -> Record:
    source_id = staff_key(assembly_id(obj))
    teacher = obj.get("is_teaching_staff") is True
    code = text(obj.get("staff_code"))
    return {
        **_base(source_id),
        "enabled": True,
        "role": Role.TEACHER.value if teacher else Role.ADMINISTRATOR.value,
        "source_role": None if teacher else "staff",
        "org_source_ids": [school],
        "username": None,
        "user_ids": _ids(
            [("assembly_id", obj.get("id")), ("mis_id", obj.get("mis_id")), ("staff_code", code)]
        ),
        **_names(obj),
        "identifier": code or text(obj.get("mis_id")),
        "email": _email(obj),
        "sms": None,
        "phone": None,
        "agent_source_ids": [],
        "grades": [],
    }


def demographics_from_student(obj: Mapping[str, Any], notes: Notes) -> Record | None:
    birth = _day(obj.get("dob"), "dob", notes)
    details = obj.get("demographics")
    gender = text(details.get("gender")) if isinstance(details, Mapping) else None
    sex = _SEX.get((gender or "").lower())
    if birth is None and sex is None:
        return None
    return {
        **_base(student_key(assembly_id(obj))),
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


def class_from_group(kind: str, obj: Mapping[str, Any], school: str, notes: Notes) -> Record:
    source_id = group_key(kind, assembly_id(obj))
    title = text(obj.get("name"))
    if title is None:
        title = source_id
        notes.append(FieldNote("name", "no name: the id is used", IssueAction.KEPT_DEFAULT))
    subject = obj.get("subject")
    subject = subject if isinstance(subject, Mapping) else {}
    name, code = text(subject.get("name")), text(subject.get("code"))
    homeroom = kind == "registration_groups"
    return {
        **_base(source_id),
        "title": title,
        "class_code": None,
        "class_type": ClassType.HOMEROOM.value if homeroom else ClassType.SCHEDULED.value,
        "location": None,
        "grades": [],
        "course_source_id": None,
        "school_source_id": school,
        "term_source_ids": [],
        "subjects": [name] if name else [],
        "subject_codes": [code] if code else [],
        "periods": [],
    }


def group_members(obj: Mapping[str, Any], students: Iterable[Any] | None) -> dict[str, Role]:
    """The group's members: its ``student_ids`` (or ``students`` read from
    ``/{group}/students``) and its supervisors as teachers."""
    members: dict[str, Role] = {}
    listed = (obj.get("student_ids") or []) if students is None else students
    for student in listed:
        if (found := text(student)) is not None:
            members[student_key(found)] = Role.STUDENT
    for supervisor in obj.get("supervisor_ids") or []:
        if (found := text(supervisor)) is not None:
            members[staff_key(found)] = Role.TEACHER
    return members


def enrollments_from_group(
    kind: str, obj: Mapping[str, Any], school: str, students: Iterable[Any] | None, notes: Notes
) -> list[Record]:
    class_id = group_key(kind, assembly_id(obj))
    begin = _day(obj.get("start_date"), "start_date", notes)
    end = _day(obj.get("end_date"), "end_date", notes)
    return [
        {
            **_base(f"{class_id}-{user_id}"),
            "class_source_id": class_id,
            "school_source_id": school,
            "user_source_id": user_id,
            "role": role.value,
            "primary": None,
            "begin_date": begin,
            "end_date": end,
        }
        for user_id, role in group_members(obj, students).items()
    ]
