"""The commit's snapshot rewrite copies the baseline's unchanged lines as runs of bytes:
its snapshots and indexes are byte for byte those of the line-by-line rewrite, day after
day (adds, updates, archives, reactivations, re-links; whole and in parts; lines across
reads), with the same directory items and links; baselines not as the commit writes
them (an empty line, keys with escapes or nulls, a change whose record is missing) give
the line-by-line result too. A snapshot kept as a top layer over the earlier run's
parts holds the same lines as the rewrite, and is made flat again with the same lines."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline import commit as commit_module
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.pipeline.snapshot import live_pairs, snapshot_files, snapshot_parts
from rostersync.storage import keys
from rostersync.storage.objects import dumps_line
from tests.integration.days import committed_days, three_days

TENANT = "district"


class Recorded:
    """Directory items or links as a commit hands them over (in order), kept aside."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_flat(self, tenant: str, entity: str, items: Iterable[dict[str, Any]]) -> int:
        before = len(self.items)
        self.items.extend(dict(item, entity=entity) for item in items)
        return len(self.items) - before

    def put_many(self, tenant: str, entity: str, links: list[dict[str, Any]]) -> int:
        self.items.extend(
            {k: v for k, v in link.items() if k != "linked_at"} | {"entity": entity}
            for link in links
        )
        return len(links)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return three_days(tmp_path_factory.mktemp("district"))


def _recording(deps: Deps) -> tuple[Deps, Recorded, Recorded]:
    items, links = Recorded(), Recorded()
    return dataclasses.replace(deps, directory=items, links=links), items, links  # type: ignore[arg-type]


def _run_changes(
    deps: Deps, run_id: str, entity: Entity
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], bytes]]:
    """A run's included adds, and its other included changes by the key they replace."""
    adds: list[dict[str, Any]] = []
    changes: dict[tuple[str, str], bytes] = {}
    for raw in deps.store.iter_lines(keys.changes_key(TENANT, run_id, entity)):
        action = orjson.loads(raw)
        if not action.get("included"):
            continue
        if action["action"] == "add":
            adds.append(action)
        else:
            commit_module._keep_change(changes, action, raw)
    return adds, changes


def _rewritten(
    deps: Deps,
    run_id: str,
    baseline: str,
    entity: Entity,
    changes: dict[tuple[str, str], bytes],
    how: Any,
) -> tuple[bytes, bytes, list[dict[str, Any]], list[dict[str, Any]]]:
    """The baseline with ``changes`` applied by ``how``: snapshot, index, items, links."""
    recording, items, links = _recording(deps)
    snapshot, index = io.BytesIO(), io.BytesIO()
    written = how(recording, TENANT, run_id, entity, baseline, changes, snapshot, index)
    assert written == snapshot.getvalue().count(b"\n")
    return snapshot.getvalue(), index.getvalue(), items.items, links.items


def _bulk(deps: Deps, tenant: str, run_id: str, entity: Entity, baseline: str, *rest: Any) -> int:
    """The rewrite in runs, of a flat baseline or of a layered one (made flat)."""
    files = snapshot_files(deps.store, tenant, baseline, entity)
    if files is not None and files.top:
        return commit_module._apply_flattened(deps, tenant, run_id, entity, files, *rest)
    return commit_module._apply_in_runs(deps, tenant, run_id, entity, baseline, *rest)


def _live_lines(deps: Deps, run_id: str, entity: Entity) -> list[tuple[bytes, bytes]]:
    """A run's snapshot of ``entity`` as its live (line, index line) pairs, sorted."""
    files = snapshot_files(deps.store, TENANT, run_id, entity)
    assert files is not None
    return sorted(live_pairs(deps.store, files))


def _pairs(snapshot: bytes, index: bytes) -> list[tuple[bytes, bytes]]:
    return sorted(zip(snapshot.splitlines(), index.splitlines(), strict=True))


def _snapshot_bytes(deps: Deps, run_id: str, entity: Entity) -> tuple[bytes, bytes]:
    """A run's snapshot of ``entity`` and its index, whole or its parts joined in order."""
    bodies, indexes = [], []
    for body, index in snapshot_parts(deps.store, TENANT, run_id, entity):
        bodies.append(deps.store.get_bytes(body) or b"")
        indexes.append(deps.store.get_bytes(index) or b"" if index else b"")
    return b"".join(bodies), b"".join(indexes)


def _check_day(deps: Deps, run_id: str, chunks: list[str]) -> set[str]:
    """The run's committed snapshots are the line-by-line rewrite's, byte for byte, and
    the bulk rewrite itself (no fallback) gives the same items and links; the kinds of
    change the run applied to its baseline."""
    baseline = deps.store.get_json(keys.change_summary_key(TENANT, run_id))["baseline_run_id"]
    assert baseline is not None
    kinds: set[str] = set()
    for entity in ENTITY_ORDER:
        adds, changes = _run_changes(deps, run_id, entity)
        parsed = [orjson.loads(raw) for raw in changes.values()]
        kinds |= {a["action"] for a in parsed}
        kinds |= {"relink" for a in parsed if a.get("relinked_from")}
        kinds |= {"add" for _ in adds}
        slow = _rewritten(
            deps, run_id, baseline, entity, changes, commit_module._apply_line_by_line
        )
        fast = _rewritten(deps, run_id, baseline, entity, changes, _bulk)
        assert fast == slow, entity
        added_lines = b"".join(dumps_line(commit_module._added_line(a)) for a in adds)
        added_index = b"".join(
            dumps_line(commit_module.index_line(commit_module._added_line(a))) for a in adds
        )
        stored, stored_index = _snapshot_bytes(deps, run_id, entity)
        if not adds and not changes:
            assert _live_lines(deps, run_id, entity) == _live_lines(deps, baseline, entity)
            continue
        before = snapshot_files(deps.store, TENANT, baseline, entity)
        after = snapshot_files(deps.store, TENANT, run_id, entity)
        assert before is not None and after is not None
        if after.top or before.top:
            # Layered, or made flat again: the same lines as the rewrite, in no set order.
            kinds.add("layered" if after.top else "flattened")
            expected = _pairs(added_lines + slow[0], added_index + slow[1])
            assert _live_lines(deps, run_id, entity) == expected, entity
            assert len({key for key, _ in expected}) == len(expected)
            continue
        if f"{entity.value}-snapshot-base" in chunks:
            assert stored == slow[0] + added_lines, entity
            assert stored_index == slow[1] + added_index, entity
        else:
            assert stored == added_lines + slow[0], entity
            assert stored_index == added_index + slow[1], entity
    return kinds


@pytest.mark.parametrize(
    ("parted", "block"),
    [(False, commit_module._RUN_BLOCK), (False, 97), (True, 4096)],
    ids=["whole", "whole-small-reads", "in-parts"],
)
@pytest.mark.parametrize("layers", [False, True], ids=["flat", "layered"])
def test_the_bulk_rewrite_equals_the_line_by_line_one(
    tmp_path, days, monkeypatch, parted, block, layers
):
    monkeypatch.setattr(commit_module, "_RUN_BLOCK", block)
    # A small district's day changes more than a top layer may hold: layered, the
    # top is let grow to any size (a re-link still makes the snapshot flat).
    monkeypatch.setattr(commit_module, "LAYER_SHARE", 100.0 if layers else 0.0)
    if parted:
        monkeypatch.setenv("COMMIT_INLINE_ACTIONS", "100")
        monkeypatch.setenv("COMMIT_CHUNK_ACTIONS", "150")
        monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", 25)
    kinds: set[str] = set()
    for number, (deps, outcome) in enumerate(committed_days(tmp_path, TENANT, days), start=1):
        chunks = [c["chunk"] for c in outcome.report.get("chunks", [])]
        if parted:
            assert "enrollments-snapshot-base" in chunks, chunks
        if number > 1:
            kinds |= _check_day(deps, outcome.run_id, chunks)
    assert kinds >= {"add", "update", "archive", "reactivate", "relink"}, kinds
    assert ("layered" in kinds) == layers, kinds
    # A day's re-link made a layered snapshot flat again.
    assert ("flattened" in kinds) == (layers and not parted), kinds


# ---------------------------------------------------------------- unusual baselines


BASELINE = "20260101T000000Z-0000000a"
RUN = "20260102T000000Z-0000000b"


def _line(system: str | None, source_id: str | None, n: int) -> dict[str, Any]:
    record = {"source_id": source_id, "name": f"name {n}", "note": None}
    return {
        "source_system": system,
        "source_id": source_id,
        "target_id": f"t-{n}",
        "status": "active",
        "record": record,
        "hash": commit_module.content_hash(record),
    }


def _baseline(
    deps: Deps,
    lines: list[dict[str, Any]],
    *,
    gap: bool = False,
    unended: bool = False,
    extra: bool = False,
) -> None:
    snapshot = b"".join(dumps_line(line) for line in lines)
    index = b"".join(dumps_line(commit_module.index_line(line)) for line in lines)
    if gap:  # an empty line in the snapshot (the line-by-line rewrite skips it)
        cut = snapshot.index(b"\n", len(snapshot) // 2) + 1
        snapshot = snapshot[:cut] + b"\n" + snapshot[cut:]
    if unended:  # no newline after the last line (read as a line all the same)
        snapshot = snapshot[:-1]
    if extra:  # a line the index does not have
        snapshot += dumps_line(_line("oneroster", "stray", 999))
    deps.store.put_bytes(keys.state_key(TENANT, BASELINE, Entity.USERS), snapshot)
    deps.store.put_bytes(keys.state_index_key(TENANT, BASELINE, Entity.USERS), index)


def _update(line: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "action": "update",
        "included": True,
        "source_system": line["source_system"],
        "source_id": line["source_id"],
        "target_id": line["target_id"],
        "record": {"source_id": line["source_id"], "name": name, "note": None},
    }


def _both(deps: Deps, changes: dict[tuple[str, str], bytes]) -> tuple[Any, Any]:
    slow = _rewritten(deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_line_by_line)
    fast = _rewritten(deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_to_baseline)
    return slow, fast


@pytest.fixture(params=["embedded", "moto"])
def store_deps(tmp_path, request) -> Any:
    """A store of files read in place (mapped), or S3's, read a block at a time."""
    state = None if request.param == "moto" else tmp_path / "state"
    with LocalCloud(state, storage=request.param):
        yield build_deps(stack_settings())


def _changes(*actions: dict[str, Any]) -> dict[tuple[str, str], bytes]:
    changes: dict[tuple[str, str], bytes] = {}
    for action in actions:
        commit_module._keep_change(changes, action, dumps_line(action))
    return changes


@pytest.mark.parametrize("block", [commit_module._RUN_BLOCK, 61])
def test_keys_with_escapes_and_nulls_are_found(store_deps, monkeypatch, block):
    """Source ids holding ``","``, quotes, backslashes and non-ASCII letters, and a
    record without a source system, are found in the index (their blocks parsed line by
    line) and rewritten in bulk as line by line."""
    monkeypatch.setattr(commit_module, "_RUN_BLOCK", block)
    odd = ['a","b', 'x\\",', 'q"uote', "ünï", "tab\there"]
    lines = [_line("oneroster", f"id-{n:03d}", n) for n in range(40)]
    lines += [_line("oneroster", source_id, 100 + n) for n, source_id in enumerate(odd)]
    lines.append(_line(None, None, 200))
    lines += [_line("oneroster", f"id-{n:03d}", n) for n in range(40, 60)]
    _baseline(store_deps, lines)
    changed = [lines[3], lines[40], lines[42], lines[44], lines[45], lines[59], lines[-1]]
    changes = _changes(*(_update(line, f"renamed {n}") for n, line in enumerate(changed)))

    slow, fast = _both(store_deps, changes)
    assert fast == slow
    assert len(slow[2]) == len(changed)
    bulk = _rewritten(
        store_deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_in_runs
    )
    assert bulk == slow


def test_a_baseline_not_as_the_commit_writes_it_is_rewritten_line_by_line(store_deps):
    """An empty line in the snapshot, a last line without its newline, or a change
    whose record the baseline lacks: the bulk rewrite declines (``_NotAsWritten``) and the
    result is the line-by-line one; a snapshot of more lines than its index is refused
    as before."""
    lines = [_line("oneroster", f"id-{n:03d}", n) for n in range(30)]
    _baseline(store_deps, lines, gap=True)
    changes = _changes(_update(lines[2], "two"), _update(lines[27], "twenty-seven"))
    with pytest.raises(commit_module._NotAsWritten):
        _rewritten(store_deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_in_runs)
    slow, fast = _both(store_deps, changes)
    assert fast == slow and slow[0].count(b"\n") == 30

    _baseline(store_deps, lines)
    missing = dict(_line("oneroster", "id-999", 999), target_id="t-999")
    changes = _changes(_update(lines[5], "five"), _update(missing, "nobody"))
    with pytest.raises(commit_module._NotAsWritten):
        _rewritten(store_deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_in_runs)
    slow, fast = _both(store_deps, changes)
    assert fast == slow and len(slow[2]) == 1
    assert orjson.loads(slow[0].split(b"\n")[5])["record"]["name"] == "five"

    _baseline(store_deps, lines, unended=True)
    changes = _changes(_update(lines[29], "last"))
    with pytest.raises(commit_module._NotAsWritten):
        _rewritten(store_deps, RUN, BASELINE, Entity.USERS, changes, commit_module._apply_in_runs)
    slow, fast = _both(store_deps, changes)
    assert fast == slow and slow[0].endswith(b"\n") and b'"last"' in slow[0]

    _baseline(store_deps, lines, extra=True)
    changes = _changes(_update(lines[1], "one"))
    for how in (commit_module._apply_line_by_line, commit_module._apply_to_baseline):
        with pytest.raises(ValueError, match="zip"):
            _rewritten(store_deps, RUN, BASELINE, Entity.USERS, changes, how)
