"""A run's normalized lines by number: sliced by the ends normalize keeps, else read
forwards; the same lines either way."""

from __future__ import annotations

from array import array
from contextlib import ExitStack
from pathlib import Path

import pytest

from rostersync.errors import RunStateError
from rostersync.models import Entity
from rostersync.packed import pack
from rostersync.pipeline.columnar import RecordLines
from rostersync.storage import keys
from rostersync.storage.local.database import Database
from rostersync.storage.local.objects import LocalObjectStore
from rostersync.storage.objects import dumps_line

S, T, RUN, E = "oneroster", "t1", "20260101T000000Z-0000abcd", Entity.USERS


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(Database(tmp_path / "db.sqlite3"), tmp_path, "bucket")


def _records(store: LocalObjectStore, count: int) -> list[bytes]:
    lines = [dumps_line({"source_system": S, "source_id": f"u{n}", "n": n}) for n in range(count)]
    store.put_bytes(keys.normalized_key(T, RUN, E), b"".join(lines))
    return [line[:-1] for line in lines]


def _keep_ends(store: LocalObjectStore, lines: list[bytes], shift: int = 0) -> None:
    ends, at = array("Q"), 0
    for line in lines:
        at += len(line) + 1
        ends.append(at + shift)
    body = pack({}, array("B", b"state"), ends, array("Q", range(len(lines))))
    store.put_bytes(keys.normalized_reuse_key(T, RUN, E), body)


@pytest.mark.parametrize(
    "ends", ["kept", "kept, read forwards", "none", "not this file", "not a packing"]
)
def test_lines_by_number_are_the_file_lines(store: LocalObjectStore, ends: str) -> None:
    lines = _records(store, 50)
    if ends.startswith("kept"):
        _keep_ends(store, lines)
    elif ends == "not this file":
        _keep_ends(store, lines, shift=1)
    elif ends == "not a packing":
        store.put_bytes(keys.normalized_reuse_key(T, RUN, E), b"garbage")
    wanted = [0, 1, 7, 8, 30, 49]
    with ExitStack() as stack:
        reader = RecordLines(store, T, RUN, E, stack, sliced=ends != "kept, read forwards")
        assert [reader.at(n, S, f"u{n}") for n in wanted] == [lines[n] for n in wanted]
        with pytest.raises(RunStateError, match="asked again"):
            reader.at(8)


def test_a_slice_of_another_record_is_not_taken(store: LocalObjectStore) -> None:
    lines = _records(store, 10)
    # Ends of a file of the same size whose lines were cut elsewhere: line 2's slice
    # then starts inside another record, and the reader falls back to reading forwards.
    moved = [len(b"".join(lines[: n + 1])) + n + 1 for n in range(10)]
    moved[1] += 3
    store.put_bytes(
        keys.normalized_reuse_key(T, RUN, E),
        pack({}, array("B", b"state"), array("Q", moved), array("Q", range(10))),
    )
    with ExitStack() as stack:
        reader = RecordLines(store, T, RUN, E, stack)
        assert reader.at(0, S, "u0") == lines[0]
        assert reader.at(2, S, "u2") == lines[2]
        assert reader.at(9, S, "u9") == lines[9]


def test_a_line_past_the_end_is_an_error(store: LocalObjectStore) -> None:
    lines = _records(store, 3)
    _keep_ends(store, lines)
    with ExitStack() as stack:
        reader = RecordLines(store, T, RUN, E, stack)
        with pytest.raises(RunStateError, match="ends before line 3"):
            reader.at(3)
