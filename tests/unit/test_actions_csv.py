"""actions.csv as the command line writes it: every row as ``csv.writer`` writes the
action's columns, whichever way the file was written (the engine for files of plain
actions, row by row for the others), and the included adds counted new and linked."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from rostersync.changes import links_existing
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.columnar import connect_engine
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import ACTION_COLUMNS, _engine_rows, write_actions_csv
from rostersync.storage import keys
from rostersync.storage.local.database import Database
from rostersync.storage.local.objects import LocalObjectStore

TENANT = "t1"
RUN = "20260301T080000Z-0000000a"


@dataclass
class _Deps:
    store: LocalObjectStore


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    store = LocalObjectStore(Database(tmp_path / "db.sqlite3"), tmp_path, "bucket")
    return cast(Deps, _Deps(store))


def _action(n: int, **fields: Any) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": f"users-add-{n:016x}",
        "entity": "users",
        "action": "add",
        "source_system": "oneroster",
        "source_id": f"u{n}",
        "target_id": f"t{n}",
        "tier": "unmatched",
        "included": True,
        "held": False,
        "reason": None,
        "changes": {},
        "record": {"source_id": f"u{n}", "given_name": 'Zoë, "Z"', "nested": [1, {"a": None}]},
    }
    action.update(fields)
    return {k: v for k, v in action.items() if v is not _ABSENT}


_ABSENT = object()

#: Texts a source or an admin's note may hold.
DIRTY = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    "line\nbreak",
    "carriage\rreturn",
    "both\r\nends",
    "tab\there",
    "back\\slash",
    "Zoë 山田 ünïcödé",
    "",
    " leading and trailing ",
    "\u2028separator",
    '"',
    ",",
    "emoji 🎒",
]


def _plain_actions() -> list[dict[str, Any]]:
    actions = [_action(n, source_id=text, reason=text) for n, text in enumerate(DIRTY)]
    actions += [
        _action(100, included=False),
        _action(101, included=None),
        _action(102, included=_ABSENT, reason=_ABSENT, tier=_ABSENT),
        _action(103, tier="key"),
        _action(104, tier="auto", included=False),
        _action(105, tier="manual"),
        _action(106, tier="linked"),
        _action(107, tier="suggested"),
        _action(108, action="archive", changes=None),
        _action(109, action="reactivate", changes=_ABSENT),
    ]
    return actions


def _expected(files: dict[Entity, list[dict[str, Any]]]) -> tuple[bytes, dict[str, Any]]:
    """What actions.csv holds, by ``csv.writer`` over the columns (an oracle apart from
    the code under test), and the included adds."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(ACTION_COLUMNS)
    adds = {entity.value: {"new": 0, "linked": 0} for entity in ENTITY_ORDER}
    for entity in ENTITY_ORDER:
        for action in files.get(entity, []):
            changes = action.get("changes") or {}
            shown = "; ".join(
                f"{name}: {json.dumps(before, ensure_ascii=False)} → "
                f"{json.dumps(after, ensure_ascii=False)}"
                for name, (before, after) in changes.items()
            )
            writer.writerow([shown if c == "changes" else action.get(c) for c in ACTION_COLUMNS])
            if action["action"] == "add" and action.get("included"):
                adds[entity.value]["linked" if links_existing(action) else "new"] += 1
    return text.getvalue().encode(), adds


def _written(deps: Deps, files: dict[Entity, list[dict[str, Any]]]) -> tuple[bytes, Any]:
    for entity, actions in files.items():
        deps.store.write_jsonl(keys.changes_key(TENANT, RUN, entity), actions)
    out = io.BytesIO()
    adds = write_actions_csv(deps, TENANT, RUN, out)
    return out.getvalue(), adds


def test_plain_actions_are_written_by_the_engine_as_the_csv_writer_writes_them(
    deps: Deps, tmp_path: Path
) -> None:
    actions = _plain_actions()
    deps.store.write_jsonl(keys.changes_key(TENANT, RUN, Entity.USERS), actions)
    engine = connect_engine(tmp_path / "spill")
    try:
        out = io.BytesIO()
        counted = _engine_rows(
            deps, engine, keys.changes_key(TENANT, RUN, Entity.USERS), tmp_path / "rows", out
        )
    finally:
        engine.close()
    expected, adds = _expected({Entity.USERS: actions})
    assert counted == adds["users"] == {"new": len(DIRTY) + 1, "linked": 3}
    assert b"\r\n".join(expected.split(b"\r\n")[1:]) == out.getvalue()


@pytest.mark.parametrize(
    "odd",
    [
        {"changes": {"given_name": ["Ann", "Anne"], "grades": [["09"], ["10", "11"]]}},
        {"reason": 5},
        {"reason": 0.1},
        {"reason": True},
        {"reason": {"why": "x"}},
        {"included": "yes"},
        {"source_id": "nul\u0000inside"},
        {"target_id": "escaped\\u0000text"},
    ],
    ids=repr,
)
def test_any_other_action_gives_the_same_file_row_by_row(deps: Deps, odd: dict[str, Any]) -> None:
    files = {
        Entity.ORGS: [_action(1, entity="orgs")],
        Entity.USERS: [*_plain_actions()[:3], _action(50, **odd), _action(51)],
        Entity.ENROLLMENTS: [_action(n, entity="enrollments", source_id=f"e{n}") for n in range(3)],
    }
    written, adds = _written(deps, files)
    expected, expected_adds = _expected(files)
    assert written == expected
    assert adds == expected_adds


def test_a_run_of_several_entities_keeps_their_order(deps: Deps) -> None:
    files = {
        Entity.ENROLLMENTS: [_action(n, entity="enrollments") for n in range(5)],
        Entity.CLASSES: [_action(n, entity="classes", tier="key") for n in range(3)],
        Entity.USERS: _plain_actions(),
        Entity.DEMOGRAPHICS: [
            _action(1, entity="demographics", action="update", changes={"sex": [None, "female"]})
        ],
    }
    written, adds = _written(deps, files)
    expected, expected_adds = _expected(files)
    assert written == expected
    assert adds == expected_adds
    assert written.count(b"\r\n") > len(files[Entity.USERS])


def test_no_change_files_give_the_header_alone(deps: Deps) -> None:
    written, adds = _written(deps, {})
    assert written == b",".join(c.encode() for c in ACTION_COLUMNS) + b"\r\n"
    assert all(v == {"new": 0, "linked": 0} for v in adds.values())


def test_a_file_is_written_through_its_own_folder_and_nothing_is_left_there(
    deps: Deps, tmp_path: Path
) -> None:
    files = {Entity.USERS: _plain_actions(), Entity.ENROLLMENTS: [_action(1, entity="enrollments")]}
    for entity, actions in files.items():
        deps.store.write_jsonl(keys.changes_key(TENANT, RUN, entity), actions)
    folder = tmp_path / "reports"
    folder.mkdir()
    with (folder / "actions.csv").open("wb") as out:
        adds = write_actions_csv(deps, TENANT, RUN, out)
    expected, expected_adds = _expected(files)
    assert (folder / "actions.csv").read_bytes() == expected
    assert adds == expected_adds
    assert [p.name for p in folder.iterdir()] == ["actions.csv"]


def test_the_same_file_from_the_s3_adapter(tmp_path: Path) -> None:
    """Through the S3 adapter (moto) the engine reads each change file's downloaded copy:
    the same bytes and counts, the engine taking the plain file."""
    from rostersync.config import stack_settings
    from rostersync.local.runtime import LocalCloud
    from rostersync.pipeline.deps import build_deps

    files = {
        Entity.USERS: _plain_actions(),
        Entity.DEMOGRAPHICS: [
            _action(1, entity="demographics", action="update", changes={"sex": [None, "f"]})
        ],
    }
    with LocalCloud(None, storage="moto"):
        deps = build_deps(stack_settings())
        written, adds = _written(deps, files)
        engine = connect_engine(tmp_path / "spill")
        try:
            plain = _engine_rows(
                deps,
                engine,
                keys.changes_key(TENANT, RUN, Entity.USERS),
                tmp_path / "rows",
                io.BytesIO(),
            )
        finally:
            engine.close()
    expected, expected_adds = _expected(files)
    assert written == expected
    assert adds == expected_adds
    assert plain == expected_adds["users"]
