"""The OneRoster CSV reader: the real bundles in shared/data, and one small bundle per rule."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rostersync.errors import BundleError
from rostersync.models import ENTITY_ORDER, Entity, IssueAction, RowIssue, validate_record
from rostersync.sources.bundle import FolderBundle, ZipBundle
from rostersync.sources.oneroster_csv.reader import (
    FILE_NAMES,
    EntityReadSummary,
    FileMode,
    OneRosterBundle,
    _scan_column,
)

Record = dict[str, Any]

BUNDLES = ["lepo-en-1.1", "moodle-full-1.1", "moodle-minimal-1.1", "oat-sa-1.1"]


@pytest.fixture(scope="module")
def oneroster_data() -> Path:
    """The public OneRoster bundles in ../shared/data beside the checkout."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster"
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path}")
    return path


class Read:
    """Everything one read of a bundle gave."""

    def __init__(self, files: Any, **kwargs: Any) -> None:
        self.issues: list[RowIssue] = []
        self.bundle = OneRosterBundle(files, self.issues.append, **kwargs)
        self.records: dict[Entity, list[Record]] = {}
        self.summaries: dict[Entity, EntityReadSummary] = {}
        for entity in ENTITY_ORDER:
            self.records[entity] = list(self.bundle.iter_records(entity))
            self.summaries[entity] = self.bundle.summary(entity)
        for entity, records in self.records.items():
            for record in records:
                dumped = validate_record(entity, record).model_dump(mode="json")
                assert dumped == record
                assert list(dumped) == list(record), "keys must follow the model's order"

    def by_id(self, entity: Entity) -> dict[str, Record]:
        return {r["source_id"]: r for r in self.records[entity]}

    def about(self, file: str, **match: Any) -> list[RowIssue]:
        return [
            i
            for i in self.issues
            if i.file == file and all(getattr(i, k) == v for k, v in match.items())
        ]


def bundle(
    tmp_path: Path, files: Mapping[str, str | bytes], manifest: Any = "auto"
) -> FolderBundle:
    """A folder bundle of ``files``; by default with a manifest marking each file bulk."""
    folder = tmp_path / "bundle"
    folder.mkdir(parents=True)
    if manifest == "auto":
        lines = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.1"]
        lines += [f"file.{name.removesuffix('.csv')},bulk" for name in files]
        manifest = "\n".join(lines) + "\n"
    if manifest is not None:
        (folder / "manifest.csv").write_text(manifest)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, newline="")
    return FolderBundle(folder)


ORGS = "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
USERS = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades\n"
)


def user(sid: str, **cells: str) -> str:
    values = {
        "status": "active",
        "dateLastModified": "",
        "enabledUser": "true",
        "orgSourcedIds": "o1",
        "role": "student",
        "username": sid,
        "userIds": "",
        "givenName": "Ann",
        "familyName": "Lee",
        "middleName": "",
        "identifier": "",
        "email": "",
        "sms": "",
        "phone": "",
        "agentSourcedIds": "",
        "grades": "",
    } | cells
    return sid + "," + ",".join(values.values()) + "\n"


ONE_ORG = ORGS + "o1,active,,School,school,,\n"


# --- the real bundles ----------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLES)
def test_real_bundles_read_and_every_record_validates(oneroster_data: Path, name: str) -> None:
    read = Read(FolderBundle(oneroster_data / name))
    assert read.bundle.version == "1.1"
    assert sum(len(r) for r in read.records.values()) > 0
    for entity, summary in read.summaries.items():
        assert summary.records == len(read.records[entity])
        assert summary.unreadable_rows == 0


def test_zip_bundle_reads_like_the_folder(oneroster_data: Path) -> None:
    zipped = ZipBundle(oneroster_data / "lepo-en-1.1" / "oneroster.zip")
    try:
        from_zip = Read(zipped)
    finally:
        zipped.close()
    from_folder = Read(FolderBundle(oneroster_data / "lepo-en-1.1"))
    assert from_zip.records == from_folder.records
    assert len(from_zip.records[Entity.ENROLLMENTS]) == 30


def test_passwords_appear_nowhere(oneroster_data: Path) -> None:
    out = []
    for name in BUNDLES:
        read = Read(FolderBundle(oneroster_data / name))
        out.append(json.dumps({e.value: r for e, r in read.records.items()}))
        out.extend(i.model_dump_json() for i in read.issues)
        notes = [i for i in read.issues if i.file == "users.csv" and "password" in i.message]
        assert len(notes) == 1 and notes[0].action is IssueAction.NOTED
        assert notes[0].value is None
    assert "Password1-" not in "\n".join(out)
    oat_users = Read(FolderBundle(oneroster_data / "oat-sa-1.1")).records[Entity.USERS]
    assert all("studentPassword" not in key for u in oat_users for key in u["extensions"])


def test_oat_sa_quirks(oneroster_data: Path) -> None:
    read = Read(FolderBundle(oneroster_data / "oat-sa-1.1"))
    dangling = read.about("classes.csv", column="termSourcedIds")
    assert [(i.line, i.value, i.source_id, i.action) for i in dangling] == [
        (2, "1", "class1", IssueAction.FIELD_DROPPED),
        (3, "1", "class2", IssueAction.FIELD_DROPPED),
        (4, "1", "class3", IssueAction.FIELD_DROPPED),
    ]
    classes = read.by_id(Entity.CLASSES)
    assert classes["class1"]["term_source_ids"] == []
    assert classes["class1"]["grades"] == ["2"]  # the 1.0 header "grade"
    assert classes["class1"]["date_last_modified"] == "2017-04-05T00:00:00Z"
    orgs = read.by_id(Entity.ORGS)
    assert orgs["12345"]["date_last_modified"] == "2017-05-06T08:01:05Z"
    # The parent comes later in the same file.
    assert orgs["12345"]["parent_source_id"] == "54321"
    assert orgs["12345"]["extensions"] == {
        "metadata.classification": "Classification 1",
        "metadata.gender": "mixed",
        "metadata.boarding": "FALSE",
    }
    users = read.by_id(Entity.USERS)
    assert users["user1"]["extensions"] == {
        "ext_tao_userMotherName": "metadata.value1",
        "ext_tao_userFatherName": "metadata.value2",
    }
    assert users["user1"]["user_ids"] == []
    assert read.about("users.csv", column="userId", action=IssueAction.FIELD_DROPPED)
    assert read.summaries[Entity.DEMOGRAPHICS].rows == 0
    assert read.summaries[Entity.ACADEMIC_SESSIONS].mode is FileMode.BULK
    # Headers that are not OneRoster 1.1 but are known spellings raise nothing.
    assert not [i for i in read.issues if "not a OneRoster column" in i.message]


def test_moodle_quirks(oneroster_data: Path) -> None:
    read = Read(FolderBundle(oneroster_data / "moodle-full-1.1"))
    sessions = read.by_id(Entity.ACADEMIC_SESSIONS)
    assert sessions["as-grp-222-2345"]["status"] == "tobedeleted"
    fixed = read.about("academicSessions.csv", action=IssueAction.VALUE_FIXED)
    assert [(i.line, i.value, i.source_id) for i in fixed] == [(4, "inactive", "as-grp-222-2345")]
    # Bare dates in dateLastModified are midnight UTC, no issue.
    assert sessions["as-grp-222-2345"]["date_last_modified"] == "2023-05-01T00:00:00Z"
    assert sessions["as-trm-222-1235"]["date_last_modified"] == "2023-05-01T18:25:43.511000Z"
    assert not [i for i in read.issues if i.column == "dateLastModified"]
    users = read.by_id(Entity.USERS)
    assert users["usr-222-1234561"]["user_ids"] == [
        {"type": "LDAP", "identifier": "12"},
        {"type": "LTI", "identifier": "15"},
        {"type": "Fed", "identifier": "23"},
    ]
    assert users["usr-222-1234561"]["role"] == "parent"
    assert all(u["enabled"] is True for u in users.values())
    classes = read.by_id(Entity.CLASSES)
    assert classes["cls-222-123456"]["class_type"] == "scheduled"
    assert classes["cls-222-123478"]["term_source_ids"] == ["as-trm-222-1234", "as-trm-222-1235"]
    assert classes["cls-222-123456"]["subjects"] == ["Science", "Physics", "Biology"]
    # The org's parent is not in orgs.csv.
    assert read.by_id(Entity.ORGS)["org-sch-222-456"]["parent_source_id"] is None
    assert read.about("orgs.csv", column="parentSourcedId", value="org-sch-222-3456")


def test_lepo_manifest_typo_is_noted(oneroster_data: Path) -> None:
    read = Read(FolderBundle(oneroster_data / "lepo-en-1.1"))
    typo = read.about("manifest.csv", value="fiel.demographics")
    assert len(typo) == 1 and typo[0].action is IssueAction.NOTED and typo[0].line == 10
    assert read.bundle.modes[Entity.DEMOGRAPHICS] is FileMode.ABSENT
    assert read.summaries[Entity.DEMOGRAPHICS].missing is False
    status = read.about("users.csv", column="status")
    assert len(status) == 1 and "20 rows" in status[0].message


# --- headers -------------------------------------------------------------------------


def test_headers_are_tolerant_and_unknown_columns_reported_once(tmp_path: Path) -> None:
    header = (
        " SourcedID , STATUS,dataLastModified,enabledUser,orgSourcedIds,Role,username,userId,"
        "given_name,familyName,prefferedGivenName,agents,grade,favouriteColour,"
        "ext_vendor_x,metadata.note,Pronouns\n"
    )
    rows = "".join(
        f"u{i},active,2024-01-0{i},1,o1,Teacher,u{i},{{SIS:{i}}},Ann,Lee,Annie,,3,blue,x{i},,they\n"
        for i in (1, 2, 3)
    )
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": header + rows}))
    u1 = read.by_id(Entity.USERS)["u1"]
    assert u1["role"] == "teacher"
    assert u1["given_name"] == "Ann"
    assert u1["preferred_given_name"] == "Annie"
    assert u1["user_ids"] == [{"type": "SIS", "identifier": "1"}]
    assert u1["grades"] == ["3"]
    assert u1["date_last_modified"] == "2024-01-01T00:00:00Z"
    assert u1["extensions"] == {"ext_vendor_x": "x1"}
    unknown = [i for i in read.issues if i.action is IssueAction.FIELD_DROPPED]
    assert [(i.column, i.line) for i in unknown] == [("favouriteColour", 1)]
    # 1.2's pronouns are known but deliberately not kept: no issue, no value anywhere.
    assert "they" not in json.dumps(read.records[Entity.USERS])


def test_repeated_column_keeps_the_first(tmp_path: Path) -> None:
    courses = "sourcedId,title,grades,grade\nc1,Course,1,2\n"
    read = Read(bundle(tmp_path, {"courses.csv": courses}))
    assert read.records[Entity.COURSES][0]["grades"] == ["1"]
    (issue,) = read.about("courses.csv", action=IssueAction.FIELD_DROPPED)
    assert "grade" in issue.message


def test_missing_required_column_skips_every_row_with_one_issue(tmp_path: Path) -> None:
    users = "sourcedId,role,givenName\nu1,student,Ann\nu2,student,Bo\n"
    read = Read(bundle(tmp_path, {"users.csv": users}))
    assert read.records[Entity.USERS] == []
    assert read.summaries[Entity.USERS].skipped_ids == ["u1", "u2"]
    skipped = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert len(skipped) == 1 and "familyName" in skipped[0].message


def test_no_sourced_id_column_makes_every_row_unreadable(tmp_path: Path) -> None:
    read = Read(bundle(tmp_path, {"orgs.csv": "name,type\nA,school\nB,school\n"}))
    summary = read.summaries[Entity.ORGS]
    assert (summary.rows, summary.records, summary.unreadable_rows) == (2, 0, 2)


# --- passwords -----------------------------------------------------------------------


def test_password_columns_are_discarded_and_ragged_rows_with_them_skipped(tmp_path: Path) -> None:
    users = (
        "sourcedId,role,givenName,familyName,password,ext_app_userPassword\n"
        "u1,student,Ann,Lee,hunter2,sekrit\n"
        "u2,student,Bo,Ray,hunter3\n"  # a cell short: the rest may have shifted
        "u3,student,Cy,Fox,hunter4,sekrit,extra\n"
    )
    read = Read(bundle(tmp_path, {"users.csv": users}))
    assert list(read.by_id(Entity.USERS)) == ["u1"]
    assert read.summaries[Entity.USERS].skipped_ids == ["u2", "u3"]
    dumped = json.dumps(read.records[Entity.USERS]) + "".join(
        i.model_dump_json() for i in read.issues
    )
    for secret in ("hunter", "sekrit"):
        assert secret not in dumped
    notes = [i for i in read.issues if "password" in i.message.lower()]
    assert len([i for i in notes if i.action is IssueAction.NOTED]) == 1


# --- values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-05-01", "2023-05-01T00:00:00Z"),
        ("2023-05-01T18:25:43.511Z", "2023-05-01T18:25:43.511000Z"),
        ("2023-05-01T18:25:43+02:00", "2023-05-01T16:25:43Z"),
        ("2023-05-01 08:01:05", "2023-05-01T08:01:05Z"),
        ("5/1/2023", "2023-05-01T00:00:00Z"),
        ("05/01/2023", "2023-05-01T00:00:00Z"),
    ],
)
def test_date_last_modified_formats(tmp_path: Path, raw: str, expected: str) -> None:
    read = Read(bundle(tmp_path, {"orgs.csv": ORGS + f"o1,active,{raw},School,school,,\n"}))
    assert read.records[Entity.ORGS][0]["date_last_modified"] == expected
    assert not read.about("orgs.csv", column="dateLastModified")


def test_unreadable_dates_are_reported_and_left_empty(tmp_path: Path) -> None:
    sessions = (
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,"
        "schoolYear\n"
        "s1,active,yesterday,Fall,term,13/45/2020,2021-01-31T10:00:00-05:00,,2021\n"
        "s2,active,,Spring,Term,2/1/2021,,,\n"
    )
    read = Read(bundle(tmp_path, {"academicSessions.csv": sessions}))
    s1, s2 = read.records[Entity.ACADEMIC_SESSIONS]
    assert (s1["date_last_modified"], s1["start_date"], s1["end_date"]) == (
        None,
        None,
        "2021-01-31",
    )
    assert (s2["type"], s2["start_date"], s2["end_date"]) == ("term", "2021-02-01", None)
    bad = read.about("academicSessions.csv", action=IssueAction.KEPT_DEFAULT, source_id="s1")
    assert {(i.column, i.value) for i in bad} == {
        ("dateLastModified", "yesterday"),
        ("startDate", "13/45/2020"),
    }
    # Blank fields OneRoster requires are summarized once per column, not per row.
    summary = read.about("academicSessions.csv", column="endDate")
    assert len(summary) == 1 and summary[0].line == 3 and summary[0].source_id is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("FALSE", False), ("1", True), ("0", False), ("yes", True), ("No", False)],
)
def test_booleans(tmp_path: Path, raw: str, expected: bool) -> None:
    read = Read(
        bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": USERS + user("u1", enabledUser=raw)})
    )
    assert read.records[Entity.USERS][0]["enabled"] is expected


def test_unreadable_boolean_keeps_the_default(tmp_path: Path) -> None:
    read = Read(
        bundle(
            tmp_path, {"orgs.csv": ONE_ORG, "users.csv": USERS + user("u1", enabledUser="maybe")}
        )
    )
    assert read.records[Entity.USERS][0]["enabled"] is True
    (issue,) = read.about("users.csv", column="enabledUser")
    assert (issue.value, issue.action, issue.line) == ("maybe", IssueAction.KEPT_DEFAULT, 2)


def test_roles_and_enumerations(tmp_path: Path) -> None:
    users = USERS + "".join(
        [
            user("u1", role="siteAdministrator"),
            user("u2", role="PRINCIPAL"),
            user("u3", role="janitor"),
            user("u4", role="Guardian"),
        ]
    )
    orgs = ORGS + "o1,active,,School,school,,\no2,active,,Dept,Department,,\no3,,,X,campus,,\n"
    classes = "sourcedId,title,classType,schoolSourcedId\nc1,Maths,Homeroom,o1\nc2,Art,lecture,o1\n"
    read = Read(bundle(tmp_path, {"orgs.csv": orgs, "users.csv": users, "classes.csv": classes}))
    found = read.by_id(Entity.USERS)
    assert (found["u1"]["role"], found["u1"]["source_role"]) == (
        "administrator",
        "siteAdministrator",
    )
    assert (found["u2"]["role"], found["u2"]["source_role"]) == ("administrator", "principal")
    assert (found["u4"]["role"], found["u4"]["source_role"]) == ("guardian", None)
    assert "u3" not in found and read.summaries[Entity.USERS].skipped_ids == ["u3"]
    assert read.by_id(Entity.ORGS)["o2"]["type"] == "department"
    assert read.summaries[Entity.ORGS].skipped_ids == ["o3"]
    classes_found = read.by_id(Entity.CLASSES)
    assert classes_found["c1"]["class_type"] == "homeroom"
    assert classes_found["c2"]["class_type"] is None
    assert read.about("classes.csv", column="classType", value="lecture")


def test_blank_required_fields(tmp_path: Path) -> None:
    users = USERS + user("u1", givenName="") + user("u2", role="") + "," * 16 + "\n"
    users += ",,,true,o1,student,x,,Ann,Lee,,,,,,,\n"
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}))
    summary = read.summaries[Entity.USERS]
    assert read.records[Entity.USERS] == []
    assert summary.skipped_ids == ["u1", "u2"]
    # The all-blank row counts as a blank line; the one with data but no id is unreadable.
    assert (summary.rows, summary.unreadable_rows) == (3, 1)


def test_status_rules(tmp_path: Path) -> None:
    orgs = ORGS + (
        "o1,,,A,school,,\no2,Active,,B,school,,\no3,inactive,,C,school,,\n"
        "o4,ToBeDeleted,,D,school,,\no5,archived,,E,school,,\no6,,,F,school,,\n"
    )
    read = Read(bundle(tmp_path, {"orgs.csv": orgs}))
    statuses = {sid: r["status"] for sid, r in read.by_id(Entity.ORGS).items()}
    assert statuses == {
        "o1": "active",
        "o2": "active",
        "o3": "tobedeleted",
        "o4": "tobedeleted",
        "o6": "active",
    }
    assert read.summaries[Entity.ORGS].skipped_ids == ["o5"]
    blank = read.about("orgs.csv", column="status", action=IssueAction.KEPT_DEFAULT)
    assert len(blank) == 1 and blank[0].message.startswith("2 rows")


def test_duplicates_keep_the_first(tmp_path: Path) -> None:
    users = USERS + user("u1", givenName="First") + user("u2") + user("u1", givenName="Second")
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}))
    assert read.by_id(Entity.USERS)["u1"]["given_name"] == "First"
    (dup,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (dup.line, dup.value) == (4, "u1")
    assert read.summaries[Entity.USERS].skipped_ids == []


def test_multi_valued_cells_and_user_ids(tmp_path: Path) -> None:
    users = (
        USERS
        + user(
            "u1",
            grades='" 09, 10 ,,11"',
            userIds='"{LDAP:12}, {LTI: 15}"',
            orgSourcedIds='"o1,o1b"',
        )
        + user("u2", userIds="{broken")
    )
    orgs = ORGS + "o1,,,A,school,,\no1b,,,B,school,,\n"
    read = Read(bundle(tmp_path, {"orgs.csv": orgs, "users.csv": users}))
    u1, u2 = read.records[Entity.USERS]
    assert u1["grades"] == ["09", "10", "11"]
    assert u1["org_source_ids"] == ["o1", "o1b"]
    assert u1["user_ids"] == [
        {"type": "LDAP", "identifier": "12"},
        {"type": "LTI", "identifier": "15"},
    ]
    assert u2["user_ids"] == []
    assert read.about("users.csv", column="userIds", value="{broken")


# --- references ----------------------------------------------------------------------


def test_dangling_references(tmp_path: Path) -> None:
    files = {
        "orgs.csv": ORGS + "o1,,,School,school,,\no2,,,Other,school,,o9\n",
        "academicSessions.csv": "sourcedId,title,type,parentSourcedId\nt1,Fall,term,y9\n",
        "courses.csv": "sourcedId,title,orgSourcedId,schoolYearSourcedId\nk1,Maths,o9,t1\n",
        "classes.csv": (
            "sourcedId,title,courseSourcedId,schoolSourcedId,termSourcedIds\n"
            'c1,Maths A,k9,o1,"t1,t9"\n'
            "c2,Maths B,k1,o9,t1\n"
        ),
        "users.csv": USERS
        + user("u1", orgSourcedIds='"o1,o9"', agentSourcedIds='"g1,g9"')
        + user("g1", role="guardian", agentSourcedIds="u1"),
        "enrollments.csv": (
            "sourcedId,classSourcedId,schoolSourcedId,userSourcedId,role\n"
            "e1,c1,o1,u1,student\ne2,c9,o1,u1,student\ne3,c1,o1,u9,student\n"
            "e4,c1,o9,u1,student\ne5,c2,o1,u1,student\n"
        ),
    }
    read = Read(bundle(tmp_path, files))
    assert read.by_id(Entity.ORGS)["o2"]["parent_source_id"] is None
    assert read.by_id(Entity.ACADEMIC_SESSIONS)["t1"]["parent_source_id"] is None
    course = read.by_id(Entity.COURSES)["k1"]
    assert (course["org_source_id"], course["school_year_source_id"]) == (None, "t1")
    classes = read.by_id(Entity.CLASSES)
    assert classes["c1"]["course_source_id"] is None
    assert classes["c1"]["term_source_ids"] == ["t1"]
    assert "c2" not in classes and read.summaries[Entity.CLASSES].skipped_ids == ["c2"]
    users = read.by_id(Entity.USERS)
    assert users["u1"]["org_source_ids"] == ["o1"]
    # g1 comes after u1 in the file: still found.
    assert users["u1"]["agent_source_ids"] == ["g1"]
    assert users["g1"]["agent_source_ids"] == ["u1"]
    enrollments = read.by_id(Entity.ENROLLMENTS)
    assert enrollments["e4"]["school_source_id"] is None
    # c2 was skipped, but it exists at the source: an enrollment in it is kept.
    assert set(enrollments) == {"e1", "e4", "e5"}
    assert read.summaries[Entity.ENROLLMENTS].skipped_ids == ["e2", "e3"]
    dropped = {
        (i.file, i.column, i.value) for i in read.issues if i.action is IssueAction.FIELD_DROPPED
    }
    assert dropped == {
        ("orgs.csv", "parentSourcedId", "o9"),
        ("academicSessions.csv", "parentSourcedId", "y9"),
        ("courses.csv", "orgSourcedId", "o9"),
        ("classes.csv", "courseSourcedId", "k9"),
        ("classes.csv", "termSourcedIds", "t9"),
        ("users.csv", "orgSourcedIds", "o9"),
        ("users.csv", "agentSourcedIds", "g9"),
        ("enrollments.csv", "schoolSourcedId", "o9"),
    }


def test_references_are_not_checked_against_delta_or_absent_files(tmp_path: Path) -> None:
    manifest = (
        "propertyName,value\nfile.orgs,delta\nfile.classes,bulk\nfile.users,bulk\n"
        "file.enrollments,bulk\n"
    )
    files = {
        "orgs.csv": ONE_ORG,
        "classes.csv": "sourcedId,title,schoolSourcedId,courseSourcedId\nc1,A,o9,k9\n",
        "users.csv": USERS + user("u1", orgSourcedIds="o9"),
        "enrollments.csv": "sourcedId,classSourcedId,userSourcedId,role\ne1,c1,u1,student\n",
    }
    read = Read(bundle(tmp_path, files, manifest))
    assert read.by_id(Entity.CLASSES)["c1"]["school_source_id"] == "o9"
    assert read.by_id(Entity.CLASSES)["c1"]["course_source_id"] == "k9"
    assert read.by_id(Entity.USERS)["u1"]["org_source_ids"] == ["o9"]
    assert "e1" in read.by_id(Entity.ENROLLMENTS)


def test_deleted_rows_skip_reference_checks(tmp_path: Path) -> None:
    files = {
        "orgs.csv": ONE_ORG,
        "classes.csv": "sourcedId,status,title,schoolSourcedId\nc1,tobedeleted,A,o9\n",
    }
    read = Read(bundle(tmp_path, files))
    assert read.by_id(Entity.CLASSES)["c1"]["status"] == "tobedeleted"


def test_demographics(tmp_path: Path) -> None:
    demographics = (
        "userSourcedId,status,dateLastModified,birthdate,sex,americanIndianOrAlaskaNative,asian,"
        "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
        "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
        "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus\n"
        "u1,active,,2012-03-04,female,false,TRUE,,,no,,1,US,NH,Concord,\n"
        "u9,active,,2012-03-04,male,,,,,,,,,,,\n"
    )
    files = {"orgs.csv": ONE_ORG, "users.csv": USERS + user("u1"), "demographics.csv": demographics}
    read = Read(bundle(tmp_path, files))
    (d,) = read.records[Entity.DEMOGRAPHICS]
    assert d["source_id"] == "u1"
    assert d["birth_date"] == "2012-03-04"
    assert (d["american_indian_or_alaska_native"], d["asian"], d["white"]) == (False, True, False)
    assert (d["black_or_african_american"], d["hispanic_or_latino"]) == (None, True)
    assert (d["country_of_birth_code"], d["city_of_birth"]) == ("US", "Concord")
    assert read.summaries[Entity.DEMOGRAPHICS].skipped_ids == ["u9"]


# --- rows and lines ------------------------------------------------------------------


def test_ragged_rows(tmp_path: Path) -> None:
    orgs = ORGS + (
        "o1,active,,Short,school\n"  # two cells short: read as blank
        "o2,active,,Trailing,school,,,,\n"  # extra cells, all blank
        "o3,active,,Shifted,school,,,spill\n"  # extra cells with data
        "o4,active,,Fine,school,,\n"
    )
    read = Read(bundle(tmp_path, {"orgs.csv": orgs}))
    assert set(read.by_id(Entity.ORGS)) == {"o1", "o2", "o4"}
    assert read.summaries[Entity.ORGS].skipped_ids == ["o3"]
    assert [(i.line, i.action) for i in read.about("orgs.csv", source_id="o1")] == [
        (2, IssueAction.ROW_KEPT)
    ]
    assert [i.line for i in read.about("orgs.csv", action=IssueAction.NOTED)] == [3]


def test_line_numbers_count_quoted_line_breaks_and_blank_lines(tmp_path: Path) -> None:
    users = (
        USERS
        + user("u1", middleName='"two\nlines"')
        + "\n"
        + user("u2", role="janitor")
        + user("u3", middleName='"three\r\nline\r\nbreaks"')
        + user("u4", role="janitor").rstrip("\n")  # no newline at the end
    )
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}))
    lines = {i.source_id: i.line for i in read.about("users.csv", action=IssueAction.ROW_SKIPPED)}
    assert lines == {"u2": 5, "u4": 9}
    assert read.by_id(Entity.USERS)["u1"]["middle_name"] == "two\nlines"
    assert read.summaries[Entity.USERS].rows == 4


def test_header_only_and_empty_files(tmp_path: Path) -> None:
    read = Read(bundle(tmp_path, {"orgs.csv": ORGS.rstrip("\n"), "users.csv": ""}))
    assert read.summaries[Entity.ORGS].mode is FileMode.BULK
    assert read.summaries[Entity.ORGS].rows == 0
    # An empty file (no header) is taken as absent: nothing may be archived for it.
    assert read.summaries[Entity.USERS].mode is FileMode.ABSENT
    assert read.bundle.modes[Entity.USERS] is FileMode.ABSENT
    assert read.about("users.csv", action=IssueAction.FILE_SKIPPED)


def test_unparseable_rest_of_file_counts_as_unreadable(tmp_path: Path) -> None:
    big = "x" * (csv.field_size_limit() + 10)
    orgs = ORGS + "o1,,,A,school,,\n" + f'o2,,,"{big},school,,\n'
    read = Read(bundle(tmp_path, {"orgs.csv": orgs}))
    summary = read.summaries[Entity.ORGS]
    assert (summary.records, summary.unreadable_rows) == (1, 1)
    assert read.about("orgs.csv", action=IssueAction.FILE_SKIPPED)


def test_bytes_that_are_not_utf8_are_read_as_windows_1252(tmp_path: Path) -> None:
    orgs = (ORGS + "o1,,,École Sainte-Thérèse,school,,\n").encode("cp1252")
    read = Read(bundle(tmp_path, {"orgs.csv": b"\xef\xbb\xbf" + orgs}))
    assert read.records[Entity.ORGS][0]["name"] == "École Sainte-Thérèse"
    (note,) = read.about("orgs.csv", action=IssueAction.NOTED)
    assert "Windows-1252" in note.message


# --- manifest and modes --------------------------------------------------------------


def test_no_manifest_reads_everything_as_bulk(tmp_path: Path) -> None:
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG}, manifest=None))
    assert read.bundle.modes[Entity.ORGS] is FileMode.BULK
    assert read.bundle.modes[Entity.USERS] is FileMode.ABSENT
    assert [i.action for i in read.issues if i.file == "manifest.csv"] == [IssueAction.READ_AS_BULK]


def test_an_empty_bundle_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError):
        OneRosterBundle(bundle(tmp_path, {"notes.txt": "hello"}, manifest=None), print)


def test_manifest_modes(tmp_path: Path) -> None:
    manifest = (
        "propertyName,value\noneroster.version,1.2\nfile.orgs,bulk\nfile.users,bulk\n"
        "file.classes,absent\nfile.courses,sometimes\nfile.enrollments,delta\n"
        "file.gradebook,bulk\n"
    )
    files = {
        "orgs.csv": ONE_ORG,
        "classes.csv": "sourcedId,title,schoolSourcedId\nc1,A,o1\n",
        "courses.csv": "sourcedId,title\nk1,Maths\n",
        "enrollments.csv": "sourcedId,classSourcedId,userSourcedId,role\n",
    }
    read = Read(bundle(tmp_path, files, manifest))
    modes = read.bundle.modes
    assert read.bundle.version == "1.2"
    assert modes[Entity.USERS] is FileMode.ABSENT
    assert read.summaries[Entity.USERS].missing is True
    assert read.summaries[Entity.USERS].file == "users.csv"
    assert read.about("manifest.csv", entity=Entity.USERS, action=IssueAction.FILE_SKIPPED)
    assert modes[Entity.CLASSES] is FileMode.ABSENT and read.records[Entity.CLASSES] == []
    assert read.about("classes.csv", action=IssueAction.FILE_SKIPPED)
    # A mode that is not bulk/delta/absent is read as delta: nothing archived on a guess.
    assert modes[Entity.COURSES] is FileMode.DELTA
    assert modes[Entity.ENROLLMENTS] is FileMode.DELTA
    assert read.about("manifest.csv", value="file.gradebook")


def test_delta_files(tmp_path: Path) -> None:
    manifest = "propertyName,value\nfile.orgs,delta\nfile.users,delta\n"
    users = USERS + user("u1", dateLastModified="2024-02-01") + "u2,tobedeleted,2024-02-01\n"
    users += user("u3", status="tobedeleted", dateLastModified="2024-02-01")
    users += user("u4", dateLastModified="")
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}, manifest))
    found = read.by_id(Entity.USERS)
    assert found["u3"]["status"] == "tobedeleted"
    summary = read.summaries[Entity.USERS]
    # u2 carries only its id: passed on for archiving by id, not lost and not "unknown".
    assert summary.deleted_ids == ["u2"] and summary.skipped_ids == []
    assert summary.mode is FileMode.DELTA
    blank = read.about("users.csv", column="dateLastModified")
    assert len(blank) == 1 and blank[0].message.startswith("1 row")


def test_roles_file_of_oneroster_1_2(tmp_path: Path) -> None:
    users = (
        "sourcedId,status,enabledUser,username,givenName,familyName,preferredGivenName,"
        "preferredMiddleName,primaryOrgSourcedId,pronouns,password\n"
        "u1,active,true,ann,Ann,Lee,Annie,X,o2,she/her,pw\n"
        "u2,active,true,bo,Bo,Ray,,,,,\n"
        "u3,active,true,cy,Cy,Fox,,,,,\n"
    )
    roles = (
        "sourcedId,status,userSourcedId,roleType,role,orgSourcedId\n"
        "r1,active,u1,secondary,teacher,o1\n"
        "r2,active,u1,primary,siteAdministrator,o2\n"
        "r3,active,u2,primary,student,o1\n"
        "r4,tobedeleted,u3,primary,student,o1\n"
    )
    orgs = ORGS + "o1,,,A,school,,\no2,,,B,district,,\n"
    manifest = (
        "propertyName,value\noneroster.version,1.2\nfile.orgs,bulk\nfile.users,bulk\n"
        "file.roles,bulk\n"
    )
    files = {"orgs.csv": orgs, "users.csv": users, "roles.csv": roles}
    read = Read(bundle(tmp_path, files, manifest))
    found = read.by_id(Entity.USERS)
    assert (found["u1"]["role"], found["u1"]["source_role"]) == (
        "administrator",
        "siteAdministrator",
    )
    assert found["u1"]["org_source_ids"] == ["o2", "o1"]
    assert found["u1"]["preferred_given_name"] == "Annie"
    assert found["u2"]["role"] == "student" and found["u2"]["org_source_ids"] == ["o1"]
    assert read.summaries[Entity.USERS].skipped_ids == ["u3"]
    assert "she/her" not in json.dumps(read.records[Entity.USERS])


# --- reading -------------------------------------------------------------------------


def test_summary_before_reading_is_an_error(tmp_path: Path) -> None:
    b = OneRosterBundle(bundle(tmp_path, {"orgs.csv": ONE_ORG}), print)
    with pytest.raises(RuntimeError):
        b.summary(Entity.ORGS)
    assert b.summary(Entity.USERS).mode is FileMode.ABSENT


def test_records_do_not_share_lists(tmp_path: Path) -> None:
    users = USERS + user("u1") + user("u2")
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}))
    u1, u2 = read.records[Entity.USERS]
    for field in ("grades", "agent_source_ids", "user_ids", "org_source_ids", "extensions"):
        assert u1[field] is not u2[field]


def test_source_system_is_stamped(tmp_path: Path) -> None:
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG}), source_system="sis-a")
    assert read.records[Entity.ORGS][0]["source_system"] == "sis-a"


def test_file_names_cover_every_entity() -> None:
    assert set(FILE_NAMES) == set(Entity)


def test_id_scan_matches_csv_reader() -> None:
    rng = random.Random(7)
    pieces = ["a", "b b", " c ", "", '"q,1"', '"multi\nline"', '"x""y"', "\r", "z"]
    for trial in range(300):
        lines = []
        for _ in range(rng.randint(0, 12)):
            cells = [rng.choice(pieces[:4] if trial % 2 else pieces) for _ in range(3)]
            lines.append(",".join(cells) + rng.choice(["\n", "\r\n"]))
        text = "".join(lines)
        for idx in (0, 1, 2):
            expected = {
                row[idx].strip()
                for row in csv.reader(io.StringIO(text, newline=""))
                if len(row) > idx and row[idx].strip()
            }
            wrapper = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8", newline="")
            assert _scan_column(wrapper, idx) == expected, (text, idx)


class CountingBundle(FolderBundle):
    """A folder bundle that counts how often each file is opened."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.opened: dict[str, int] = {}

    def open(self, name: str) -> Any:
        self.opened[name] = self.opened.get(name, 0) + 1
        return super().open(name)


def test_same_file_references_scan_the_file_only_when_they_point_ahead(tmp_path: Path) -> None:
    backward = USERS + user("g1", role="guardian") + user("u1", agentSourcedIds="g1")
    forward = USERS + user("u1", agentSourcedIds="g1") + user("g1", role="guardian")
    for name, users, opens in (("back", backward, 1), ("ahead", forward, 2)):
        folder = bundle(tmp_path / name, {"orgs.csv": ONE_ORG, "users.csv": users}).folder
        files = CountingBundle(folder)
        read = Read(files)
        assert read.by_id(Entity.USERS)["u1"]["agent_source_ids"] == ["g1"]
        assert files.opened["users.csv"] == opens


def test_blank_lines_before_the_header_and_blank_looking_cells(tmp_path: Path) -> None:
    orgs = "\n\n" + ORGS + "o1, ,  ,School,school,,\no2,,,School,type9,,\n"
    read = Read(bundle(tmp_path, {"orgs.csv": orgs}))
    (o1,) = read.records[Entity.ORGS]
    assert (o1["status"], o1["date_last_modified"]) == ("active", None)
    (skipped,) = read.about("orgs.csv", action=IssueAction.ROW_SKIPPED)
    assert (skipped.line, skipped.source_id) == (5, "o2")


def test_roles_file_without_the_columns_needed_is_not_used(tmp_path: Path) -> None:
    users = "sourcedId,givenName,familyName\nu1,Ann,Lee\n"
    files = {"users.csv": users, "roles.csv": "sourcedId,role\nr1,student\n"}
    read = Read(bundle(tmp_path, files))
    assert read.records[Entity.USERS] == []
    assert read.about("roles.csv", action=IssueAction.FILE_SKIPPED)
    assert read.summaries[Entity.USERS].skipped_ids == ["u1"]


def test_enrollment_flags_and_dates_read_cached_or_not_and_issues_in_row_order(
    tmp_path: Path,
) -> None:
    enrollments = (
        "sourcedId,classSourcedId,userSourcedId,role,primary,beginDate,endDate\n"
        "e1,c1,u1,student,true,2026-08-24,6/18/2027\n"
        "e2,c1,u2,student,TRUE,2026-08-24,6/18/2027\n"
        "e3,c1,u3,student,False,,\n"
        "e4,c1,u4,student,maybe,someday,2027-13-01\n"
        "e5,c1,u5,student,maybe,someday,6/18/2027\n"
        "e6,c1,u6,student, false , 2026-08-24 ,\n"
    )
    files = {
        "orgs.csv": ONE_ORG,
        "classes.csv": "sourcedId,title,schoolSourcedId\nc1,Maths,o1\n",
        "users.csv": USERS + "".join(user(f"u{i}") for i in range(1, 7)),
        "enrollments.csv": enrollments,
    }
    read = Read(bundle(tmp_path, files))
    got = {
        sid: (r["primary"], r["begin_date"], r["end_date"])
        for sid, r in read.by_id(Entity.ENROLLMENTS).items()
    }
    assert got == {
        "e1": (True, "2026-08-24", "2027-06-18"),
        "e2": (True, "2026-08-24", "2027-06-18"),
        "e3": (False, None, None),
        "e4": (None, None, None),
        "e5": (None, None, "2027-06-18"),
        "e6": (False, "2026-08-24", None),
    }
    kept = [
        (i.line, i.column, i.value, i.source_id)
        for i in read.issues
        if i.file == "enrollments.csv" and i.action is IssueAction.KEPT_DEFAULT and i.source_id
    ]
    assert kept == [
        (5, "primary", "maybe", "e4"),
        (5, "beginDate", "someday", "e4"),
        (5, "endDate", "2027-13-01", "e4"),
        (6, "primary", "maybe", "e5"),
        (6, "beginDate", "someday", "e5"),
    ]
