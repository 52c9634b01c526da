"""The match engine's one joined table per entity answers what the id lines and the
baseline index say, computed here in Python from the same lines: the records not linked
yet, the linked ones, the baseline's absent records, the app ids held, the lines of
records; and it refuses an entity whose baseline repeats a key, whether the run carries
that key or not, and whether the run repeats a key too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from rostersync.models import Entity
from rostersync.pipeline.match_columnar import IdTables
from rostersync.pipeline.match_decisions import new_target_id
from rostersync.storage import keys
from rostersync.storage.local.database import Database
from rostersync.storage.local.objects import LocalObjectStore

S, OTHER, T, E = "oneroster", "clever", "t1", Entity.USERS
RUN, BASE = "20260102T000000Z-0000abcd", "20260101T000000Z-0000abcd"

#: ``[source_system, source_id, status, hash]`` (the line number is added).
IDS: list[list[Any]] = [
    [S, "linked-1", "active", "h1"],
    [S, "new-1", "active", "h2"],
    [S, "linked-2", "active", "h3"],
    [S, "manual", "active", "h4"],
    [OTHER, "moved", "active", "h5"],  # its baseline record is under another system
    [S, "new-2", "tobedeleted", "h6"],
    [S, "linked-3", "active", "h7"],
]
#: ``[source_system, source_id, target_id, status, hash]``.
BASELINE: list[list[Any]] = [
    [S, "gone-archived", "t-ga", "archived", "hx"],
    [S, "linked-3", "t-3", "active", "h7"],
    [S, "manual", "t-m", "active", "h4"],
    [S, "linked-1", "t-1", "active", "h1"],
    [S, "moved", "t-moved", "active", "h5"],
    [S, "gone", "t-gone", "active", "hy"],
    [S, "linked-2", None, "active", "h3"],
]
SPECIAL = {"manual"}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(Database(tmp_path / "db.sqlite3"), tmp_path, "bucket")


def _write(store: LocalObjectStore, ids: list[list[Any]], baseline: list[list[Any]]) -> None:
    store.write_jsonl(
        keys.normalized_ids_key(T, RUN, E), [[*line, n * 2] for n, line in enumerate(ids)]
    )
    store.write_jsonl(keys.state_index_key(T, BASE, E), baseline)


def _expected(ids: list[list[Any]], baseline: list[list[Any]]) -> dict[str, Any]:
    """What each question answers, from the lines as the row-by-row path reads them."""
    index = {(line[0], line[1]): line for line in baseline}
    present = {line[1] for line in ids}
    pending = []
    linked = []
    for position, (system, source_id, *_) in enumerate(ids):
        link = index.get((system, source_id))
        if link is None or source_id in SPECIAL:
            target = None if link is None else link[2]
            pending.append((position, position * 2, system, source_id, link is not None, target))
        if link is not None:
            linked.append((position, source_id, link[2]))
    absent = {
        (line[0], line[1]) for line in baseline if line[3] == "active" and line[1] not in present
    }
    return {"pending": pending, "linked": linked, "absent": absent}


def test_the_questions_are_answered_as_the_lines_say(store: LocalObjectStore) -> None:
    _write(store, IDS, BASELINE)
    expected = _expected(IDS, BASELINE)
    with IdTables(store, T, RUN, BASE) as tables:
        assert tables.usable(E)
        assert tables.pending(E, SPECIAL) == expected["pending"]
        assert tables.linked(E) == expected["linked"]
        assert tables.absent(E) == expected["absent"] == {(S, "gone")}
        assert tables.targets_among(E, ["t-1", "t-gone", "t-ga", "t-none", 5]) == {
            "t-1",
            "t-gone",
            "t-ga",
        }
        assert tables.lines_of(E, {"new-1", "linked-3", "gone"}) == {2, 12}
        assert tables.last_system(E) == S
        assert tables.loaded() == [E]
        tiers: dict[str, int] = {}
        tables.write_decisions(
            E,
            keys.matched_key(T, RUN, E),
            SPECIAL,
            lambda system, source_id: ([system, source_id, "t-m2", "manual", 1.0], "manual"),
            tiers,
        )
        assert tables.loaded() == []
    lines = [orjson.loads(line) for line in store.iter_lines(keys.matched_key(T, RUN, E))]
    assert lines == [
        [S, "linked-1", "t-1", "linked", None],
        [S, "new-1", new_target_id(T, E, S, "new-1"), "unmatched", None],
        [S, "linked-2", None, "linked", None],
        [S, "manual", "t-m2", "manual", 1.0],
        [OTHER, "moved", new_target_id(T, E, OTHER, "moved"), "unmatched", None],
        [S, "new-2", new_target_id(T, E, S, "new-2"), "unmatched", None],
        [S, "linked-3", "t-3", "linked", None],
    ]
    assert tiers == {"manual": 1, "linked": 3, "unmatched": 3}


def test_without_a_baseline_every_record_is_new(store: LocalObjectStore) -> None:
    _write(store, IDS, [])
    with IdTables(store, T, RUN, None) as tables:
        assert tables.usable(E)
        assert [row[3] for row in tables.pending(E, set())] == [line[1] for line in IDS]
        assert tables.linked(E) == [] and tables.absent(E) == set()


@pytest.mark.parametrize(
    ("ids", "baseline", "usable"),
    [
        pytest.param(IDS, [*BASELINE, [S, "linked-1", "t-1b", "active", "h1"]], False, id="run's"),
        pytest.param(IDS, [*BASELINE, [S, "gone", "t-gone2", "active", "hy"]], False, id="absent"),
        pytest.param([*IDS, IDS[0]], BASELINE, True, id="run-repeats"),
        pytest.param(
            [*IDS, IDS[0]],
            [*BASELINE, [S, "gone", "t-gone2", "active", "hy"]],
            False,
            id="both-repeat",
        ),
        pytest.param(
            [*IDS, IDS[0]],
            [*BASELINE, [S, "linked-1", "t-1b", "active", "h1"]],
            False,
            id="both-repeat-one-key",
        ),
    ],
)
def test_a_baseline_that_repeats_a_key_is_left_to_the_rows(
    store: LocalObjectStore, ids: list[list[Any]], baseline: list[list[Any]], usable: bool
) -> None:
    _write(store, ids, baseline)
    with IdTables(store, T, RUN, BASE) as tables:
        assert tables.usable(E) is usable
        assert tables.loaded() == ([E] if usable else [])
