"""The commit's plan from what stage noted of each change file as it wrote it: the same
chunks as reading every line, followed through an untick, and never used once the
file was written again otherwise."""

from __future__ import annotations

import pytest

from rostersync.application.review import ActionFilter, Selection, list_actions, set_included
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline import commit as commit_module
from rostersync.storage import keys
from tests.bundles import ONEROSTER, copy_bundle, edit_rows
from tests.integration.test_pipeline import sync
from tests.integration.test_review import set_settings

LEPO = ONEROSTER / "lepo-en-1.1"


def _scans(deps, run_id: str, size: int) -> dict[str, tuple[object, object]]:
    out = {}
    for entity in ENTITY_ORDER:
        key = keys.changes_key("t1", run_id, entity)
        base = keys.run_prefix("t1", run_id) + f"test/{entity.value}.base"
        lines = keys.change_lines_key("t1", run_id, entity)
        out[entity.value] = (
            commit_module._scan_noted(deps, key, lines, size, base),
            commit_module._scan(deps, key, size, base),
        )
    return out


@pytest.mark.parametrize("parts", [10**6, 7])
def test_the_noted_lines_cut_the_change_files_as_reading_them_does(
    cloud, tmp_path, monkeypatch, parts
):
    monkeypatch.setattr(commit_module, "SNAPSHOT_PART_LINES", parts)
    prepared = sync(cloud, LEPO, tmp_path, review=True)
    assert prepared.status == "prepared"
    deps = cloud[1]
    scans = _scans(deps, prepared.run_id, 5)
    for entity, (noted, read) in scans.items():
        assert noted is not None, entity
        assert noted == read, entity
    users = scans["users"][0]
    assert users is not None and len(users.ranges) > 1
    assert len(users.parts) == (1 if parts > users.lines else -(-users.lines // parts))


def test_an_untick_keeps_the_noted_lines_and_a_file_written_otherwise_is_read_again(
    cloud, tmp_path
):
    prepared = sync(cloud, LEPO, tmp_path, review=True)
    deps = cloud[1]
    page = list_actions(deps, "t1", prepared.run_id, ActionFilter(entity=Entity.USERS))
    untick = Selection(action_ids=[page.actions[0]["id"]])
    set_included(deps, "t1", prepared.run_id, untick, False, "admin")

    # The untick followed what stage noted through its rewrite.
    scans = _scans(deps, prepared.run_id, 5)
    assert scans["users"][0] == scans["users"][1]
    assert scans["users"][1].included == page.total - 1

    # Written by anything else (as a hold or a setting does), the file is read again.
    key = keys.changes_key("t1", prepared.run_id, Entity.USERS)
    deps.store.write_jsonl(key, list(deps.store.iter_jsonl(key)))
    scans = _scans(deps, prepared.run_id, 5)
    assert scans["users"][0] is None, "the users' change file is not what was noted"
    assert scans["classes"][0] == scans["classes"][1]
    assert scans["users"][1].included == page.total - 1


def test_a_change_file_a_hold_rewrites_is_noted_as_stage_notes_what_it_writes(cloud, tmp_path):
    """A hold (and a setting) that unticks actions rewrites their change file: what it
    notes of the file as it writes it cuts it as reading it does, so the commit's plan
    and the report need not read it again."""
    set_settings(cloud, "hold.apply_safe_changes=false")
    sync(cloud, LEPO, tmp_path)
    day2 = copy_bundle(LEPO, tmp_path / "day2")
    # Most users gone and one renamed: the archives hold the run, every action waits.
    edit_rows(day2 / "users.csv", lambda rows: [{**rows[0], "familyName": "Changed"}, *rows[1:8]])
    held = sync(cloud, day2, tmp_path)
    assert held.status == "prepared" and held.report["hold"]
    deps = cloud[1]
    users = list(deps.store.iter_jsonl(keys.changes_key("t1", held.run_id, Entity.USERS)))
    assert users and not any(action["included"] for action in users)
    assert any(action.get("held") for action in users)
    for entity, (noted, read) in _scans(deps, held.run_id, 3).items():
        assert noted is not None, entity
        assert noted == read, entity
