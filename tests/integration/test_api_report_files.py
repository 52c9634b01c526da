"""Report files larger than an API answer can hold (API Gateway and Lambda: 6 MB) are
handed out as a short-lived link to the stored file: a redirect, or with ``link=true``
the link itself (what the console asks for: a browser follows it without the token).
Smaller files, and every file of a store without links (the embedded one), come in the
answer. The stack here is the AWS one, under moto: the links are S3's presigned URLs,
fetched through moto as a browser would fetch them."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from rostersync.api import run_routes
from rostersync.api.local_http import make_server
from rostersync.api.tokens import issue_token
from rostersync.application import reports
from rostersync.application.sync import ensure_tenant
from rostersync.config import stack_settings
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import Deps, build_deps
from tests.integration.test_api_console import lepo_with_bad_dates, zipped

#: A threshold under these files' sizes, so that a small bundle's files count as large.
SMALL = 2_000


class _Stack:
    def __init__(self, deps: Deps, http: httpx.Client, state: Path, cloud: LocalCloud) -> None:
        self.deps, self.http, self.state, self.cloud = deps, http, state, cloud

    def token(self, tenant: str, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.state, tenant, role, 600)}"}


@pytest.fixture(scope="module")
def aws_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Stack]:
    tokens = tmp_path_factory.mktemp("tokens")
    with LocalCloud(None, storage="moto") as cloud:
        deps = build_deps(stack_settings())
        server = make_server(
            "127.0.0.1", 0, state_dir=tokens, deps=deps, launcher=LocalCloudLauncher(cloud)
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                yield _Stack(deps, http, tokens, cloud)
        finally:
            server.shutdown()
            server.server_close()


def _synced(stack: _Stack, tenant: str, tmp_path: Path) -> tuple[str, dict[str, str], str]:
    """LEPO with a bad date on every enrollment (issues), synced for review: the run,
    a viewer's headers and the run's API path."""
    ensure_tenant(stack.deps, tenant, create=True)
    bundle = lepo_with_bad_dates(tmp_path / "b")
    stored = stack.http.post(
        f"/tenants/{tenant}/uploads",
        content=zipped(bundle),
        headers={**stack.token(tenant), "Content-Type": "application/zip"},
    )
    assert stored.status_code == 201, stored.text
    started = stack.http.post(
        f"/tenants/{tenant}/runs",
        json={"source_key": stored.json()["source_key"], "review": True},
        headers=stack.token(tenant),
    )
    assert started.status_code == 202, started.text
    run_id: str = started.json()["run_id"]
    for _ in range(600):
        shown = stack.http.get(f"/tenants/{tenant}/runs/{run_id}", headers=stack.token(tenant))
        if shown.json()["run"]["status"] not in {"running", "restaging"}:
            break
        threading.Event().wait(0.1)
    assert shown.json()["run"]["status"] == "prepared", shown.text
    return run_id, stack.token(tenant, "viewer"), f"/tenants/{tenant}/runs/{run_id}"


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_large_report_files_come_as_links_and_small_ones_in_the_answer(
    aws_api: _Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = aws_api
    tenant = "files-t"
    run_id, viewer, path = _synced(stack, tenant, tmp_path)

    # As they are (well under the threshold): in the answer.
    inline: dict[str, Any] = {}
    for name in ("issues.csv", "actions.csv"):
        answer = stack.http.get(f"{path}/{name}", headers=viewer, params={"link": "true"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        inline[name] = answer.text
    assert len(_rows(inline["issues.csv"])) > 0 and len(_rows(inline["actions.csv"])) > 0

    monkeypatch.setattr(run_routes, "INLINE_BYTES", SMALL)
    for name in ("issues.csv", "actions.csv"):
        assert len(inline[name].encode()) > SMALL, name
        redirected = stack.http.get(f"{path}/{name}", headers=viewer)
        assert redirected.status_code == 303, redirected.text
        location = redirected.headers["location"]
        linked = stack.http.get(f"{path}/{name}", headers=viewer, params={"link": "true"})
        assert linked.status_code == 200, linked.text
        shown = linked.json()
        assert shown["filename"] == f"{name.removesuffix('.csv')}-{run_id}.csv"
        assert shown["expires_in"] == 300 and shown["size"] == len(inline[name].encode())
        for url in (location, shown["url"]):
            assert "Signature=" in url and f"runs/{tenant}/{run_id}/report/" in url
            # Fetched without the API's token, as the browser follows the link.
            fetched = requests.get(url, timeout=30)
            assert fetched.status_code == 200
            assert fetched.headers["content-disposition"] == (
                f'attachment; filename="{shown["filename"]}"'
            )
            assert fetched.content.decode() == inline[name]

    # Another tenant's token gets no link to this run's files.
    other = "files-other"
    ensure_tenant(stack.deps, other, create=True)
    refused = stack.http.get(
        f"/tenants/{other}/runs/{run_id}/actions.csv", headers=stack.token(other, "viewer")
    )
    assert refused.status_code == 404


def test_actions_csv_is_written_again_only_when_the_actions_change(
    aws_api: _Stack, tmp_path: Path
) -> None:
    stack = aws_api
    tenant = "files-ticks"
    run_id, viewer, path = _synced(stack, tenant, tmp_path)
    key = f"runs/{tenant}/{run_id}/report/actions-named.csv"

    first = stack.http.get(f"{path}/actions.csv", headers=viewer).text
    version = stack.deps.store.version(key)
    assert stack.http.get(f"{path}/actions.csv", headers=viewer).text == first
    assert stack.deps.store.version(key) == version, "the same actions: not written again"

    action = stack.http.get(
        f"{path}/actions", params={"entity": "users", "limit": 1}, headers=viewer
    ).json()["actions"][0]
    excluded = stack.http.post(
        f"{path}/actions/exclude", json={"action_ids": [action["id"]]}, headers=stack.token(tenant)
    )
    assert excluded.status_code == 200 and excluded.json()["changed"] == 1
    after = _rows(stack.http.get(f"{path}/actions.csv", headers=viewer).text)
    assert next(r for r in after if r["id"] == action["id"])["included"] == "False"
    assert len(after) == len(_rows(first))


# -- a large run's actions.csv, written in the background -------------------------------


@contextmanager
def _served(stack: _Stack, deps: Deps) -> Iterator[httpx.Client]:
    """Another API server on the same stack, with ``deps``' settings."""
    server = make_server(
        "127.0.0.1", 0, state_dir=stack.state, deps=deps, launcher=LocalCloudLauncher(stack.cloud)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        server.shutdown()
        server.server_close()


def _background_deps() -> Deps:
    """Every run counts as large: its actions.csv is written by the state machine."""
    return build_deps(stack_settings().model_copy(update={"report_inline_actions": 0}))


def _report_executions(stack: _Stack, run_id: str) -> list[str]:
    client = stack.cloud.client("stepfunctions")
    listed = client.list_executions(stateMachineArn=stack.cloud.names.state_machine_arn)
    return sorted(
        e["executionArn"] for e in listed["executions"] if e["name"].startswith(f"{run_id}-report-")
    )


def _wait_for_reports(stack: _Stack, run_id: str) -> list[str]:
    """Every report execution of the run, each waited for to its end: their statuses."""
    return [
        stack.cloud.wait_for(arn, timeout=120).status for arn in _report_executions(stack, run_id)
    ]


def _all_action_ids(http: httpx.Client, path: str, headers: dict[str, str]) -> list[str]:
    ids: list[str] = []
    while True:
        page = http.get(
            f"{path}/actions", params={"offset": len(ids), "limit": 200}, headers=headers
        ).json()
        ids += [a["id"] for a in page["actions"]]
        if len(ids) >= page["total"]:
            return ids


def test_a_large_runs_actions_csv_is_written_in_the_background(
    aws_api: _Stack, tmp_path: Path
) -> None:
    stack = aws_api
    tenant = "files-later"
    run_id, viewer, path = _synced(stack, tenant, tmp_path)
    with _served(stack, _background_deps()) as http:
        expected = _all_action_ids(http, path, viewer)
        first = http.get(f"{path}/actions.csv", headers=viewer, params={"link": "true"})
        assert first.status_code == 202, first.text
        assert first.headers["retry-after"] == "5"
        shown = first.json()
        assert shown["status"] == "preparing" and shown["retry_after"] == 5
        assert shown["actions"] == len(expected)
        # Asked again while it is written: the same write, not a second one.
        http.get(f"{path}/actions.csv", headers=viewer)
        assert _wait_for_reports(stack, run_id) == ["SUCCEEDED"]

        done = http.get(f"{path}/actions.csv", headers=viewer, params={"link": "true"})
        assert done.status_code == 200 and done.headers["content-type"].startswith("text/csv")
        rows = _rows(done.text)
        assert [r["id"] for r in rows] == expected
        assert all(r["name"] for r in rows if r["entity"] in {"users", "classes"})
        assert all(r["included"] == "True" for r in rows)
        # The run is as it was: prepared, no step or error noted on it.
        run = http.get(path, headers=viewer).json()["run"]
        assert run["status"] == "prepared" and not run.get("last_error")

        # An untick changes the actions: written again, in the background again.
        unticked = expected[0]
        excluded = http.post(
            f"{path}/actions/exclude", json={"action_ids": [unticked]}, headers=stack.token(tenant)
        )
        assert excluded.status_code == 200 and excluded.json()["changed"] == 1
        assert http.get(f"{path}/actions.csv", headers=viewer).status_code == 202
        assert _wait_for_reports(stack, run_id) == ["SUCCEEDED", "SUCCEEDED"]
        after = _rows(http.get(f"{path}/actions.csv", headers=viewer).text)
        assert [r["id"] for r in after] == expected
        assert {r["id"]: r["included"] for r in after}[unticked] == "False"


def test_a_background_write_that_fails_is_tried_again_then_reported(
    aws_api: _Stack, tmp_path: Path
) -> None:
    stack = aws_api
    tenant = "files-broken"
    run_id, viewer, path = _synced(stack, tenant, tmp_path)
    # A change file that cannot be read (a line cut short): every write of it fails.
    key = f"runs/{tenant}/{run_id}/changes/users.jsonl"
    good = stack.deps.store.get_bytes(key)
    assert good
    stack.deps.store.put_bytes(key, good + b'{"id": "cut sh\n')
    with _served(stack, _background_deps()) as http:
        for attempt in range(1, reports.PREPARE_ATTEMPTS + 1):
            answer = http.get(f"{path}/actions.csv", headers=viewer)
            assert answer.status_code == 202, (attempt, answer.text)
            assert _wait_for_reports(stack, run_id) == ["FAILED"] * attempt
        refused = http.get(f"{path}/actions.csv", headers=viewer)
        assert refused.status_code == 503, refused.text
        assert "could not be written" in refused.json()["error"]
        assert len(_report_executions(stack, run_id)) == reports.PREPARE_ATTEMPTS
        # A failed write leaves the run alone: still prepared, reviewable, committable.
        run = http.get(path, headers=viewer).json()["run"]
        assert run["status"] == "prepared" and not run.get("last_error")

        # Mended (the actions are another version): written at the next request.
        stack.deps.store.put_bytes(key, good)
        assert http.get(f"{path}/actions.csv", headers=viewer).status_code == 202
        statuses = _wait_for_reports(stack, run_id)
        assert sorted(statuses) == ["FAILED"] * reports.PREPARE_ATTEMPTS + ["SUCCEEDED"]
        assert http.get(f"{path}/actions.csv", headers=viewer).status_code == 200
