"""An app that existed before its SIS was connected, made from a generated bundle.

Its teachers, students and classes were typed in by hand: some names carry typos, some
birth dates have day and month swapped, a few students left for another school (absent
from the SIS) and some SIS students never made it into the app. Used by
``rostersync demo --existing``, tests and benchmarks; the ground truth says which app
record is which source record.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

COLUMNS = (
    "app_id",
    "kind",
    "given_name",
    "family_name",
    "email",
    "birth_date",
    "grade",
    "school",
    "id:student_number",
    "title",
    "subject",
    "class_code",
    "teacher_app_id",
    "start_date",
    "end_date",
)


@dataclass
class ExistingApp:
    """What was written, and the truth: app id → the source id it is (None: app only)."""

    path: Path
    truth: dict[str, str | None] = field(default_factory=dict)
    typos: list[str] = field(default_factory=list)
    app_only: list[str] = field(default_factory=list)
    sis_only: list[str] = field(default_factory=list)


def _typo(name: str, rng: random.Random) -> str:
    if len(name) < 4:
        return name + "e"
    i = rng.randrange(1, len(name) - 1)
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def build_existing_app(
    bundle: Path,
    out_csv: Path,
    *,
    seed: int = 3,
    typo_share: float = 0.08,
    missing_share: float = 0.05,
    doubtful_share: float = 0.3,
) -> ExistingApp:
    """Write the app's records for ``bundle`` (a generated district) to ``out_csv``.

    ``doubtful_share`` of the records with a typo carry two slips (the family name and
    the birth year): the evidence left is real doubt, for an admin to confirm."""
    rng = random.Random(seed)
    users = _rows(bundle / "users.csv")
    births = {d["sourcedId"]: d["birthDate"] for d in _rows(bundle / "demographics.csv")}
    schools = {o["sourcedId"]: o["name"] for o in _rows(bundle / "orgs.csv")}
    terms = {s["sourcedId"]: s for s in _rows(bundle / "academicSessions.csv")}
    out = ExistingApp(out_csv)
    rows: list[dict[str, str]] = []
    teacher_app: dict[str, str] = {}
    for user in users:
        role = user["role"]
        if role not in {"teacher", "student"}:
            continue
        school = next((schools[o] for o in user["orgSourcedIds"].split(",") if o in schools), "")
        if role == "student" and rng.random() < missing_share:
            out.sis_only.append(user["sourcedId"])
            continue
        app_id = f"app-{len(rows) + 1:05d}"
        given, family = user["givenName"], user["familyName"]
        birth = births.get(user["sourcedId"], "")
        if role == "student" and rng.random() < typo_share:
            out.typos.append(app_id)
            if rng.random() < doubtful_share:
                # Two slips in one record: the family name and the birth year.
                family = _typo(family, rng)
                if birth:
                    birth = f"{int(birth[:4]) + 1}{birth[4:]}"
            elif rng.random() < 0.5:
                family = _typo(family, rng)
            elif birth and int(birth[8:10]) <= 12:
                birth = f"{birth[:4]}-{birth[8:10]}-{birth[5:7]}"  # day and month swapped
            else:
                given = _typo(given, rng)
        rows.append(
            {
                "app_id": app_id,
                "kind": role,
                "given_name": given,
                "family_name": family,
                "email": user["email"] if role == "teacher" else "",
                "birth_date": birth,
                "grade": user["grades"].split(",")[0] if user["grades"] else "",
                "school": school,
                # The app kept the SIS student number for most students (typed in by hand).
                "id:student_number": user["identifier"]
                if role == "student" and rng.random() < 0.8
                else "",
            }
        )
        out.truth[app_id] = user["sourcedId"]
        if role == "teacher":
            teacher_app[user["sourcedId"]] = app_id
    for n in range(3):  # students who left: in the app, not in the SIS
        app_id = f"app-gone-{n + 1}"
        rows.append(
            {
                "app_id": app_id,
                "kind": "student",
                "given_name": rng.choice(["Wren", "Idris", "Saoirse"]),
                "family_name": f"Departed{n + 1}",
                "birth_date": date(2015, n + 1, 3).isoformat(),
                "grade": "05",
                "school": next(iter(schools.values())),
            }
        )
        out.truth[app_id] = None
        out.app_only.append(app_id)
    # Each teacher's homerooms, created in the app by hand.
    teacher_of: dict[str, str] = {}
    for enrollment in _rows(bundle / "enrollments.csv"):
        if enrollment["role"] == "teacher":
            teacher_of.setdefault(enrollment["classSourcedId"], enrollment["userSourcedId"])
    for klass in _rows(bundle / "classes.csv"):
        teacher = teacher_of.get(klass["sourcedId"])
        if klass["classType"] != "homeroom" or teacher not in teacher_app:
            continue
        term_ids = [t for t in klass["termSourcedIds"].split(",") if t in terms]
        app_id = f"app-class-{len(out.truth) + 1:05d}"
        rows.append(
            {
                "app_id": app_id,
                "kind": "class",
                "title": klass["title"],
                "subject": klass["subjects"].split(",")[0],
                "class_code": klass["classCode"],
                "teacher_app_id": teacher_app[teacher],
                "start_date": min((terms[t]["startDate"] for t in term_ids), default=""),
                "end_date": max((terms[t]["endDate"] for t in term_ids), default=""),
                "school": schools.get(klass["schoolSourcedId"], ""),
            }
        )
        out.truth[app_id] = klass["sourcedId"]
    with out_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out
