"""Clever Data API v3.0 objects → canonical roster records (pure functions, no I/O).

Source ids are Clever ids. A Clever object that cannot be used raises ``ItemRejected``
(naming the field); a field that cannot be used is dropped and noted in ``notes``.

- district and schools → orgs (the schools' parent is the district);
- terms → academic sessions of type ``term``; courses → courses;
- sections → classes, and their ``students`` and ``teachers`` → enrollments;
- users → one user each: ``student``, ``teacher``, ``administrator`` (district admins
  and staff, the Clever role kept as ``source_role``), and contacts as ``parent``,
  ``relative`` or ``guardian`` by their relationship; guardian links both ways
  (a contact's ``student_relationships``; a student's contacts);
- a student's dob, gender, race and hispanic ethnicity → demographics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from rostersync.models import ClassType, IssueAction, OrgType, Role, SessionType
from rostersync.sources.base import Record
from rostersync.sources.http.records import FieldNote, ItemRejected, Notes

SOURCE_SYSTEM = "clever"

#: Clever's grade words → CEDS grade codes (what OneRoster and matching use).
GRADES: dict[str, str] = {
    "InfantToddler": "IT",
    "Preschool": "PR",
    "PreKindergarten": "PK",
    "TransitionalKindergarten": "TK",
    "Kindergarten": "KG",
    **{str(n): f"{n:02d}" for n in range(1, 14)},
    "PostGraduate": "PS",
    "Ungraded": "UG",
    "Other": "Other",
}

_RACES = {
    "Caucasian": "white",
    "Asian": "asian",
    "Black or African American": "black_or_african_american",
    "American Indian": "american_indian_or_alaska_native",
    "Hawaiian or Other Pacific Islander": "native_hawaiian_or_other_pacific_islander",
    "Two or More Races": "two_or_more_races",
}
_SEX = {"M": "male", "F": "female", "X": "other"}
_RELATIVES = frozenset({"Grandparent", "Aunt/Uncle", "Sibling"})
_DOB = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s*$")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def clever_id(obj: Mapping[str, Any]) -> str:
    value = _text(obj.get("id")) if isinstance(obj, Mapping) else None
    if value is None:
        raise ItemRejected("id", "no Clever id")
    return value


def _modified(obj: Mapping[str, Any], notes: Notes) -> str | None:
    value = _text(obj.get("last_modified"))
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        notes.append(FieldNote("last_modified", "not a date-time", IssueAction.FIELD_DROPPED))
        return None


def _day(value: Any, column: str, notes: Notes) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        notes.append(FieldNote(column, "not a date", IssueAction.FIELD_DROPPED))
        return None


def _grade(value: Any) -> str | None:
    text = _text(value)
    return None if text is None else GRADES.get(text, text)


def _base(obj: Mapping[str, Any], notes: Notes) -> Record:
    return {
        "source_system": SOURCE_SYSTEM,
        "source_id": clever_id(obj),
        "status": "active",
        "date_last_modified": _modified(obj, notes),
        "extensions": {},
    }


def org_from_district(obj: Mapping[str, Any], notes: Notes) -> Record:
    record = _base(obj, notes)
    name = _text(obj.get("name"))
    if name is None:
        name = record["source_id"]
        notes.append(FieldNote("name", "no name: the Clever id is used", IssueAction.KEPT_DEFAULT))
    return {
        **record,
        "name": name,
        "type": OrgType.DISTRICT.value,
        "identifier": _text(obj.get("nces_id")) or _text(obj.get("mdr_number")),
        "parent_source_id": None,
    }


def org_from_school(obj: Mapping[str, Any], notes: Notes) -> Record:
    record = _base(obj, notes)
    name = _text(obj.get("name"))
    if name is None:
        raise ItemRejected("name", "a school with no name")
    extensions = {
        key: text
        for key in ("sis_id", "state_id", "nces_id", "school_number")
        if (text := _text(obj.get(key))) is not None
    }
    return {
        **record,
        "extensions": extensions,
        "name": name,
        "type": OrgType.SCHOOL.value,
        "identifier": _text(obj.get("school_number")) or _text(obj.get("sis_id")),
        "parent_source_id": _text(obj.get("district")),
    }


def session_from_term(obj: Mapping[str, Any], notes: Notes) -> Record:
    record = _base(obj, notes)
    title = _text(obj.get("name"))
    if title is None:
        title = record["source_id"]
        notes.append(FieldNote("name", "no name: the Clever id is used", IssueAction.KEPT_DEFAULT))
    start = _day(obj.get("start_date"), "start_date", notes)
    end = _day(obj.get("end_date"), "end_date", notes)
    return {
        **record,
        "title": title,
        "type": SessionType.TERM.value,
        "start_date": start,
        "end_date": end,
        "parent_source_id": None,
        "school_year": end[:4] if end else None,
    }


def course_from_course(obj: Mapping[str, Any], notes: Notes) -> Record:
    record = _base(obj, notes)
    number = _text(obj.get("number"))
    title = _text(obj.get("name")) or number
    if title is None:
        raise ItemRejected("name", "a course with neither name nor number")
    return {
        **record,
        "title": title,
        "course_code": number,
        "grades": [],
        "org_source_id": _text(obj.get("district")),
        "school_year_source_id": None,
        "subjects": [],
        "subject_codes": [],
    }


def class_from_section(obj: Mapping[str, Any], notes: Notes) -> Record:
    record = _base(obj, notes)
    school = _text(obj.get("school"))
    if school is None:
        raise ItemRejected("school", "a section with no school")
    number = _text(obj.get("section_number"))
    title = _text(obj.get("name")) or number
    if title is None:
        title = record["source_id"]
        notes.append(FieldNote("name", "no name: the Clever id is used", IssueAction.KEPT_DEFAULT))
    subject = _text(obj.get("subject"))
    grade = _grade(obj.get("grade"))
    term = _text(obj.get("term_id"))
    period = _text(obj.get("period"))
    sis_id = _text(obj.get("sis_id"))
    return {
        **record,
        "extensions": {"sis_id": sis_id} if sis_id else {},
        "title": title,
        "class_code": number,
        "class_type": (
            ClassType.HOMEROOM.value
            if subject == "homeroom/advisory"
            else ClassType.SCHEDULED.value
        ),
        "location": None,
        "grades": [grade] if grade else [],
        "course_source_id": _text(obj.get("course")),
        "school_source_id": school,
        "term_source_ids": [term] if term else [],
        "subjects": [subject] if subject else [],
        "subject_codes": [],
        "periods": [period] if period else [],
    }


def enrollment_id(section_id: str, user_id: str) -> str:
    return f"{section_id}-{user_id}"


def section_members(obj: Mapping[str, Any]) -> dict[str, Role]:
    """The section's members and their roles (a teacher listed as a student too counts
    as a teacher)."""
    members: dict[str, Role] = {}
    for key, role in (("students", Role.STUDENT), ("teachers", Role.TEACHER)):
        for user in obj.get(key) or []:
            if (user_id := _text(user)) is not None:
                members[user_id] = role
    if (teacher := _text(obj.get("teacher"))) is not None:
        members[teacher] = Role.TEACHER
    return members


def enrollments_from_section(obj: Mapping[str, Any]) -> list[Record]:
    section = clever_id(obj)
    school = _text(obj.get("school"))
    primary = _text(obj.get("teacher"))
    modified = _modified(obj, [])
    return [
        {
            "source_system": SOURCE_SYSTEM,
            "source_id": enrollment_id(section, user_id),
            "status": "active",
            "date_last_modified": modified,
            "extensions": {},
            "class_source_id": section,
            "school_source_id": school,
            "user_source_id": user_id,
            "role": role.value,
            "primary": (user_id == primary) if role is Role.TEACHER and primary else None,
            "begin_date": None,
            "end_date": None,
        }
        for user_id, role in section_members(obj).items()
    ]


def contact_students(obj: Mapping[str, Any]) -> list[str]:
    """The students a contact user is related to, in order, once each."""
    contact = (obj.get("roles") or {}).get("contact") or {}
    students: list[str] = []
    for relationship in contact.get("student_relationships") or []:
        if isinstance(relationship, Mapping):
            student = _text(relationship.get("student"))
            if student is not None and student not in students:
                students.append(student)
    return students


def _contact_role(contact: Mapping[str, Any]) -> Role:
    relationships = [
        _text(r.get("relationship"))
        for r in contact.get("student_relationships") or []
        if isinstance(r, Mapping)
    ]
    if "Parent" in relationships:
        return Role.PARENT
    if relationships and all(r in _RELATIVES for r in relationships):
        return Role.RELATIVE
    return Role.GUARDIAN


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def user_from_user(obj: Mapping[str, Any], notes: Notes, contacts: Iterable[str] = ()) -> Record:
    """A Clever user as a canonical user. ``contacts`` are the contact users related to
    this user when it is a student."""
    record = _base(obj, notes)
    roles: Mapping[str, Any] = obj.get("roles") or {}
    if not isinstance(roles, Mapping) or not any(roles.get(r) is not None for r in roles):
        raise ItemRejected("roles", "a user with no role")
    student = roles.get("student")
    contact = roles.get("contact")
    teacher = roles.get("teacher")
    admin = roles.get("district_admin")
    staff = roles.get("staff")
    source_role: str | None = None
    agents: list[str] = []
    schools: list[str | None] = []
    if student is not None:
        role, data = Role.STUDENT, student
        schools = [*(student.get("schools") or []), student.get("school")]
        agents = _unique(contacts)
    elif contact is not None:
        role, data, source_role = _contact_role(contact), contact, "contact"
        agents = contact_students(obj)
        schools = [_text(obj.get("district"))]
    elif teacher is not None:
        role, data = Role.TEACHER, teacher
        schools = [*(teacher.get("schools") or []), teacher.get("school")]
        schools += (staff or {}).get("schools") or []
    elif admin is not None:
        role, data, source_role = Role.ADMINISTRATOR, admin, "district_admin"
        schools = [_text(obj.get("district")), *((staff or {}).get("schools") or [])]
    elif staff is not None:
        role, data, source_role = Role.ADMINISTRATOR, staff, "staff"
        schools = list(staff.get("schools") or [])
    else:
        raise ItemRejected("roles", f"no role rostersync maps ({', '.join(sorted(roles))})")

    name = obj.get("name") or {}
    given = _text(name.get("first"))
    family = _text(name.get("last"))
    if given is None and family is not None and contact is not None and " " in family:
        # Clever keeps a contact's whole name in ``last``.
        given, family = family.rsplit(" ", 1)
    if given is None and family is None:
        raise ItemRejected("name", "a user with no name")

    email = _text(obj.get("email"))
    ids: list[tuple[str, str | None]] = [("clever_id", record["source_id"])]
    for source in (student, teacher, contact):
        if source is not None:
            ids.append(("sis_id", _text(source.get("sis_id"))))
    for source in (student, teacher):
        if source is not None:
            ids.append(("state_id", _text(source.get("state_id"))))
    if student is not None:
        ids.append(("student_number", _text(student.get("student_number"))))
    if teacher is not None:
        ids.append(("teacher_number", _text(teacher.get("teacher_number"))))
    if staff is not None:
        ids.append(("staff_id", _text(staff.get("staff_id"))))
    ids.append(("email", email))
    credentials = next(
        (
            (s.get("credentials") or {})
            for s in (student, teacher, staff)
            if s is not None and s.get("credentials")
        ),
        {},
    )
    username = _text(credentials.get("district_username"))
    ids.append(("district_username", username))
    user_ids: list[dict[str, str]] = []
    for kind, value in ids:
        if value is not None and {"type": kind, "identifier": value} not in user_ids:
            user_ids.append({"type": kind, "identifier": value})

    identifier = next(
        (
            value
            for kind, value in ids
            if value is not None
            and kind in ("student_number", "teacher_number", "staff_id", "sis_id")
        ),
        None,
    )
    grade = _grade(student.get("grade")) if student is not None else None
    return {
        **record,
        "enabled": True,
        "role": role.value,
        "source_role": source_role,
        "org_source_ids": _unique(_text(s) for s in schools),
        "username": username,
        "user_ids": user_ids,
        "given_name": given or "",
        "family_name": family or "",
        "middle_name": _text(name.get("middle")),
        "preferred_given_name": None,
        "preferred_family_name": None,
        "identifier": identifier,
        "email": email,
        "sms": None,
        "phone": _text(data.get("phone")) if contact is not None else None,
        "agent_source_ids": agents,
        "grades": [grade] if grade else [],
    }


def is_student(obj: Mapping[str, Any]) -> bool:
    return (obj.get("roles") or {}).get("student") is not None


def demographics_from_user(obj: Mapping[str, Any], notes: Notes) -> Record | None:
    """A student's demographics, or None when Clever shares none of them."""
    student = (obj.get("roles") or {}).get("student")
    if student is None:
        return None
    birth = None
    if (dob := _text(student.get("dob"))) is not None:
        match = _DOB.match(dob)
        try:
            if match is None:
                raise ValueError(dob)
            month, day, year = (int(part) for part in match.groups())
            birth = date(year, month, day).isoformat()
        except ValueError:
            notes.append(FieldNote("dob", "not a MM/DD/YYYY date", IssueAction.FIELD_DROPPED))
    sex = _SEX.get(_text(student.get("gender")) or "")
    race = _RACES.get(_text(student.get("race")) or "")
    hispanic = {"Y": True, "N": False}.get(_text(student.get("hispanic_ethnicity")) or "")
    if birth is None and sex is None and race is None and hispanic is None:
        return None
    record = _base(obj, [])  # its notes were made for the user already
    return {
        **record,
        "birth_date": birth,
        "sex": sex,
        "american_indian_or_alaska_native": None,
        "asian": None,
        "black_or_african_american": None,
        "native_hawaiian_or_other_pacific_islander": None,
        "white": None,
        "two_or_more_races": None,
        **({race: True} if race else {}),
        "hispanic_or_latino": hispanic,
        "country_of_birth_code": None,
        "state_of_birth_abbreviation": None,
        "city_of_birth": None,
        "public_school_residence_status": None,
    }
