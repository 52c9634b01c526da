"""The inputs of matching: one flat record per person or class, on either side.

Both sides use the same shapes. On the source side ``key`` is the SIS's source id; on the
target side it is the app's id. The caller maps anything that must be comparable across
the two sides before calling (a school's source id to the school's app id or name; a
class's source-side teachers to their linked app ids).

Records are frozen slotted dataclasses rather than pydantic models: matching a large
district builds hundreds of thousands of them, and they carry no untrusted input of their
own (the canonical models were validated upstream).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from operator import attrgetter
from typing import TypeVar

import orjson

from rostersync.models import GUARDIAN_ROLES, STAFF_ROLES, User


class PersonKind(StrEnum):
    """Who a person record is; people of different kinds are never matched."""

    STUDENT = "student"
    TEACHER = "teacher"
    GUARDIAN = "guardian"


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonRecord:
    """A person as matching sees them.

    ``identifiers`` maps an identifier's name to its value on this side, e.g.
    ``{"sis_id": "S-0042", "state_id": "1234567", "student_number": "00042"}``; the email
    takes part in key discovery under the name ``"email"``. ``school`` is a school name or
    id already made comparable across both sides; ``grade`` is the grade as written
    (``"KG"``, ``"07"``). Blank strings count as missing.

    ``given_name_reading`` and ``family_name_reading`` are how the school reads the names,
    in kana (a Japanese SIS sends them beside names in kanji: ``name_readings``). A name
    with a reading is compared by it, the school's own word for its sound; a name in
    kanji without one only as written.
    """

    key: str
    kind: PersonKind = PersonKind.STUDENT
    given_name: str = ""
    family_name: str = ""
    middle_name: str | None = None
    preferred_given_name: str | None = None
    email: str | None = None
    birth_date: date | None = None
    grade: str | None = None
    school: str | None = None
    identifiers: Mapping[str, str] = field(default_factory=dict)
    given_name_reading: str | None = None
    family_name_reading: str | None = None


#: Where Japanese OneRoster files carry the kana reading of a user's names (``metadata.*``
#: columns, kept verbatim in ``extensions``), lower-cased: the given name's, the family
#: name's. The first that is there counts.
READING_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("metadata.phoneticgivenname", "metadata.phoneticfamilyname"),
    ("metadata.jp.kanagivenname", "metadata.jp.kanafamilyname"),
)


def name_readings(extensions: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """The (given, family) name readings among a user's ``extensions`` (any case of the
    column names of ``READING_EXTENSIONS``; a OneRoster REST ``metadata.jp`` object, kept
    as its JSON text, is read as its ``metadata.jp.*`` keys); None where blank or
    absent."""
    if not extensions:
        return None, None
    lowered = {name.lower(): value.strip() for name, value in extensions.items() if value}
    nested = lowered.get("metadata.jp", "")
    if nested.startswith("{"):
        try:
            values = orjson.loads(nested)
        except orjson.JSONDecodeError:
            values = None
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, str) and value.strip():
                    lowered.setdefault(f"metadata.jp.{key}".lower(), value.strip())
    given = next((lowered[g] for g, _ in READING_EXTENSIONS if lowered.get(g)), None)
    family = next((lowered[f] for _, f in READING_EXTENSIONS if lowered.get(f)), None)
    return given, family


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassRecord:
    """A class as matching sees it.

    ``teacher_keys`` are app (target) ids of the class's teachers on both sides: the caller
    maps the source-side teacher ids through the staff links made before classes are
    matched, and leaves out teachers not linked yet. ``start_date``/``end_date`` are the
    dates of the class's term(s).
    """

    key: str
    title: str = ""
    subject: str | None = None
    class_code: str | None = None
    teacher_keys: frozenset[str] = frozenset()
    start_date: date | None = None
    end_date: date | None = None
    school: str | None = None
    identifiers: Mapping[str, str] = field(default_factory=dict)


_Keyed = TypeVar("_Keyed", PersonRecord, ClassRecord)


def in_key_order(records: Iterable[_Keyed]) -> list[_Keyed]:
    """``records`` sorted by key: the one order matching works in, whatever order the
    caller gives them in (a district's export order changes from day to day, and a
    caller's set of ids iterates in an order of its process's string hashing).

    Everything a match computes follows the records' order somewhere: the sample of
    random pairs ``u`` is estimated from, the order in which floating-point sums add up,
    the ties between equal scores (a source's best target, a suggestion's alternatives).
    Matched in key order, the same records give the same outcome byte for byte, and a
    tie goes to the lowest key."""
    return sorted(records, key=attrgetter("key"))


def person_kind_of(user: User) -> PersonKind | None:
    """The matching kind of a canonical user; None for roles matching does not cover."""
    if user.role.value == PersonKind.STUDENT.value:
        return PersonKind.STUDENT
    if user.role in STAFF_ROLES:
        return PersonKind.TEACHER
    if user.role in GUARDIAN_ROLES:
        return PersonKind.GUARDIAN
    return None


def person_from_user(
    user: User,
    *,
    birth_date: date | None = None,
    school: str | None = None,
    key: str | None = None,
) -> PersonRecord:
    """A canonical user as a matching record (source side by default: keyed by its source id).

    The identifiers offered to key discovery are the user's ``identifier`` (as
    ``"identifier"``), ``username``, the source id (as ``"source_id"``) and every
    ``user_ids`` entry under its own type. ``birth_date`` comes from the user's
    demographics record and ``school`` from the caller's school mapping, since neither is
    on the user record itself; the names' readings from its ``extensions``
    (``name_readings``).
    """
    identifiers: dict[str, str] = {"source_id": user.source_id}
    if user.identifier:
        identifiers["identifier"] = user.identifier
    if user.username:
        identifiers["username"] = user.username
    for user_id in user.user_ids:
        identifiers.setdefault(user_id.type, user_id.identifier)
    kind = person_kind_of(user)
    if kind is None:
        raise ValueError(f"role {user.role.value!r} is not matched as a person")
    given_reading, family_reading = name_readings(user.extensions)
    return PersonRecord(
        key=key or user.source_id,
        kind=kind,
        given_name=user.given_name,
        family_name=user.family_name,
        middle_name=user.middle_name,
        preferred_given_name=user.preferred_given_name,
        email=user.email,
        birth_date=birth_date,
        grade=user.grades[0] if user.grades else None,
        school=school,
        identifiers=identifiers,
        given_name_reading=given_reading,
        family_name_reading=family_reading,
    )
