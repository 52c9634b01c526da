"""OneRoster REST objects as the rows of the CSV binding, so that both bindings go
through one set of row rules (``sources.oneroster_csv.reader``: statuses, required
fields, references, dates, booleans, 1.2 roles, password fields never read).

The JSON binding and the CSV binding carry the same model: a ``GUIDRef``
(``{"sourcedId", "type", "href"}``) is the CSV ``...SourcedId`` column, a list of them or
of strings is a comma-joined cell, ``userIds`` is ``{type:identifier},...``, a boolean (or
1.2's ``"true"``/``"false"``) is ``true``/``false``, ``metadata`` keys are ``metadata.*``
columns. A 1.2 user's ``roles[]`` become rows of ``roles.csv`` (the reader's rule picks the
primary role and orders the orgs), ``primaryOrg`` is ``primaryOrgSourcedId``, and
``preferredFirstName``/``preferredLastName`` are the preferred given and family names.
``userMasterIdentifier``, ``preferredMiddleName`` and ``pronouns`` are written under
their CSV names; the row rules decide what is kept of them. ``password`` is never written.

A folder of such files is a bundle ``OneRosterBundle`` reads as it reads a dropped one.
Each row's first physical line is mapped back to the object's position in its listing,
so that an issue points at the object as received.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from rostersync.models import Entity

#: Entity → its REST collection.
COLLECTION: dict[Entity, str] = {
    Entity.ORGS: "orgs",
    Entity.ACADEMIC_SESSIONS: "academicSessions",
    Entity.COURSES: "courses",
    Entity.CLASSES: "classes",
    Entity.USERS: "users",
    Entity.ENROLLMENTS: "enrollments",
    Entity.DEMOGRAPHICS: "demographics",
}
FILE: dict[Entity, str] = {
    Entity.ORGS: "orgs.csv",
    Entity.ACADEMIC_SESSIONS: "academicSessions.csv",
    Entity.COURSES: "courses.csv",
    Entity.CLASSES: "classes.csv",
    Entity.USERS: "users.csv",
    Entity.ENROLLMENTS: "enrollments.csv",
    Entity.DEMOGRAPHICS: "demographics.csv",
}
ROLES_FILE = "roles.csv"

_COMMON = ("sourcedId", "status", "dateLastModified")

#: CSV column → the REST property it comes from.
_FIELDS: dict[Entity, tuple[tuple[str, str], ...]] = {
    Entity.ORGS: (
        ("name", "name"),
        ("type", "type"),
        ("identifier", "identifier"),
        ("parentSourcedId", "parent"),
    ),
    Entity.ACADEMIC_SESSIONS: (
        ("title", "title"),
        ("type", "type"),
        ("startDate", "startDate"),
        ("endDate", "endDate"),
        ("parentSourcedId", "parent"),
        ("schoolYear", "schoolYear"),
    ),
    Entity.COURSES: (
        ("schoolYearSourcedId", "schoolYear"),
        ("title", "title"),
        ("courseCode", "courseCode"),
        ("grades", "grades"),
        ("orgSourcedId", "org"),
        ("subjects", "subjects"),
        ("subjectCodes", "subjectCodes"),
    ),
    Entity.CLASSES: (
        ("title", "title"),
        ("grades", "grades"),
        ("courseSourcedId", "course"),
        ("classCode", "classCode"),
        ("classType", "classType"),
        ("location", "location"),
        ("schoolSourcedId", "school"),
        ("termSourcedIds", "terms"),
        ("subjects", "subjects"),
        ("subjectCodes", "subjectCodes"),
        ("periods", "periods"),
    ),
    Entity.USERS: (
        ("enabledUser", "enabledUser"),
        ("orgSourcedIds", "orgs"),
        ("role", "role"),
        ("username", "username"),
        ("userIds", "userIds"),
        ("givenName", "givenName"),
        ("familyName", "familyName"),
        ("middleName", "middleName"),
        ("preferredGivenName", "preferredFirstName"),
        ("preferredMiddleName", "preferredMiddleName"),
        ("preferredFamilyName", "preferredLastName"),
        ("identifier", "identifier"),
        ("email", "email"),
        ("sms", "sms"),
        ("phone", "phone"),
        ("agentSourcedIds", "agents"),
        ("grades", "grades"),
        ("primaryOrgSourcedId", "primaryOrg"),
        ("userMasterIdentifier", "userMasterIdentifier"),
        ("pronouns", "pronouns"),
    ),
    Entity.ENROLLMENTS: (
        ("classSourcedId", "class"),
        ("schoolSourcedId", "school"),
        ("userSourcedId", "user"),
        ("role", "role"),
        ("primary", "primary"),
        ("beginDate", "beginDate"),
        ("endDate", "endDate"),
    ),
    Entity.DEMOGRAPHICS: (
        ("birthDate", "birthDate"),
        ("sex", "sex"),
        ("americanIndianOrAlaskaNative", "americanIndianOrAlaskaNative"),
        ("asian", "asian"),
        ("blackOrAfricanAmerican", "blackOrAfricanAmerican"),
        ("nativeHawaiianOrOtherPacificIslander", "nativeHawaiianOrOtherPacificIslander"),
        ("white", "white"),
        ("demographicRaceTwoOrMoreRaces", "demographicRaceTwoOrMoreRaces"),
        ("hispanicOrLatinoEthnicity", "hispanicOrLatinoEthnicity"),
        ("countryOfBirthCode", "countryOfBirthCode"),
        ("stateOfBirthAbbreviation", "stateOfBirthAbbreviation"),
        ("cityOfBirth", "cityOfBirth"),
        ("publicSchoolResidenceStatus", "publicSchoolResidenceStatus"),
    ),
}
#: Users' columns that 1.2 moved to roles.csv.
_ROLE_COLUMNS = frozenset({"role", "orgSourcedIds"})
_ROLES_HEADER = (
    *_COMMON,
    "userSourcedId",
    "roleType",
    "role",
    "orgSourcedId",
    "beginDate",
    "endDate",
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def cell(value: Any) -> str:
    """A REST value as the CSV binding writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return cell(value.get("sourcedId"))
    if isinstance(value, list):
        return ",".join(text for item in value if (text := cell(item)))
    return str(value)


def user_ids_cell(value: Any) -> str:
    if not isinstance(value, list):
        return cell(value)
    return ",".join(
        f"{{{cell(item.get('type'))}:{cell(item.get('identifier'))}}}"
        for item in value
        if isinstance(item, Mapping)
    )


def metadata_cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


@dataclass
class WrittenFile:
    """One CSV file written: its physical lines mapped to listing positions."""

    name: str
    rows: int = 0
    #: First physical line of each data row → the object's position in its listing.
    positions: dict[int, int] = field(default_factory=dict)


def last_copies(objects: Iterable[Any]) -> tuple[dict[str, int], set[str]]:
    """Each sourcedId's last position (1-based) among ``objects``, and the metadata keys."""
    last: dict[str, int] = {}
    metadata: set[str] = set()
    for position, obj in enumerate(objects, start=1):
        if not isinstance(obj, Mapping):
            continue
        sourced_id = obj.get("sourcedId")
        if isinstance(sourced_id, str) and sourced_id.strip():
            last[sourced_id] = position
        meta = obj.get("metadata")
        if isinstance(meta, Mapping):
            metadata.update(str(key) for key in meta)
    return last, metadata


def uses_roles(users: Iterable[Any]) -> bool:
    """Whether the users carry 1.2 ``roles[]`` (some 1.2 servers keep 1.1 shapes)."""
    return any(isinstance(u, Mapping) and isinstance(u.get("roles"), list) for u in users)


class _LineCounter:
    """A CSV writer that knows the physical line each row starts on."""

    def __init__(self, handle: Any) -> None:
        self.writer = csv.writer(handle, lineterminator="\n")
        self.line = 0

    def write(self, row: list[str]) -> int:
        start = self.line + 1
        self.writer.writerow(row)
        self.line += 1 + sum(len(_LINE_BREAK.findall(value)) for value in row)
        return start


def write_entity(
    folder: Path,
    entity: Entity,
    objects: Iterable[Any],
    reread: Iterable[Any],
    *,
    with_roles: bool,
) -> tuple[WrittenFile, WrittenFile | None]:
    """Write ``entity``'s CSV file (and, for 1.2 users, roles.csv) from its listing.

    ``objects`` and ``reread`` are two passes over the same listing: the first finds
    each record's last copy, the second writes those copies."""
    last, metadata = last_copies(objects)
    metadata_keys = sorted(metadata)
    fields = [
        (column, prop)
        for column, prop in _FIELDS[entity]
        if not (with_roles and column in _ROLE_COLUMNS)
    ]
    header = [*_COMMON, *(c for c, _ in fields), *(f"metadata.{k}" for k in metadata_keys)]
    written = WrittenFile(FILE[entity])
    roles = WrittenFile(ROLES_FILE) if with_roles else None
    with (folder / FILE[entity]).open("w", encoding="utf-8", newline="") as out:
        rows = _LineCounter(out)
        rows.write(header)
        role_out = (folder / ROLES_FILE).open("w", encoding="utf-8", newline="") if roles else None
        try:
            role_rows = _LineCounter(role_out) if role_out is not None else None
            if role_rows is not None:
                role_rows.write(list(_ROLES_HEADER))
            for position, obj in enumerate(reread, start=1):
                if not isinstance(obj, Mapping):
                    continue
                sourced_id = obj.get("sourcedId")
                if (
                    isinstance(sourced_id, str)
                    and sourced_id.strip()
                    and last.get(sourced_id) != position
                ):
                    continue  # an earlier copy of a record listed again later
                row = [cell(obj.get(key)) for key in _COMMON]
                for column, prop in fields:
                    value = obj.get(prop)
                    row.append(user_ids_cell(value) if column == "userIds" else cell(value))
                meta = obj.get("metadata")
                meta = meta if isinstance(meta, Mapping) else {}
                row.extend(metadata_cell(meta.get(key)) for key in metadata_keys)
                written.positions[rows.write(row)] = position
                written.rows += 1
                if role_rows is not None and roles is not None:
                    for role_row in _role_rows(obj):
                        roles.positions[role_rows.write(role_row)] = position
                        roles.rows += 1
        finally:
            if role_out is not None:
                role_out.close()
    return written, roles


def _role_rows(user: Mapping[str, Any]) -> Iterator[list[str]]:
    sourced_id = cell(user.get("sourcedId"))
    for number, role in enumerate(user.get("roles") or [], start=1):
        if not isinstance(role, Mapping):
            continue
        yield [
            f"{sourced_id}-role-{number}",
            cell(user.get("status")),
            cell(user.get("dateLastModified")),
            sourced_id,
            cell(role.get("roleType")),
            cell(role.get("role")),
            cell(role.get("org")),
            cell(role.get("beginDate")),
            cell(role.get("endDate")),
        ]


def write_manifest(folder: Path, version: str, modes: Mapping[str, str]) -> None:
    """``manifest.csv``: the version and each file's mode (bulk, delta or absent)."""
    with (folder / "manifest.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["propertyName", "value"])
        writer.writerow(["manifest.version", "1.0"])
        writer.writerow(["oneroster.version", version])
        for name, mode in modes.items():
            writer.writerow([f"file.{name}", mode])
