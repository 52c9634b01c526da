"""Links through a broken users file: a guardian missing from a cut-off file is not a
link the source removed, so no student loses it (and nothing waits as an update)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rostersync.application.sync import export_directory
from rostersync.generator import generate_district
from rostersync.local.session import run_sync
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys


def agents(deps: Deps) -> dict[str, list[str]]:
    users = export_directory(deps, "t1")["users"]
    return {u["source_id"]: sorted(u.get("agent_source_ids") or []) for u in users}


def test_a_cut_off_users_file_removes_no_guardian_link(cloud: tuple[Any, Deps], tmp_path: Path):
    local, deps = cloud
    district = tmp_path / "day1"
    generate_district(district, students=60, seed=3)
    first, _ = run_sync(local, deps, "t1", district, tmp_path / "r")
    assert first.status == "committed", first.error
    before = agents(deps)
    assert any(before.values())

    day2 = tmp_path / "day2"
    shutil.copytree(district, day2)
    users = day2 / "users.csv"
    data = users.read_bytes()
    users.write_bytes(data[: int(len(data) * 0.5)])

    outcome, _ = run_sync(local, deps, "t1", day2, tmp_path / "r")

    assert outcome.status in {"committed", "held"}, outcome.error
    assert agents(deps) == before
    actions = list(deps.store.iter_jsonl(keys.changes_key("t1", outcome.run_id, Entity.USERS)))
    losing = [
        a
        for a in actions
        if a["action"] == "update"
        and set((a["changes"].get("agent_source_ids") or [[], []])[0] or [])
        - set((a["changes"].get("agent_source_ids") or [[], []])[1] or [])
    ]
    assert losing == []
    assert outcome.report["refused"]["users"]["reason"]
