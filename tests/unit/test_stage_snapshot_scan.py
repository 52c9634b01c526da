"""Stage finds the baseline lines of the records it still has to compare without
parsing the others, and a line it cannot recognise that way is still found."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import orjson

from rostersync.models import Entity
from rostersync.pipeline.stage import EntityStager
from rostersync.storage import keys
from rostersync.storage.local import open_local_store
from rostersync.storage.objects import dumps_line


def _stager(tmp_path: Path, lines: list[bytes], pending: set[tuple[str, str]]) -> SimpleNamespace:
    store = open_local_store(tmp_path / "state").objects("bucket")
    store.put_bytes(
        keys.state_key("t1", "20261201T000000Z-0a1b2c3d", Entity.USERS), b"".join(lines)
    )
    return SimpleNamespace(
        state=SimpleNamespace(tenant="t1"),
        entity=Entity.USERS,
        store=store,
        baseline_run="20261201T000000Z-0a1b2c3d",
        pending={key: object() for key in pending},
        relinked={},
    )


def _line(system: str, source_id: str, **more: object) -> bytes:
    return dumps_line({"source_system": system, "source_id": source_id, "target_id": "x", **more})


def test_only_the_pending_records_lines_are_parsed(tmp_path):
    lines = [_line("s", f"id-{n}") for n in range(50)]
    stager = _stager(tmp_path, lines, {("s", "id-7"), ("s", "id-30")})
    seen = []
    for line in EntityStager._pending_lines(stager):  # type: ignore[arg-type]
        seen.append(line["source_id"])
        stager.pending.pop((line["source_system"], line["source_id"]), None)
    assert seen == ["id-7", "id-30"]


def test_a_line_written_another_way_is_still_found(tmp_path):
    # Keys in another order (an older writer): not recognisable unparsed, so every line
    # is read once the recognisable ones are done.
    other = orjson.dumps({"target_id": "x", "source_id": "id-2", "source_system": "s"}) + b"\n"
    lines = [_line("s", "id-1"), other, _line("s", "id-3")]
    stager = _stager(tmp_path, lines, {("s", "id-1"), ("s", "id-2")})
    found = []
    for line in EntityStager._pending_lines(stager):  # type: ignore[arg-type]
        key = (line["source_system"], line["source_id"])
        if stager.pending.pop(key, None) is not None:
            found.append(key[1])
    assert found == ["id-1", "id-2"]
