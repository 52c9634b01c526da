"""A snapshot kept as a top layer over the earlier run's parts is the same state as the
flat one: day after day (adds, updates, archives, reactivations, a re-link, a class
deleted by status, and a day whose baseline is layered twice over), the change sets,
counts, snapshots' lines, directory and links are those of syncs whose snapshots are
always flat, whether the engine reads the layers (in the embedded store) or Python (on
S3)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from rostersync.models import ENTITY_ORDER
from rostersync.pipeline import commit as commit_module
from rostersync.pipeline.snapshot import iter_index_lines, snapshot_files
from rostersync.storage import keys
from tests.integration.days import (
    change_sets,
    committed_days,
    directory_and_links,
    three_days,
)

TENANT = "district"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("district")
    folders = three_days(root)
    # Day 4: day 2 again (its renames, new students and leavers once more), staged on a
    # baseline whose unchanged entities are still day 2's layers.
    shutil.copytree(root / "day2", root / "day4")
    return [*folders, root / "day4"]


def _syncs(state: Path, days: list[Path], *, moto: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"days": [], "layered": []}
    for deps, outcome in committed_days(state, TENANT, days, moto=moto):
        snapshots: dict[str, list[bytes]] = {}
        layered: list[str] = []
        for entity in ENTITY_ORDER:
            files = snapshot_files(deps.store, TENANT, outcome.run_id, entity)
            assert files is not None
            snapshots[entity.value] = sorted(iter_index_lines(deps.store, files))
            if files.top:
                layered.append(entity.value)
        summary = deps.store.get_json(keys.change_summary_key(TENANT, outcome.run_id))
        out["days"].append(
            {
                "compared": set(summary["compared"].values()),
                "changes": change_sets(deps, TENANT, outcome.run_id),
                "counts": outcome.counts,
                "snapshots": snapshots,
            }
        )
        out["layered"].append(layered)
        out["final"] = directory_and_links(deps, TENANT)
    return out


def test_layered_snapshots_hold_the_state_flat_ones_do(tmp_path, days, monkeypatch):
    monkeypatch.setattr(commit_module, "LAYER_SHARE", 0.0)
    flat = _syncs(tmp_path / "flat", days)
    # A small district's day changes more than a top may hold: here any top is kept.
    monkeypatch.setattr(commit_module, "LAYER_SHARE", 100.0)
    layered = _syncs(tmp_path / "layered", days)
    # Python reading the layers, on S3 (moto: objects read a block at a time).
    monkeypatch.setenv("COLUMNAR_DIFF", "false")
    monkeypatch.setenv("COLUMNAR_MATCH", "false")
    by_rows = _syncs(tmp_path / "rows", days, moto=True)

    assert not any(flat["layered"]), flat["layered"]
    # The engine reads the layers itself (it would leave a baseline it misread, with
    # keys twice, to Python): every day of the layered syncs compared in the engine.
    assert all(day["compared"] == {"columnar"} for day in layered["days"])
    assert all(day["compared"] == {"rows"} for day in by_rows["days"])
    for other in (layered, by_rows):
        # Day 1 has no baseline; later days are kept in layers (over layers from day 3
        # on), but for the users of days 3 and 4: a re-link makes them flat again.
        assert other["layered"][0] == []
        assert "enrollments" in other["layered"][1] and "users" in other["layered"][1]
        for day in (2, 3):
            assert "enrollments" in other["layered"][day]
            assert "users" not in other["layered"][day]
        for number, (want, got) in enumerate(zip(flat["days"], other["days"], strict=True)):
            for entity in want["changes"]:
                assert got["changes"][entity] == want["changes"][entity], (number, entity)
                assert got["snapshots"][entity] == want["snapshots"][entity], (number, entity)
            assert got["counts"] == want["counts"], number
        assert other["final"] == flat["final"]
    assert any(day["changes"]["users"] for day in flat["days"][1:])
