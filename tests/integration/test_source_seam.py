"""A source added by one registry entry syncs end to end through the real state machine.

The fake source here stands for an API source: its fetch writes the "pages" it received
into the run's raw area, its read turns them into canonical records and a source-neutral
read summary. Nothing in the pipeline names it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

import rostersync
from rostersync.application.sync import ensure_tenant, export_directory, start_sync
from rostersync.models import ENTITY_ORDER, Entity, IssueAction, RowIssue
from rostersync.pipeline.deps import Deps
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

#: What the fake API serves, per dataset name: {entity: [record, ...]}.
SERVED: dict[str, dict[str, list[Record]]] = {}


class FakeSpec(SourceSpec):
    kind: Literal["fake_api"] = "fake_api"
    dataset: str
    #: Whether the API says its listing is every record (a full export) or a sample.
    complete: bool = True


def _user(source_id: str, given: str, family: str) -> Record:
    return {
        "source_system": "fakesis",
        "source_id": source_id,
        "status": "active",
        "role": "student",
        "given_name": given,
        "family_name": family,
        "org_source_ids": ["school-1"],
    }


class FakeRead:
    source_system = "fakesis"
    version = "v9"

    def __init__(self, pages: dict[str, list[Record]], complete: bool, sink: IssueSink) -> None:
        self.pages = pages
        self.complete = complete
        self.sink = sink
        self.summaries: dict[Entity, ReadSummary] = {}

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        items = self.pages.get(entity.value)
        if items is None:
            self.summaries[entity] = ReadSummary(entity=entity, completeness=Completeness.ABSENT)
            return
        unknown = []
        for n, item in enumerate(items, start=1):
            if entity is Entity.USERS and not item.get("given_name"):
                self.sink(
                    RowIssue(
                        file=f"fake /{entity.value}",
                        line=n,
                        column="given_name",
                        message="no given name",
                        action=IssueAction.ROW_SKIPPED,
                    )
                )
                unknown.append(item["source_id"])
                continue
            yield item
        self.summaries[entity] = ReadSummary(
            entity=entity,
            completeness=Completeness.COMPLETE if self.complete else Completeness.PARTIAL,
            label=f"fake /{entity.value}",
            rows=len(items),
            records=len(items) - len(unknown),
            unknown_ids=unknown,
        )

    def summary(self, entity: Entity) -> ReadSummary:
        return self.summaries[entity]


class FakeSource:
    kind: ClassVar[str] = "fake_api"
    spec_model: ClassVar[type[SourceSpec]] = FakeSpec

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        assert isinstance(spec, FakeSpec)
        ctx.raw.put_bytes("pages.json", json.dumps(SERVED[spec.dataset]).encode())
        seen = (ctx.cursor or {}).get("fetches", 0)
        return FetchResult({"pages": 1}, cursor={"fetches": seen + 1})

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[FakeRead]:
        assert isinstance(spec, FakeSpec)
        with raw.open("pages.json") as body:
            pages = json.loads(body.read())
        yield FakeRead(pages, spec.complete, sink)


@pytest.fixture
def fake_source() -> Iterator[None]:
    register_source(FakeSource())
    yield
    unregister_source("fake_api")
    SERVED.clear()


def _sync(cloud: tuple[Any, Deps], spec: FakeSpec) -> Any:
    local, deps = cloud
    ensure_tenant(deps, "t1", create=True)
    return start_sync(local, deps, "t1", spec, keys.new_run_id(), trigger="api")


def test_a_registered_source_syncs_end_to_end(cloud, fake_source):
    """Given a source registered with one call, when a run names it, then its records go
    through the real state machine to the directory, and a later complete read that no
    longer lists a record archives it."""
    org = {
        "source_system": "fakesis",
        "source_id": "school-1",
        "status": "active",
        "name": "Fake School",
        "type": "school",
    }
    SERVED["day1"] = {
        "orgs": [org],
        "users": [_user("s1", "Ada", "Ng"), _user("s2", "Bo", "Li"), _user("s3", "", "Kay")],
    }
    first = _sync(cloud, FakeSpec(dataset="day1"))
    assert first.status == "committed", first.error
    assert first.states[-1] == "Committed"
    assert first.counts["users"]["add"] == 2 and first.counts["orgs"]["add"] == 1
    assert first.report["issues_total"] == 1
    assert first.report["source"] == "fake_api"
    assert first.report["inputs"]["users"]["unknown"] == 1
    users = export_directory(cloud[1], "t1")["users"]
    assert {(u["source_system"], u["source_id"]) for u in users} == {
        ("fakesis", "s1"),
        ("fakesis", "s2"),
    }
    run = cloud[1].runs.get("t1", first.run_id)
    assert run.source == {"kind": "fake_api", "dataset": "day1", "complete": True}
    pointer = cloud[1].store.get_json(keys.state_pointer_key("t1"))
    assert pointer["source_cursor"] == {"kind": "fake_api", "cursor": {"fetches": 1}}

    # s3 (unknown on day 1) and s2 are gone from a complete read: s2 is archived.
    SERVED["day2"] = {"orgs": [org], "users": [_user("s1", "Ada", "Ng")]}
    second = _sync(cloud, FakeSpec(dataset="day2"))
    assert second.status in {"committed", "held"}, second.error
    archived = [
        a
        for a in cloud[1].store.iter_jsonl(keys.changes_key("t1", second.run_id, Entity.USERS))
        if a["action"] == "archive"
    ]
    assert [a["source_id"] for a in archived] == ["s2"]
    # The cursor the first commit kept was handed to the second fetch.
    pointer = cloud[1].store.get_json(keys.state_pointer_key("t1"))
    assert pointer["source_cursor"]["cursor"] == {"fetches": 2}


def test_a_partial_read_archives_nothing(cloud, fake_source):
    """Given a committed roster, when the source says its read is partial, then the
    records it did not list are not archived."""
    org = {
        "source_system": "fakesis",
        "source_id": "school-1",
        "status": "active",
        "name": "Fake School",
        "type": "school",
    }
    SERVED["full"] = {"orgs": [org], "users": [_user("s1", "Ada", "Ng"), _user("s2", "Bo", "Li")]}
    assert _sync(cloud, FakeSpec(dataset="full")).status == "committed"
    SERVED["sample"] = {"orgs": [org], "users": [_user("s1", "Ada", "Ngo")]}
    outcome = _sync(cloud, FakeSpec(dataset="sample", complete=False))
    assert outcome.status == "committed", outcome.error
    assert outcome.counts["users"] == {"add": 0, "update": 1, "archive": 0, "reactivate": 0}
    active = {u["source_id"] for u in export_directory(cloud[1], "t1")["users"]}
    assert active == {"s1", "s2"}


def test_the_pipeline_names_no_source():
    """Stage, hold, match and report read only the read summary: no pipeline module
    names a source kind or the format of one."""
    pipeline = Path(rostersync.__file__).parent / "pipeline"
    for path in pipeline.glob("*.py"):
        text = path.read_text()
        for word in ("oneroster", "OneRoster", "manifest", "bulk", "skipped_ids"):
            assert word not in text.replace("oneroster_csv", "") or path.name == "contracts.py", (
                path.name,
                word,
            )
    assert ENTITY_ORDER  # the entities every source maps onto
