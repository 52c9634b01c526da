"""Run records and directory items: what a partial update writes, the flat shape of a
directory item, and the state machine's own writes to run records."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rostersync.records import (
    ACTIVE_STATUSES,
    DirectoryChange,
    DirectoryItem,
    ItemStatus,
    RunProgress,
    RunRecord,
    RunStatus,
    RunUpdate,
)

ASL = Path(__file__).resolve().parents[2] / "statemachines" / "sync.asl.json"


def test_an_update_writes_only_what_it_sets_and_a_none_clears() -> None:
    update = RunUpdate(status=RunStatus.PREPARED, last_error=None)
    assert update.attributes() == {"status": "prepared", "last_error": None}
    assert RunUpdate().attributes() == {}
    moment = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    progress = RunUpdate(progress=RunProgress(step="match", since=moment)).attributes()
    # A nested value is written whole (what it was given; the rest reads as defaults).
    assert progress == {"progress": {"step": "match", "since": "2026-12-01T10:00:05Z"}}
    assert RunRecord.model_validate({"run_id": "r", "status": "running", **progress}).progress == (
        RunProgress(step="match", since=moment, counts={}, runner=None)
    )


def test_an_update_names_only_attributes_a_run_has() -> None:
    with pytest.raises(ValidationError):
        RunUpdate.model_validate({"statuss": "prepared"})
    with pytest.raises(ValidationError):
        RunUpdate.model_validate({"status": "half-done"})


def test_a_record_leaves_out_what_it_does_not_have() -> None:
    run = RunRecord(run_id="20261201T100000Z-00000001", status=RunStatus.SKIPPED, reason="idle")
    assert run.attributes() == {"status": "skipped", "reason": "idle"}
    assert not run.active
    assert RunRecord(run_id="r", status=RunStatus.COMMITTING).active
    assert {s.value for s in ACTIVE_STATUSES} == {"running", "committing"}


def test_a_stored_record_is_shown_with_the_attributes_it_has() -> None:
    stored: dict[str, Any] = {"run_id": "r", "status": "failed", "requested_by": None}
    assert RunRecord.model_validate(stored).shown() == stored


def test_a_directory_item_is_its_fields_beside_its_identity() -> None:
    flat = {
        "target_id": "app-1",
        "source_system": "oneroster",
        "source_id": "us1",
        "status": "archived",
        "run_id": "20261201T100000Z-00000001",
        "given_name": "Ada",
        "email": None,
        "grades": ["05"],
    }
    item = DirectoryItem.from_flat(flat)
    assert item.target_id == "app-1" and item.source_id == "us1"
    assert item.status is ItemStatus.ARCHIVED
    assert item.fields == {"given_name": "Ada", "email": None, "grades": ["05"]}
    assert item.flat() == flat


def test_a_directory_item_without_a_status_is_active() -> None:
    item = DirectoryItem.from_flat({"target_id": "c1", "title": "Maths"})
    assert item.status is ItemStatus.ACTIVE
    assert item.flat() == {"target_id": "c1", "status": "active", "title": "Maths"}


@pytest.mark.parametrize("name", ["target_id", "status", "source_id", "run_id", "adhoc"])
def test_an_identity_attribute_is_never_a_field(name: str) -> None:
    with pytest.raises(ValidationError):
        DirectoryItem(target_id="u1", fields={name: "x"})
    with pytest.raises(ValidationError):
        DirectoryChange(fields={name: "x"})


def test_a_change_sets_the_status_and_the_fields_it_names() -> None:
    change = DirectoryChange(status=ItemStatus.ARCHIVED, adhoc=False, fields={"email": "a@x"})
    assert change.attributes() == {"email": "a@x", "status": "archived", "adhoc": False}
    assert DirectoryChange(fields={"phone": "1"}).attributes() == {"phone": "1"}


def _runs_table_tasks() -> list[dict[str, Any]]:
    definition = json.loads(ASL.read_text())
    tasks = []

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state.get("Resource") == "arn:aws:states:::dynamodb:updateItem":
                tasks.append(state["Parameters"])
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"]["States"])

    walk(definition["States"])
    return tasks


def test_every_attribute_the_state_machine_writes_on_a_run_is_a_run_attribute() -> None:
    tasks = [t for t in _runs_table_tasks() if "Runs" in t["TableName"]]
    assert tasks, "the state machine records failures on the run itself"
    for task in tasks:
        names = set(task["ExpressionAttributeNames"].values())
        assert names <= set(RunRecord.model_fields), names
        for value in task["ExpressionAttributeValues"].values():
            literal = value.get("S")
            if literal is not None and re.fullmatch(r"[a-z]+", literal):
                assert literal in {s.value for s in RunStatus}, literal
