"""The Clever source without sockets: the local server's answers through
``httpx.MockTransport``, pages into an in-memory raw area, read back into canonical
records (every one validated against its model)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pytest

from rostersync.models import ENTITY_ORDER, Entity, RowIssue, validate_record
from rostersync.sources.base import Completeness, FetchContext, FetchResult
from rostersync.sources.clever import CleverSource, CleverSpec
from rostersync.sources.clever.mapping import (
    ItemRejected,
    demographics_from_user,
    user_from_user,
)
from rostersync.sources.http import SourceAuthError, SourceResponseError
from rostersync.sources.http.retry import RetryPolicy
from tests.servers.clever import CleverServer, mock_transport, sample_district

TOKEN = "tok-unit-9f8e7d"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class MemoryRaw:
    """A run's raw area in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self.files)

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        yield io.BytesIO(self.files[name])

    def exists(self, name: str) -> bool:
        return name in self.files

    def put_bytes(self, name: str, body: bytes) -> None:
        self.files[name] = body

    @contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        buffer = io.BytesIO()
        yield buffer
        self.files[name] = buffer.getvalue()

    def copy_in(self, key: str, name: str) -> None:
        raise NotImplementedError

    def list_objects(self, prefix: str) -> list[str]:
        return []

    def object_exists(self, key: str) -> bool:
        return False

    def download(self, name: str, path: Any) -> None:
        raise NotImplementedError


class Secrets:
    def get_secret(self, tenant: str, name: str) -> str | None:
        return TOKEN if (tenant, name) == ("t1", "clever_token") else None


def _source(server: CleverServer, slept: list[float] | None = None) -> CleverSource:
    return CleverSource(
        sleep=(slept.append if slept is not None else lambda s: None),
        wall_clock=NOW.timestamp,
        jitter=lambda: 0.0,
        retry=RetryPolicy(attempts=3),
        transport=mock_transport(server),
    )


def _fetch(
    server: CleverServer,
    mode: str = "full",
    cursor: dict[str, Any] | None = None,
    spec: CleverSpec | None = None,
) -> tuple[FetchResult, MemoryRaw]:
    raw = MemoryRaw()
    ctx = FetchContext(
        tenant="t1", run_id="r", mode=mode, raw=raw, secrets=Secrets(), cursor=cursor
    )  # type: ignore[arg-type]
    result = _source(server).fetch(spec or CleverSpec(page_limit=2), ctx)
    return result, raw


def _read(raw: MemoryRaw) -> tuple[dict[Entity, list[dict]], dict[Entity, Any], list[RowIssue]]:
    issues: list[RowIssue] = []
    records: dict[Entity, list[dict]] = {}
    summaries = {}
    with CleverSource().read(CleverSpec(), raw, issues.append) as read:  # type: ignore[arg-type]
        assert read.source_system == "clever"
        for entity in ENTITY_ORDER:
            records[entity] = list(read.iter_records(entity))
            summaries[entity] = read.summary(entity)
    for entity, rows in records.items():
        for record in rows:
            assert validate_record(entity, record).model_dump(mode="json") == record
    return records, summaries, issues


@pytest.fixture
def server() -> CleverServer:
    return CleverServer(sample_district(), token=TOKEN)


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["source_id"]: r for r in rows}


def test_full_fetch_pages_every_collection_and_maps_it(server):
    server.data.put("users", server.data.collections["users"]["stu1"])  # one event exists
    result, raw = _fetch(server)
    assert result.counts["users"] == 9 and result.counts["sections"] == 2
    assert result.cursor is not None and result.cursor["event_id"] == server.data.events[-1]["id"]
    assert result.cursor["counts"]["users"] == 9 and result.mode is None
    # limit=2 on every listing but the district; next links followed.
    users = [q for p, q in server.requests if p == "/v3.0/users"]
    assert len(users) == 5 and all(q["limit"] == "2" for q in users)
    assert users[1]["starting_after"] == "con1"
    assert ("/v3.0/events", {"ending_before": "last", "limit": "1"}) in server.requests
    # Pages kept as received, numbered.
    assert "users-00005.json" in raw.files and "pages.json" in raw.files
    assert all(TOKEN.encode() not in body for body in raw.files.values())

    records, summaries, issues = _read(raw)
    assert all(s.completeness is Completeness.COMPLETE for s in summaries.values())
    orgs = _by_id(records[Entity.ORGS])
    assert orgs["d1"]["type"] == "district" and orgs["sch1"]["parent_source_id"] == "d1"
    assert records[Entity.ACADEMIC_SESSIONS][0]["start_date"] == "2024-08-20"
    assert _by_id(records[Entity.COURSES])["crs2"]["title"] == "SCI6"
    classes = _by_id(records[Entity.CLASSES])
    assert classes["sec2"]["class_type"] == "homeroom" and classes["sec1"]["grades"] == ["03"]
    users_by_id = _by_id(records[Entity.USERS])
    ada = users_by_id["stu1"]
    assert ada["role"] == "student" and ada["agent_source_ids"] == ["con1"]
    assert {(i["type"], i["identifier"]) for i in ada["user_ids"]} >= {
        ("clever_id", "stu1"),
        ("sis_id", "SIS-stu1"),
        ("state_id", "ST-stu1"),
        ("student_number", "N-stu1"),
        ("email", "ada.lovelace@students.example"),
    }
    grace = users_by_id["con1"]
    assert grace["role"] == "parent" and grace["agent_source_ids"] == ["stu1", "stu2"]
    assert (grace["given_name"], grace["family_name"]) == ("Grace", "Lovelace")
    assert users_by_id["con2"]["role"] == "relative"
    assert users_by_id["tch1"]["org_source_ids"] == ["sch1", "sch2"]
    assert users_by_id["adm1"]["role"] == "administrator"
    assert users_by_id["adm1"]["source_role"] == "district_admin"
    assert users_by_id["stf1"]["source_role"] == "staff"
    enrollments = _by_id(records[Entity.ENROLLMENTS])
    assert set(enrollments) == {
        "sec1-stu1",
        "sec1-stu2",
        "sec1-tch1",
        "sec2-stu3",
        "sec2-tch2",
        "sec2-tch1",
    }
    assert enrollments["sec2-tch2"]["primary"] is True
    assert enrollments["sec2-tch1"]["primary"] is False
    demographics = _by_id(records[Entity.DEMOGRAPHICS])
    assert demographics["stu1"]["birth_date"] == "2015-03-14"
    assert demographics["stu1"]["asian"] is True and demographics["stu1"]["sex"] == "female"
    assert demographics["stu1"]["hispanic_or_latino"] is False
    assert set(demographics) == {"stu1", "stu2", "stu3"}
    assert issues == []


def test_an_item_that_cannot_be_mapped_is_a_row_issue_and_unknown(server):
    server.data.load("sections", {"id": "sec9", "name": "No school", "students": ["stu1"]})
    server.data.load("users", {"id": "bad1", "name": {"first": "X", "last": "Y"}, "roles": {}})
    server.data.load(
        "users",
        {
            "id": "stu4",
            "name": {"first": "Di", "last": "Ro"},
            "roles": {"student": {"school": "sch1", "dob": "31/31/2010"}},
        },
    )
    _, raw = _fetch(server)
    records, summaries, issues = _read(raw)
    assert summaries[Entity.CLASSES].unknown_ids == ["sec9"]
    assert summaries[Entity.ENROLLMENTS].unknown_ids == ["sec9-stu1"]
    assert summaries[Entity.USERS].unknown_ids == ["bad1"]
    where = {(i.file, i.column, i.source_id) for i in issues}
    assert ("Clever /v3.0/sections", "school", "sec9") in where
    assert ("Clever /v3.0/users", "roles", "bad1") in where
    assert ("Clever /v3.0/users", "dob", "stu4") in where
    line = next(i.line for i in issues if i.source_id == "sec9")
    assert line == 3  # the third section listed
    assert "stu4" in _by_id(records[Entity.USERS])


def test_a_page_without_data_fails_the_fetch(server):
    server.fail(200, path="/v3.0/users", drop_data=True)
    with pytest.raises(SourceResponseError):
        _fetch(server)


def test_a_401_halfway_fails_the_fetch(server):
    server.fail(401, path="/v3.0/users", times=1)
    with pytest.raises(SourceAuthError) as raised:
        _fetch(server)
    assert TOKEN not in str(raised.value)


def test_an_empty_listing_where_the_last_sync_had_users_is_untrusted(server):
    first, _ = _fetch(server)
    for user_id in list(server.data.collections["users"]):
        server.data.unshare("users", user_id)
    result, raw = _fetch(server, cursor=first.cursor)
    _, summaries, _ = _read(raw)
    assert summaries[Entity.USERS].untrusted and "no users" in summaries[Entity.USERS].untrusted
    assert result.cursor is not None and result.cursor["counts"]["users"] == 9


def _events(server: CleverServer, cursor: dict[str, Any]) -> tuple[FetchResult, MemoryRaw]:
    return _fetch(server, mode="quick", cursor=cursor)


def test_quick_fetch_applies_events_after_the_cursor(server):
    first, _ = _fetch(server)
    data = server.data
    ada = data.collections["users"]["stu1"]
    data.put("users", {**ada, "name": {"first": "Ada", "last": "King"}})
    data.put(
        "users",
        {
            "id": "stu5",
            "district": "d1",
            "name": {"first": "Eve", "last": "Ho"},
            "roles": {"student": {"school": "sch2", "gender": "F"}},
        },
    )
    data.delete("users", "stu2")
    section = data.collections["sections"]["sec1"]
    data.put("sections", {**section, "students": ["stu1", "stu5"]})
    grace = data.collections["users"]["con1"]
    relationships = grace["roles"]["contact"]["student_relationships"]
    data.put(
        "users",
        {
            **grace,
            "roles": {
                "contact": {
                    **grace["roles"]["contact"],
                    "student_relationships": [
                        *relationships,
                        {"student": "stu3", "relationship": "Parent"},
                    ],
                }
            },
        },
    )
    data.delete("terms", "term1")
    result, raw = _events(server, first.cursor)
    assert result.mode is None and result.counts["events"] == 6
    assert result.cursor["event_id"] == data.events[-1]["id"]
    records, summaries, issues = _read(raw)
    assert all(s.completeness is Completeness.DELTA for s in summaries.values())
    users = _by_id(records[Entity.USERS])
    assert users["stu1"]["family_name"] == "King" and users["stu1"]["agent_source_ids"] == ["con1"]
    assert users["stu5"]["role"] == "student"
    # stu3 gained a contact: re-read whole, with both its contacts.
    assert users["stu3"]["agent_source_ids"] == ["con1", "con2"]
    assert users["con1"]["agent_source_ids"] == ["stu1", "stu2", "stu3"]
    assert summaries[Entity.USERS].deleted_ids == ["stu2"]
    assert summaries[Entity.DEMOGRAPHICS].deleted_ids == ["stu2"]
    assert summaries[Entity.ACADEMIC_SESSIONS].deleted_ids == ["term1"]
    assert summaries[Entity.ENROLLMENTS].deleted_ids == ["sec1-stu2"]
    assert {r["source_id"] for r in records[Entity.ENROLLMENTS]} == {
        "sec1-stu1",
        "sec1-stu5",
        "sec1-tch1",
    }
    assert issues == []


@pytest.mark.parametrize(
    ("cursor_change", "reason"),
    [
        ({"checked_at": (NOW - timedelta(days=30)).isoformat()}, "older than 29 days"),
        ({"event_id": "e-unknown"}, "gone from Clever's history"),
        (None, "no events cursor yet"),
    ],
)
def test_quick_fetch_falls_back_to_full(server, cursor_change, reason):
    server.data.put("users", server.data.collections["users"]["stu1"])
    first, _ = _fetch(server)
    cursor = None if cursor_change is None else {**first.cursor, **cursor_change}
    result, raw = _events(server, cursor)
    assert result.mode == "full" and reason in (result.note or "")
    _, summaries, _ = _read(raw)
    assert summaries[Entity.USERS].completeness is Completeness.COMPLETE


def test_user_mapping_rejects_what_it_cannot_use():
    with pytest.raises(ItemRejected) as raised:
        user_from_user({"id": "u1", "roles": {"student": {}}, "name": {}}, [])
    assert raised.value.column == "name"
    assert demographics_from_user({"id": "u1", "roles": {"teacher": {}}}, []) is None


def test_the_spec_is_registered_and_refuses_plain_http_to_other_hosts():
    from pydantic import ValidationError

    from rostersync.sources.registry import parse_spec

    spec = parse_spec({"kind": "clever"})
    assert isinstance(spec, CleverSpec)
    assert spec.base_url == "https://api.clever.com" and spec.secret_name == "clever_token"
    assert spec.describe() == "clever api.clever.com"
    assert CleverSpec(base_url="http://127.0.0.1:8080/").base_url == "http://127.0.0.1:8080"
    for bad in ("http://api.clever.com", "https://api.clever.com/v3.0", "ftp://x"):
        with pytest.raises(ValidationError):
            CleverSpec(base_url=bad)
    with pytest.raises(ValidationError):
        CleverSpec(page_limit=10_001)


def test_a_missing_token_fails_before_any_request(server):
    from rostersync.sources.http import SourceCredentialsMissing

    raw = MemoryRaw()
    ctx = FetchContext(tenant="t2", run_id="r", mode="full", raw=raw, secrets=Secrets())  # type: ignore[arg-type]
    with pytest.raises(SourceCredentialsMissing):
        _source(server).fetch(CleverSpec(), ctx)
    assert server.requests == []
