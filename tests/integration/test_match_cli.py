"""Matching decisions through the command line, as an admin types them: checked before
they are recorded, listed with who and when, and reversible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rostersync.cli import main
from rostersync.existing_app import ExistingApp, build_existing_app
from rostersync.generator import generate_district


@pytest.fixture(scope="module")
def connected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExistingApp]:
    """A district synced for review on top of the app's own records."""
    folder = tmp_path_factory.mktemp("cli-match")
    generate_district(folder / "day1", students=40, seed=11)
    app = build_existing_app(folder / "day1", folder / "app.csv", seed=3, typo_share=0.2)
    state = folder / "state"
    assert (
        main(["directory", "import", str(app.path), "--tenant", "t1", "--state", str(state)]) == 0
    )
    assert main(
        ["sync", str(folder / "day1"), "--review", "--tenant", "t1", "--state", str(state)]
    ) in {0, 2, 3}
    return state, app


def run(state: Path, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv, "--tenant", "t1", "--state", str(state)])
    out = capsys.readouterr()
    return code, out.out, out.err


def as_json(state: Path, capsys: Any, *argv: str) -> Any:
    code, out, err = run(state, capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_links_are_checked_listed_with_who_and_when_and_undone(connected, capsys):
    state, app = connected
    rows = as_json(state, capsys, "matches")
    matched = next(r for r in rows if r["tier"] == "auto" and r["entity"] == "users")
    held_by, target = matched["source_id"], matched["target_id"]
    newcomer = app.sis_only[0]
    assert matched["source_name"] and matched["target_name"]  # names beside the ids

    code, _, err = run(state, capsys, "match", "link", "users", "no-such-source", target)
    assert code == 1 and "no source user 'no-such-source'" in err
    code, _, err = run(state, capsys, "match", "link", "users", newcomer, "app-nobody")
    assert code == 1 and "no app users record 'app-nobody'" in err
    code, _, err = run(state, capsys, "match", "reject", "users", "no-such-source", target)
    assert code == 1 and "no source user 'no-such-source'" in err
    code, _, err = run(state, capsys, "match", "reject", "users", newcomer, "app-nobody")
    assert code == 1 and "no app users record 'app-nobody'" in err
    code, _, err = run(state, capsys, "match", "adhoc", "users", "app-nobody", "--keep")
    assert code == 1 and "app-nobody is not an app record" in err
    code, _, err = run(state, capsys, "match", "link", "users", newcomer, target)
    assert code == 1
    assert f"{target} is already linked to {held_by}" in err and "--replace" in err
    assert as_json(state, capsys, "matches", "--decisions") == []  # nothing was recorded

    code, out, err = run(
        state, capsys, "match", "link", "users", newcomer, target, "--replace", "--who", "ada"
    )
    assert code == 0, err
    assert f"--replace unlinked {held_by}" in out and f"from {target}" in out

    decisions = as_json(state, capsys, "matches", "--decisions")
    link = next(d for d in decisions if d["decision"] == "manual")
    pushed = next(d for d in decisions if d["source_id"] == held_by)
    assert (link["source_id"], link["target_id"], link["by"]) == (newcomer, target, "ada")
    assert link["at"] and link["state"] == "in effect" and link["target_name"]
    assert (pushed["decision"], pushed["target_id"], pushed["for"]) == (
        "rejected",
        target,
        newcomer,
    )
    code, out, _ = run(state, capsys, "matches", "--decisions")
    assert link["id"] in out and "by ada" in out and "match undo ID --tenant t1" in out

    code, out, err = run(state, capsys, "match", "undo", link["id"], "--who", "ada")
    assert code == 0, err
    assert f"{newcomer} is no longer linked to {target}" in out
    code, _, err = run(state, capsys, "match", "undo", link["id"])
    assert code == 1 and "is undone: nothing to undo" in err
    code, out, err = run(state, capsys, "match", "undo", pushed["id"])
    assert code == 0, err
    after = {d["id"]: d for d in as_json(state, capsys, "matches", "--decisions")}
    assert after[link["id"]]["state"] == "undone" and after[link["id"]]["undone_by"] == "ada"
    assert after[pushed["id"]]["state"] == "undone"
    code, _, err = run(state, capsys, "match", "undo", "d-0000000000")
    assert code == 1 and "no decision 'd-0000000000'" in err


def test_a_student_is_never_linked_to_a_teachers_record(connected, capsys):
    state, app = connected
    rows = as_json(state, capsys, "matches")
    teacher = next(
        r["target_id"]
        for r in rows
        if r["tier"] == "key" and r["entity"] == "users" and r.get("target_id")
    )
    student = app.sis_only[1]

    for command in (
        ["match", "link", "users", student, teacher],
        ["match", "link", "users", student, teacher, "--replace"],
        ["match", "confirm", "users", student, "--target", teacher, "--replace"],
    ):
        code, _, err = run(state, capsys, *command)
        assert code == 1 and "never crosses kinds of person" in err, err
    assert [
        d for d in as_json(state, capsys, "matches", "--decisions") if d["source_id"] == student
    ] == []
