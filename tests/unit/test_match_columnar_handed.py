"""The diff the match step hands to stage is the diff stage computes itself from the
files (``columnar.diff_entity``): the same rows in the same order, the same absences and
counts; and stage takes it only while the files it was computed from are unchanged."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from rostersync.models import Entity
from rostersync.pipeline.columnar import Diff, diff_entity, handed_diff, handed_keys
from rostersync.pipeline.match_columnar import IdTables
from rostersync.pipeline.match_decisions import new_target_id
from rostersync.storage import keys
from rostersync.storage.local.database import Database
from rostersync.storage.local.objects import LocalObjectStore

S, T, E = "oneroster", "t1", Entity.USERS
RUN, BASE = "20260102T000000Z-0000abcd", "20260101T000000Z-0000abcd"

IDS: list[list[Any]] = [
    [S, "same", "active", "h1"],
    [S, "edited", "active", "h2-new"],
    [S, "new", "active", "h3"],
    [S, "deleted", "tobedeleted", "h4"],
    [S, "back", "active", "h5"],
    [S, "held", "active", "h6"],
    [S, "merged-a", "active", "h7"],
    [S, "merged-b", "active", "h8"],
    [S, "reissued", "active", "h9"],
    [S, "no-status", None, "h10"],
    [S, "no-hash", "active", None],
    [S, "comeback", "active", "h11"],
    [S, "special-same", "active", "h12"],
    [S, "no-target", "active", "h13"],
]
#: The matcher's own decisions (``[target, tier, score]``); every other record is
#: linked by the baseline or new.
SPECIAL: dict[str, list[Any]] = {
    "held": [None, "suggested", 0.7],
    "merged-a": ["t-shared", "manual", 1.0],
    "merged-b": ["t-shared", "manual", 1],
    "reissued": ["t-old", "auto", 0.99],
    "special-same": ["t-special-same", "manual", 1.0],
}
BASELINE: list[list[Any]] = [
    [S, "same", "t-same", "active", "h1"],
    [S, "edited", "t-edited", "active", "h2"],
    [S, "deleted", "t-deleted", "active", "h4"],
    [S, "back", "t-back", "archived", "h5"],
    [S, "held", "t-held", "active", "h6"],
    [S, "merged-a", "t-shared", "active", "h7"],
    [S, "merged-b", "t-shared-b", "active", "h8"],
    [S, "old-id", "t-old", "active", "h9"],
    [S, "no-status", "t-no-status", "active", "h10"],
    [S, "no-hash", "t-no-hash", "active", None],
    # The app id the run's new record "comeback" is given, held by a record gone now.
    [S, "prior", new_target_id(T, E, S, "comeback"), "active", "h11"],
    [S, "special-same", "t-special-same", "active", "h12"],
    [S, "no-target", None, "active", "h13"],
    # Absent, in the order of their values (a quote sorts after "!").
    [S, "a!", "t-a!", "active", "hz"],
    [S, "a", "t-a", "active", "hz"],
    [S, "long-gone", "t-lg", "archived", "hy"],
]


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(Database(tmp_path / "db.sqlite3"), tmp_path, "bucket")


def _special_line(system: str, source_id: str) -> tuple[list[Any], str] | None:
    decided = SPECIAL.get(source_id)
    if decided is None:
        return None
    return [system, source_id, *decided], decided[1]


def _match(store: LocalObjectStore, ids: list[list[Any]], baseline: list[list[Any]]) -> None:
    store.write_jsonl(
        keys.normalized_ids_key(T, RUN, E), [[*line, n] for n, line in enumerate(ids)]
    )
    store.write_jsonl(keys.state_index_key(T, BASE, E), baseline)
    tiers: dict[str, int] = {}
    with IdTables(store, T, RUN, BASE, hand_from=0) as tables:
        assert tables.usable(E)
        tables.write_decisions(E, keys.matched_key(T, RUN, E), set(SPECIAL), _special_line, tiers)


def _computed(store: LocalObjectStore, stack: ExitStack) -> Diff | None:
    return diff_entity(
        store,
        keys.normalized_ids_key(T, RUN, E),
        keys.matched_key(T, RUN, E),
        [keys.state_index_key(T, BASE, E)],
        stack,
    )


def _same(handed: Diff, computed: Diff) -> list[Any]:
    rows = list(handed.rows)
    assert rows == list(computed.rows)
    assert handed.absent == computed.absent
    assert (handed.records, handed.active_before) == (computed.records, computed.active_before)
    return rows


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param([], id="plain"),
        pytest.param([[S, "odd", 'quo"te', "h"]], id="status-escaped"),
        pytest.param([[S, "odd", "active", 5]], id="hash-number"),
        pytest.param([[S, "odd", "act\u0069ve", "caf\u00e9"]], id="escapes"),
    ],
)
def test_the_handed_diff_is_the_computed_one(store: LocalObjectStore, odd: list[Any]) -> None:
    base = [[S, "odd", "t-odd", "active", "caf\u00e9"]] if odd else []
    _match(store, IDS + odd, BASELINE + base)
    with ExitStack() as stack:
        handed = handed_diff(store, T, RUN, E, BASE, stack)
        computed = _computed(store, stack)
        assert handed is not None and computed is not None
        rows = _same(handed, computed)
    by_id = {row.source_id: row for row in rows}
    # Every kind of record stage must see is among them; the unchanged are not.
    assert "same" not in by_id and "no-status" not in by_id and "special-same" not in by_id
    assert by_id["merged-a"].shared and by_id["merged-b"].shared
    assert (by_id["reissued"].owner_system, by_id["reissued"].owner_id) == (S, "old-id")
    assert (by_id["comeback"].owner_system, by_id["comeback"].owner_id) == (S, "prior")
    assert by_id["held"].target_id is None and by_id["held"].score == 0.7
    assert {"edited", "new", "deleted", "back", "no-hash", "no-target"} <= set(by_id)
    assert [a.source_id for a in handed.absent] == ["a", "a!", "old-id", "prior"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda ids, base: ([*ids, [S, "edited", "active", "h"]], base), id="twice"),
        pytest.param(
            lambda ids, base: (ids, [*base, [S, "other", "t-same", "active", "h"]]),
            id="app-id-twice",
        ),
        pytest.param(lambda ids, base: ([*ids, [S, "odd", "active", "h", 1.5]], base), id="line"),
    ],
)
def test_where_stage_would_not_take_the_diff_none_is_handed(
    store: LocalObjectStore, change: Any
) -> None:
    ids, baseline = change(IDS, BASELINE)
    _match(store, ids, baseline)
    with ExitStack() as stack:
        assert handed_diff(store, T, RUN, E, BASE, stack) is None


def test_a_diff_of_files_written_since_is_not_taken(store: LocalObjectStore) -> None:
    _match(store, IDS, BASELINE)
    with ExitStack() as stack:
        assert handed_diff(store, T, RUN, E, "20251231T000000Z-0000abcd", stack) is None
        assert handed_diff(store, T, RUN, E, BASE, stack) is not None
    for key in (
        keys.matched_key(T, RUN, E),
        keys.normalized_ids_key(T, RUN, E),
        keys.state_index_key(T, BASE, E),
        handed_keys(T, RUN, E)[1],
    ):
        body = store.get_bytes(key)
        assert body is not None
        _match(store, IDS, BASELINE)
        store.put_bytes(key, body)  # the same bytes, written again: a new version
        with ExitStack() as stack:
            assert handed_diff(store, T, RUN, E, BASE, stack) is None


def test_a_small_entity_is_left_to_stage(store: LocalObjectStore) -> None:
    store.write_jsonl(
        keys.normalized_ids_key(T, RUN, E), [[*line, n] for n, line in enumerate(IDS)]
    )
    store.write_jsonl(keys.state_index_key(T, BASE, E), BASELINE)
    with IdTables(store, T, RUN, BASE, hand_from=len(IDS) + 1) as tables:
        assert tables.usable(E)
        tables.write_decisions(E, keys.matched_key(T, RUN, E), set(SPECIAL), _special_line, {})
    assert store.get_json(handed_keys(T, RUN, E)[0]) is None
    with ExitStack() as stack:
        assert handed_diff(store, T, RUN, E, BASE, stack) is None
        assert _computed(store, stack) is not None
