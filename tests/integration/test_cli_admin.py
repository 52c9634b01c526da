"""The platform operator's commands as typed: tenants listed and removed (nothing of a
removed tenant left anywhere in the state, other tenants untouched), SFTP users listed,
removed, and never replaced unasked."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest

from tests.integration.conftest import Cli

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"
GONE, KEPT = "gone-district", "kept-district"
TOKEN = "tok-4b1d6c0e9f2a77d1"  # the removed tenant's Clever token: must leave no trace


def traces_of(state: Path, tenant: str, secret: str = "\0none\0") -> dict[str, list[str]]:
    """Where the tenant (or its ``secret``) still appears: database items, object keys,
    events, any file."""
    database = sqlite3.connect(state / "rostersync.sqlite3")
    try:
        items = [
            f"{tbl}:{pk}:{sk}"
            for tbl, pk, sk, body in database.execute("SELECT tbl, pk, sk, body FROM items")
            if tenant in pk or tenant in sk or tenant.encode() in bytes(body)
        ]
        objects = [
            key for (key,) in database.execute("SELECT key FROM objects") if f"/{tenant}/" in key
        ]
    finally:
        database.close()
    events = [
        line
        for line in (state / "events.jsonl").read_text().splitlines()
        if json.loads(line)["detail"].get("tenant") == tenant
    ]
    files = [
        str(path.relative_to(state))
        for path in state.rglob("*")
        if path.is_file()
        and path.suffix not in {".sqlite3", ".sqlite3-wal", ".sqlite3-shm"}
        and (tenant.encode() in path.read_bytes() or secret.encode() in path.read_bytes())
    ] + [str(p.relative_to(state)) for p in state.rglob(f"*{tenant}*")]
    return {"items": items, "objects": objects, "events": events, "files": files}


def populated(cli: Cli, tmp_path: Path) -> None:
    """Two tenants with runs, settings, a connected source's secret and SFTP users."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    for tenant in (GONE, KEPT):
        assert cli("tenants", "add", tenant)[0] == 0
        assert cli("sync", str(LEPO), "--tenant", tenant)[0] == 0
        assert cli("settings", "set", "hold.archive_share=0.2", "--tenant", tenant)[0] == 0
        assert cli("sftp-user", "add", tenant, f"{tenant}-sis", "--password", "pw one")[0] == 0
    code, out, err = cli(
        "connect", "clever", "--tenant", GONE, "--token-file", str(token), "--no-check"
    )
    assert code == 0, out + err


def test_tenants_remove_keeps_nothing_of_the_tenant_and_touches_no_other(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populated(cli, tmp_path)
    _, before_kept, _ = cli("directory", "export", "--tenant", KEPT, "--json")
    kept_traces = traces_of(cli.state, KEPT)
    assert all(traces_of(cli.state, GONE, TOKEN).values()), "the tenant is everywhere first"
    assert (cli.state / "secrets.json").read_text().count(TOKEN) == 1

    monkeypatch.setattr("sys.stdin", io.StringIO(GONE + "\n"))
    code, out, err = cli("tenants", "remove", GONE)

    assert code == 0, err
    assert f"Type {GONE} to confirm" in err
    assert f"Tenant {GONE} removed" in out and "1 sftp user" in out
    assert traces_of(cli.state, GONE, TOKEN) == {
        "items": [],
        "objects": [],
        "events": [],
        "files": [],
    }
    _, listed, _ = cli("tenants", "list")
    assert GONE not in listed and KEPT in listed
    _, users, _ = cli("sftp-user", "list")
    assert GONE not in users and f"{KEPT}-sis" in users
    code, _, err = cli("runs", "--tenant", GONE)
    assert code == 1 and "unknown tenant" in err

    _, after_kept, _ = cli("directory", "export", "--tenant", KEPT, "--json")
    assert after_kept == before_kept
    assert traces_of(cli.state, KEPT) == kept_traces


def test_tenants_remove_without_the_confirmation_removes_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("sync", str(LEPO), "--tenant", GONE)[0] == 0
    before = traces_of(cli.state, GONE)
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    code, _, err = cli("tenants", "remove", GONE)
    assert code == 1 and "not confirmed" in err and "--yes" in err
    assert traces_of(cli.state, GONE) == before
    code, out, _ = cli("tenants", "remove", GONE, "--yes")
    assert code == 0 and "removed" in out
    code, _, err = cli("tenants", "remove", GONE, "--yes")
    assert code == 1 and "unknown tenant" in err


def test_sftp_users_are_listed_removed_and_never_replaced_unasked(cli: Cli) -> None:
    assert cli("tenants", "add", "t1")[0] == 0
    assert cli("tenants", "add", "t2")[0] == 0
    assert cli("sftp-user", "add", "t1", "sis", "--password", "first one")[0] == 0
    assert cli("sftp-user", "add", "t2", "other", "--password", "second")[0] == 0
    users_file = cli.state / "sftp-users.json"
    stored = json.loads(users_file.read_text())["users"]["sis"]["password"]

    code, _, err = cli("sftp-user", "add", "t1", "sis", "--password", "replaced")
    assert code == 1 and "already exists" in err and "--rotate" in err
    assert json.loads(users_file.read_text())["users"]["sis"]["password"] == stored

    code, out, _ = cli("sftp-user", "add", "t1", "sis", "--password", "replaced", "--rotate")
    assert code == 0 and "rotated" in out
    assert json.loads(users_file.read_text())["users"]["sis"]["password"] != stored

    code, out, _ = cli("sftp-user", "list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["other", "sis"]
    assert "first one" not in out and "replaced" not in out and "scrypt" not in out
    _, only_t1, _ = cli("sftp-user", "list", "--tenant", "t1", "--json")
    assert [u["username"] for u in json.loads(only_t1)] == ["sis"]

    code, out, _ = cli("sftp-user", "remove", "sis")
    assert code == 0 and "removed" in out
    code, _, err = cli("sftp-user", "remove", "sis")
    assert code == 1 and "no SFTP user sis" in err and "other" in err
    _, out, _ = cli("sftp-user", "list")
    assert [line.split()[0] for line in out.splitlines()] == ["other"]
