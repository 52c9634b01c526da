"""Connecting a tenant to Clever, syncing without a path, the schedules, and a guardian
file beside the source: the command line (``rostersync.cli.main``) and the use cases
against the local Clever server on 127.0.0.1, runs through the real state machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync import cli
from rostersync.application.connect import connect_source
from rostersync.application.launch import RunStartDeps
from rostersync.application.schedules import scheduled_sync
from rostersync.application.sync import WaitingLauncher, ensure_tenant, export_directory
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import build_deps, locks_repository
from rostersync.sources.guardian_file import inbox_guardian_file
from rostersync.storage import keys
from tests.servers.clever import CleverServer, sample_district

TOKEN = "clever-connect-token-5b9e27c4d1"


@pytest.fixture
def clever(monkeypatch: pytest.MonkeyPatch) -> Iterator[CleverServer]:
    """A local Clever server sharing the sample district with ``TOKEN``."""
    monkeypatch.delenv("LOCAL_SECRETS_FILE", raising=False)
    with CleverServer(sample_district(), token=TOKEN) as server:
        yield server


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(TOKEN + "\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_token_nowhere(state: Path, *outputs: str) -> None:
    """The token is in no output and no file of the state but the secrets file."""
    for output in outputs:
        assert TOKEN not in output
    for path in state.rglob("*"):
        if path.is_file() and path.name not in {"secrets.json", "secrets.json.lock"}:
            assert TOKEN.encode() not in path.read_bytes(), path


def test_connect_clever_then_sync_without_a_path(capsys, clever, token_file, tmp_path):
    """Given a Clever token in a file, when the tenant is connected and synced with no
    path, then the token is checked, stored only in the secret store, shown as set, and
    the runs fetch from Clever: full, quick from the events, and full again (with a note)
    when the events cursor is gone."""
    state = str(tmp_path / "state")
    base = ["--tenant", "t1", "--state", state]
    code, connected, _ = run_cli(
        capsys,
        "connect",
        "clever",
        *base,
        "--token-file",
        str(token_file),
        "--base-url",
        clever.base_url,
    )
    assert code == 0, connected
    assert "token: set" in connected
    assert "check: ok" in connected

    code, shown, _ = run_cli(capsys, "connect", "show", *base, "--json")
    assert code == 0
    view = json.loads(shown)
    assert view["kind"] == "clever"
    assert view["settings"]["base_url"] == clever.base_url
    assert view["secrets"] == {"token": "set"}
    secrets = json.loads((tmp_path / "state" / "secrets.json").read_text())
    assert secrets == {"t1": {"clever_token": TOKEN}}

    code, full, _ = run_cli(capsys, "sync", *base, "--json")
    outcome = json.loads(full)
    assert code == 0, outcome
    assert outcome["status"] == "committed"
    assert outcome["counts"]["users"]["add"] == 9
    assert outcome["counts"]["classes"]["add"] == 2

    clever.data.put("users", {**clever.data.collections["users"]["stu2"], "email": "b@x.example"})
    code, quick, _ = run_cli(capsys, "sync", *base, "--quick")
    assert code == 0, quick
    assert "(quick)" in quick and "note:" not in quick
    assert "committed" in quick

    clever.data.forget_events()
    code, fallback, _ = run_cli(capsys, "sync", *base, "--quick")
    assert code == 0, fallback
    assert "note: the events cursor is gone from Clever's history: ran a full sync" in fallback
    clever.data.put("users", {**clever.data.collections["users"]["stu1"], "email": "a@x.example"})
    code, plain, _ = run_cli(capsys, "sync", *base, "--quick", "--json")
    assert code == 0 and json.loads(plain)["source_note"] is None
    assert json.loads(plain)["counts"]["users"]["update"] == 1
    clever.data.forget_events()
    code, noted, _ = run_cli(capsys, "sync", *base, "--quick", "--json")
    assert code == 0, noted
    assert json.loads(noted)["source_note"].endswith("ran a full sync")

    code, runs, _ = run_cli(capsys, "runs", *base)
    assert code == 0 and runs.count("committed") == 5
    assert_token_nowhere(tmp_path / "state", connected, shown, full, quick, fallback, noted, runs)


def test_a_refused_token_and_bad_connections_are_said(capsys, clever, tmp_path):
    state = str(tmp_path / "state")
    base = ["--tenant", "t1", "--state", state]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-token")

    code, out, _ = run_cli(
        capsys,
        "connect",
        "clever",
        *base,
        "--token-file",
        str(wrong),
        "--base-url",
        clever.base_url,
    )
    assert code == 2
    assert "check: FAILED" in out and "refused the token" in out
    assert "not-the-token" not in out

    code, _, err = run_cli(
        capsys,
        "connect",
        "clever",
        "--tenant",
        "t2",
        "--create-tenant",
        "--state",
        state,
        "--no-check",
    )
    assert code == 1
    assert "secrets.token: required" in err
    _, listed, _ = run_cli(capsys, "tenants", "list", "--state", state)
    assert "t2" not in listed  # the refused connection created no tenant

    code, _, err = run_cli(
        capsys, "connect", "clever", *base, "--secret-file", f"password={wrong}", "--no-check"
    )
    assert code == 1
    assert "secrets.password: not a secret of clever" in err

    code, _, err = run_cli(
        capsys, "connect", "clever", *base, "--set", "base_url=http://example.com", "--no-check"
    )
    assert code == 1
    assert "base_url" in err and "https" in err

    code, _, err = run_cli(capsys, "connect", "clever", *base, "--set", "page_limit=0")
    assert code == 1
    assert "page_limit" in err


def test_switching_back_to_oneroster_csv_forgets_the_token(capsys, clever, token_file, tmp_path):
    state = str(tmp_path / "state")
    base = ["--tenant", "t1", "--state", state]
    code, _, _ = run_cli(
        capsys, "connect", "clever", *base, "--token-file", str(token_file), "--no-check"
    )
    assert code == 0

    code, out, _ = run_cli(capsys, "connect", "oneroster-csv", *base)
    assert code == 0
    assert "oneroster_csv" in out
    code, shown, _ = run_cli(capsys, "connect", "show", *base, "--json")
    assert json.loads(shown)["kind"] == "oneroster_csv"
    assert json.loads(shown)["secrets"] == {}
    assert TOKEN not in (tmp_path / "state" / "secrets.json").read_text()

    code, _, err = run_cli(capsys, "sync", *base)
    assert code == 1
    assert "no connected API source and no complete bundle" in err


def test_a_scheduled_sync_of_a_clever_tenant_fetches_from_clever(clever, tmp_path):
    """Given a tenant connected to Clever, when its schedule fires, then the run fetches
    from Clever (no inbox bundle needed) and commits."""
    with LocalCloud(tmp_path / "state") as local:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, "t1", create=True)
        connect_source(
            deps,
            "t1",
            "clever",
            {"base_url": clever.base_url},
            {"token": TOKEN},
            who="admin@t1",
        )
        locks = locks_repository(deps.settings)
        fired = scheduled_sync(RunStartDeps(deps, locks, WaitingLauncher(local)), "t1")

        assert fired.status == "started", fired
        assert fired.bundle is None and fired.source == "clever 127.0.0.1"
        assert fired.run_id is not None
        run = deps.runs.get("t1", fired.run_id)
        assert run.status == "committed"
        assert run.trigger == "schedule"
        assert run.source is not None and run.source["kind"] == "clever"
        users = export_directory(deps, "t1")["users"]
        assert {u["source_id"] for u in users} >= {"stu1", "stu2", "stu3", "tch1"}


# ------------------------------------------------------------------ the guardian file

GUARDIANS = """guardian_id,given_name,family_name,email,phone,sms,relationship,student_ids
g1,Grace,Lovelace,grace@home.example,555-0101,,Mother,stu1;stu2
g2,Gus,Ng,,555-0202,555-0203,grandmother,stu3
g3,Hal,Okafor,hal@home.example,,,guardian,"stu2, nobody"
g4,Ivy,Lost,,,,parent,nobody
,No,Id,,,,parent,stu1
g5,,,,,,parent,stu1
"""


def _users(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    code, out, _ = run_cli(
        capsys, "directory", "export", "--tenant", "t1", "--state", str(state), "--json"
    )
    assert code == 0
    exported = json.loads(out)
    return {u["source_id"]: u for u in exported["users"]}


@pytest.fixture
def no_contacts(clever: CleverServer) -> CleverServer:
    """A Clever district sharing no contacts (Connect's case)."""
    for contact in ("con1", "con2"):
        clever.data.collections["users"].pop(contact)
    return clever


def test_a_guardian_file_is_merged_beside_clever(capsys, no_contacts, token_file, tmp_path):
    """Given a Clever district without contacts and a guardian file, when the tenant
    syncs with it, then its guardians are users linked both ways to their students, its
    bad rows are row issues, and a later run without the file archives none of them."""
    state = tmp_path / "state"
    base = ["--tenant", "t1", "--state", str(state)]
    guardians = tmp_path / "guardians.csv"
    guardians.write_text(GUARDIANS)
    assert (
        cli.main(
            [
                "connect",
                "clever",
                *base,
                "--token-file",
                str(token_file),
                "--base-url",
                no_contacts.base_url,
            ]
        )
        == 0
    )
    # The district is small: a guardian or two is more than a hold allows by default.
    assert cli.main(["settings", "set", *base, "hold.archive_share=1", "hold.change_share=1"]) == 0
    capsys.readouterr()

    code, out, _ = run_cli(capsys, "sync", *base, "--guardians", str(guardians), "--json")
    first = json.loads(out)
    assert code == 2, first  # committed, with row issues
    assert first["status"] == "committed"
    assert first["counts"]["users"]["add"] == 7 + 3  # the district's users, g1-g3
    issues = [i for i in first["issues"] if i["file"] == "guardians.csv"]
    assert {(i["line"], i["column"], i["action"]) for i in issues} == {
        (4, "student_ids", "field dropped"),  # g3's "nobody"
        (5, "student_ids", "field dropped"),  # g4's "nobody"
        (5, "student_ids", "row skipped"),  # g4 has no student left
        (6, "guardian_id", "row skipped"),
        (7, "family_name", "row skipped"),
    }
    assert any("student nobody is not in the roster" in i["message"] for i in issues)

    users = _users(state, capsys)
    assert users["g1"]["role"] == "parent" and users["g1"]["source_role"] == "Mother"
    assert users["g1"]["agent_source_ids"] == ["stu1", "stu2"]
    assert users["g1"]["email"] == "grace@home.example"
    assert users["g2"]["role"] == "relative" and users["g2"]["sms"] == "555-0203"
    assert users["g3"]["agent_source_ids"] == ["stu2"]
    assert "g4" not in users and "g5" not in users
    assert users["stu1"]["agent_source_ids"] == ["g1"]
    assert users["stu2"]["agent_source_ids"] == ["g1", "g3"]
    assert users["stu3"]["agent_source_ids"] == ["g2"]

    # A later run without a guardian file: the guardians and their links stay.
    code, out, _ = run_cli(capsys, "sync", *base, "--json")
    second = json.loads(out)
    assert code == 0, second
    assert second["counts"]["users"] == {"add": 0, "update": 0, "archive": 0, "reactivate": 0}
    users = _users(state, capsys)
    assert all(users[g]["status"] == "active" for g in ("g1", "g2", "g3"))
    assert users["stu2"]["agent_source_ids"] == ["g1", "g3"]

    # The standing file in the inbox is partial: g2, left out, stays; g1 changes.
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        deps.store.put_bytes(
            inbox_guardian_file("t1"),
            b"guardian_id,given_name,family_name,email,student_ids\n"
            b"g1,Grace,Lovelace,grace@new.example,stu1;stu2\n"
            b"g3,Hal,Okafor,hal@home.example,stu2\n",
        )
    code, out, _ = run_cli(capsys, "sync", *base, "--json")
    third = json.loads(out)
    assert code == 0, third
    assert third["counts"]["users"]["update"] == 1
    assert third["counts"]["users"]["archive"] == 0
    users = _users(state, capsys)
    assert users["g1"]["email"] == "grace@new.example"
    assert users["g2"]["status"] == "active"
    assert users["stu3"]["agent_source_ids"] == ["g2"]

    # A complete file archives the earlier guardians it leaves out, and their links.
    complete = tmp_path / "all-guardians.csv"
    complete.write_text("guardian_id,family_name,student_ids\ng1,Lovelace,stu1;stu2\n")
    code, out, _ = run_cli(
        capsys, "sync", *base, "--guardians", str(complete), "--guardians-complete", "--json"
    )
    fourth = json.loads(out)
    # Two of ten users is more than the stack lets any run archive unapproved.
    assert fourth["status"] == "held", fourth
    hold = json.loads(Path(fourth["report"]).read_text())["hold"]
    assert [(h["check"], h["entity"]) for h in hold] == [("archive_share", "users")]
    code, out, _ = run_cli(capsys, "approve", fourth["run_id"], *base, "--json")
    assert code == 0, out
    approval = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "commit", approval, *base)
    assert code == 0, out
    users = _users(state, capsys)
    assert users["g2"]["status"] == "archived" and users["g3"]["status"] == "archived"
    assert users["stu2"]["agent_source_ids"] == ["g1"]
    assert users["stu3"]["agent_source_ids"] == []
    assert_token_nowhere(state, out)
    # The guardian file's copy is kept with the run, as every input is.
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        raw = deps.store.list_keys(keys.raw_prefix("t1", fourth["run_id"]))
        assert any(k.endswith("guardian-file.csv") for k in raw)


@pytest.mark.parametrize(
    ("kind", "sets", "secret"),
    [
        (
            "oneroster-rest",
            [
                "base_url=https://sis.example.org/ims/oneroster/v1p1",
                "auth=oauth2",
                "client_id=app-1",
                "token_url=https://sis.example.org/oauth/token",
            ],
            "client_secret",
        ),
        ("wonde", ["school_id=A1930499544"], "token"),
        ("assembly", [], "access_token"),
    ],
)
def test_every_api_source_connects_through_the_generic_shape(tmp_path, capsys, kind, sets, secret):
    """Given a secret in a file, when a tenant is connected to OneRoster REST, Wonde or
    Assembly, then connect show names the kind and its secret as set, never its value."""
    from rostersync.cli import main

    state = tmp_path / "state"
    secret_file = tmp_path / "secret.txt"
    value = f"s3cr3t-{kind}-value"
    secret_file.write_text(value + "\n")
    args = ["connect", kind, "--tenant", "t1", "--state", str(state)]
    for item in sets:
        args += ["--set", item]
    args += ["--secret-file", f"{secret}={secret_file}"]
    assert main(["tenants", "add", "t1", "--state", str(state)]) == 0
    assert main(args) == 0, capsys.readouterr()
    connected = capsys.readouterr().out
    assert main(["connect", "show", "--tenant", "t1", "--state", str(state), "--json"]) == 0
    shown = capsys.readouterr().out
    assert value not in shown + connected
    assert json.loads(shown)["secrets"][secret] == "set"
    for path in state.rglob("*"):
        if path.is_file() and path.name != "secrets.json":
            assert value.encode() not in path.read_bytes(), path
