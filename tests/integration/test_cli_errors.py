"""Every command answers wrong input with a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from rostersync.cli import main

RUN = "20261201T100000Z-00000000"

#: Each command with arguments a person could get wrong.
WRONG = [
    ["sync", "/no/such/bundle"],
    ["sync", "--tenant", "Not A Tenant!", "/no/such/bundle"],
    ["connect", "clever", "--tenant", "t1", "--token-file", "/no/such/token"],
    ["connect", "wonde", "--tenant", "t1", "--set", "school_id"],
    ["connect", "show", "--tenant", "no-such-tenant"],
    ["directory", "import", "/no/such/file.csv", "--tenant", "t1"],
    ["keys", "--tenant", "t1", "--kind", "student", "--confirm", "nocolon"],
    ["matches", "--tenant", "t1", "--run", "not-a-run"],
    ["match", "confirm", "users", "s1", "--tenant", "t1"],
    ["match", "link", "users", "s1", "app-9", "--tenant", "t1"],
    ["settings", "set", "hold.archive_share=7", "--tenant", "t1"],
    ["settings", "set", "no_such_setting=1", "--tenant", "t1"],
    ["settings", "set", 'schedule={"time": "25:99"}', "--tenant", "t1"],
    ["review", RUN, "--tenant", "t1"],
    ["review", "not-a-run", "--tenant", "t1"],
    ["exclude", RUN, "--all-of", "enrollment:delete", "--tenant", "t1"],
    ["include", RUN, "users-add-0", "--tenant", "t1"],
    ["commit", RUN, "--tenant", "t1"],
    ["discard", RUN, "--tenant", "t1"],
    ["undo", RUN, "--tenant", "t1"],
    ["approve", RUN, "--tenant", "t1"],
    ["show", RUN, "--tenant", "t1"],
    ["runs", "--tenant", "Bad Tenant"],
    ["token", "--tenant", "t1", "--role", "admin", "--ttl", "0"],
    ["token", "--tenant", "t1", "--role", "wizard"],
    ["tenants", "add", "Bad Tenant"],
    ["sftp-user", "add", "t1", "bad user name!", "--password", "x"],
    ["sftp-user", "add", "no-such-tenant", "u1", "--password", "x"],
    ["sftp-user", "remove", "nobody"],
    ["tenants", "remove", "no-such-tenant", "--yes"],
    ["tenants", "remove", "Bad Tenant", "--yes"],
    ["runs", "--tenant", "no-such-tenant"],
    ["settings", "history", "--tenant", "no-such-tenant"],
    ["settings", "set", "auto_commit=false", "--tenant", "t1-typo"],
    ["connect", "oneroster-csv", "--tenant", "t1-typo"],
    ["directory", "import", "/no/such/file.csv", "--tenant", "t1-typo"],
]


@pytest.mark.parametrize("argv", WRONG, ids=lambda a: " ".join(a)[:60])
def test_wrong_input_gets_a_message_not_a_traceback(argv, tmp_path: Path, capsys) -> None:
    state = tmp_path / "state"
    assert main(["tenants", "add", "t1", "--state", str(state)]) == 0
    capsys.readouterr()
    try:
        code = main([*argv, "--state", str(state)])
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    assert code != 0, captured
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.strip(), "a refusal says why"
