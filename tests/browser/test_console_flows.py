"""More of the console in headless Chromium: a bundle uploaded from the admin's computer
and synced, the run's whole report files downloaded, matching decisions checked and
undone, key proposals confirmed, and what the status page says about refused files and
runs waiting for review."""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from rostersync.api.local_http import make_server
from rostersync.application.inbox import handle_object_created
from rostersync.application.launch import RunStartDeps
from rostersync.config import stack_settings
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.pipeline.deps import build_deps, locks_repository
from tests.browser.conftest import LEPO, Stack, zipped

LEPO_USERS = 20


def api_get(stack: Stack, tenant: str, path: str, **params: Any) -> Any:
    shown = stack.http.get(f"/tenants/{tenant}{path}", params=params, headers=stack.headers(tenant))
    assert shown.status_code == 200, shown.text
    return shown.json()


def csv_rows(path: str | Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def test_upload_a_bundle_sync_it_download_its_reports_and_commit(stack, page, tmp_path):
    tenant = stack.tenant("upload")
    bundle = tmp_path / "oneroster.zip"
    bundle.write_bytes(zipped(LEPO))
    photo = tmp_path / "photo.zip"
    photo.write_bytes(b"not a zip at all")
    stack.sign_in(page, tenant)
    page.get_by_role("link", name="Configure").click()

    page.get_by_label("Bundle (zip)").set_input_files(str(photo))
    page.get_by_role("button", name="Upload and sync").click()
    expect(page.locator("#upload-result")).to_contain_text("photo.zip is not a zip file")

    page.get_by_label("Bundle (zip)").set_input_files(str(bundle))
    page.get_by_role("button", name="Upload and sync").click()
    expect(page.locator("#upload-result")).to_contain_text("Uploaded oneroster.zip")
    page.get_by_role("link", name="follow it").click()
    expect(page.locator("#run-summary")).to_contain_text("prepared", timeout=60_000)
    run_id = page.url.rsplit("/", 1)[-1]
    report = api_get(stack, tenant, f"/runs/{run_id}")["report"]

    with page.expect_download() as actions:
        page.get_by_role("button", name="Download actions.csv").click()
    rows = csv_rows(actions.value.path())
    assert actions.value.suggested_filename == f"actions-{run_id}.csv"
    assert len(rows) == sum(sum(c.values()) for c in report["counts"].values())
    assert sum(1 for r in rows if r["entity"] == "users") == LEPO_USERS
    assert all(r["name"] for r in rows if r["entity"] == "users")
    if report["issues_total"]:
        with page.expect_download() as issues:
            page.get_by_role("button", name="Download issues.csv").click()
        assert len(csv_rows(issues.value.path())) == report["issues_total"]

    page.get_by_role("button", name="Commit").click()
    expect(page.locator("#decision-status")).to_contain_text("is committed", timeout=60_000)
    users = api_get(stack, tenant, "/directory/users", limit=1000)["items"]
    assert len(users) == LEPO_USERS


def test_a_large_runs_actions_csv_is_waited_for_then_saved(stack, page):
    """Above REPORT_INLINE_ACTIONS the API answers 202 while the state machine writes the
    file: the page says so, asks again after Retry-After and saves the file when written."""
    tenant = stack.tenant("background")
    stack.drop(tenant, LEPO)
    run = stack.sync(tenant, review=True)
    report = api_get(stack, tenant, f"/runs/{run['run_id']}")["report"]
    every_run_large = build_deps(stack_settings().model_copy(update={"report_inline_actions": 0}))
    server = make_server(
        "127.0.0.1",
        0,
        state_dir=stack.state,
        deps=every_run_large,
        launcher=LocalCloudLauncher(stack.cloud),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"{server.url}/console/#token={stack.token(tenant)}")
        page.get_by_role("heading", name="Status", level=1).wait_for()
        page.goto(f"{server.url}/console/#/runs/{run['run_id']}")
        with page.expect_download(timeout=60_000) as actions:
            page.get_by_role("button", name="Download actions.csv").click()
            expect(page.get_by_role("main")).to_contain_text("in the background")
        rows = csv_rows(actions.value.path())
    finally:
        server.shutdown()
        server.server_close()
    assert len(rows) == sum(sum(c.values()) for c in report["counts"].values())
    assert sum(1 for r in rows if r["entity"] == "users") == LEPO_USERS
    expect(page.get_by_role("main")).to_contain_text("actions.csv saved")
    executions = stack.cloud.client("stepfunctions").list_executions(
        stateMachineArn=stack.cloud.names.state_machine_arn
    )["executions"]
    written = [e for e in executions if e["name"].startswith(f"{run['run_id']}-report-")]
    assert [e["status"] for e in written] == ["SUCCEEDED"]


def test_decisions_are_checked_then_listed_with_who_and_undone(stack, page, district):
    bundle, app = district
    tenant = stack.tenant("undo")
    stack.import_app(tenant, app)
    stack.drop(tenant, bundle)
    run = stack.sync(tenant, review=True)
    matches = api_get(stack, tenant, "/matches")["decisions"]
    held = next(d for d in matches if d["tier"] == "auto" and d["kind"] == "student")
    newcomer = next(d for d in matches if d["tier"] == "unmatched" and d["kind"] == "student")
    stack.sign_in(page, tenant)
    page.get_by_role("link", name="Matching").click()

    # Key proposals, with their overlap: confirm one.
    keys = page.locator("#keys-table tbody tr")
    expect(keys.first).to_contain_text("of source")
    proposal = keys.filter(has=page.get_by_role("button", name="Confirm")).first
    wanted = proposal.locator("td").first.inner_text()  # source ↔ app
    proposal.get_by_role("button", name="Confirm").click()
    expect(page.locator("#match-status")).to_contain_text("done")
    expect(keys.filter(has_text=wanted).first).to_contain_text("confirmed")

    # A link to an app record another record holds is refused, then made with replace.
    box = page.get_by_label(f"App id for {newcomer['source_name']} ({newcomer['source_id']})")
    box.fill(held["target_id"])
    row = page.locator("#unmatched-table tbody tr", has=box)
    row.get_by_role("button", name="Link").click()
    expect(page.locator("#match-status")).to_contain_text("already linked to")
    row.get_by_label("replace").check()
    row.get_by_role("button", name="Link").click()
    expect(page.locator("#match-status")).to_contain_text(
        f"Unlinked {held['source_name']} ({held['source_id']})", timeout=60_000
    )

    decisions = page.locator("#decisions-table tbody tr")
    manual = decisions.filter(has_text="a link made by hand")
    expect(manual).to_contain_text(newcomer["source_name"])
    expect(manual).to_contain_text(f"local-admin@{tenant}")
    expect(manual).to_contain_text("in effect")
    manual.get_by_role("button", name="Undo").click()
    expect(page.locator("#match-status")).to_contain_text("is no longer linked", timeout=60_000)
    expect(decisions.filter(has_text="a link made by hand")).to_contain_text("undone by")

    listed = api_get(stack, tenant, "/matches/decisions")["decisions"]
    assert next(d for d in listed if d["decision"] == "manual")["state"] == "undone"
    actions = api_get(stack, tenant, f"/runs/{run['run_id']}/actions", entity="users", limit=1000)
    tiers = {a["source_id"]: a["tier"] for a in actions["actions"]}
    assert tiers[newcomer["source_id"]] != "manual"


def test_a_viewer_sees_the_decisions_but_no_undo(stack, page, district):
    bundle, app = district
    tenant = stack.tenant("undo-viewer")
    stack.import_app(tenant, app)
    stack.drop(tenant, bundle)
    stack.sync(tenant, review=True)
    suggestion = next(
        d for d in api_get(stack, tenant, "/matches")["decisions"] if d["tier"] == "suggested"
    )
    confirmed = stack.http.post(
        f"/tenants/{tenant}/matches/confirm",
        json={"entity": suggestion["entity"], "source_id": suggestion["source_id"]},
        headers=stack.headers(tenant),
    )
    assert confirmed.status_code == 200, confirmed.text
    stack.sign_in(page, tenant, "viewer")

    page.get_by_role("link", name="Matching").click()

    expect(page.locator("#decisions-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Undo")).to_have_count(0)
    expect(page.get_by_role("button", name="Confirm")).to_have_count(0)


def test_status_names_refused_files_and_how_long_a_waiting_run_took(stack, page):
    tenant = stack.tenant("status")
    locks = locks_repository(stack.deps.settings, stack.cloud.environment["LOCKS_TABLE"])
    starting = RunStartDeps(stack.deps, locks, LocalCloudLauncher(stack.cloud))
    key = f"inbox/{tenant}/class photo.jpg"
    stack.deps.store.put_bytes(key, b"\xff\xd8\xff")
    assert handle_object_created(starting, key).status == "rejected"
    stack.drop(tenant, LEPO)
    stack.sync(tenant, review=True)

    stack.sign_in(page, tenant)

    refused = page.locator("#rejections-table tbody tr")
    expect(refused).to_have_count(1)
    # Spaces and brackets are replaced on arrival: the file is under this name in rejected/.
    expect(refused).to_contain_text("class_photo.jpg")
    expect(page.locator("#source")).to_contain_text("OneRoster files")
    expect(page.get_by_role("region", name="Waiting for review")).to_contain_text("to prepare")


def test_signing_in_through_the_hosted_ui_with_pkce(stack, page):
    """As on AWS, where config.json names Cognito's hosted UI and CloudFront's headers let
    the page call its token endpoint: the hosted UI and its token endpoint are played by
    routes in the browser (no request leaves it)."""
    import base64
    import hashlib
    import json
    from urllib.parse import parse_qs, urlsplit

    tenant = stack.tenant("hosted")
    domain = "admins.auth.eu-west-1.amazoncognito.com"
    redirect = stack.console
    config = {"cognito": {"domain": domain, "client_id": "client-1", "redirect_uri": redirect}}
    seen: dict[str, Any] = {}

    def pages(route: Any) -> None:
        answer = route.fetch()
        headers = dict(answer.headers)
        if "content-security-policy" in headers:  # what CloudFront's policy adds
            headers["content-security-policy"] = headers["content-security-policy"].replace(
                "connect-src 'self'", f"connect-src 'self' https://{domain}"
            )
        route.fulfill(response=answer, headers=headers)

    def authorize(route: Any) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(route.request.url).query).items()}
        seen["authorize"] = query
        back = f"{query['redirect_uri']}?code=the-code&state={query['state']}"
        # The hosted UI's page sends the browser back (a new navigation, routed again).
        route.fulfill(
            content_type="text/html",
            body=f"<script>location.replace({json.dumps(back)})</script>",
        )

    def token(route: Any) -> None:
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        seen["token"] = form
        route.fulfill(
            status=200,
            content_type="application/json",
            headers={"Access-Control-Allow-Origin": "*"},
            body=json.dumps({"id_token": stack.token(tenant, "viewer"), "token_type": "Bearer"}),
        )

    page.route(lambda url: url.startswith(stack.console) and "config.json" not in url, pages)
    page.route(f"{stack.console}config.json", lambda route: route.fulfill(json=config))
    page.route(f"https://{domain}/oauth2/authorize*", authorize)
    page.route(f"https://{domain}/oauth2/token", token)

    page.goto(stack.console)
    page.get_by_role("button", name="Sign in with your account").click()

    expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
    expect(page.locator("#role")).to_have_text("viewer")
    assert "code=" not in page.url
    asked, traded = seen["authorize"], seen["token"]
    assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256"
    assert asked["client_id"] == "client-1" and asked["redirect_uri"] == redirect
    assert traded["code"] == "the-code" and traded["grant_type"] == "authorization_code"
    digest = hashlib.sha256(traded["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == asked["code_challenge"]
