"""Settings as an admin changes them: only what changed is printed, the history shows old
and new values, and settings that cannot work on the tenant's roster (a school it does not
have, a grade none of its classes teaches) are refused with the field named, through the
command line and the API alike."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import Cli
from tests.integration.test_api import LEPO, Api, api, wait_for_status

__all__ = ["api"]  # the API fixture, shared


def test_settings_set_prints_only_what_changed_and_history_shows_old_and_new(cli: Cli) -> None:
    assert cli("tenants", "add", "t1")[0] == 0

    code, out, _ = cli(
        "settings", "set", "hold.archive_share=0.25", "auto_commit=false", "--tenant", "t1"
    )
    assert code == 0
    assert out.splitlines() == ["auto_commit: true → false", "hold.archive_share: 0.1 → 0.25"]

    code, out, _ = cli("settings", "set", "auto_commit=false", "--tenant", "t1")
    assert code == 0 and out.startswith("nothing changed")

    assert (
        cli("settings", "set", "hold.archive_share=0.3", "--tenant", "t1", "--who", "ann")[0] == 0
    )
    code, out, _ = cli("settings", "history", "--tenant", "t1")
    assert code == 0
    first, second = out.splitlines()  # the no-op is no change
    assert first.endswith("auto_commit: true → false; hold.archive_share: 0.1 → 0.25")
    assert " ann: hold.archive_share: 0.25 → 0.3" in second
    _, shown, _ = cli("settings", "history", "--tenant", "t1", "--json")
    assert json.loads(shown)[1]["changes"] == {"hold.archive_share": [0.25, 0.3]}


def test_settings_that_cannot_work_on_the_roster_are_refused(cli: Cli) -> None:
    assert cli("sync", str(LEPO), "--tenant", "t1")[0] == 0  # school or0001, no grades

    code, _, err = cli("settings", "set", 'schools.include=["or0001", "or0099"]', "--tenant", "t1")
    assert code == 1
    assert "schools.include" in err and "'or0099'" in err and "or0001 (Sample School)" in err
    assert "'or0001'" not in err

    code, _, err = cli("settings", "set", 'class_filters.grades=["09"]', "--tenant", "t1")
    assert code == 1 and "class_filters.grades" in err and "'09'" in err

    code, _, err = cli("settings", "set", "class_filters.homerooms_only=true", "--tenant", "t1")
    assert code == 1 and "class_filters.homerooms_only" in err and "homeroom" in err
    assert "types present: scheduled" in err
    set_scheduled = 'class_filters.class_types=["scheduled"]'
    assert cli("settings", "set", set_scheduled, "--tenant", "t1")[0] == 0

    code, _, err = cli(
        "settings", "set", "schedule.time=06:00", "schedule.timezone=Mars/Base", "--tenant", "t1"
    )
    assert code == 1 and "schedule.timezone" in err

    code, out, _ = cli("settings", "set", 'schools.include=["or0001"]', "--tenant", "t1")
    assert code == 0 and out.strip() == 'schools.include: [] → ["or0001"]'
    _, history, _ = cli("settings", "history", "--tenant", "t1", "--json")
    assert [list(h["changes"]) for h in json.loads(history)] == [
        ["class_filters.class_types"],
        ["schools.include"],
    ]


def test_a_tenant_without_a_roster_takes_any_school(cli: Cli) -> None:
    assert cli("tenants", "add", "t1")[0] == 0
    code, out, _ = cli("settings", "set", 'schools.include=["s-1"]', "--tenant", "t1")
    assert code == 0 and "s-1" in out


def test_the_api_refuses_an_unknown_school_with_the_field_named(api: Api) -> None:
    tenant = api.tenant("checked-settings-t")
    headers = api.token(tenant)
    started = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": api.upload(tenant)}, headers=headers
    )
    assert started.status_code == 202, started.text
    assert wait_for_status(api, tenant, started.json()["run_id"])["run"]["status"] == "committed"
    path = f"/tenants/{tenant}/settings"

    refused = api.http.put(path, json={"schools": {"include": ["nowhere"]}}, headers=headers)
    accepted = api.http.put(path, json={"schools": {"include": ["or0001"]}}, headers=headers)

    assert refused.status_code == 422, refused.text
    assert "schools.include" in refused.text and "'nowhere'" in refused.text
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["changed"] == ["schools.include"]


def test_the_api_reports_rank_issues_by_severity(api: Api) -> None:
    tenant = api.tenant("severity-t")
    headers = api.token(tenant)
    started = api.http.post(
        f"/tenants/{tenant}/runs", json={"source_key": api.upload(tenant)}, headers=headers
    )
    shown = wait_for_status(api, tenant, started.json()["run_id"])
    report = shown["report"]
    assert set(report["issues_by_severity"]) == {"blocking", "row", "field", "note"}
    assert sum(report["issues_by_severity"].values()) == report["issues_total"] > 0
    assert all(i["severity"] in report["issues_by_severity"] for i in report["issues_sample"])
    assert shown["run"]["issues_by_severity"] == report["issues_by_severity"]
    runs = api.http.get(f"/tenants/{tenant}/runs", headers=headers).json()["runs"]
    assert runs[0]["issues_by_severity"] == report["issues_by_severity"]


def test_the_api_gives_a_failed_runs_reason_as_a_sentence(api: Api, tmp_path: Path) -> None:
    tenant = api.tenant("failed-reason-t")
    headers = api.token(tenant)
    damaged = tmp_path / "district export.zip"
    damaged.write_bytes(b"not a zip at all")
    started = api.http.post(
        f"/tenants/{tenant}/runs",
        json={"source_key": api.upload(tenant, damaged)},
        headers=headers,
    )
    shown = wait_for_status(api, tenant, started.json()["run_id"])
    reason = shown["run"]["reason"]
    assert shown["run"]["status"] == "failed"
    assert (
        reason == "BundleError: district_export.zip is not a readable zip: File is not a zip file"
    )
    listed = api.http.get(f"/tenants/{tenant}/runs", headers=headers).json()["runs"]
    assert listed[0]["reason"] == reason
