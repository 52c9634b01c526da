"""The demo never deletes a folder it did not make."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from rostersync.demo import DEMO_MARKER, _fresh_state_dir
from rostersync.errors import RostersyncError


def test_without_state_a_demo_gets_a_new_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # not left in /tmp
    first, second = _fresh_state_dir(None, "demo"), _fresh_state_dir(None, "demo")
    assert first != second and (first / DEMO_MARKER).is_file()
    assert first.parent == second.parent == tmp_path


def test_a_folder_someone_else_made_is_refused_and_kept(tmp_path: Path):
    mine = tmp_path / "work"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(RostersyncError, match="no demo made it"):
        _fresh_state_dir(mine, "demo")
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_a_folder_an_earlier_demo_made_is_emptied_and_reused(tmp_path: Path):
    state = _fresh_state_dir(tmp_path / "demo-state", "demo")
    (state / "tables.db").write_text("old")
    again = _fresh_state_dir(state, "demo")
    assert again == state and not (state / "tables.db").exists()
    assert (state / DEMO_MARKER).is_file()
