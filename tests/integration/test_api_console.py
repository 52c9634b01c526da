"""The routes the console needs beyond review, over HTTP against the local stack: bundle
upload, whole report files, key proposals, checked and reversible match decisions, the
directory's search and a record's history, settings history and inbox rejections."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.inbox import handle_object_created
from rostersync.application.launch import RunStartDeps
from rostersync.application.matching import import_app_records
from rostersync.existing_app import ExistingApp, build_existing_app
from rostersync.generator import generate_district
from rostersync.local.launcher import LocalCloudLauncher
from tests.bundles import copy_bundle, edit_rows
from tests.integration.test_api import LEPO, LEPO_USERS, Api, api, wait_for_status

__all__ = ["api"]


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.write(path, path.name)
    return buffer.getvalue()


def upload(api: Api, tenant: str, body: bytes, **headers: str) -> Any:
    return api.http.post(
        f"/tenants/{tenant}/uploads",
        content=body,
        headers={**api.token(tenant), "Content-Type": "application/zip", **headers},
    )


def sync(api: Api, tenant: str, source_key: str, review: bool) -> dict[str, Any]:
    started = api.http.post(
        f"/tenants/{tenant}/runs",
        json={"source_key": source_key, "review": review},
        headers=api.token(tenant),
    )
    assert started.status_code == 202, started.text
    return wait_for_status(api, tenant, started.json()["run_id"])


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------- upload


def test_a_bundle_uploaded_as_a_zip_is_synced_by_its_source_key(api):
    tenant = api.tenant("upload-t")

    stored = upload(api, tenant, zipped(LEPO), **{"X-Filename": "lepo.zip"})
    assert stored.status_code == 201, stored.text
    body = stored.json()
    assert "users.csv" in body["files"] and body["filename"] == "lepo.zip"
    assert body["source_key"].startswith(f"uploads/{tenant}/")
    shown = sync(api, tenant, body["source_key"], review=False)

    assert shown["run"]["status"] == "committed", shown["run"]
    assert shown["report"]["counts"]["users"]["add"] == LEPO_USERS


def test_an_upload_that_is_not_a_roster_zip_is_refused_with_the_reason(api):
    tenant = api.tenant("upload-bad")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday.jpg", b"\xff\xd8\xff")

    not_zip = upload(api, tenant, b"\x89PNG\r\n\x1a\n\x00\x00")
    no_roster = upload(api, tenant, buffer.getvalue(), **{"X-Filename": "photos.zip"})
    empty = upload(api, tenant, b"")
    as_json = api.http.post(
        f"/tenants/{tenant}/uploads", json={"zip": "x"}, headers=api.token(tenant)
    )
    viewer = api.http.post(
        f"/tenants/{tenant}/uploads",
        content=zipped(LEPO),
        headers={**api.token(tenant, "viewer"), "Content-Type": "application/zip"},
    )
    other = upload(api, "upload-t", zipped(LEPO), Authorization=api.token(tenant)["Authorization"])

    assert not_zip.status_code == 400 and "is not a zip file" in not_zip.json()["error"]
    assert no_roster.status_code == 400
    assert "photos.zip holds no OneRoster file" in no_roster.json()["error"]
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert as_json.status_code == 415
    assert viewer.status_code == 403
    assert other.status_code == 403


# ----------------------------------------------------------------------- report files


def lepo_with_bad_dates(folder: Path) -> Path:
    """LEPO with a bad begin date on every enrollment: a row issue each."""
    bundle = copy_bundle(LEPO, folder)

    def bad_dates(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        for row in rows:
            row["beginDate"] = "not a date"
        return rows

    edit_rows(bundle / "enrollments.csv", bad_dates)
    return bundle


def test_issues_csv_and_actions_csv_hold_every_row_and_the_ticks_as_they_are(api, tmp_path):
    tenant = api.tenant("reports-t")
    bundle = lepo_with_bad_dates(tmp_path / "b")
    key = upload(api, tenant, zipped(bundle)).json()["source_key"]
    shown = sync(api, tenant, key, review=True)
    run_id = shown["run"]["run_id"]
    headers = api.token(tenant, "viewer")
    total = shown["report"]["issues_total"]
    assert total > len(shown["report"]["issues_sample"]), "more issues than the report shows"

    issues = api.http.get(f"/tenants/{tenant}/runs/{run_id}/issues.csv", headers=headers)
    assert issues.status_code == 200 and issues.headers["content-type"].startswith("text/csv")
    assert f"issues-{run_id}.csv" in issues.headers["content-disposition"]
    assert len(rows_of(issues.text)) == total

    page = api.http.get(
        f"/tenants/{tenant}/runs/{run_id}/actions",
        params={"entity": "users", "limit": 1},
        headers=headers,
    ).json()
    unticked = page["actions"][0]
    excluded = api.http.post(
        f"/tenants/{tenant}/runs/{run_id}/actions/exclude",
        json={"action_ids": [unticked["id"]]},
        headers=api.token(tenant),
    )
    assert excluded.json()["changed"] == 1
    actions = api.http.get(f"/tenants/{tenant}/runs/{run_id}/actions.csv", headers=headers)
    assert actions.status_code == 200
    rows = rows_of(actions.text)
    counts = shown["report"]["counts"]
    assert len(rows) == sum(sum(c.values()) for c in counts.values())
    row = next(r for r in rows if r["id"] == unticked["id"])
    record = unticked["record"]
    assert row["included"] == "False"
    assert row["name"] == f"{record['given_name']} {record['family_name']}"
    assert all(r["included"] == "True" for r in rows if r["id"] != unticked["id"])

    another = api.tenant("reports-other")
    assert (
        api.http.get(
            f"/tenants/{another}/runs/{run_id}/issues.csv", headers=api.token(another)
        ).status_code
        == 404
    )


# -------------------------------------------------------------------------- matching


@pytest.fixture(scope="module")
def app_district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExistingApp]:
    folder = tmp_path_factory.mktemp("api-district")
    generate_district(folder / "day1", students=40, seed=21)
    app = build_existing_app(folder / "day1", folder / "app.csv", seed=4, typo_share=0.2)
    return folder / "day1", app


def connect(api: Api, tenant: str, district: tuple[Path, ExistingApp]) -> dict[str, Any]:
    bundle, app = district
    api.tenant(tenant)
    assert import_app_records(api.deps, tenant, app.path.read_text(), "test")["issues"] == []
    key = upload(api, tenant, zipped(bundle)).json()["source_key"]
    shown = sync(api, tenant, key, review=True)
    assert shown["run"]["status"] == "prepared", shown["run"]
    return shown


def test_decisions_are_checked_listed_and_undone_through_the_api(api, app_district):
    tenant = "decide-t"
    run_id = connect(api, tenant, app_district)["run"]["run_id"]
    _bundle, app = app_district
    headers = api.token(tenant)
    matches = api.http.get(f"/tenants/{tenant}/matches", headers=headers).json()["decisions"]
    auto = next(d for d in matches if d["tier"] == "auto" and d["entity"] == "users")
    teacher = next(d for d in matches if d["tier"] == "key" and d["entity"] == "users")
    newcomer = app.sis_only[0]
    assert auto["source_name"] and auto["target_name"]

    def link(source: str, target: str, **extra: Any) -> Any:
        body = {"entity": "users", "source_id": source, "target_id": target, **extra}
        return api.http.post(f"/tenants/{tenant}/matches/link", json=body, headers=headers)

    unknown = link(newcomer, "app-nobody")
    unknown_source = link("nobody-in-the-sis", auto["target_id"])
    cross = link(newcomer, teacher["target_id"], replace=True)
    taken = link(newcomer, auto["target_id"])
    assert unknown.status_code == 409 and "no app users record" in unknown.json()["error"]
    assert unknown_source.status_code == 409 and "no source user" in unknown_source.json()["error"]
    assert cross.status_code == 409 and "never crosses kinds" in cross.json()["error"]
    assert taken.status_code == 409
    assert f"already linked to {auto['source_id']}" in taken.json()["error"]
    listed = api.http.get(f"/tenants/{tenant}/matches/decisions", headers=headers)
    assert listed.status_code == 200 and listed.json() == {"decisions": []}
    app_only = api.http.get(
        f"/tenants/{tenant}/directory/users",
        params={"source_system": "app", "limit": 1000},
        headers=headers,
    ).json()
    assert app_only["total"] and {u["source_system"] for u in app_only["items"]} == {"app"}
    # A prepared run links nothing yet: the matched app record is still the app's own.
    assert auto["target_id"] in {u["target_id"] for u in app_only["items"]}

    replaced = link(newcomer, auto["target_id"], replace=True)
    assert replaced.status_code == 200, replaced.text
    assert [u["source_id"] for u in replaced.json()["unlinked"]] == [auto["source_id"]]
    assert replaced.json()["restaged_run"] == run_id
    wait_for_status(api, tenant, run_id)
    decisions = api.http.get(f"/tenants/{tenant}/matches/decisions", headers=headers).json()[
        "decisions"
    ]
    manual = next(d for d in decisions if d["decision"] == "manual")
    assert (manual["source_id"], manual["target_id"]) == (newcomer, auto["target_id"])
    assert manual["by"] == f"local-admin@{tenant}" and manual["at"]
    assert manual["state"] == "in effect" and manual["source_name"]

    viewer = api.http.post(
        f"/tenants/{tenant}/matches/undo",
        json={"decision_id": manual["id"]},
        headers=api.token(tenant, "viewer"),
    )
    assert viewer.status_code == 403
    undone = api.http.post(
        f"/tenants/{tenant}/matches/undo", json={"decision_id": manual["id"]}, headers=headers
    )
    assert undone.status_code == 200, undone.text
    assert undone.json()["restaged_run"] == run_id
    wait_for_status(api, tenant, run_id)
    again = api.http.post(
        f"/tenants/{tenant}/matches/undo", json={"decision_id": manual["id"]}, headers=headers
    )
    assert again.status_code == 409 and "undone" in again.json()["error"]
    actions = api.http.get(
        f"/tenants/{tenant}/runs/{run_id}/actions",
        params={"entity": "users", "limit": 1000},
        headers=headers,
    ).json()["actions"]
    tier = {a["source_id"]: (a["tier"], a["target_id"]) for a in actions}
    assert tier[newcomer][0] != "manual" and tier[newcomer][1] != auto["target_id"]


def test_key_proposals_are_confirmed_into_the_settings_with_their_history(api, app_district):
    tenant = "keys-t"
    connect(api, tenant, app_district)
    headers = api.token(tenant)

    shown = api.http.get(f"/tenants/{tenant}/keys", headers=headers)
    assert shown.status_code == 200, shown.text
    proposals = shown.json()["proposals"]
    strong = next(p for p in proposals if p["strong"])
    assert strong["support"] > 0 and 0 < strong["source_overlap"] <= 1
    spec = f"{strong['source_field']}:{strong['app_field']}"
    confirmed = api.http.post(
        f"/tenants/{tenant}/keys/confirm",
        json={"kind": strong["kind"], "keys": [spec]},
        headers=headers,
    )
    bad = api.http.post(
        f"/tenants/{tenant}/keys/confirm",
        json={"kind": strong["kind"], "keys": ["nocolon"]},
        headers=headers,
    )

    assert confirmed.status_code == 200, confirmed.text
    assert bad.status_code == 422
    after = api.http.get(f"/tenants/{tenant}/keys", headers=headers).json()
    assert after["confirmed"][strong["kind"]] == [spec]
    history = api.http.get(f"/tenants/{tenant}/settings/history", headers=headers)
    assert history.status_code == 200
    latest = history.json()["history"][0]
    assert latest["changed_by"] == f"local-admin@{tenant}"
    change = latest["changes"][0]
    assert change["field"] == f"match_keys.{strong['kind']}s" and change["new"] == [spec]
    assert change["old"] != [spec]


# ------------------------------------------------------------------------ directory


def test_search_and_a_records_history_across_runs_say_which_run_did_what(api, tmp_path):
    tenant = api.tenant("history-t")
    first = sync(api, tenant, upload(api, tenant, zipped(LEPO)).json()["source_key"], False)
    headers = api.token(tenant, "viewer")
    students = api.http.get(
        f"/tenants/{tenant}/directory/users", params={"role": "student"}, headers=headers
    ).json()
    assert students["total"] == len(students["items"]) > 2
    assert {u["role"] for u in students["items"]} == {"student"}
    renamed, leaver = students["items"][0], students["items"][1]
    found = api.http.get(
        f"/tenants/{tenant}/directory/users",
        params={"q": f"{renamed['given_name']} {renamed['family_name']}".lower()},
        headers=headers,
    ).json()
    assert renamed["target_id"] in {u["target_id"] for u in found["items"]}
    assert found["total"] < LEPO_USERS

    day2 = copy_bundle(LEPO, tmp_path / "day2")

    def change(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        for row in rows:
            if row["sourcedId"] == renamed["source_id"]:
                row["familyName"] = "Renamed"
        return [r for r in rows if r["sourcedId"] != leaver["source_id"]]

    edit_rows(day2 / "users.csv", change)
    second = sync(api, tenant, upload(api, tenant, zipped(day2)).json()["source_key"], False)
    assert second["run"]["status"] == "committed", second["run"]

    shown = api.http.get(
        f"/tenants/{tenant}/directory/users/{renamed['target_id']}", headers=headers
    )
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["name"].endswith("Renamed")
    assert {"type": "app id", "value": renamed["target_id"]} in view["identifiers"]
    assert view["link"]["source_id"] == renamed["source_id"]
    assert view["enrollments"] and all(e["class"]["name"] for e in view["enrollments"])
    history = [(h["run_id"], h["action"]) for h in view["history"]]
    assert history == [(second["run"]["run_id"], "update"), (first["run"]["run_id"], "add")]
    assert view["history"][0]["changes"]["family_name"][1] == "Renamed"

    gone = api.http.get(
        f"/tenants/{tenant}/directory/users/{leaver['target_id']}", headers=headers
    ).json()
    archived = gone["history"][0]
    assert (archived["run_id"], archived["action"]) == (second["run"]["run_id"], "archive")
    assert archived["why"] == "absent from the source's full export"
    assert view["history"][0]["why"] == "changed in the source: family_name"
    missing = api.http.get(f"/tenants/{tenant}/directory/users/no-such-id", headers=headers)
    assert missing.status_code == 404


def test_the_inbox_rejections_are_listed_with_the_file_and_the_reason(api):
    tenant = api.tenant("rejected-t")
    starting = RunStartDeps(api.deps, api.locks(), LocalCloudLauncher(api.cloud))
    key = f"inbox/{tenant}/notes.txt"
    api.deps.store.put_bytes(key, b"not a bundle")
    assert handle_object_created(starting, key).status == "rejected"

    shown = api.http.get(f"/tenants/{tenant}/inbox/rejections", headers=api.token(tenant))

    assert shown.status_code == 200
    (rejection,) = shown.json()["rejections"]
    assert rejection["file"] == "notes.txt" and rejection["reason"]


def test_the_openapi_document_describes_the_upload_and_the_new_routes(api):
    paths = api.http.get("/openapi.json").json()["paths"]

    upload = paths["/tenants/{tenant}/uploads"]["post"]["requestBody"]["content"]
    assert upload["application/zip"]["schema"]["format"] == "binary"
    for path in (
        "/tenants/{tenant}/runs/{run}/issues.csv",
        "/tenants/{tenant}/runs/{run}/actions.csv",
        "/tenants/{tenant}/keys",
        "/tenants/{tenant}/matches/decisions",
        "/tenants/{tenant}/directory/{entity}/{target_id}",
        "/tenants/{tenant}/settings/history",
        "/tenants/{tenant}/inbox/rejections",
    ):
        assert "get" in paths[path], path
    assert "post" in paths["/tenants/{tenant}/matches/undo"]
    assert "post" in paths["/tenants/{tenant}/keys/confirm"]
