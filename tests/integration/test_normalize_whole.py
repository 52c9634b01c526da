"""A bundle identical to the committed run's, file for file, is not read again: that
run's read is taken whole, and gives what a fresh read gives. Anything less than the
same bytes (one byte changed, the same size), or that run's output gone, is read as
usual. Read in parts or in one pass, the same."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from rostersync.config import stack_settings
from rostersync.generator import generate_district
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.storage import keys

from .days import directory_and_links, sync_days

TENANT = "district"


def _read(deps: Deps, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    summary = load_normalized_summary(deps, TENANT, run_id)
    files = {
        name: deps.store.get_bytes(key(TENANT, run_id, e))
        for e in ENTITY_ORDER
        for name, key in (
            (f"{e.value}.jsonl", keys.normalized_key),
            (f"{e.value}.ids.jsonl", keys.normalized_ids_key),
        )
    }
    return {
        "files": files,
        "issues": list(deps.store.iter_jsonl(keys.issues_key(TENANT, run_id))),
        "entities": summary.model_dump(mode="json")["entities"],
        "whole": summary.whole,
        "reused": summary.reused,
        "reused_from": summary.reused_from,
        "counts": report.get("counts", {}),
        "roster": directory_and_links(deps, TENANT),
    }


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    generate_district(root / "day1", students=60, seed=21)
    # The same bytes, dropped again (under another name: where it lies is no part of it).
    shutil.copytree(root / "day1", root / "again")
    # One byte changed, the file's size the same.
    shutil.copytree(root / "day1", root / "byte")
    users = root / "byte" / "users.csv"
    body = users.read_bytes()
    header, first = body.split(b"\n", 2)[:2]
    # The first user's given name, its first letter changed.
    column = header.decode().split(",").index("givenName")
    at = len(header) + 1 + sum(len(cell) + 1 for cell in first.split(b",")[:column])
    flipped = b"Q" if body[at : at + 1] != b"Q" else b"Z"
    users.write_bytes(body[:at] + flipped + body[at + 1 :])
    assert users.stat().st_size == (root / "day1" / "users.csv").stat().st_size
    return {"day1": root / "day1", "again": root / "again", "byte": root / "byte"}


@pytest.mark.parametrize("fanned", [False, True], ids=["one pass", "in parts"])
def test_the_same_bundle_again_takes_the_read_whole(tmp_path, bundles, fanned, monkeypatch):
    if fanned:
        monkeypatch.setenv("NORMALIZE_PART_BYTES", "2048")
        monkeypatch.setenv("NORMALIZE_MAX_PARTS", "4")
    stack_settings.cache_clear()
    try:
        days = [bundles["day1"], bundles["again"], bundles["byte"]]
        synced = sync_days(tmp_path / "state", TENANT, days, _read)
    finally:
        stack_settings.cache_clear()
    first, again, byte = synced["days"]
    run1 = synced["runs"][0]

    assert not first["whole"]
    if fanned:
        assert synced["reports"][0]["normalize_parts"], "day 1 was read in parts"
    assert again["whole"] and again["reused_from"] == run1
    assert again["files"] == first["files"]
    assert again["issues"] == first["issues"]
    assert again["entities"] == first["entities"]
    assert again["reused"] == {
        name.removesuffix(".ids.jsonl"): body.count(b"\n")
        for name, body in first["files"].items()
        if name.endswith(".ids.jsonl") and body
    }
    assert all(not any(row.values()) for row in again["counts"].values()), "no change"
    assert again["roster"] == first["roster"]

    # One byte off: read afresh (line by line where lines are the same).
    assert not byte["whole"]
    assert byte["files"]["users.jsonl"] != first["files"]["users.jsonl"]
    assert sum(row.get("update", 0) for row in byte["counts"].values()) == 1


def test_a_read_whose_output_is_gone_is_not_taken(tmp_path, bundles):
    def gone_after_first(deps: Deps, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
        read = _read(deps, run_id, report)
        if not read["whole"] and not read["reused"]:
            # The first run's user id lines, gone (as an expiry would take them).
            deps.store.delete(keys.normalized_ids_key(TENANT, run_id, Entity.USERS))
        return read

    synced = sync_days(
        tmp_path / "state", TENANT, [bundles["day1"], bundles["again"]], gone_after_first
    )
    first, again = synced["days"]
    assert not again["whole"]
    assert again["files"] == first["files"]
    assert again["roster"] == first["roster"]
