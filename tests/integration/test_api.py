"""The admin API over HTTP: a real local server in front of the local stack (moto).

One stack and one server for the module; each test works in tenants of its own, so the
tests stay independent while the stack (about 2 s to start) starts once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from rostersync.api.local_http import LocalApiServer, make_server
from rostersync.api.tokens import issue_token, load_or_create_secret
from rostersync.application.runs import begin_run
from rostersync.application.sync import ensure_tenant, upload_bundle
from rostersync.config import stack_settings
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import Deps, build_deps, locks_repository
from rostersync.storage import keys
from rostersync.storage.ports import LocksPort

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"
LEPO_USERS = 20  # data rows of lepo's users.csv


@dataclass
class Api:
    """The running server, the stack behind it, and a way to make tokens."""

    cloud: LocalCloud
    deps: Deps
    server: LocalApiServer
    state: Path
    http: httpx.Client

    def token(self, tenant: str | None, role: str = "admin", ttl: int = 600) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.state, tenant, role, ttl)}"}

    def tenant(self, name: str) -> str:
        ensure_tenant(self.deps, name, create=True)
        return name

    def upload(self, tenant: str, bundle: Path = LEPO) -> str:
        return upload_bundle(self.deps, tenant, keys.new_run_id(), bundle)

    def locks(self) -> LocksPort:
        return locks_repository(self.deps.settings, self.cloud.environment["LOCKS_TABLE"])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    if not LEPO.is_dir():
        pytest.fail(f"shared test data not found at {LEPO}")
    state = tmp_path_factory.mktemp("api") / "state"
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        server = make_server(
            "127.0.0.1", 0, state_dir=state, deps=deps, launcher=LocalCloudLauncher(cloud)
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                yield Api(cloud, deps, server, state, http)
        finally:
            server.shutdown()
            server.server_close()


class NoLaunch:
    """A launcher that starts nothing: the run stays ``running`` for as long as a test
    needs it to."""

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        return None


def wait_for_status(api: Api, tenant: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
    headers = api.token(tenant, "viewer")
    deadline = time.monotonic() + timeout
    while True:
        response = api.http.get(f"/tenants/{tenant}/runs/{run_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["run"]["status"] not in {"running", "committing", "restaging"}:
            return body
        assert time.monotonic() < deadline, f"run {run_id} still running after {timeout} s"
        time.sleep(0.1)


# ------------------------------------------------------------------ documentation


def test_openapi_document_and_swagger_are_public(api):
    document = api.http.get("/openapi.json")
    swagger = api.http.get("/swagger")

    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"post", "get"} <= set(paths["/tenants/{tenant}/runs"])
    assert "/tenants/{tenant}/runs/{run}/actions/exclude" in paths
    assert "requestBody" in paths["/tenants/{tenant}/directory/import"]["post"]
    assert "tenantToken" in document.json()["components"]["securitySchemes"]
    assert swagger.status_code == 200
    assert swagger.headers["content-type"].startswith("text/html")


# ------------------------------------------------------------------ authentication


def test_requests_without_valid_credentials_are_401(api):
    tenant = api.tenant("auth-t1")
    path = f"/tenants/{tenant}/settings"
    secret = load_or_create_secret(api.state)
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "rostersync-local",
            "aud": "rostersync-api",
            "sub": "someone",
            "custom:tenant": tenant,
            "custom:role": "admin",
            "iat": now - 7200,
            "exp": now - 3600,
        },
        secret,
        algorithm="HS256",
    )
    other_key = issue_token(api.state.parent / "elsewhere", tenant, "admin", 600)

    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": f"Basic {other_key}"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {other_key}"},
    ):
        response = api.http.get(path, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"

    assert api.http.get(path, headers=api.token(tenant)).status_code == 200


def test_another_tenants_paths_are_403_whether_or_not_the_tenant_exists(api):
    api.tenant("auth-t2")
    headers = api.token(api.tenant("auth-t3"))

    existing = api.http.get("/tenants/auth-t2/settings", headers=headers)
    missing = api.http.get("/tenants/no-such-tenant/settings", headers=headers)

    assert existing.status_code == missing.status_code == 403
    assert existing.json() == missing.json()


# ----------------------------------------------------------------- authorization


def test_an_admin_of_one_tenant_can_neither_read_nor_change_another(api):
    mine, theirs = api.tenant("iso-a"), api.tenant("iso-b")
    their_run = begin_run(
        api.deps, api.locks(), NoLaunch(), theirs, api.upload(theirs), trigger="api"
    ).run_id
    headers = api.token(mine)

    attempts = [
        ("GET", f"/tenants/{theirs}", None),
        ("GET", f"/tenants/{theirs}/settings", None),
        ("PUT", f"/tenants/{theirs}/settings", {"auto_commit": False}),
        ("GET", f"/tenants/{theirs}/runs", None),
        ("POST", f"/tenants/{theirs}/runs", {"review": True}),
        ("GET", f"/tenants/{theirs}/runs/{their_run}", None),
        ("GET", f"/tenants/{theirs}/runs/{their_run}/actions", None),
        ("POST", f"/tenants/{theirs}/runs/{their_run}/actions/exclude", {"all_of": []}),
        ("POST", f"/tenants/{theirs}/runs/{their_run}/commit", None),
        ("POST", f"/tenants/{theirs}/runs/{their_run}/discard", None),
        ("GET", f"/tenants/{theirs}/directory/users", None),
        ("GET", f"/tenants/{theirs}/matches", None),
    ]
    for method, path, body in attempts:
        response = api.http.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)

    # Their ids and keys through my own paths find nothing of theirs.
    assert api.http.get(f"/tenants/{mine}/runs/{their_run}", headers=headers).status_code == 404
    actions = api.http.get(f"/tenants/{mine}/runs/{their_run}/actions", headers=headers)
    assert actions.status_code == 404
    for source_key in (
        f"uploads/{theirs}/{their_run}/",
        f"inbox/{theirs}/bundle.zip",
        f"inbox/{mine}/../../uploads/{theirs}/x.zip",
        f"runs/{theirs}/{their_run}/",
    ):
        response = api.http.post(
            f"/tenants/{mine}/runs", json={"source_key": source_key}, headers=headers
        )
        assert response.status_code == 400, (source_key, response.text)
    assert api.deps.runs.list(mine) == []
    assert api.http.get(f"/tenants/{mine}/runs", headers=headers).json() == {"runs": []}


def test_a_viewer_may_read_but_not_change(api):
    tenant = api.tenant("viewer-t")
    run_id = begin_run(
        api.deps, api.locks(), NoLaunch(), tenant, api.upload(tenant), trigger="api"
    ).run_id
    viewer = api.token(tenant, "viewer")

    assert api.http.get(f"/tenants/{tenant}/settings", headers=viewer).status_code == 200
    assert api.http.get(f"/tenants/{tenant}/runs", headers=viewer).status_code == 200
    for method, path in (
        ("PUT", f"/tenants/{tenant}/settings"),
        ("POST", f"/tenants/{tenant}/runs"),
        ("POST", f"/tenants/{tenant}/runs/{run_id}/commit"),
        ("POST", f"/tenants/{tenant}/runs/{run_id}/discard"),
    ):
        response = api.http.request(method, path, json={}, headers=viewer)
        assert response.status_code == 403, (method, path)
    assert api.deps.runs.get(tenant, run_id).status == "running"


def test_only_the_platform_role_creates_tenants(api):
    body = {"tenant": "made-by-platform"}

    by_admin = api.http.post("/tenants", json=body, headers=api.token("made-by-platform"))
    created = api.http.post("/tenants", json=body, headers=api.token(None, "platform"))
    again = api.http.post("/tenants", json=body, headers=api.token(None, "platform"))
    shown = api.http.get("/tenants/made-by-platform", headers=api.token("made-by-platform"))

    assert by_admin.status_code == 403
    assert created.status_code == 201, created.text
    assert created.json()["tenant"] == "made-by-platform"
    assert again.status_code == 409
    assert shown.status_code == 200
    assert shown.json()["status"] == "active"


# ---------------------------------------------------------------------- settings


def test_settings_merge_and_validation_errors_name_each_field(api):
    tenant = api.tenant("settings-t")
    headers = api.token(tenant)
    path = f"/tenants/{tenant}/settings"

    invalid = api.http.put(
        path,
        json={"hold": {"archive_share": 2}, "schedule": {"time": "25:00"}, "colour": "red"},
        headers=headers,
    )
    merged = api.http.put(
        path, json={"auto_commit": False, "hold": {"archive_count": 5}}, headers=headers
    )
    reset = api.http.put(path, json={"auto_commit": None}, headers=headers)
    replaced = api.http.put(
        path, params={"mode": "replace"}, json={"blank_values": "ignore"}, headers=headers
    )

    assert invalid.status_code == 422
    fields = {e["field"] for e in invalid.json()["errors"]}
    assert fields == {"hold.archive_share", "schedule.time", "colour"}
    assert merged.status_code == 200, merged.text
    assert merged.json()["settings"]["auto_commit"] is False
    assert merged.json()["settings"]["hold"]["archive_count"] == 5
    assert merged.json()["settings"]["hold"]["archive_share"] == 0.1  # untouched
    assert sorted(merged.json()["changed"]) == ["auto_commit", "hold.archive_count"]
    assert reset.json()["settings"]["auto_commit"] is True
    assert replaced.json()["settings"]["blank_values"] == "ignore"
    assert replaced.json()["settings"]["hold"]["archive_count"] is None  # back to default
    shown = api.http.get(path, headers=api.token(tenant, "viewer")).json()
    assert shown["settings"]["blank_values"] == "ignore"


def test_a_schedule_set_through_the_api_becomes_the_tenants_daily_schedule(api):
    tenant = api.tenant("schedule-t")
    headers = api.token(tenant)
    path = f"/tenants/{tenant}/settings"
    scheduler = api.cloud.client("scheduler")
    where = {"Name": f"rostersync-{tenant}", "GroupName": api.cloud.environment["SCHEDULE_GROUP"]}

    daily = api.http.put(path, json={"schedule": {"time": "06:30"}}, headers=headers)
    expression = scheduler.get_schedule(**where)["ScheduleExpression"]
    cleared = api.http.put(path, json={"schedule": None}, headers=headers)

    assert daily.status_code == 200, daily.text
    assert expression == "cron(30 6 * * ? *)"
    assert cleared.status_code == 200
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(**where)


def test_bad_input_is_a_4xx_never_a_5xx(api):
    tenant = api.tenant("bad-input")
    headers = api.token(tenant)
    run_path = f"/tenants/{tenant}/runs/20260101T000000Z-0000abcd"
    cases = [
        ("POST", f"/tenants/{tenant}/runs", {"content": b"{not json"}, 400),
        ("POST", f"/tenants/{tenant}/runs", {"json": {"mode": "sometimes"}}, 422),
        ("POST", f"/tenants/{tenant}/runs", {"json": {"surprise": 1}}, 422),
        ("POST", f"/tenants/{tenant}/runs", {"json": {"source_key": "/etc/passwd"}}, 400),
        ("POST", f"/tenants/{tenant}/runs", {"json": {}}, 409),  # empty inbox
        ("PUT", f"/tenants/{tenant}/settings", {"json": [1, 2]}, 422),
        ("GET", f"/tenants/{tenant}/runs/not-a-run", {}, 422),
        ("GET", f"/tenants/{tenant}/runs?limit=0", {}, 422),
        ("GET", run_path, {}, 404),
        ("POST", run_path + "/commit", {}, 404),
        ("POST", run_path + "/actions/include", {"json": {"all_of": ["users:explode"]}}, 422),
        ("GET", f"/tenants/{tenant}/directory/pets", {}, 422),
        ("GET", f"/tenants/{tenant}/directory/users?offset=-1", {}, 422),
        ("GET", f"/tenants/{tenant}/nothing-here", {}, 404),
        ("POST", "/tenants", {"json": {"tenant": "Not Valid"}}, 403),  # admin: refused first
    ]
    for method, path, kwargs, status in cases:
        response = api.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code == status, (method, path, response.text)

    platform = api.token(None, "platform")
    invalid_tenant = api.http.post("/tenants", json={"tenant": "Not Valid"}, headers=platform)
    assert invalid_tenant.status_code == 422
    assert invalid_tenant.json()["errors"][0]["field"] == "tenant"


def test_hostile_bodies_are_refused_with_the_field_named(api):
    """Given bodies that break parsers (deep nesting, a 5,000-digit number, a NUL or a
    control character), when they are sent, then each is a 4xx naming the field."""
    tenant = api.tenant("hostile-bodies")
    headers = {**api.token(tenant), "Content-Type": "application/json"}
    settings, runs = f"/tenants/{tenant}/settings", f"/tenants/{tenant}/runs"
    deep = "[" * 5000 + "]" * 5000
    share = "hold.archive_share"
    cases = [
        ("PUT", settings, '{"hold": ' + deep + "}", "body"),
        ("POST", runs, '{"mode": ' + "[" * 100 + "]" * 100 + "}", "body"),
        ("PUT", settings, '{"hold": {"archive_count": ' + "9" * 5000 + "}}", "hold.archive_count"),
        ("POST", runs, '{"mode": 1' + "0" * 5000 + "}", "mode"),
        (
            "PUT",
            settings,
            '{"hold": {"archive_share": 1e' + "9" * 5000 + "}}",
            "hold.archive_share",
        ),
        ("PUT", settings, '{"schedule": {"time": "07:00\\u0000"}}', "schedule.time"),
        ("PUT", settings, '{"schedule": {"timezone": "UTC\\u001b[2J"}}', "schedule.timezone"),
        ("PUT", settings, '{"schedule": {"timezone": "Europe/\\nParis"}}', "schedule.timezone"),
        ("PUT", settings, '{"hold": {"archive_share": NaN}}', share),
        ("POST", runs, '{"source_key": "inbox/x\\u0000.zip"}', "source_key"),
    ]
    for method, path, body, field in cases:
        response = api.http.request(method, path, headers=headers, content=body.encode())
        assert 400 <= response.status_code < 500, (path, body[:40], response.text[:200])
        assert field in [e["field"] for e in response.json()["errors"]], (body[:40], response.text)
    assert api.http.get(settings, headers=headers).json().get("schedule") is None


def test_any_json_body_is_answered_without_a_server_error(api):
    """Schemathesis-style: arbitrary JSON values (nested, huge numbers, any characters)
    sent to every body-taking route get a 4xx or a success, never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tenant = api.tenant("any-body")
    headers = {**api.token(tenant), "Content-Type": "application/json"}
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**60), max_value=10**60)
        | st.floats(allow_nan=False)
        | st.text(max_size=20)
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )
    names = st.sampled_from(["mode", "hold", "schedule", "source_key", "review", "kind"])
    bodies = st.dictionaries(names, values, max_size=3) | values
    routes = st.sampled_from(
        [
            ("PUT", f"/tenants/{tenant}/settings"),
            ("PUT", f"/tenants/{tenant}/source"),
            ("POST", f"/tenants/{tenant}/matches/confirm"),
        ]
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=routes, body=bodies)
    def check(route: tuple[str, str], body: Any) -> None:
        method, path = route
        content = json.dumps(body).encode()
        response = api.http.request(method, path, headers=headers, content=content)
        assert response.status_code < 500, (path, content[:80], response.text[:200])

    check()


# ------------------------------------------------------------------------- runs


def test_a_second_sync_now_while_one_runs_is_409_naming_it(api):
    tenant = api.tenant("busy-t")
    source = api.upload(tenant)
    running = begin_run(api.deps, api.locks(), NoLaunch(), tenant, source, trigger="api")

    response = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": source}, headers=api.token(tenant)
    )

    assert response.status_code == 409
    assert response.json()["run_id"] == running.run_id
    assert [r.run_id for r in api.deps.runs.list(tenant)] == [running.run_id]


def test_a_repeated_post_with_the_same_idempotency_key_does_the_work_once(api):
    tenant = api.tenant("idem-t")
    source = api.upload(tenant)
    headers = {**api.token(tenant), "Idempotency-Key": "sync-42"}
    body = {"source_key": source, "review": True}

    first = api.http.post(f"/tenants/{tenant}/runs", json=body, headers=headers)
    second = api.http.post(f"/tenants/{tenant}/runs", json=body, headers=headers)
    other_body = api.http.post(
        f"/tenants/{tenant}/runs", json={**body, "mode": "quick"}, headers=headers
    )

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert other_body.status_code == 422
    assert [r.run_id for r in api.deps.runs.list(tenant)] == [first.json()["run_id"]]
    wait_for_status(api, tenant, first.json()["run_id"])


def test_sync_review_untick_commit_and_read_the_directory(api):
    tenant = api.tenant("flow-t")
    headers = api.token(tenant)
    source = api.upload(tenant)

    started = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": source, "review": True}, headers=headers
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    run_id = started.json()["run_id"]
    shown = wait_for_status(api, tenant, run_id)
    assert shown["run"]["status"] == "prepared", shown["run"]
    assert shown["report"]["counts"]["users"]["add"] == LEPO_USERS

    page = api.http.get(
        f"/tenants/{tenant}/runs/{run_id}/actions",
        params={"entity": "users", "limit": 5},
        headers=headers,
    ).json()
    assert page["total"] == LEPO_USERS and len(page["actions"]) == 5
    skipped = page["actions"][0]
    excluded = api.http.post(
        f"/tenants/{tenant}/runs/{run_id}/actions/exclude",
        json={"action_ids": [skipped["id"]]},
        headers=headers,
    )
    assert excluded.json() == {
        "run_id": run_id,
        "included": False,
        "changed": 1,
        "status": "prepared",
    }
    unticked = api.http.get(
        f"/tenants/{tenant}/runs/{run_id}/actions", params={"included": "false"}, headers=headers
    ).json()
    assert [a["id"] for a in unticked["actions"]] == [skipped["id"]]

    committed = api.http.post(f"/tenants/{tenant}/runs/{run_id}/commit", headers=headers)
    assert committed.status_code == 202, committed.text
    assert committed.json() == {"run_id": run_id, "status": "committing"}
    shown = wait_for_status(api, tenant, run_id)
    assert shown["run"]["status"] == "committed", shown["run"]
    assert shown["run"]["progress"]["step"] == "commit_finish"
    again = api.http.post(f"/tenants/{tenant}/runs/{run_id}/commit", headers=headers)
    assert again.status_code == 409

    first = api.http.get(
        f"/tenants/{tenant}/directory/users", params={"limit": 15}, headers=headers
    ).json()
    rest = api.http.get(
        f"/tenants/{tenant}/directory/users",
        params={"offset": first["next_offset"]},
        headers=headers,
    ).json()
    users = first["items"] + rest["items"]
    assert rest["next_offset"] is None
    assert len(users) == LEPO_USERS - 1
    assert skipped["source_id"] not in {u["source_id"] for u in users}
    history = api.http.get(f"/tenants/{tenant}/runs", headers=headers).json()["runs"]
    assert history[0]["run_id"] == run_id and history[0]["status"] == "committed"
    assert history[0]["requested_by"] == f"local-admin@{tenant}"


# --------------------------------------------------------------------- matching


def test_matching_routes_call_the_identity_service(api):
    pytest.importorskip(
        "rostersync.application.matching",
        reason="rostersync.application.matching is not in this build",
    )
    tenant = api.tenant("match-t")
    headers = api.token(tenant)
    csv_text = (
        "app_id,kind,given_name,family_name,email\n"
        "app-1,teacher,Ada,Lovelace,ada@example.org\n"
        "app-2,robot,R2,D2,\n"
    )

    imported = api.http.post(
        f"/tenants/{tenant}/directory/import",
        content=csv_text.encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    as_json = api.http.post(
        f"/tenants/{tenant}/directory/import", json={"csv": csv_text}, headers=headers
    )
    no_columns = api.http.post(
        f"/tenants/{tenant}/directory/import",
        content=b"name\nAda\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    decisions = api.http.get(f"/tenants/{tenant}/matches", headers=headers)
    confirm = api.http.post(
        f"/tenants/{tenant}/matches/confirm",
        json={"entity": "users", "source_id": "nobody"},
        headers=headers,
    )
    wrong_entity = api.http.post(
        f"/tenants/{tenant}/matches/link",
        json={"entity": "orgs", "source_id": "a", "target_id": "b"},
        headers=headers,
    )

    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"] == 1
    assert len(imported.json()["issues"]) == 1
    assert as_json.status_code == 415
    assert no_columns.status_code == 400
    assert decisions.status_code == 200 and decisions.json() == {"decisions": []}
    assert confirm.status_code == 409
    assert wrong_entity.status_code == 422


# ----------------------------------------------------------------- the Lambda


def test_the_lambda_handler_answers_an_api_gateway_event_and_starts_runs_on_step_functions(api):
    """The deployed path: functions/api/app.py invoked as Lambda (in-process under moto),
    with the claims where the Cognito authorizer puts them, starting the run through
    Step Functions' StartExecution."""
    import json

    from rostersync.api.local_http import proxy_event
    from rostersync.api.tokens import verify_token

    tenant = api.tenant("lambda-t")
    claims = verify_token(api.state, api.token(tenant)["Authorization"].split()[1])
    body = json.dumps({"source_key": api.upload(tenant), "review": True}).encode()
    event = proxy_event(
        "POST",
        f"/tenants/{tenant}/runs",
        [("Content-Type", "application/json")],
        body,
        claims,
        request_id="req-1",
    )
    lambdas = api.cloud.client("lambda")

    invoked = lambdas.invoke(
        FunctionName=api.cloud.names.functions["ApiFunction"], Payload=json.dumps(event)
    )
    response = json.loads(invoked["Payload"].read())
    unauthenticated = json.loads(
        lambdas.invoke(
            FunctionName=api.cloud.names.functions["ApiFunction"],
            Payload=json.dumps({**event, "requestContext": {"stage": "v1"}}),
        )["Payload"].read()
    )

    assert response["statusCode"] == 202, response
    run_id = json.loads(response["body"])["run_id"]
    assert wait_for_status(api, tenant, run_id)["run"]["status"] == "prepared"
    assert unauthenticated["statusCode"] == 401


# --------------------------------------------------------------------- the app's edits


def test_the_app_edits_a_contact_and_the_next_sync_keeps_it(api, tmp_path):
    """Given a committed roster, when the app changes a user's email over the API, then
    the directory shows it, the next sync of a different SIS email keeps the app's, and
    fields other than contact details, unknown records and viewers are refused."""
    tenant = api.tenant("edit-t")
    headers = api.token(tenant)
    started = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": api.upload(tenant)}, headers=headers
    )
    assert wait_for_status(api, tenant, started.json()["run_id"])["run"]["status"] == "committed"
    users = api.http.get(
        f"/tenants/{tenant}/directory/users", params={"limit": 100}, headers=headers
    ).json()["items"]
    user = next(u for u in users if u.get("email"))
    path = f"/tenants/{tenant}/directory/users/{user['target_id']}/contact"

    edited = api.http.patch(path, json={"email": "fixed@app.example"}, headers=headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["email"] == "fixed@app.example"
    assert api.http.patch(path, json={"given_name": "X"}, headers=headers).status_code == 422
    assert api.http.patch(path, json={"email": "a\x00b"}, headers=headers).status_code == 422
    missing = f"/tenants/{tenant}/directory/users/no-such-user/contact"
    assert api.http.patch(missing, json={"email": "a@b.c"}, headers=headers).status_code == 404
    viewer = api.token(tenant, "viewer")
    assert api.http.patch(path, json={"email": "v@x.y"}, headers=viewer).status_code == 403

    from tests.bundles import copy_bundle, edit_rows

    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def sis_changes_the_email(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        for row in rows:
            if row["sourcedId"] == user["source_id"]:
                row["email"] = "changed@sis.example"
                row["familyName"] = "Renamed"
        return rows

    edit_rows(day2 / "users.csv", sis_changes_the_email)
    again = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": api.upload(tenant, day2)}, headers=headers
    )
    assert wait_for_status(api, tenant, again.json()["run_id"])["run"]["status"] == "committed"
    after = api.http.get(
        f"/tenants/{tenant}/directory/users", params={"limit": 100}, headers=headers
    ).json()["items"]
    kept = next(u for u in after if u["target_id"] == user["target_id"])
    assert kept["email"] == "fixed@app.example" and kept["family_name"] == "Renamed"


def test_answers_are_sent_without_waiting_for_the_clients_ack(api, monkeypatch):
    """Each accepted connection has Nagle's algorithm off: an answer's body follows its
    headers at once instead of waiting for the client's delayed ACK (40 ms on Linux)."""
    seen: list[int] = []
    handler = api.server.RequestHandlerClass
    setup = handler.setup

    def recording_setup(self: Any) -> None:
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(handler, "setup", recording_setup)
    with httpx.Client(base_url=api.server.url, timeout=30) as fresh:  # a new connection
        assert fresh.get("/openapi.json").status_code == 200
    assert seen and all(seen), seen
