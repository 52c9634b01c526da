"""Reading guardian files: columns by name, ids split on ; or ,, bad rows and bad files
reported, never raised."""

from __future__ import annotations

from rostersync.models import IssueAction, RowIssue
from rostersync.sources.guardian_file import (
    GuardianFile,
    guardian_record,
    parse_guardian_file,
    split_cursor,
    wrap_cursor,
)


def _parse(body: bytes) -> tuple[GuardianFile, list[RowIssue]]:
    issues: list[RowIssue] = []
    return parse_guardian_file(body, "guardians.csv", issues.append), issues


def test_columns_are_found_by_name_in_any_case_and_ids_split_on_both_separators():
    parsed, issues = _parse(
        b"\xef\xbb\xbfStudent IDs,Last_Name,ID,Relationship\n s1 ; s2,Ng,g1,Aunt\ns3,Ok,g2,\n"
    )
    assert issues == []
    rows = parsed.rows
    assert [(r.guardian_id, r.student_ids) for r in rows] == [("g1", ("s1", "s2")), ("g2", ("s3",))]
    record = guardian_record("clever", rows[0], ["s2", "s1"])
    assert record["role"] == "relative" and record["source_role"] == "Aunt"
    assert record["agent_source_ids"] == ["s1", "s2"] and record["family_name"] == "Ng"
    assert guardian_record("clever", rows[1], ["s3"])["role"] == "guardian"


def test_a_file_without_the_needed_columns_or_not_utf8_is_skipped_with_an_issue():
    for body, column in ((b"guardian_id,family_name\ng1,Ng\n", "student_ids"), (b"\xff\xfe", None)):
        parsed, issues = _parse(body)
        assert not parsed.readable and parsed.rows == []
        assert [i.action for i in issues] == [IssueAction.FILE_SKIPPED]
        assert issues[0].column == column


def test_bad_rows_name_their_line_and_column():
    parsed, issues = _parse(
        b"guardian_id,family_name,student_ids\n,Ng,s1\ng1,,s1\ng2,Ok,\ng3,Ok,s1\ng3,Ok,s2\n"
    )
    assert [(i.line, i.column) for i in issues] == [
        (2, "guardian_id"),
        (3, "family_name"),
        (4, "student_ids"),
        (6, "guardian_id"),
    ]
    assert parsed.unreadable_rows == 1
    assert parsed.skipped_ids == ["g1", "g2", "g3"]


def test_the_cursor_wraps_the_sources_own_and_unwraps_an_unwrapped_one():
    wrapped = wrap_cursor({"g1": ["s1"]}, {"event_id": "e9"})
    assert split_cursor(wrapped) == ({"g1": ["s1"]}, {"event_id": "e9"})
    assert split_cursor({"event_id": "e9"}) == ({}, {"event_id": "e9"})
    assert split_cursor(None) == ({}, None)
