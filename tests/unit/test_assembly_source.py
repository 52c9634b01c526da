"""The Assembly source's parts without sockets: the mapping of the documented shapes,
paging by the list envelope, the spec's rules."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from rostersync.models import Entity, validate_record
from rostersync.sources.assembly import AssemblySpec
from rostersync.sources.assembly.fetch import ListPaginator, http_date
from rostersync.sources.assembly.mapping import (
    ItemRejected,
    class_from_group,
    demographics_from_student,
    enrollments_from_group,
    org_from_school,
    staff_user,
    student_user,
)
from rostersync.sources.http import PageRequest
from tests.servers.assembly import AssemblySchool


def test_documented_shapes_map_to_valid_records():
    school = AssemblySchool()
    org = org_from_school(school.school)
    assert org["source_id"] == "136789" and org["extensions"]["mis_provider"] == "Arbor"
    validate_record(Entity.ORGS, org)
    for student in school.records["students"].values():
        user = student_user(student, "136789")
        validate_record(Entity.USERS, user)
        assert user["source_id"] == f"student-{student['id']}"
        assert user["identifier"] == student["upn"]
        demographics = demographics_from_student(student, [])
        assert demographics is not None
        validate_record(Entity.DEMOGRAPHICS, demographics)
    for staff in school.records["staff_members"].values():
        validate_record(Entity.USERS, staff_user(staff, "136789"))
    for kind in ("teaching_groups", "registration_groups"):
        for group in school.records[kind].values():
            validate_record(Entity.CLASSES, class_from_group(kind, group, "136789", []))
            for enrollment in enrollments_from_group(kind, group, "136789", None, []):
                validate_record(Entity.ENROLLMENTS, enrollment)


def test_ids_are_assemblys_and_the_kinds_do_not_collide():
    school = AssemblySchool()
    teaching = class_from_group("teaching_groups", school.records["teaching_groups"][40], "s", [])
    registration = class_from_group(
        "registration_groups", school.records["registration_groups"][40], "s", []
    )
    assert teaching["source_id"] == "tg-40" and registration["source_id"] == "rg-40"
    student = school.records["students"][5003]
    user = student_user({**student, "upn": "CHANGED000000"}, "s")
    assert user["source_id"] == "student-5003"  # a new UPN is the same pupil
    ids = {i["type"] for i in user["user_ids"]}
    assert ids == {"assembly_id", "upn", "former_upn", "uln", "mis_id", "pan"}
    members = enrollments_from_group(
        "teaching_groups", school.records["teaching_groups"][42], "s", [5010, 5011], []
    )
    assert {m["user_source_id"] for m in members} == {"student-5010", "student-5011", "staff-302"}
    with pytest.raises(ItemRejected):
        student_user({"id": 1}, "s")


def test_paging_follows_next_page():
    pager = ListPaginator(per_page=4)
    first = pager.first(PageRequest("/students"))
    assert first.param("page") == "1" and first.param("per_page") == "4"
    body = {"object": "list", "next_page": 2, "data": [1, 2, 3, 4]}
    following = pager.next(first, httpx.Response(200), body, 4)
    assert following is not None and following.param("page") == "2"
    assert pager.next(following, httpx.Response(200), {"next_page": None}, 2) is None


def test_spec_rules_and_dates():
    spec = AssemblySpec()
    assert spec.access_secret == "assembly_access_token" and spec.api_version == "1.1"
    with pytest.raises(ValidationError):
        AssemblySpec(base_url="http://api.assembly.education")
    with pytest.raises(ValidationError):
        AssemblySpec(base_url="https://api.assembly.education/v1")
    assert http_date(datetime(2025, 9, 1, 8, 0, tzinfo=UTC)) == "Mon, 01 Sep 2025 08:00:00 GMT"
