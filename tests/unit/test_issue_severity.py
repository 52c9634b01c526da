"""Every issue has a severity: what its action implies unless the reader says otherwise,
and for issues kept before severities, what their action implies."""

from __future__ import annotations

from pathlib import Path

from rostersync.models import (
    Entity,
    IssueAction,
    RowIssue,
    Severity,
    severity_counts,
    severity_of,
    worst_first,
)
from rostersync.sources.bundle import FolderBundle
from rostersync.sources.oneroster_csv.reader import OneRosterBundle


def test_an_issue_takes_its_actions_severity_unless_given_one() -> None:
    implied = {
        IssueAction.FILE_SKIPPED: Severity.BLOCKING,
        IssueAction.ROW_SKIPPED: Severity.ROW,
        IssueAction.KEPT_DEFAULT: Severity.FIELD,
        IssueAction.FIELD_DROPPED: Severity.FIELD,
        IssueAction.NOTED: Severity.NOTE,
        IssueAction.READ_AS_BULK: Severity.NOTE,
    }
    for action, severity in implied.items():
        assert RowIssue(file="f.csv", message="m", action=action).severity is severity
    given = RowIssue(file="f.csv", message="m", action="row skipped", severity="blocking")
    assert given.severity is Severity.BLOCKING
    assert given.model_dump(mode="json")["severity"] == "blocking"


def test_issues_kept_before_severities_are_ranked_by_their_action() -> None:
    stored = [
        {"file": "a.csv", "action": "noted"},
        {"file": "b.csv", "action": "row skipped"},
        {"file": "c.csv", "action": "file skipped"},
        {"file": "d.csv", "action": "field dropped"},
        {"file": "e.csv", "action": "row skipped", "severity": "blocking"},
        {"file": "f.csv", "action": "not an action"},
    ]
    assert [severity_of(i).value for i in stored] == [
        "note",
        "row",
        "blocking",
        "field",
        "blocking",
        "note",
    ]
    assert [i["file"] for i in worst_first(stored)] == [
        "c.csv",
        "e.csv",
        "b.csv",
        "d.csv",
        "a.csv",
        "f.csv",
    ]
    assert severity_counts(stored) == {"blocking": 2, "row": 1, "field": 1, "note": 2}


def test_a_missing_required_column_is_blocking_and_names_a_misspelling(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text(
        "sourcedId,status,role,givenName,familyNmae\nu1,active,student,Ann,Lee\n"
    )
    issues: list[RowIssue] = []
    bundle = OneRosterBundle(FolderBundle(tmp_path), issues.append)
    assert list(bundle.iter_records(Entity.USERS)) == []
    (blocking,) = [i for i in issues if i.severity is Severity.BLOCKING]
    assert blocking.file == "users.csv" and blocking.line == 1
    assert "no familyName column" in blocking.message
    assert "'familyNmae': a misspelling of familyName?" in blocking.message
    assert not [i for i in issues if "status" in i.message]  # a status given is no issue
