"""The Wonde source's parts without sockets: the mapping of the recorded objects (and
their wrapped includes), paging by ``meta.pagination``, the region check and the spec."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from rostersync.models import Entity, Role, validate_record
from rostersync.sources.http import (
    HttpClient,
    PageRequest,
    RawPageWriter,
    SourceConfigError,
    SourceResponseError,
)
from rostersync.sources.wonde import WondeSpec
from rostersync.sources.wonde.fetch import WondeFetch, WondePaginator
from rostersync.sources.wonde.mapping import (
    ItemRejected,
    class_record,
    contact_role,
    demographics_from_student,
    employee_user,
    enrollments_from_class,
    org_from_school,
    student_user,
    wonde_moment,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "wonde"


def _recorded(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_recorded_objects_map_to_valid_records():
    school = _recorded("school.json")["data"]
    org = org_from_school(school)
    assert org["identifier"] == "10003" and org["extensions"]["mis"] == "SIMS"
    validate_record(Entity.ORGS, org)
    for student in _recorded("students.json")["data"]:
        validate_record(Entity.USERS, student_user(student, school["id"], []))
    for employee in _recorded("employees.json")["data"]:
        validate_record(Entity.USERS, employee_user(employee, school["id"], False))
    for klass in _recorded("classes.json")["data"]:
        validate_record(Entity.CLASSES, class_record(klass, school["id"], []))
    one = _recorded("employee.json")["data"]  # ``classes: {"data": []}``: included, none
    assert employee_user(one, school["id"], False)["role"] == "administrator"


def test_the_upn_comes_from_education_details_and_upi_is_kept_apart():
    student = {
        **_recorded("students.json")["data"][0],
        "legal_forename": "Adam",
        "forename": "Ads",
        "education_details": {"data": {"upn": "H801200000123", "candidate_number": "4321"}},
        "date_of_birth": {
            "date": "2011-04-03 00:00:00.000000",
            "timezone_type": 3,
            "timezone": "Europe/London",
        },
        "gender": "MALE",
    }
    user = student_user(student, "S1", ["C1", "C1"])
    ids = {i["type"]: i["identifier"] for i in user["user_ids"]}
    assert ids["upn"] == "H801200000123" and ids["candidate_number"] == "4321"
    assert ids["wonde_upi"] == student["upi"] and ids["mis_id"] == student["mis_id"]
    assert user["identifier"] == "H801200000123"
    assert user["given_name"] == "Adam" and user["preferred_given_name"] == "Ads"
    assert user["agent_source_ids"] == ["C1"]
    demographics = demographics_from_student(student, [])
    assert demographics is not None
    assert demographics["birth_date"] == "2011-04-03" and demographics["sex"] == "male"
    validate_record(Entity.DEMOGRAPHICS, demographics)


def test_dates_are_objects_with_a_timezone():
    moment = wonde_moment({"date": "2023-07-01 09:00:00.000000", "timezone": "Europe/London"})
    assert moment is not None and moment.utcoffset().total_seconds() == 3600


def test_contacts_roles_and_classes_members():
    assert contact_role(["Mother"]) is Role.PARENT
    assert contact_role(["Grandmother", "Aunt"]) is Role.RELATIVE
    assert contact_role(["Carer"]) is Role.GUARDIAN
    klass = {
        **_recorded("class.json")["data"],
        "students": {"data": [{"id": "S1"}, {"id": "S2"}]},
        "employees": {"data": [{"id": "E1"}]},
        "subject": {"data": {"name": "Mathematics", "code": "MA"}},
    }
    record = class_record(klass, "SCH", [])
    assert record["subjects"] == ["Mathematics"] and record["subject_codes"] == ["MA"]
    enrollments = enrollments_from_class(klass, "SCH")
    assert {(e["user_source_id"], e["role"]) for e in enrollments} == {
        ("S1", "student"),
        ("S2", "student"),
        ("E1", "teacher"),
    }
    with pytest.raises(ItemRejected):
        student_user({"id": "A1"}, "SCH", [])


def test_paging_follows_next_while_more():
    pager = WondePaginator(per_page=200)
    first = pager.first(PageRequest.of("/v1.0/schools/A1/students", {"include": "contacts"}))
    recorded = _recorded("students.json")
    following = pager.next(first, httpx.Response(200), recorded, 50)
    assert following is not None and following.param("page") == "2"
    assert following.param("include") == "contacts" and following.param("per_page") == "200"
    done = {"data": [], "meta": {"pagination": {"next": None, "more": False}}}
    assert pager.next(first, httpx.Response(200), done, 0) is None
    broken = {"data": [], "meta": {"pagination": {"next": None, "more": True}}}
    with pytest.raises(SourceResponseError):
        pager.next(first, httpx.Response(200), broken, 0)


def test_a_school_of_another_region_is_refused():
    school = _recorded("school.json")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=school)

    class Raw:
        def put_bytes(self, name: str, body: bytes) -> None:
            pass

    client = HttpClient(
        "https://api-ap-southeast-2.wonde.com", transport=httpx.MockTransport(handler)
    )
    fetch = WondeFetch(client, RawPageWriter(Raw()), "A1930499544", 50, 1, None)  # type: ignore[arg-type]
    with pytest.raises(SourceConfigError, match=r"from api\.wonde\.com"):
        fetch.school("api-ap-southeast-2.wonde.com")


def test_spec_rules():
    spec = WondeSpec(school_id="A1930499544")
    assert spec.base_url == "https://api.wonde.com" and spec.secret_name == "wonde_token"
    with pytest.raises(ValidationError):
        WondeSpec(school_id="A1930499544", base_url="http://api.wonde.com")
    with pytest.raises(ValidationError):
        WondeSpec(school_id="../etc")
