"""OneRoster REST syncs end to end: the local OneRoster server on 127.0.0.1, the client
secret in the local secret store that ``Deps.secrets`` reads, runs through the real
state machine. One test syncs the same roster from a CSV bundle and from the API and
compares the committed directories."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from rostersync.application.sync import ensure_tenant, export_directory, start_sync, upload_bundle
from rostersync.models import ENTITY_ORDER, Entity, validate_record
from rostersync.pipeline.deps import Deps, reset_default_deps
from rostersync.settings import HoldThresholds, TenantSettings
from rostersync.sources.http.retry import RetryPolicy
from rostersync.sources.oneroster_rest import OneRosterRestSource, OneRosterRestSpec
from rostersync.sources.registry import register_source
from rostersync.storage import keys
from rostersync.storage.secrets import LocalSecretStore
from tests.servers.oneroster import OneRosterServer, oneroster_sample

SECRET = "or-client-secret-5b2e9c1d"
CLIENT = "lakeside-app"
CLASSLINK_PATH = "/app-4821/ims/oneroster/v1p1"
PASSWORD = b"hunter2-never-kept"


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """The local stack with t1's client secret in the local secret store, and a way to
    start OneRoster servers; the source never sleeps."""
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(tmp_path / "secrets.json"))
    local, deps = request.getfixturevalue("cloud")
    reset_default_deps()
    request.addfinalizer(reset_default_deps)
    assert isinstance(deps.secrets, LocalSecretStore)
    ensure_tenant(deps, "t1", create=True)
    deps.secrets.put_secret("t1", "oneroster_client_secret", SECRET)
    slept: list[float] = []
    servers: list[OneRosterServer] = []

    def serve(version: str = "1.1", **kwargs: Any) -> OneRosterServer:
        kwargs.setdefault("base_path", CLASSLINK_PATH)
        server = OneRosterServer(
            oneroster_sample(version),
            version=version,
            client_id=CLIENT,
            client_secret=SECRET,
            **kwargs,
        ).__enter__()
        servers.append(server)
        return server

    source = OneRosterRestSource(
        sleep=slept.append, jitter=lambda: 0.0, retry=RetryPolicy(attempts=4)
    )
    register_source(source)
    yield {"local": local, "deps": deps, "serve": serve, "slept": slept, "source": source}
    for server in servers:
        server.__exit__(None, None, None)
    register_source(OneRosterRestSource())


def _spec(server: OneRosterServer, **kwargs: Any) -> OneRosterRestSpec:
    auth = kwargs.pop("auth", server.auth)
    return OneRosterRestSpec(
        base_url=server.base_url,
        version=server.version,  # type: ignore[arg-type]
        auth=auth,
        client_id=CLIENT,
        token_url=server.token_url if auth == "oauth2" else None,
        page_size=kwargs.pop("page_size", 5),
        **kwargs,
    )


def _sync(env: dict[str, Any], spec: Any, mode: str = "full", tenant: str = "t1") -> Any:
    return start_sync(
        env["local"], env["deps"], tenant, spec, keys.new_run_id(), mode=mode, trigger="api"
    )


def _hold_only_mass_changes(deps: Deps, tenant: str = "t1") -> None:
    settings = TenantSettings(hold=HoldThresholds(change_share=1.0))
    deps.tenants.put_settings(
        tenant,
        settings.model_dump(mode="json"),
        who="test",
        at="2025-01-01T00:00:00Z",
        changed=["hold"],
    )


def _actions(deps: Deps, run_id: str, entity: Entity, kind: str) -> list[str]:
    return sorted(
        a["source_id"]
        for a in deps.store.iter_jsonl(keys.changes_key("t1", run_id, entity))
        if a["action"] == kind and a.get("included", True)
    )


def _users(deps: Deps) -> dict[str, dict[str, Any]]:
    return {u["source_id"]: u for u in export_directory(deps, "t1")["users"]}


def _stored(deps: Deps) -> Iterator[tuple[str, bytes]]:
    """Every object in the bucket (by key) and every item in every table."""
    for key in deps.store.list_keys(""):
        yield key, deps.store.get_bytes(key) or b""
    dynamodb = boto3.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            yield table, repr(page["Items"]).encode()


def _validate_normalized(deps: Deps, run_id: str) -> int:
    """Every record the run produced, checked against its canonical model."""
    count = 0
    for entity in ENTITY_ORDER:
        for record in deps.store.iter_jsonl(keys.normalized_key("t1", run_id, entity)):
            validate_record(entity, record)
            count += 1
    return count


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kept_since(deps: Deps) -> datetime:
    """The moment the last commit's cursor keeps (its fetch's start)."""
    pointer = deps.store.get_json(keys.state_pointer_key("t1"))
    return datetime.fromisoformat(pointer["source_cursor"]["cursor"]["since"])


def test_full_sync_through_classlink_proxy_path_with_oauth2(env, logs):
    """Given a ClassLink-style base path and an OAuth2 client secret in the secret store,
    when a full sync runs, then the roster is committed through the CSV rules, the
    token came from the token endpoint, and neither the secret nor the token is in the
    raw pages, the state or the logs."""
    server = env["serve"]()
    deps = env["deps"]
    outcome = _sync(env, _spec(server))
    assert outcome.status == "committed", outcome.error
    counts = outcome.counts
    assert counts["orgs"]["add"] == 3 and counts["academic_sessions"]["add"] == 3
    assert counts["classes"]["add"] == 3 and counts["users"]["add"] == 29
    assert counts["enrollments"]["add"] == 28 and counts["demographics"]["add"] == 12
    assert outcome.report["source"] == "oneroster_rest"
    assert _validate_normalized(deps, outcome.run_id) == 80
    assert all(
        path.startswith(
            (
                "orgs",
                "academicSessions",
                "courses",
                "classes",
                "users",
                "enrollments",
                "demographics",
            )
        )
        for path in server.api_paths()
    )
    assert server.token_requests == 1
    users = _users(deps)
    assert users["stu000"]["agent_source_ids"] == ["par1"]
    assert users["par1"]["role"] == "parent" and users["tch1"]["org_source_ids"] == [
        "sch1",
        "dist1",
    ]
    org = next(o for o in export_directory(deps, "t1")["orgs"] if o["source_id"] == "sch1")
    assert org["extensions"] == {"metadata.ext_region": "north"}
    pointer = deps.store.get_json(keys.state_pointer_key("t1"))
    assert pointer["source_cursor"]["kind"] == "oneroster_rest"
    assert pointer["source_cursor"]["cursor"]["since"]
    tokens = [t.encode() for t in server.tokens]
    for key, body in _stored(deps):
        assert SECRET.encode() not in body, key
        assert not any(t in body for t in tokens), key
        if PASSWORD in body:
            assert "/raw/" in f"/{key}" or key.startswith("raw/"), key  # as received only
    assert not [line for line in logs.lines if SECRET in line]
    assert not [line for line in logs.lines if any(t.decode() in line for t in tokens)]


def test_the_token_is_cached_and_renewed_when_refused(env):
    server = env["serve"]()
    _hold_only_mass_changes(env["deps"])
    assert _sync(env, _spec(server)).status == "committed"
    assert _sync(env, _spec(server)).status == "committed"
    assert server.token_requests == 1  # the second run used the cached token
    server.revoke_tokens()  # the server forgot it before its expiry
    assert _sync(env, _spec(server)).status == "committed"
    assert server.token_requests == 2


def test_quick_sync_asks_for_changes_since_the_last_run(env):
    server = env["serve"]()
    deps = env["deps"]
    _hold_only_mass_changes(deps)
    full = _sync(env, _spec(server))
    assert full.status == "committed", full.error
    kept = _kept_since(deps)
    later = _stamp(datetime.now(UTC) + timedelta(minutes=30))
    ada = next(u for u in server.data["users"] if u["sourcedId"] == "stu003")
    server.put("users", {**ada, "familyName": "King", "dateLastModified": later})
    gone = next(u for u in server.data["users"] if u["sourcedId"] == "stu004")
    server.put("users", {**gone, "status": "tobedeleted", "dateLastModified": later})
    new = {**ada, "sourcedId": "stu900", "givenName": "Nova", "dateLastModified": later}
    server.put("users", new)
    enrollment = next(e for e in server.data["enrollments"] if e["user"]["sourcedId"] == "stu004")
    server.put(
        "enrollments",
        {"sourcedId": enrollment["sourcedId"], "status": "tobedeleted", "dateLastModified": later},
    )
    server.requests.clear()
    quick = _sync(env, _spec(server), mode="quick")
    assert quick.status == "committed", (quick.error, quick.report.get("hold"))
    fetched = deps.store.get_json(keys.fetch_summary_key("t1", quick.run_id))
    assert fetched["mode"] == "quick"
    filters = {q.get("filter") for _, q in server.requests}
    assert len(filters) == 1
    (sent,) = filters
    assert sent is not None and sent.startswith("dateLastModified>'")
    since = datetime.strptime(sent.split("'")[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert since == (kept - timedelta(minutes=5)).replace(microsecond=0)
    assert _actions(deps, quick.run_id, Entity.USERS, "add") == ["stu900"]
    assert _actions(deps, quick.run_id, Entity.USERS, "update") == ["stu003"]
    assert _actions(deps, quick.run_id, Entity.USERS, "archive") == ["stu004"]
    assert _actions(deps, quick.run_id, Entity.ENROLLMENTS, "archive") == [enrollment["sourcedId"]]
    users = _users(deps)
    assert users["stu003"]["family_name"] == "King"
    assert users["stu005"]["status"] == "active"  # absences archive nothing in a delta
    assert _validate_normalized(deps, quick.run_id) == 3


def test_quick_without_a_cursor_runs_full(env):
    server = env["serve"]()
    outcome = _sync(env, _spec(server), mode="quick")
    assert outcome.status == "committed", outcome.error
    fetched = env["deps"].store.get_json(keys.fetch_summary_key("t1", outcome.run_id))
    assert fetched["mode"] == "full" and "ran a full sync" in fetched["note"]
    assert not [q for _, q in server.requests if "filter" in q]


def test_a_refused_client_secret_fails_the_run_and_commits_nothing(env, logs):
    server = env["serve"]()
    deps = env["deps"]
    server.client_secret = "rotated-elsewhere"
    outcome = _sync(env, _spec(server))
    assert outcome.status == "failed"
    assert "SourceAuthError" in (outcome.error or "") or "401" in (outcome.error or "")
    assert deps.store.get_json(keys.state_pointer_key("t1")) is None
    assert export_directory(deps, "t1")["users"] == []
    assert not [line for line in logs.lines if SECRET in line]


def test_a_401_halfway_fails_the_run_and_commits_nothing(env):
    server = env["serve"](auth="oauth1")
    deps = env["deps"]
    server.fail(401, path="users", after=2)
    outcome = _sync(env, _spec(server, auth="oauth1-hmac-sha256"))
    assert outcome.status == "failed"
    assert deps.store.get_json(keys.state_pointer_key("t1")) is None
    assert export_directory(deps, "t1")["users"] == []


def test_a_503_then_success(env):
    server = env["serve"]()
    server.fail(503, path="users", after=1)
    server.fail(429, path="enrollments", headers={"Retry-After": "3"})
    outcome = _sync(env, _spec(server))
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 29
    assert 3.0 in env["slept"]


def test_a_listing_that_shifts_under_paging_is_listed_again_and_deduplicated(env):
    """A record put at the front after the first page moves every later one back: the
    last record of page 1 comes again on page 2 and the listing no longer adds up. The
    listing is read twice and each record kept once."""
    server = env["serve"]()
    deps = env["deps"]
    newcomer = {**server.data["users"][5], "sourcedId": "stu-early", "givenName": "Early"}
    server.shift("users", newcomer, after_pages=1)
    outcome = _sync(env, _spec(server))
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"]["add"] == 30
    users = _users(deps)
    assert "stu-early" in users and len(users) == 30
    listed = [q for p, q in server.requests if p == "users"]
    assert sum(1 for q in listed if q["offset"] == "0") == 2  # listed twice
    normalized = list(
        deps.store.iter_jsonl(keys.normalized_key("t1", outcome.run_id, Entity.USERS))
    )
    ids = [r["source_id"] for r in normalized]
    assert len(ids) == len(set(ids)) == 30


def test_records_gone_from_a_full_listing_are_archived(env):
    server = env["serve"]()
    deps = env["deps"]
    _hold_only_mass_changes(deps)
    assert _sync(env, _spec(server)).status == "committed"
    server.remove("users", "stu007")
    enrollment = next(e for e in server.data["enrollments"] if e["user"]["sourcedId"] == "stu007")
    server.remove("enrollments", enrollment["sourcedId"])
    outcome = _sync(env, _spec(server))
    assert outcome.status == "committed", outcome.error
    assert _actions(deps, outcome.run_id, Entity.USERS, "archive") == ["stu007"]
    assert _actions(deps, outcome.run_id, Entity.ENROLLMENTS, "archive") == [
        enrollment["sourcedId"]
    ]
    assert _users(deps)["stu007"]["status"] == "archived"


def test_oauth1_with_a_skewed_clock_is_re_signed_with_the_servers_time(env):
    server = env["serve"](auth="oauth1")
    skewed = OneRosterRestSource(
        sleep=env["slept"].append,
        jitter=lambda: 0.0,
        retry=RetryPolicy(attempts=4),
        wall_clock=lambda: time.time() - 7200,
    )
    register_source(skewed)
    outcome = _sync(env, _spec(server, auth="oauth1-hmac-sha1"))
    assert outcome.status == "committed", outcome.error
    assert server.refused_signatures >= 1
    assert outcome.counts["users"]["add"] == 29
    for key, body in _stored(env["deps"]):
        assert SECRET.encode() not in body, key


def test_oneroster_1_2_with_link_headers_roles_and_string_booleans(env):
    server = env["serve"]("1.2", base_path="/ims/oneroster/rostering/v1p2", auth="bearer")
    outcome = _sync(env, _spec(server, auth="bearer"))
    assert outcome.status == "committed", outcome.error
    assert _validate_normalized(env["deps"], outcome.run_id) == 80
    users = _users(env["deps"])
    assert users["tch1"]["org_source_ids"] == ["sch1", "dist1"]
    assert users["stu000"]["preferred_given_name"] == "Ada" and users["stu000"]["enabled"]
    assert users["par2"]["role"] == "guardian"
    primaries = {
        e["source_id"]: e["primary"] for e in export_directory(env["deps"], "t1")["enrollments"]
    }
    assert primaries["enr-cls-m1-tch1"] is True and primaries["enr-cls-m1-tch2"] is False
    assert any("offset" in q for p, q in server.requests if p == "users")


# ------------------------------------------------------------------ one set of rules

_CSV_COLUMNS: dict[str, list[tuple[str, Callable[[dict[str, Any]], Any]]]] = {}


def _ref(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, list):
        return ",".join(v["sourcedId"] for v in value)
    return value["sourcedId"] if isinstance(value, dict) else ""


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


def _csv_bundle(data: dict[str, list[dict[str, Any]]], folder: Path) -> Path:
    """The roster as a OneRoster 1.1 CSV bundle, written the way an SIS export is."""
    folder.mkdir()
    common = ["sourcedId", "status", "dateLastModified"]
    files: dict[str, tuple[list[str], Callable[[dict[str, Any]], list[str]]]] = {
        "orgs": (
            [*common, "name", "type", "identifier", "parentSourcedId", "metadata.ext_region"],
            lambda o: [
                _text(o, "name"),
                _text(o, "type"),
                _text(o, "identifier"),
                _ref(o, "parent"),
                (o.get("metadata") or {}).get("ext_region", ""),
            ],
        ),
        "academicSessions": (
            [*common, "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear"],
            lambda o: [
                _text(o, "title"),
                _text(o, "type"),
                _text(o, "startDate"),
                _text(o, "endDate"),
                _ref(o, "parent"),
                _text(o, "schoolYear"),
            ],
        ),
        "courses": (
            [
                *common,
                "schoolYearSourcedId",
                "title",
                "courseCode",
                "grades",
                "orgSourcedId",
                "subjects",
                "subjectCodes",
            ],
            lambda o: [
                _ref(o, "schoolYear"),
                _text(o, "title"),
                _text(o, "courseCode"),
                _text(o, "grades"),
                _ref(o, "org"),
                _text(o, "subjects"),
                _text(o, "subjectCodes"),
            ],
        ),
        "classes": (
            [
                *common,
                "title",
                "grades",
                "courseSourcedId",
                "classCode",
                "classType",
                "location",
                "schoolSourcedId",
                "termSourcedIds",
                "subjects",
                "subjectCodes",
                "periods",
            ],
            lambda o: [
                _text(o, "title"),
                _text(o, "grades"),
                _ref(o, "course"),
                _text(o, "classCode"),
                _text(o, "classType"),
                _text(o, "location"),
                _ref(o, "school"),
                _ref(o, "terms"),
                _text(o, "subjects"),
                _text(o, "subjectCodes"),
                _text(o, "periods"),
            ],
        ),
        "users": (
            [
                *common,
                "enabledUser",
                "orgSourcedIds",
                "role",
                "username",
                "userIds",
                "givenName",
                "familyName",
                "middleName",
                "identifier",
                "email",
                "sms",
                "phone",
                "agentSourcedIds",
                "grades",
                "password",
            ],
            lambda o: [
                _text(o, "enabledUser"),
                _ref(o, "orgs"),
                _text(o, "role"),
                _text(o, "username"),
                ",".join(f"{{{i['type']}:{i['identifier']}}}" for i in o["userIds"]),
                _text(o, "givenName"),
                _text(o, "familyName"),
                _text(o, "middleName"),
                _text(o, "identifier"),
                _text(o, "email"),
                _text(o, "sms"),
                _text(o, "phone"),
                _ref(o, "agents"),
                _text(o, "grades"),
                _text(o, "password"),
            ],
        ),
        "enrollments": (
            [
                *common,
                "classSourcedId",
                "schoolSourcedId",
                "userSourcedId",
                "role",
                "primary",
                "beginDate",
                "endDate",
            ],
            lambda o: [
                _ref(o, "class"),
                _ref(o, "school"),
                _ref(o, "user"),
                _text(o, "role"),
                _text(o, "primary"),
                _text(o, "beginDate"),
                _text(o, "endDate"),
            ],
        ),
        "demographics": (
            [
                *common,
                "birthDate",
                "sex",
                "americanIndianOrAlaskaNative",
                "asian",
                "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander",
                "white",
                "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity",
                "countryOfBirthCode",
                "stateOfBirthAbbreviation",
                "cityOfBirth",
                "publicSchoolResidenceStatus",
            ],
            lambda o: [
                _text(o, k)
                for k in (
                    "birthDate",
                    "sex",
                    "americanIndianOrAlaskaNative",
                    "asian",
                    "blackOrAfricanAmerican",
                    "nativeHawaiianOrOtherPacificIslander",
                    "white",
                    "demographicRaceTwoOrMoreRaces",
                    "hispanicOrLatinoEthnicity",
                    "countryOfBirthCode",
                    "stateOfBirthAbbreviation",
                    "cityOfBirth",
                    "publicSchoolResidenceStatus",
                )
            ],
        ),
    }
    with (folder / "manifest.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["propertyName", "value"])
        writer.writerow(["manifest.version", "1.0"])
        writer.writerow(["oneroster.version", "1.1"])
        for name in files:
            writer.writerow([f"file.{name}", "bulk"])
    for name, (header, row) in files.items():
        with (folder / f"{name}.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            for obj in data[name]:
                writer.writerow(
                    [obj["sourcedId"], obj["status"], obj["dateLastModified"], *row(obj)]
                )
    return folder


def _comparable(directory: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    dropped = {"source_system", "target_id", "committed_at", "run_id", "updated_at", "created_at"}
    return {
        entity: sorted(
            ({k: v for k, v in item.items() if k not in dropped} for item in items),
            key=lambda i: i["source_id"],
        )
        for entity, items in directory.items()
    }


def test_the_same_roster_from_csv_and_from_rest_commits_the_same_directory(env, tmp_path):
    """One set of row rules for both bindings: a dangling reference, a blank field and a
    record repeated by paging come out the same as from the CSV bundle."""
    deps = env["deps"]
    data = oneroster_sample("1.1")
    # Flaws both bindings must treat alike.
    data["users"][4]["agents"] = [{"sourcedId": "nobody", "type": "user", "href": "/x"}]
    data["classes"][2].pop("classType")
    data["enrollments"].append(
        {**data["enrollments"][0], "sourcedId": "enr-orphan", "user": {"sourcedId": "ghost"}}
    )
    bundle = _csv_bundle(data, tmp_path / "bundle")
    ensure_tenant(deps, "t2", create=True)
    key = upload_bundle(deps, "t2", keys.new_run_id(), bundle)
    from_csv = _sync(env, key, tenant="t2")
    assert from_csv.status == "committed", from_csv.error

    server = OneRosterServer(data, client_id=CLIENT, client_secret=SECRET, base_path=CLASSLINK_PATH)
    with server:
        server.shift("users", data["users"][0], after_pages=2)  # a record seen twice
        from_rest = _sync(env, _spec(server, page_size=4))
    assert from_rest.status == "committed", from_rest.error
    csv_directory = _comparable(export_directory(deps, "t2"))
    rest_directory = _comparable(export_directory(deps, "t1"))
    assert csv_directory == rest_directory
    assert len(rest_directory["enrollments"]) == 28 and len(rest_directory["users"]) == 29
    assert from_csv.counts == from_rest.counts
