"""The OneRoster REST source's parts without sockets: the spec's rules, REST objects as
the CSV binding's rows read by the CSV rules, paging decisions, the delta filter, OAuth
1.0a signatures checked by oauthlib's own endpoint, and the test server's sample objects
checked against the two OpenAPI documents."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import jsonschema_rs
import orjson
import pytest
from oauthlib import oauth1
from pydantic import ValidationError

from rostersync.models import ENTITY_ORDER, Entity, RowIssue, validate_record
from rostersync.sources.base import Completeness, FetchContext
from rostersync.sources.http import PageRequest
from rostersync.sources.oneroster_rest import OneRosterRestSource, OneRosterRestSpec
from rostersync.sources.oneroster_rest.auth import OAuth1Auth
from rostersync.sources.oneroster_rest.fetch import (
    ModifiedCursor,
    OneRosterPaginator,
    filter_since,
    stream_name,
)
from rostersync.sources.oneroster_rest.read import OneRosterRestRead
from rostersync.sources.oneroster_rest.rows import cell, user_ids_cell
from tests.servers.oneroster import OneRosterServer, _Validator, oneroster_sample

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster-rest"


class MemoryRaw:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def names(self) -> list[str]:
        return sorted(self.files)

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        yield io.BytesIO(self.files[name])

    def put_bytes(self, name: str, body: bytes) -> None:
        self.files[name] = body


class _Secrets:
    def get_secret(self, tenant: str, name: str) -> str | None:
        return "key-1" if name == "oneroster_client_secret" else None


def _transport(server: OneRosterServer) -> httpx.MockTransport:
    """The server's answers in process (no socket)."""

    def handle(request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, extra, body = server.answer(request.method, str(request.url), headers)
        return httpx.Response(status, headers=extra, content=orjson.dumps(body))

    return httpx.MockTransport(handle)


def _raw(data: dict[str, list[dict[str, Any]]], version: str, mode: str = "full") -> MemoryRaw:
    """A fetch's raw area as the writer leaves it: one page per collection."""
    raw = MemoryRaw()
    streams = {}
    for collection, objects in data.items():
        name = f"{stream_name(collection)}-00001.json"
        raw.files[name] = orjson.dumps({collection: objects})
        streams[stream_name(collection)] = {"pages": [{"name": name}], "items": len(objects)}
    raw.files["pages.json"] = orjson.dumps({"mode": mode, "version": version, "streams": streams})
    return raw


def _read_all(raw: MemoryRaw) -> tuple[dict[Entity, list[dict[str, Any]]], list[RowIssue], Any]:
    issues: list[RowIssue] = []
    out: dict[Entity, list[dict[str, Any]]] = {}
    summaries = {}
    with OneRosterRestRead(raw, issues.append) as read:
        for entity in ENTITY_ORDER:
            out[entity] = list(read.iter_records(entity))
            summaries[entity] = read.summary(entity)
    return out, issues, summaries


def test_spec_rules():
    with pytest.raises(ValidationError, match="https"):
        OneRosterRestSpec(base_url="http://sis.example.org/ims/oneroster/v1p1", auth="bearer")
    with pytest.raises(ValidationError, match="token_url"):
        OneRosterRestSpec(base_url="https://sis.example.org/v1p1", client_id="c")
    with pytest.raises(ValidationError, match="client_id"):
        OneRosterRestSpec(base_url="https://sis.example.org/v1p1", auth="oauth1-hmac-sha256")
    spec = OneRosterRestSpec(
        base_url="https://oneroster-proxy.classlink.io/4821/ims/oneroster/v1p1/",
        auth="bearer",
    )
    assert spec.base_url.endswith("/4821/ims/oneroster/v1p1")
    assert spec.page_size == 1000 and spec.secret_name == "oneroster_client_secret"
    assert spec.describe() == "oneroster_rest oneroster-proxy.classlink.io"


def test_rest_values_as_csv_cells():
    assert cell({"sourcedId": "s1", "type": "org", "href": "/orgs/s1"}) == "s1"
    assert cell([{"sourcedId": "a"}, {"sourcedId": "b"}]) == "a,b"
    assert cell(True) == "true" and cell("false") == "false" and cell(None) == ""
    assert cell(["09", "10"]) == "09,10"
    ids = [{"type": "sis", "identifier": "1"}, {"type": "state", "identifier": "x:2"}]
    assert user_ids_cell(ids) == "{sis:1},{state:x:2}"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_full_read_goes_through_the_csv_rules(version):
    records, issues, summaries = _read_all(_raw(oneroster_sample(version), version))
    for entity, found in records.items():
        for record in found:
            validate_record(entity, record)
    assert len(records[Entity.USERS]) == 29 and len(records[Entity.ENROLLMENTS]) == 28
    assert all(s.completeness is Completeness.COMPLETE for s in summaries.values())
    users = {u["source_id"]: u for u in records[Entity.USERS]}
    assert users["tch1"]["org_source_ids"] == ["sch1", "dist1"]
    assert users["stu000"]["agent_source_ids"] == ["par1"]
    assert "password" not in orjson.dumps(records[Entity.USERS]).decode().lower()
    if version == "1.2":
        assert users["stu000"]["preferred_given_name"] == "Ada"
    assert not [i for i in issues if i.action.value == "row skipped"]


def test_row_issues_name_the_collection_and_the_object():
    data = oneroster_sample("1.1")
    data["users"][3]["role"] = "wizard"
    data["enrollments"][2]["user"] = {"sourcedId": "ghost"}
    data["users"].append(dict(data["users"][5]))  # the same record listed twice
    records, issues, summaries = _read_all(_raw(data, "1.1"))
    role = next(i for i in issues if i.column == "role")
    assert role.file == "OneRoster REST /users" and role.line == 4
    assert role.source_id == data["users"][3]["sourcedId"]
    ghost = next(i for i in issues if i.entity is Entity.ENROLLMENTS)
    assert "/users" in ghost.message and "users.csv" not in ghost.message
    assert summaries[Entity.USERS].unknown_ids == [data["users"][3]["sourcedId"]]
    assert len(records[Entity.USERS]) == 28  # the repeated one once, the wizard skipped


def test_a_delta_read_carries_deletions():
    data = {
        "users": [
            {"sourcedId": "u1", "status": "tobedeleted", "dateLastModified": "2025-10-01T00:00:00Z"}
        ],
        "enrollments": [],
    }
    records, _, summaries = _read_all(_raw(data, "1.1", mode="delta"))
    assert summaries[Entity.USERS].completeness is Completeness.DELTA
    assert summaries[Entity.USERS].deleted_ids == ["u1"]
    assert summaries[Entity.ORGS].completeness is Completeness.ABSENT
    assert records[Entity.USERS] == []


def _response(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers)


def test_paging_decisions():
    pager = OneRosterPaginator(limit=100)
    first = pager.first(PageRequest("/users"))
    assert first.param("offset") == "0" and first.param("limit") == "100"
    # A server capping the page at 50 still pages by what it sent.
    following = pager.next(first, _response({"X-Total-Count": "120"}), {}, 50)
    assert following is not None and following.param("offset") == "50"
    assert pager.next(following, _response({"X-Total-Count": "100"}), {}, 50) is None
    link = '<https://sis.example.org/v1p2/users?offset=100&limit=100>; rel="next"'
    linked = pager.next(first, _response({"Link": link}), {}, 100)
    assert linked is not None and linked.url.endswith("/v1p2/users")
    assert linked.param("offset") == "100"
    assert pager.next(first, _response({}), {}, 0) is None


def test_delta_filter_and_cursor():
    moment = datetime(2025, 9, 1, 7, 30, 5, tzinfo=UTC)
    assert filter_since(moment) == "dateLastModified>'2025-09-01T07:30:05Z'"
    saved = ModifiedCursor(since=moment, version="1.2", counts={"users": 3}).dump()
    again = ModifiedCursor.of(saved)
    assert again is not None and again.since == moment and again.counts == {"users": 3}
    assert ModifiedCursor.of(None) is None


@pytest.mark.parametrize("method", [oauth1.SIGNATURE_HMAC_SHA256, oauth1.SIGNATURE_HMAC_SHA1])
def test_oauth1_signatures_verify_with_oauthlib(method):
    auth = OAuth1Auth("consumer", "s3cret", method)
    request = httpx.Request(
        "GET",
        "https://sis.example.org/ims/oneroster/v1p1/users",
        params={"offset": "0", "limit": "5", "filter": "dateLastModified>'2025-09-01T00:00:00Z'"},
    )
    signed = next(auth.auth_flow(request))
    header = signed.headers["Authorization"]
    assert f'oauth_signature_method="{method}"' in header
    endpoint = oauth1.SignatureOnlyEndpoint(_Validator("consumer", "s3cret"))
    valid, _ = endpoint.validate_request(str(signed.url), "GET", headers={"Authorization": header})
    assert valid
    wrong = oauth1.SignatureOnlyEndpoint(_Validator("consumer", "other"))
    assert not wrong.validate_request(str(signed.url), "GET", headers={"Authorization": header})[0]
    assert "s3cret" not in repr(auth)


_SCHEMAS = {
    "1.1": (
        "oneroster-1.1-openapi.json",
        {
            "orgs": "Org.Type",
            "academicSessions": "AcademicSession.Type",
            "courses": "Course.Type",
            "classes": "Class.Type",
            "users": "User.Type",
            "enrollments": "Enrollment.Type",
            "demographics": "Demographic.Type",
        },
    ),
    "1.2": (
        "oneroster-1.2-rostering-openapi.json",
        {
            "orgs": "OrgDType",
            "academicSessions": "AcademicSessionDType",
            "courses": "CourseDType",
            "classes": "ClassDType",
            "users": "UserDType",
            "enrollments": "EnrollmentDType",
            "demographics": "DemographicsDType",
        },
    ),
}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_the_servers_objects_follow_the_openapi_documents(version):
    document, names = _SCHEMAS[version]
    spec = orjson.loads((DATA / document).read_bytes())
    data = oneroster_sample(version)
    if version == "1.1":
        # The 1.1 document types a class's periods as one string.
        for klass in data["classes"]:
            if "periods" in klass:
                klass["periods"] = ",".join(klass["periods"])
    for collection, schema_name in names.items():
        schema = {
            "$ref": f"#/components/schemas/{schema_name}",
            "components": spec["components"],
        }
        validator = jsonschema_rs.validator_for(schema)
        for obj in data[collection]:
            errors = [e.message for e in validator.iter_errors(obj)]
            assert not errors, (collection, obj["sourcedId"], errors[:3])


def _fetch(server: OneRosterServer, mode: str, cursor: dict[str, Any] | None, now: datetime) -> Any:
    raw = MemoryRaw()
    source = OneRosterRestSource(
        sleep=lambda _: None, transport=_transport(server), wall_clock=now.timestamp
    )
    spec = OneRosterRestSpec(base_url="https://sis.example.org/ims/oneroster/v1p1", auth="bearer")
    ctx = FetchContext("t1", "r1", mode, raw, _Secrets(), cursor)  # type: ignore[arg-type]
    return source.fetch(spec, ctx), raw


def test_a_server_refusing_the_filter_runs_full():
    server = OneRosterServer(
        oneroster_sample("1.1"), auth="bearer", client_secret="key-1", filters=False
    )
    now = datetime(2025, 8, 2, tzinfo=UTC)
    since = (now - timedelta(hours=1)).isoformat()
    result, raw = _fetch(server, "quick", {"since": since, "version": "1.1", "counts": {}}, now)
    assert result.mode == "full" and "refused the filter" in (result.note or "")
    assert orjson.loads(raw.files["pages.json"])["mode"] == "full"
    assert result.counts["users"] == 29


def test_a_quick_fetch_sends_the_filter_and_reads_a_delta():
    server = OneRosterServer(oneroster_sample("1.1"), auth="bearer", client_secret="key-1")
    since = datetime(2025, 8, 1, tzinfo=UTC).isoformat()
    now = datetime(2025, 8, 2, tzinfo=UTC)
    result, raw = _fetch(server, "quick", {"since": since, "version": "1.1", "counts": {}}, now)
    assert result.mode is None and result.note is None
    assert {q["filter"] for _, q in server.requests} == {"dateLastModified>'2025-07-31T23:55:00Z'"}
    _, _, summaries = _read_all(raw)
    assert summaries[Entity.USERS].completeness is Completeness.DELTA
