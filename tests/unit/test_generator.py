"""The synthetic district generator: determinism, shape, integrity and the next-day diff."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from rostersync.generator import (
    FILE_COLUMNS,
    GRADES,
    DistrictStats,
    MutationSummary,
    generate_district,
    mutate_next_day,
)

STUDENTS = 1200
RATE = 0.01
GUARDIAN_ROLES = {"guardian", "parent", "relative"}

Row = dict[str, str]
Bundle = dict[str, list[Row]]


def read_bundle(directory: Path) -> Bundle:
    bundle: Bundle = {}
    for name in FILE_COLUMNS:
        with (directory / name).open(newline="", encoding="utf-8") as f:
            bundle[name] = list(csv.DictReader(f))
    return bundle


def by_id(rows: list[Row]) -> dict[str, Row]:
    return {r["sourcedId"]: r for r in rows}


def split(cell: str) -> list[str]:
    return [v for v in cell.split(",") if v]


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def day1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DistrictStats]:
    out = tmp_path_factory.mktemp("day1")
    return out, generate_district(out, students=STUDENTS, seed=7)


@pytest.fixture(scope="module")
def day2(
    day1: tuple[Path, DistrictStats], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, MutationSummary]:
    out = tmp_path_factory.mktemp("day2")
    return out, mutate_next_day(day1[0], out, seed=3, rate=RATE)


def assert_integrity(bundle: Bundle) -> None:
    """Every reference resolves, ids are unique and guardian links are symmetric."""
    for name, rows in bundle.items():
        ids = [r["sourcedId"] for r in rows]
        assert len(ids) == len(set(ids)), f"duplicate sourcedId in {name}"
    orgs = by_id(bundle["orgs.csv"])
    schools = {k for k, r in orgs.items() if r["type"] == "school"}
    assert schools
    assert all(not r["parentSourcedId"] or r["parentSourcedId"] in orgs for r in orgs.values())
    sessions = by_id(bundle["academicSessions.csv"])
    terms = {k for k, r in sessions.items() if r["type"] == "term"}
    assert all(not r["parentSourcedId"] or r["parentSourcedId"] in sessions
               for r in sessions.values())  # fmt: skip
    courses = by_id(bundle["courses.csv"])
    for course in courses.values():
        assert course["orgSourcedId"] in orgs
        assert course["schoolYearSourcedId"] in sessions
    classes = by_id(bundle["classes.csv"])
    for cls in classes.values():
        assert cls["schoolSourcedId"] in schools
        assert cls["courseSourcedId"] in courses
        assert courses[cls["courseSourcedId"]]["orgSourcedId"] == cls["schoolSourcedId"]
        assert split(cls["termSourcedIds"]) and set(split(cls["termSourcedIds"])) <= terms
    users = by_id(bundle["users.csv"])
    for user in users.values():
        assert split(user["orgSourcedIds"]) and set(split(user["orgSourcedIds"])) <= set(orgs)
        for agent in split(user["agentSourcedIds"]):
            assert user["sourcedId"] in split(users[agent]["agentSourcedIds"]), "one-way link"
            assert (user["role"] == "student") != (users[agent]["role"] == "student")
    primary_teachers: Counter[str] = Counter()
    per_student: Counter[str] = Counter()
    for e in bundle["enrollments.csv"]:
        assert e["classSourcedId"] in classes
        assert e["userSourcedId"] in users
        assert e["role"] == users[e["userSourcedId"]]["role"]
        assert e["schoolSourcedId"] == classes[e["classSourcedId"]]["schoolSourcedId"]
        if e["role"] == "teacher" and e["primary"] == "true":
            primary_teachers[e["classSourcedId"]] += 1
        if e["role"] == "student":
            per_student[e["userSourcedId"]] += 1
    assert all(primary_teachers[c] == 1 for c in classes), "a class without one primary teacher"
    students = {k for k, r in users.items() if r["role"] == "student"}
    assert set(per_student) == students
    assert set(per_student.values()) == {6}
    assert all(split(users[s]["agentSourcedIds"]) for s in students), "a student without guardian"
    assert {r["sourcedId"] for r in bundle["demographics.csv"]} == students


# --- day one ------------------------------------------------------------------------------


def test_same_arguments_give_identical_bytes(tmp_path: Path) -> None:
    first = generate_district(tmp_path / "a", students=300, seed=5)
    second = generate_district(tmp_path / "b", students=300, seed=5)
    assert first == second
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")


def test_another_seed_gives_another_district(tmp_path: Path) -> None:
    generate_district(tmp_path / "a", students=300, seed=5)
    generate_district(tmp_path / "b", students=300, seed=6)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert a["manifest.csv"] == b["manifest.csv"]
    assert all(a[name] != b[name] for name in FILE_COLUMNS)
    ids_a = {r["sourcedId"] for r in read_bundle(tmp_path / "a")["users.csv"]}
    ids_b = {r["sourcedId"] for r in read_bundle(tmp_path / "b")["users.csv"]}
    assert not ids_a & ids_b


def test_files_have_the_oneroster_columns_and_manifest(
    day1: tuple[Path, DistrictStats],
) -> None:
    directory, _ = day1
    for name, columns in FILE_COLUMNS.items():
        with (directory / name).open(newline="", encoding="utf-8") as f:
            assert tuple(next(csv.reader(f))) == columns
    with (directory / "manifest.csv").open(newline="", encoding="utf-8") as f:
        manifest = dict(csv.reader(f))
    assert manifest["manifest.version"] == "1.0"
    assert manifest["oneroster.version"] == "1.1"
    for entity in ("orgs", "academicSessions", "courses", "classes", "users", "enrollments",
                   "demographics"):  # fmt: skip
        assert manifest[f"file.{entity}"] == "bulk"
    assert manifest["file.results"] == manifest["file.lineItems"] == "absent"
    # Multi-valued cells are comma-separated inside one quoted cell.
    raw_users = (directory / "users.csv").read_bytes().decode("utf-8")
    assert ',"{SIS:' in raw_users
    assert "\r\n" in raw_users


def test_sizes_follow_the_request(day1: tuple[Path, DistrictStats]) -> None:
    directory, stats = day1
    bundle = read_bundle(directory)
    assert stats.rows == {name: len(rows) for name, rows in bundle.items()}
    assert stats.total_bytes == sum(p.stat().st_size for p in directory.iterdir())
    roles = Counter(r["role"] for r in bundle["users.csv"])
    guardians = sum(roles[r] for r in GUARDIAN_ROLES)
    assert roles["student"] == stats.students == STUDENTS
    assert roles["teacher"] == stats.teachers
    assert abs(stats.teachers - STUDENTS / 15) < STUDENTS / 15 * 0.15
    assert roles["administrator"] == stats.administrators >= 1
    assert guardians == stats.guardians
    assert 1.35 < guardians / STUDENTS < 1.65
    assert stats.schools == 3
    assert len(bundle["academicSessions.csv"]) == 3
    homerooms = [c for c in bundle["classes.csv"] if c["classType"] == "homeroom"]
    assert 0 < len(homerooms) < len(bundle["classes.csv"])


@pytest.mark.parametrize("schools", [1, 2, 7])
def test_school_count_can_be_chosen(tmp_path: Path, schools: int) -> None:
    stats = generate_district(tmp_path, students=200, seed=2, schools=schools)
    bundle = read_bundle(tmp_path)
    assert stats.schools == schools
    assert Counter(r["type"] for r in bundle["orgs.csv"]) == {"district": 1, "school": schools}
    assert {c["grades"] for c in bundle["classes.csv"]} <= set(GRADES)
    assert_integrity(bundle)


def test_day_one_is_referentially_intact(day1: tuple[Path, DistrictStats]) -> None:
    bundle = read_bundle(day1[0])
    assert_integrity(bundle)
    assert {r["status"] for rows in bundle.values() for r in rows} == {"active"}
    assert {r["dateLastModified"] for rows in bundle.values() for r in rows} == {
        "2026-09-01T06:00:00Z"
    }


def test_birth_dates_fit_the_grade(day1: tuple[Path, DistrictStats]) -> None:
    bundle = read_bundle(day1[0])
    grade_of = {r["sourcedId"]: GRADES.index(r["grades"]) for r in bundle["users.csv"]
                if r["role"] == "student"}  # fmt: skip
    on_time = 0
    for row in bundle["demographics.csv"]:
        born = date.fromisoformat(row["birthDate"])
        age = 2026 - born.year - ((born.month, born.day) > (9, 1))  # age on 1 September
        expected = 5 + grade_of[row["sourcedId"]]
        assert expected - 1 <= age <= expected + 1
        on_time += age == expected
        assert row["sex"] in {"female", "male"}
    assert on_time > 0.9 * STUDENTS


def test_names_and_contacts_look_real(day1: tuple[Path, DistrictStats]) -> None:
    users = read_bundle(day1[0])["users.csv"]
    family = {u["familyName"] for u in users}
    given = {u["givenName"] for u in users}
    assert len(family) > 150 and len(given) > 150
    assert any(not n.isascii() for n in family) and any(not n.isascii() for n in given)
    assert any("-" in n for n in family)
    assert any(" " in n for n in given)
    assert any("'" in n for n in family)
    guardians = [u for u in users if u["role"] in GUARDIAN_ROLES]
    with_email = sum(1 for g in guardians if g["email"])
    assert 0 < with_email < len(guardians)
    staff_and_students = [u for u in users if u["role"] not in GUARDIAN_ROLES]
    assert all(u["email"] and u["identifier"] and u["userIds"] for u in staff_and_students)
    passwords = sum(1 for u in users if u["password"])
    assert 0 < passwords < len(users) / 2


# --- the next day -------------------------------------------------------------------------


def test_next_day_is_deterministic(
    day1: tuple[Path, DistrictStats], day2: tuple[Path, MutationSummary], tmp_path: Path
) -> None:
    again = mutate_next_day(day1[0], tmp_path, seed=3, rate=RATE)
    assert again == day2[1]
    assert file_bytes(tmp_path) == file_bytes(day2[0])


def test_each_kind_of_change_happens_as_often_as_asked(
    day2: tuple[Path, MutationSummary],
) -> None:
    summary = day2[1]
    expected = round(RATE * STUDENTS)
    assert summary.day == "2026-09-02T06:00:00Z"
    for kind in ("renamed", "added", "added_guardians", "removed", "moved_enrollments",
                 "guardian_changed"):  # fmt: skip
        assert len(getattr(summary, kind)) == expected, kind
    touched = [*summary.renamed, *summary.removed,
               *(c.student_id for c in summary.guardian_changed)]  # fmt: skip
    assert len(touched) == len(set(touched)), "kinds overlap"


def test_next_day_is_referentially_intact(day2: tuple[Path, MutationSummary]) -> None:
    bundle = read_bundle(day2[0])
    assert_integrity(bundle)
    assert day2[1].rows == {name: len(rows) for name, rows in bundle.items()}


def test_user_changes_are_exactly_the_summary(
    day1: tuple[Path, DistrictStats], day2: tuple[Path, MutationSummary]
) -> None:
    summary = day2[1]
    before = by_id(read_bundle(day1[0])["users.csv"])
    after = by_id(read_bundle(day2[0])["users.csv"])

    assert set(before) - set(after) == set(summary.removed)
    assert set(after) - set(before) == set(summary.added) | set(summary.added_guardians)
    changed = {k for k in set(before) & set(after) if before[k] != after[k]}
    expected = set(summary.renamed) | set(summary.unlinked_guardians)
    for c in summary.guardian_changed:
        expected |= {c.student_id, c.old_guardian_id, c.new_guardian_id}
    assert changed == expected
    assert all(after[k]["dateLastModified"] == summary.day for k in changed)
    untouched = set(before) & set(after) - changed
    assert all(after[k]["dateLastModified"] == "2026-09-01T06:00:00Z" for k in untouched)

    for sid in summary.renamed:
        old, new = before[sid], after[sid]
        name_changes = [f for f in ("givenName", "familyName") if old[f] != new[f]]
        assert len(name_changes) == 1
        rest = set(old) - {"givenName", "familyName", "dateLastModified"}
        assert all(old[f] == new[f] for f in rest)

    for c in summary.guardian_changed:
        agents = split(after[c.student_id]["agentSourcedIds"])
        assert c.new_guardian_id in agents and c.old_guardian_id not in agents
        assert c.old_guardian_id in split(before[c.student_id]["agentSourcedIds"])
        assert c.student_id not in split(after[c.old_guardian_id]["agentSourcedIds"])
        assert c.student_id in split(after[c.new_guardian_id]["agentSourcedIds"])

    for sid in summary.removed:
        for guardian in split(before[sid]["agentSourcedIds"]):
            assert guardian in after  # guardians stay
            assert guardian in summary.unlinked_guardians
            assert sid not in split(after[guardian]["agentSourcedIds"])

    for sid, gid in zip(summary.added, summary.added_guardians, strict=True):
        assert after[sid]["role"] == "student"
        assert after[gid]["role"] in GUARDIAN_ROLES
        assert split(after[sid]["agentSourcedIds"]) == [gid]
        assert split(after[gid]["agentSourcedIds"]) == [sid]
        assert after[sid]["dateLastModified"] == after[gid]["dateLastModified"] == summary.day


def test_enrollment_and_demographic_changes_are_exactly_the_summary(
    day1: tuple[Path, DistrictStats], day2: tuple[Path, MutationSummary]
) -> None:
    summary = day2[1]
    old_bundle, new_bundle = read_bundle(day1[0]), read_bundle(day2[0])
    before = by_id(old_bundle["enrollments.csv"])
    after = by_id(new_bundle["enrollments.csv"])
    classes = by_id(new_bundle["classes.csv"])
    removed, added = set(summary.removed), set(summary.added)

    gone = {k for k, e in before.items() if e["userSourcedId"] in removed}
    assert set(before) - set(after) == gone | {m.old_id for m in summary.moved_enrollments}
    arrived = {k for k, e in after.items() if e["userSourcedId"] in added}
    assert set(after) - set(before) == arrived | {m.new_id for m in summary.moved_enrollments}
    assert all(before[k] == after[k] for k in set(before) & set(after))

    for old_id, new_id in summary.moved_enrollments:
        old, new = before[old_id], after[new_id]
        assert old["userSourcedId"] == new["userSourcedId"]
        assert old["classSourcedId"] != new["classSourcedId"]
        old_school = classes[old["classSourcedId"]]["schoolSourcedId"]
        assert classes[new["classSourcedId"]]["schoolSourcedId"] == old_school
        assert new["schoolSourcedId"] == old_school
        assert new["dateLastModified"] == summary.day
        assert new["beginDate"] == "2026-09-02"

    demographics_before = {r["sourcedId"] for r in old_bundle["demographics.csv"]}
    demographics_after = {r["sourcedId"] for r in new_bundle["demographics.csv"]}
    assert demographics_before - demographics_after == removed
    assert demographics_after - demographics_before == added


def test_days_chain_with_fresh_ids(day2: tuple[Path, MutationSummary], tmp_path: Path) -> None:
    day3 = mutate_next_day(day2[0], tmp_path, seed=3, rate=RATE)
    assert day3.day == "2026-09-03T06:00:00Z"
    assert not set(day3.added) & set(day2[1].added)
    assert_integrity(read_bundle(tmp_path))


def test_bad_arguments_are_refused(day1: tuple[Path, DistrictStats], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_district(tmp_path, students=0)
    with pytest.raises(ValueError):
        generate_district(tmp_path, students=10, schools=0)
    with pytest.raises(ValueError):
        mutate_next_day(day1[0], tmp_path, rate=0)
    with pytest.raises(ValueError):
        mutate_next_day(day1[0], day1[0])
