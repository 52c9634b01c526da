"""What a sync tells its admin, through the command line as they type it: issues ranked by
severity (blocking first), the exit code saying clean, issues, waiting or unusable, the
next step to type with the tenant in use, and the run history with counts and reasons."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from rostersync.cli import main
from tests.integration.conftest import Cli

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"
MOODLE = LEPO.parent / "moodle-full-1.1"


@pytest.fixture(autouse=True)
def _shared_data() -> None:
    if not LEPO.is_dir():
        pytest.fail(f"shared test data not found at {LEPO}")


def lepo_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for path in LEPO.glob("*.csv"):
        shutil.copy(path, dest / path.name)
    return dest


def issue_lines(out: str) -> list[str]:
    return [
        line.strip()
        for line in out.splitlines()
        if line.strip().split(" ", 1)[0] in {"BLOCKING", "ROW", "FIELD", "NOTE"}
    ]


def test_a_bundle_with_notes_only_exits_0(cli: Cli) -> None:
    code, out, _ = cli("sync", str(LEPO), "--tenant", "t1")
    assert code == 0, out
    assert "(8 note)" in out
    assert all(line.startswith("NOTE") for line in issue_lines(out))


def test_a_misspelled_header_is_one_blocking_issue_listed_first(cli: Cli, tmp_path: Path) -> None:
    """Given users.csv whose familyName header is misspelled, when synced, then the one
    blocking issue leads the output (before the routine notes), names the misspelling, and
    the exit code is 1; the report and issues.csv rank it first too."""
    bundle = lepo_copy(tmp_path / "bundle")
    users = bundle / "users.csv"
    users.write_text(users.read_text().replace('"familyName"', '"familyNmae"', 1))

    code, out, _ = cli("sync", str(bundle), "--tenant", "t1")

    assert code == 1, out
    lines = issue_lines(out)
    assert lines[0].startswith("BLOCKING users.csv:1 ")
    assert "no familyName column" in lines[0] and "'familyNmae'" in lines[0]
    assert "misspelling" in lines[0]
    assert sum(line.startswith("BLOCKING") for line in lines) == 1
    assert "1 blocking" in out and "unusable" in out

    code, shown, _ = cli("runs", "--tenant", "t1", "--json")
    (run,) = json.loads(shown)
    assert run["issues_by_severity"]["blocking"] == 1
    report = cli.state / "reports" / "t1" / run["run_id"] / "issues.csv"
    with report.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["severity"] == "blocking" and rows[0]["file"] == "users.csv"
    ranks = ["blocking", "row", "field", "note"]
    assert [ranks.index(r["severity"]) for r in rows] == sorted(
        ranks.index(r["severity"]) for r in rows
    )


def test_a_file_listed_but_missing_is_blocking(cli: Cli, tmp_path: Path) -> None:
    bundle = lepo_copy(tmp_path / "bundle")
    (bundle / "users.csv").unlink()
    code, out, _ = cli("sync", str(bundle), "--tenant", "t1")
    assert code == 1
    first = issue_lines(out)[0]
    assert first.startswith("BLOCKING manifest.csv:")
    assert "lists users.csv as bulk, but the bundle has no such file" in first


def test_field_level_issues_exit_2(cli: Cli) -> None:
    code, out, _ = cli("sync", str(MOODLE), "--tenant", "t1")
    assert code == 2, out
    assert issue_lines(out)[0].startswith("FIELD")


def test_a_prepared_run_exits_3_and_says_what_to_type(cli: Cli) -> None:
    code, out, _ = cli("sync", str(LEPO), "--tenant", "district-9", "--review")
    assert code == 3, out
    run_id = out.split("Run ", 1)[1].split(":", 1)[0]
    state = str(cli.state)
    assert f"rostersync commit {run_id} --tenant district-9 --state {state}" in out
    assert f"rostersync review {run_id} --tenant district-9 --state {state}" in out
    # The hint is exactly what to run: it commits the run.
    hinted = out.split("Apply it: ", 1)[1].splitlines()[0].split()[1:]
    assert hinted[:2] == ["commit", run_id]
    cli.capsys.readouterr()
    assert main(hinted) == 0


def test_a_held_run_exits_3_says_why_and_how_to_approve(cli: Cli, tmp_path: Path) -> None:
    """Given a committed district, when a bundle without most of its users arrives, then
    the run is held (exit 3), the output gives each hold's reason and the approve command
    with the tenant, and ``runs`` shows the hold and the issue counts."""
    assert cli("sync", str(LEPO), "--tenant", "t1")[0] == 0
    bundle = lepo_copy(tmp_path / "bundle")
    users = bundle / "users.csv"
    lines = users.read_text().splitlines(keepends=True)
    users.write_text("".join(lines[:6]))

    code, out, _ = cli("sync", str(bundle), "--tenant", "t1")

    assert code == 3, out
    run_id = out.split("Run ", 1)[1].split(":", 1)[0]
    assert "Held for an admin:" in out
    held_reasons = [ln for ln in out.splitlines() if ln.startswith("  - ")]
    assert held_reasons and all(len(r) > 10 for r in held_reasons)
    assert f"rostersync approve {run_id} --tenant t1 --state {cli.state}" in out

    code, history, _ = cli("runs", "--tenant", "t1")
    assert code == 0
    first = history.splitlines()[0]
    assert first.startswith(run_id) and "held" in first and "issues:" in first
    assert any(line.strip().startswith("held: ") for line in history.splitlines()[1:3])


def test_a_failed_run_exits_1_and_runs_shows_why(cli: Cli, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "notes.csv").write_text("a,b\n1,2\n")
    code, out, _ = cli("sync", str(bundle), "--tenant", "t1")
    assert code == 1
    assert "FAILED" in out and "neither manifest.csv nor any OneRoster CSV file" in out
    _, history, _ = cli("runs", "--tenant", "t1")
    assert "failed: " in history and "neither manifest.csv" in history


def test_an_excel_users_file_is_read_with_one_note_saying_so(cli: Cli, tmp_path: Path) -> None:
    """Given users.csv as Excel saves it (BOM, CRLF, ``;``), when synced, then its users
    are all added and one note says the file uses semicolons."""
    bundle = lepo_copy(tmp_path / "bundle")
    users = bundle / "users.csv"
    with users.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with users.open("w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh, delimiter=";", lineterminator="\r\n").writerows(rows)

    code, out, _ = cli("sync", str(bundle), "--tenant", "t1", "--json")

    assert code == 0, out
    result = json.loads(out)
    assert result["counts"]["users"]["add"] == len(rows) - 1
    about_users = [i for i in result["issues"] if i["file"] == "users.csv"]
    semicolons = [i for i in about_users if "semicolons" in i["message"]]
    assert len(semicolons) == 1 and semicolons[0]["severity"] == "note"
    assert result["issues_by_severity"]["blocking"] == 0


def test_an_unknown_tenant_is_refused_once_tenants_exist(cli: Cli) -> None:
    """The first sync in an empty state creates its tenant; after that a mistyped tenant
    is refused with the known ones listed, and --create-tenant means it."""
    code, out, _ = cli("sync", str(LEPO), "--tenant", "springfield")
    assert code == 0 and "Tenant springfield created (first use)" in out

    code, out, err = cli("sync", str(LEPO), "--tenant", "springfeld")
    assert code == 1 and out == ""
    assert "unknown tenant 'springfeld'" in err and "springfield" in err
    assert "--create-tenant" in err
    _, listed, _ = cli("tenants", "list")
    assert "springfeld" not in listed

    code, out, _ = cli("sync", str(LEPO), "--tenant", "shelbyville", "--create-tenant")
    assert code == 0 and "Tenant shelbyville created" in out


def test_messages_name_the_admins_own_file_and_never_a_stack_trace(
    cli: Cli, tmp_path: Path
) -> None:
    """Given a damaged zip with a space in its name, when synced, then the failure names
    that file (not the name it is stored under), and ``runs`` and ``show`` give the
    reason as a sentence, never the step's error JSON or its stack trace."""
    damaged = tmp_path / "my roster.zip"
    damaged.write_bytes(b"this is not a zip file")

    code, out, _ = cli("sync", str(damaged), "--tenant", "t1")

    assert code == 1
    assert "my roster.zip is not a readable zip" in out
    assert "bundle.zip" not in out and "uploads/" not in out
    _, history, _ = cli("runs", "--tenant", "t1")
    assert f"source: {damaged}" in history
    assert "not a readable zip" in history
    assert "stackTrace" not in history and "errorMessage" not in history
    run_id = history.split()[0]
    _, shown, _ = cli("show", run_id, "--tenant", "t1", "--json")
    reason = json.loads(shown)["run"]["reason"]
    assert reason.startswith("BundleError: ") and "stackTrace" not in reason


def test_an_import_names_the_admins_file_and_counts_in_words(cli: Cli, tmp_path: Path) -> None:
    records = tmp_path / "app-people.csv"
    records.write_text(
        "app_id,kind,given_name,family_name,birth_date\n"
        "a1,student,Ann,Lee,2010-13-45\n"
        "a2,alien,Bo,Kim,2011-02-03\n"
    )
    code, out, _ = cli("directory", "import", str(records), "--tenant", "t1")
    assert code == 2
    # The bad date is dropped, its record kept; the unknown kind's row is skipped.
    assert out.splitlines()[0] == "Imported 1 app record"
    assert f"{records}:2 [birth_date]" in out
    assert f"{records}:3 [kind]" in out
    assert "import.csv" not in out


def test_counts_of_one_read_in_the_singular(cli: Cli, tmp_path: Path) -> None:
    bundle = lepo_copy(tmp_path / "bundle")
    orgs = bundle / "orgs.csv"
    orgs.write_text(orgs.read_text().replace('"or0001",""', '"or0001","active"', 1))
    code, out, _ = cli("sync", str(bundle), "--tenant", "t1", "--review")
    assert code == 3
    run_id = out.split("Run ", 1)[1].split(":", 1)[0]
    assert " 1 rows" not in out and " 1 issues" not in out
    _, review, _ = cli("review", run_id, "--tenant", "t1", "--entity", "orgs")
    assert review.splitlines()[-1] == "1-1 of 1 action"
    action = review.split()[1]
    _, excluded, _ = cli("exclude", run_id, action, "--tenant", "t1")
    assert excluded.strip() == "1 action excluded"


def test_review_names_records_and_splits_new_records_from_links(cli: Cli, tmp_path: Path) -> None:
    """Given an app that already has John Doe as a teacher, when the moodle bundle is
    synced for review, then the counts split adds into new app records and links to
    existing ones, and the review names each record, with the app record linked."""
    records = tmp_path / "app.csv"
    records.write_text(
        "app_id,kind,given_name,family_name,email\napp-t-1,teacher,John,Doe,john.doe@myschool.com\n"
    )
    assert cli("directory", "import", str(records), "--tenant", "t1")[0] == 0

    code, out, _ = cli("sync", str(MOODLE), "--tenant", "t1", "--review", "--json")
    assert code == 3
    run_id = json.loads(out)["run_id"]
    code, out, _ = cli("show", run_id, "--tenant", "t1", "--json")
    assert json.loads(out)["report"]["adds"]["users"] == {"new": 5, "linked": 1}
    # Counted as stage wrote the change files: no actions.csv among the run's files.
    with sqlite3.connect(cli.state / "rostersync.sqlite3") as db:
        written = db.execute(
            "SELECT count(*) FROM objects WHERE key = ?",
            (f"runs/t1/{run_id}/report/actions.csv",),
        ).fetchone()[0]
    assert written == 0

    _, review, _ = cli("review", run_id, "--tenant", "t1", "--entity", "users")
    lines = review.splitlines()
    (linked,) = [line for line in lines if "add link" in line]
    assert "usr-222-123456  John Doe (teacher) → app app-t-1" in linked
    assert sum("add new" in line for line in lines) == 5
    assert any("Mary Jones (student)" in line for line in lines)


def test_review_names_the_records_an_archive_would_remove(cli: Cli, tmp_path: Path) -> None:
    assert cli("sync", str(LEPO), "--tenant", "t1")[0] == 0
    bundle = lepo_copy(tmp_path / "bundle")
    users = bundle / "users.csv"
    users.write_text("".join(line for line in users.open() if '"us0005"' not in line))

    code, out, _ = cli("sync", str(bundle), "--tenant", "t1", "--review", "--json")
    assert code == 3
    run_id = json.loads(out)["run_id"]
    _, review, _ = cli("review", run_id, "--tenant", "t1", "--action", "archive")
    archives = [line for line in review.splitlines() if " archive " in line]
    assert any("us0005  GN 05 FN 05 (student)" in line for line in archives)


def test_a_committed_run_counts_its_adds_as_applied_and_its_actions_csv_is_written_locally(
    cli: Cli, tmp_path: Path
) -> None:
    """Given an app that already has John Doe, a sync committed at once (no review)
    counts its adds as the commit applies them, 5 new and 1 linked; the commit writes no
    actions.csv into the run's report (a minute of one invocation at a million
    students), and the command line's copy of the report has one, a row per action."""
    records = tmp_path / "app.csv"
    records.write_text(
        "app_id,kind,given_name,family_name,email\napp-t-1,teacher,John,Doe,john.doe@myschool.com\n"
    )
    assert cli("directory", "import", str(records), "--tenant", "t1")[0] == 0

    code, out, _ = cli("sync", str(MOODLE), "--tenant", "t1", "--json")
    assert code in (0, 2), out
    synced = json.loads(out)
    report = json.loads(Path(synced["report"]).read_text())
    assert report["status"] == "committed"
    assert report["adds"]["users"] == {"new": 5, "linked": 1}
    assert all(c.get("linked") is not None for c in report["chunks"] if "-adds" in c["chunk"])
    with sqlite3.connect(cli.state / "rostersync.sqlite3") as db:
        stored = {
            key.rsplit("/", 1)[1]
            for (key,) in db.execute(
                "SELECT key FROM objects WHERE key LIKE ?",
                (f"runs/t1/{synced['run_id']}/report/%",),
            )
        }
    assert "report.json" in stored and "issues.csv" in stored and "actions.csv" not in stored
    rows = list(csv.DictReader(Path(synced["report"]).with_name("actions.csv").open()))
    users = [row for row in rows if row["entity"] == "users"]
    assert len(users) == 6 and {row["action"] for row in users} == {"add"}
    assert sum(1 for row in rows) == sum(sum(c.values()) for c in report["counts"].values())
