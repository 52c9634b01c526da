"""The columnar diff on hand-made id lines: what it hands to Python, what it counts as
unchanged, what it finds absent, and when it declines (Python then compares row by row)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from rostersync.pipeline.columnar import Diff, diff_entity
from rostersync.storage.local.database import Database
from rostersync.storage.local.objects import LocalObjectStore

S = "oneroster"


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(Database(tmp_path / "db.sqlite3"), tmp_path, "bucket")


def _diff(
    store: LocalObjectStore,
    ids: list[list[Any]],
    decisions: list[list[Any]],
    baseline: list[list[Any]] | None,
    stack: ExitStack,
) -> Diff | None:
    store.write_jsonl("ids.jsonl", ids)
    store.write_jsonl("matched.jsonl", decisions)
    if baseline is not None:
        store.write_jsonl("index.jsonl", baseline)
    return diff_entity(
        store, "ids.jsonl", "matched.jsonl", None if baseline is None else ["index.jsonl"], stack
    )


def test_only_records_that_are_not_unchanged_reach_python(store: LocalObjectStore) -> None:
    ids = [
        [S, "same", "active", "h1", 0],
        [S, "edited", "active", "h2-new", 1],
        [S, "new", "active", "h3", 2],
        [S, "deleted", "tobedeleted", "h4", 3],
        [S, "back", "active", "h5", 4],
        [S, "held", "active", "h6", 5],
        [S, "merged-a", "active", "h7", 6],
        [S, "merged-b", "active", "h8", 7],
        [S, "reissued", "active", "h9", 8],
    ]
    decisions = [
        [S, "same", "t-same", "linked", None],
        [S, "edited", "t-edited", "linked", None],
        [S, "new", "t-new", "unmatched", None],
        [S, "deleted", "t-deleted", "linked", None],
        [S, "back", "t-back", "linked", None],
        [S, "held", None, "suggested", 0.7],
        [S, "merged-a", "t-shared", "manual", 1.0],
        [S, "merged-b", "t-shared", "manual", 1.0],
        [S, "reissued", "t-old", "auto", 0.99],
    ]
    baseline = [
        [S, "same", "t-same", "active", "h1"],
        [S, "edited", "t-edited", "active", "h2"],
        [S, "deleted", "t-deleted", "active", "h4"],
        [S, "back", "t-back", "archived", "h5"],
        [S, "held", "t-held", "active", "h6"],
        [S, "merged-a", "t-shared", "active", "h7"],
        [S, "merged-b", "t-shared-b", "active", "h8"],
        [S, "old-id", "t-old", "active", "h9"],
        [S, "gone", "t-gone", "active", "hx"],
        [S, "long-gone", "t-lg", "archived", "hy"],
    ]
    with ExitStack() as stack:
        diff = _diff(store, ids, decisions, baseline, stack)
        assert diff is not None
        rows = list(diff.rows)

    assert diff.records == 9 and diff.active_before == 8
    assert [r.source_id for r in rows] == [
        "edited",
        "new",
        "deleted",
        "back",
        "held",
        "merged-a",
        "merged-b",
        "reissued",
    ]
    by_id = {r.source_id: r for r in rows}
    assert [r.line for r in rows] == sorted(r.line for r in rows)
    assert by_id["edited"].base_hash == "h2" and by_id["edited"].hash == "h2-new"
    assert by_id["new"].base_target is None and by_id["new"].owner_id is None
    assert by_id["back"].base_status == "archived"
    assert by_id["held"].target_id is None
    assert by_id["merged-a"].shared and by_id["merged-b"].shared
    assert not by_id["edited"].shared
    # A source id the baseline does not know, decided to an app id the baseline holds.
    assert (by_id["reissued"].owner_system, by_id["reissued"].owner_id) == (S, "old-id")
    assert by_id["reissued"].score == 0.99
    # Absent: active baseline records the run does not carry (the archived one is not).
    assert [(a.source_id, a.target_id) for a in diff.absent] == [
        ("gone", "t-gone"),
        ("old-id", "t-old"),
    ]


def test_a_first_sync_hands_over_every_record(store: LocalObjectStore) -> None:
    ids = [[S, f"u{n}", "active", f"h{n}", n] for n in range(5)]
    decisions = [[S, f"u{n}", f"t{n}", "unmatched", None] for n in range(5)]
    with ExitStack() as stack:
        diff = _diff(store, ids, decisions, None, stack)
        assert diff is not None
        assert [r.source_id for r in diff.rows] == [f"u{n}" for n in range(5)]
        assert diff.absent == [] and diff.active_before == 0


@pytest.mark.parametrize(
    ("ids", "decisions", "baseline"),
    [
        pytest.param(  # id lines without their line numbers (an older version's)
            [[S, "a", "active", "h"]], [[S, "a", "t", "linked", None]], [], id="no-lines"
        ),
        pytest.param(  # a source id twice in the run
            [[S, "a", "active", "h", 0], [S, "a", "active", "h", 1]],
            [[S, "a", "t", "linked", None], [S, "a", "t", "linked", None]],
            [],
            id="twice",
        ),
        pytest.param(  # decisions out of step: one record decided twice, one not at all
            [[S, "a", "active", "h", 0], [S, "b", "active", "h", 1]],
            [[S, "a", "t", "linked", None], [S, "a", "t", "linked", None]],
            [],
            id="decided-twice",
        ),
        pytest.param(  # a decision for another record
            [[S, "a", "active", "h", 0]], [[S, "z", "t", "linked", None]], [], id="other-key"
        ),
        pytest.param(  # a baseline holding one app id twice
            [[S, "a", "active", "h", 0]],
            [[S, "a", "t", "linked", None]],
            [[S, "a", "t", "active", "h"], [S, "b", "t", "active", "h"]],
            id="shared-before",
        ),
    ],
)
def test_the_diff_declines_where_it_cannot_pair_one_to_one(
    store: LocalObjectStore,
    ids: list[list[Any]],
    decisions: list[list[Any]],
    baseline: list[list[Any]],
) -> None:
    with ExitStack() as stack:
        assert _diff(store, ids, decisions, baseline, stack) is None
