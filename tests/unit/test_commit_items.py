"""The commit builds directory items as dicts, without a model each: the same items, in
the same shape, as the model's flat form."""

from __future__ import annotations

import orjson
import pytest

from rostersync.pipeline.commit import flat_item
from rostersync.records import IDENTITY, DirectoryItem, ItemStatus

_RECORD = {
    "source_system": "oneroster",
    "source_id": "us0007",
    "status": "active",
    "date_last_modified": "2026-09-01T06:00:00Z",
    "role": "student",
    "given_name": "Ada",
    "email": None,
    "grades": ["05"],
    "extensions": {},
}


def _model_flat(line: dict[str, object], status: str, run_id: str) -> dict[str, object]:
    record = line["record"]
    assert isinstance(record, dict)
    return DirectoryItem(
        target_id=str(line["target_id"]),
        source_system=str(line["source_system"]),
        source_id=str(line["source_id"]),
        status=ItemStatus(status),
        run_id=run_id,
        fields={k: v for k, v in record.items() if k not in IDENTITY},
    ).flat()


@pytest.mark.parametrize("status", ["active", "archived"])
def test_a_flat_item_is_the_models_flat_form_byte_for_byte(status: str) -> None:
    line = {
        "source_system": "oneroster",
        "source_id": "us0007",
        "target_id": "app-7",
        "status": status,
        "hash": "h",
        "record": _RECORD,
    }
    built = flat_item(line, "run-1")
    assert orjson.dumps(built) == orjson.dumps(_model_flat(line, status, "run-1"))
    assert _RECORD["status"] == "active", "the record itself is left as it was"


def test_an_action_gets_the_status_it_is_given() -> None:
    action = {
        "source_system": "oneroster",
        "source_id": "us0007",
        "target_id": "app-7",
        "record": {**_RECORD, "status": "tobedeleted"},
    }
    assert flat_item(action, "run-1", "active")["status"] == "active"


def test_a_line_with_no_such_status_is_refused() -> None:
    line = {"source_system": "s", "source_id": "1", "target_id": "t", "status": "gone"}
    with pytest.raises(ValueError, match="no such status"):
        flat_item(line, "run-1")
