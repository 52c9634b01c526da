"""Long work never runs in a request: commit, undo, approve and whole-kind selections
answer 202 (or ``restaging``) and finish through the state machine, and a run's progress
is visible while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import pytest

from rostersync.application.runs import begin_run
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.models import Entity
from rostersync.sources.base import (
    Completeness,
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    ReadSummary,
    Record,
    SourceSpec,
)
from rostersync.sources.registry import register_source, unregister_source
from rostersync.storage import keys
from tests.integration.test_api import LEPO_USERS, Api, api, wait_for_status

__all__ = ["api"]

RELEASE = threading.Event()


class SlowSpec(SourceSpec):
    kind: Literal["slow_api"] = "slow_api"


class SlowRead:
    source_system = "slowsis"
    version = None

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        if entity is Entity.ORGS:
            yield {
                "source_system": "slowsis",
                "source_id": "school-1",
                "status": "active",
                "name": "Slow School",
                "type": "school",
            }

    def summary(self, entity: Entity) -> ReadSummary:
        if entity is Entity.ORGS:
            return ReadSummary(entity=entity, completeness=Completeness.COMPLETE, rows=1, records=1)
        return ReadSummary(entity=entity, completeness=Completeness.ABSENT)


class SlowSource:
    """A source whose fetch waits until the test lets it go (a long API fetch)."""

    kind: ClassVar[str] = "slow_api"
    spec_model: ClassVar[type[SourceSpec]] = SlowSpec

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        assert RELEASE.wait(60), "the test never let the fetch go"
        return FetchResult({"pages": 1})

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[SlowRead]:
        yield SlowRead()


@pytest.fixture
def slow_source() -> Iterator[None]:
    RELEASE.clear()
    register_source(SlowSource())
    yield
    RELEASE.set()
    unregister_source("slow_api")


def _poll(api: Api, tenant: str, run_id: str, until: Any, timeout: float = 30) -> dict[str, Any]:
    headers = api.token(tenant, "viewer")
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.http.get(
            f"/tenants/{tenant}/runs/{run_id}", headers=headers
        ).json()
        if until(body["run"]):
            return body
        assert time.monotonic() < deadline, body["run"]
        time.sleep(0.05)


def test_a_running_run_shows_its_step(api, slow_source):
    """Given a run whose fetch takes long, when it is read while it runs, then its status
    is running and its progress names the fetch; once it ends, it is committed."""
    tenant = api.tenant("progress-t")
    started = begin_run(
        api.deps, api.locks(), LocalCloudLauncher(api.cloud), tenant, SlowSpec(), trigger="api"
    )
    running = _poll(api, tenant, started.run_id, lambda run: run.get("progress"))
    assert running["run"]["status"] == "running"
    assert running["run"]["progress"]["step"] == "fetch"
    assert running["run"]["progress"]["operation"] == "sync"
    RELEASE.set()
    done = wait_for_status(api, tenant, started.run_id)
    assert done["run"]["status"] == "committed", done["run"]
    assert done["run"]["progress"]["step"] == "commit_finish"
    assert done["run"]["progress"]["counts"]["stage"]["add"] == 1


def _committed_sync(api: Api, tenant: str, review: bool = False) -> str:
    headers = api.token(tenant)
    started = api.http.post(
        f"/tenants/{tenant}/runs",
        json={"source_key": api.upload(tenant), "review": review},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    run_id = str(started.json()["run_id"])
    shown = wait_for_status(api, tenant, run_id)
    assert shown["run"]["status"] == ("prepared" if review else "committed"), shown["run"]
    return run_id


def test_undo_answers_202_and_prepares_through_the_state_machine(api):
    """Given a committed first sync, when it is undone over the API, then a new run is
    being prepared at once, is prepared with every added user archived, and commits."""
    tenant = api.tenant("undo-t")
    headers = api.token(tenant)
    first = _committed_sync(api, tenant)

    undo = api.http.post(f"/tenants/{tenant}/runs/{first}/undo", headers=headers)
    assert undo.status_code == 202, undo.text
    body = undo.json()
    assert body["derived_from"] == first and body["status"] == "running"
    prepared = wait_for_status(api, tenant, body["run_id"])
    assert prepared["run"]["status"] == "prepared", prepared["run"]
    assert prepared["run"]["undo_of"] == first
    assert prepared["report"]["counts"]["users"]["archive"] == LEPO_USERS

    commit = api.http.post(f"/tenants/{tenant}/runs/{body['run_id']}/commit", headers=headers)
    assert commit.status_code == 202, commit.text
    assert wait_for_status(api, tenant, body["run_id"])["run"]["status"] == "committed"
    users = api.http.get(
        f"/tenants/{tenant}/directory/users", params={"limit": 100}, headers=headers
    ).json()["items"]
    assert len(users) == LEPO_USERS and {u["status"] for u in users} == {"archived"}


def test_unticking_a_whole_kind_runs_in_the_background(api):
    """Given a prepared run, when every user add is unticked, then the run is restaging,
    then prepared again with all of them excluded and the count of what changed."""
    tenant = api.tenant("select-t")
    headers = api.token(tenant)
    run_id = _committed_sync(api, tenant, review=True)

    excluded = api.http.post(
        f"/tenants/{tenant}/runs/{run_id}/actions/exclude",
        json={"all_of": ["users:add"]},
        headers=headers,
    )
    assert excluded.status_code == 200, excluded.text
    assert excluded.json() == {
        "run_id": run_id,
        "included": False,
        "changed": None,
        "status": "restaging",
    }
    shown = wait_for_status(api, tenant, run_id)
    assert shown["run"]["status"] == "prepared"
    assert shown["run"]["last_selection"] == {"included": False, "changed": LEPO_USERS}
    page = api.http.get(
        f"/tenants/{tenant}/runs/{run_id}/actions",
        params={"entity": "users", "included": "false"},
        headers=headers,
    ).json()
    assert page["total"] == LEPO_USERS


class Captured:
    """Keeps the execution a request would start, to start it later."""

    def __init__(self) -> None:
        self.started: list[tuple[dict[str, Any], str]] = []

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self.started.append((run_input, name))


def test_a_failed_commit_leaves_the_run_prepared_with_the_error(api):
    """Given a commit whose change set turns unreadable before it runs, when the state
    machine commits it, then the run is prepared again, says why, and applied nothing."""
    from rostersync.application.review import request_commit

    tenant = api.tenant("failing-t")
    run_id = _committed_sync(api, tenant, review=True)
    captured = Captured()
    request_commit(api.deps, api.locks(), captured, tenant, run_id, "admin")
    assert api.deps.runs.get(tenant, run_id).status == "committing"
    api.deps.store.put_bytes(keys.changes_key(tenant, run_id, Entity.ORGS), b"{not json\n")
    ((run_input, name),) = captured.started
    result = api.cloud.start_run(run_input, name=name)

    assert result.status == "FAILED"
    assert "BackToPrepared" in result.states and "RecordFailure" not in result.states
    run = api.deps.runs.get(tenant, run_id)
    assert run.status == "prepared" and run.last_error
    assert api.deps.store.get_json(keys.state_pointer_key(tenant)) is None
