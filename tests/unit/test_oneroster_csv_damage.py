"""Broken OneRoster files: cut off, swallowed by a stray quote, not CSV at all, values
storage cannot hold, Excel's own CSV. Nothing absent from a damaged file may look gone."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from rostersync.models import Entity, IssueAction
from rostersync.sources.bundle import FolderBundle
from rostersync.sources.oneroster_csv import read_summary
from rostersync.sources.oneroster_csv.limits import MAX_ID_CHARS, MAX_RECORD_BYTES
from rostersync.sources.oneroster_csv.reader import FileMode
from tests.unit.test_oneroster_csv import (
    BUNDLES,
    ONE_ORG,
    USERS,
    Read,
    bundle,
    oneroster_data,
    user,
)

__all__ = ["oneroster_data"]  # the fixture, shared

IDS = [f"u{i:02d}" for i in range(1, 41)]


def users_file(**overrides: dict[str, str]) -> str:
    """users.csv with the users of IDS, cells of some overridden."""
    return USERS + "".join(user(sid, **overrides.get(sid, {})) for sid in IDS)


def read_users(tmp_path: Path, users: str | bytes) -> Read:
    return Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users}))


def trusted(read: Read, entity: Entity = Entity.USERS) -> bool:
    summary = read.summaries[entity]
    return summary.untrusted is None and summary.unreadable_rows == 0


def lines_of(text: str) -> list[str]:
    return text.splitlines(keepends=True)


# --- truncated files -----------------------------------------------------------------


@pytest.mark.parametrize("share", [0.97, 0.5])
def test_a_file_cut_off_in_a_row_drops_that_row_and_trusts_no_absence(
    tmp_path: Path, share: float
) -> None:
    """Given users.csv cut at a share of its bytes, in the middle of a row, when it is
    read, then the rows before the cut are records, the cut row is not (never padded),
    one issue says where, and the summary says absences cannot be trusted."""
    full = users_file().encode()
    cut = full[: int(len(full) * share)]
    assert not cut.endswith(b"\n")
    whole_rows = cut.count(b"\n") - 1  # the header's line end, then one per whole row
    cut_row_sid = IDS[whole_rows]

    read = read_users(tmp_path, cut)

    assert list(read.by_id(Entity.USERS)) == IDS[:whole_rows]
    summary = read.summaries[Entity.USERS]
    assert summary.untrusted == "users.csv ends in the middle of a row (cut off?)"
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert issue.line == whole_rows + 2
    assert issue.column is not None
    assert "cut off" in issue.message and "not read with blanks" in issue.message
    # The cut row's id is whole (a delimiter follows it): unknown, never archived.
    assert summary.skipped_ids == [cut_row_sid]
    assert summary.rows == whole_rows + 1
    assert not read.about("users.csv", action=IssueAction.ROW_KEPT)
    seam = read_summary(summary)
    assert seam.untrusted == summary.untrusted and seam.unknown_ids == [cut_row_sid]


def test_a_cut_inside_the_id_counts_the_row_unreadable(tmp_path: Path) -> None:
    read = read_users(tmp_path, users_file() + "u4")
    summary = read.summaries[Entity.USERS]
    assert len(read.records[Entity.USERS]) == len(IDS)
    assert summary.unreadable_rows == 1 and summary.skipped_ids == []
    assert summary.untrusted is not None


def test_a_complete_last_row_without_a_line_end_is_fine(tmp_path: Path) -> None:
    read = read_users(tmp_path, users_file().rstrip("\n"))
    assert list(read.by_id(Entity.USERS)) == IDS
    assert trusted(read)
    assert not read.about("users.csv", action=IssueAction.ROW_SKIPPED)


def test_a_short_last_row_with_a_line_end_is_read_with_blanks(tmp_path: Path) -> None:
    """Not cut off: the line ends. The usual rule for short rows applies."""
    read = read_users(tmp_path, users_file() + "u99,active,,true,o1,student,u99,,Al,Bo\n")
    assert "u99" in read.by_id(Entity.USERS)
    assert trusted(read)


def test_a_file_ending_inside_a_quoted_cell_drops_the_row(tmp_path: Path) -> None:
    text = users_file() + 'u99,active,,true,o1,student,u99,,"Al\nBo,Lee\n'
    read = read_users(tmp_path, text)
    summary = read.summaries[Entity.USERS]
    assert list(read.by_id(Entity.USERS)) == IDS
    assert summary.skipped_ids == ["u99"]
    assert summary.untrusted is not None and "quoted cell" in summary.untrusted
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (issue.line, issue.column) == (len(IDS) + 2, "givenName")
    assert "1 lines after it" in issue.message


# --- stray quotes --------------------------------------------------------------------


def test_a_stray_quote_that_merges_rows_into_one_field_is_reported_and_trusted_nowhere(
    tmp_path: Path,
) -> None:
    """Given two stray quotes that make one middleName hold five other users (the row
    has the right number of cells, so it used to read without a word), when read, then
    that row is skipped, the swallowed users are unknown (not gone), and absences are
    not trusted."""
    text = users_file(u03={"middleName": '"Jo'}, u08={"middleName": 'Kim"'})
    read = read_users(tmp_path, text)

    records = read.by_id(Entity.USERS)
    swallowed = ["u04", "u05", "u06", "u07", "u08"]  # u08's start is in the field too
    assert set(records) == set(IDS) - {"u03", *swallowed}
    assert not any("\n" in json.dumps(r) for r in read.records[Entity.USERS])
    summary = read.summaries[Entity.USERS]
    assert summary.skipped_ids == ["u03", *swallowed]
    assert summary.untrusted is not None
    assert "unbalanced quote on line 4" in summary.untrusted
    (issue,) = read.about("users.csv", line=4)
    assert issue.action is IssueAction.ROW_SKIPPED and issue.column == "middleName"
    assert "runs on to line 9" in issue.message and "swallowed 5 lines" in issue.message
    assert issue.value is None  # other children's data is not copied into the issue


def test_a_stray_quote_closed_by_another_rows_quoted_cell_is_caught(tmp_path: Path) -> None:
    """The quote closing the stray one opens a real quoted cell of a later row: the
    damaged row has the wrong number of cells, the later row spills into it."""
    text = users_file(u03={"middleName": '"Jo'}, u06={"givenName": '"Ann, Jr"'})
    read = read_users(tmp_path, text)
    assert {"u03", "u04", "u05", "u06"}.isdisjoint(read.by_id(Entity.USERS))
    assert not trusted(read)
    assert {"u03", "u04", "u05"} <= set(read.summaries[Entity.USERS].skipped_ids)


def test_a_stray_quote_at_the_end_of_a_line_swallowing_the_next_id(tmp_path: Path) -> None:
    text = users_file(u03={"grades": '"3'}, u04={"grades": '4"'})
    read = read_users(tmp_path, text)
    assert {"u03", "u04"}.isdisjoint(read.by_id(Entity.USERS))
    assert not trusted(read)


def test_a_stray_quote_running_to_the_end_of_the_file_swallows_nothing_silently(
    tmp_path: Path,
) -> None:
    read = read_users(tmp_path, users_file(u10={"middleName": '"Jo'}))
    assert list(read.by_id(Entity.USERS)) == IDS[:9]
    summary = read.summaries[Entity.USERS]
    assert summary.untrusted is not None and "line 11" in summary.untrusted
    assert summary.skipped_ids[0] == "u10"
    assert set(summary.skipped_ids[1:]) == set(IDS[10:])


def test_real_multi_line_cells_still_read(tmp_path: Path) -> None:
    text = users_file(
        u02={"middleName": '"two\nlines"'},
        u05={"middleName": '"12 Main St, Apt 4\r\nSpringfield, IL"'},
        u09={"givenName": '"Ann ""Nan"""'},
    )
    read = read_users(tmp_path, text)
    records = read.by_id(Entity.USERS)
    assert list(records) == IDS
    assert records["u05"]["middle_name"] == "12 Main St, Apt 4\r\nSpringfield, IL"
    assert records["u09"]["given_name"] == 'Ann "Nan"'
    assert trusted(read)
    assert not read.about("users.csv", action=IssueAction.ROW_SKIPPED)


def test_an_id_with_a_quote_or_a_comma_is_damage_not_an_id(tmp_path: Path) -> None:
    text = users_file().replace("\nu04,", '\nu04",').replace("\nu06,", '\n"u06,x",')
    read = read_users(tmp_path, text)
    summary = read.summaries[Entity.USERS]
    assert {"u04", "u06", 'u04"'}.isdisjoint(read.by_id(Entity.USERS))
    assert summary.unreadable_rows == 2
    assert summary.skipped_ids == []


def test_the_shared_bundles_are_trusted(oneroster_data: Path) -> None:
    for name in BUNDLES:
        read = Read(FolderBundle(oneroster_data / name))
        for entity in read.summaries:
            assert trusted(read, entity), (name, entity)


# --- files that are not CSV ----------------------------------------------------------


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", random.Random(2).randbytes(2000).hex())
    return out.getvalue()


@pytest.mark.parametrize(
    "body",
    [random.Random(1).randbytes(20_000), zip_bytes(), users_file().encode("utf-16")],
    ids=["random", "xlsx", "utf16"],
)
def test_a_binary_users_file_is_unusable_and_archives_nobody(tmp_path: Path, body: bytes) -> None:
    read = read_users(tmp_path, body)
    summary = read.summaries[Entity.USERS]
    assert summary.mode is FileMode.ABSENT
    assert read.records[Entity.USERS] == []
    assert summary.untrusted is not None and "users.csv is" in summary.untrusted
    assert summary.skipped_ids == []  # no bytes posing as ids
    (issue,) = read.about("users.csv")
    assert issue.action is IssueAction.FILE_SKIPPED
    assert "treated as absent" in issue.message
    assert read_summary(summary).untrusted == summary.untrusted


# --- values storage can hold ---------------------------------------------------------


def test_an_id_too_long_for_storage_skips_the_row_and_trusts_no_absence(tmp_path: Path) -> None:
    long_id = "x" * 2000
    text = USERS + user("u1") + user(long_id) + user("u3")
    read = read_users(tmp_path, text)
    assert list(read.by_id(Entity.USERS)) == ["u1", "u3"]
    summary = read.summaries[Entity.USERS]
    assert summary.unreadable_rows == 1
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (issue.line, issue.column) == (3, "sourcedId")
    assert issue.value is not None and len(issue.value) < 100
    assert f"more than the {MAX_ID_CHARS}" in issue.message


def test_an_id_of_exactly_the_limit_is_kept(tmp_path: Path) -> None:
    sid = "x" * MAX_ID_CHARS
    read = read_users(tmp_path, USERS + user(sid))
    assert list(read.by_id(Entity.USERS)) == [sid]


def test_a_control_character_in_an_id_skips_the_row(tmp_path: Path) -> None:
    read = read_users(tmp_path, USERS + user("u1") + user("u\x072"))
    assert list(read.by_id(Entity.USERS)) == ["u1"]
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert issue.value == "u\\x072" and "control characters" in issue.message


def test_a_reference_too_long_for_storage_skips_the_row_by_id(tmp_path: Path) -> None:
    users = USERS + user("u1") + user("u2", agentSourcedIds='"u1,' + "y" * 600 + '"') + user("u3")
    read = Read(bundle(tmp_path, {"users.csv": users}))
    assert list(read.by_id(Entity.USERS)) == ["u1", "u3"]
    summary = read.summaries[Entity.USERS]
    assert summary.skipped_ids == ["u2"] and summary.unreadable_rows == 0
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (issue.column, issue.source_id) == ("agentSourcedIds", "u2")


def test_references_long_only_together_are_kept(tmp_path: Path) -> None:
    """Each reference under the limit, all of them together over it: nothing to skip."""
    guardian, org = "g" * (MAX_ID_CHARS - 10), "o" * (MAX_ID_CHARS - 10)
    orgs = ONE_ORG + f"{org},active,,School,school,,\n"
    users = (
        USERS
        + user(guardian, role="guardian", orgSourcedIds=org)
        + user("u1", agentSourcedIds=guardian, orgSourcedIds=org)
    )
    read = Read(bundle(tmp_path, {"orgs.csv": orgs, "users.csv": users}))
    u1 = read.by_id(Entity.USERS)["u1"]
    assert (u1["agent_source_ids"], u1["org_source_ids"]) == ([guardian], [org])
    assert not read.about("users.csv", action=IssueAction.ROW_SKIPPED)


@pytest.mark.parametrize("column", ["orgSourcedIds", "agentSourcedIds"])
def test_a_control_character_in_a_reference_skips_the_row_by_id(
    tmp_path: Path, column: str
) -> None:
    users = USERS + user("u1") + user("u2", **{column: "u\x071"}) + user("u3")
    read = read_users(tmp_path, users)
    assert list(read.by_id(Entity.USERS)) == ["u1", "u3"]
    assert read.summaries[Entity.USERS].skipped_ids == ["u2"]
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (issue.column, issue.source_id) == (column, "u2")
    assert "control characters" in issue.message


def test_a_tab_around_a_reference_is_trimmed_not_skipped(tmp_path: Path) -> None:
    read = read_users(tmp_path, USERS + user("u1", orgSourcedIds="\to1\t"))
    assert read.by_id(Entity.USERS)["u1"]["org_source_ids"] == ["o1"]
    assert not read.about("users.csv", action=IssueAction.ROW_SKIPPED)


def test_a_record_too_big_for_storage_skips_its_row_naming_the_column(tmp_path: Path) -> None:
    """A 500 KB field of CJK text (more characters than the csv module reads by
    default) skips its row, and only its row."""
    huge = "漢字" * (500_000 // 6)
    assert len(huge.encode()) >= 499_000
    text = USERS + user("u1") + user("u2", middleName=huge) + user("u3")
    read = read_users(tmp_path, text)
    assert list(read.by_id(Entity.USERS)) == ["u1", "u3"]
    summary = read.summaries[Entity.USERS]
    assert summary.skipped_ids == ["u2"] and trusted(read)
    (issue,) = read.about("users.csv", action=IssueAction.ROW_SKIPPED)
    assert (issue.line, issue.column, issue.source_id) == (3, "middleName", "u2")
    assert f"{MAX_RECORD_BYTES:,}" in issue.message


def test_a_big_record_under_the_limit_is_kept(tmp_path: Path) -> None:
    big = "漢" * (MAX_RECORD_BYTES // 4)
    read = read_users(tmp_path, USERS + user("u1", middleName=big))
    assert read.by_id(Entity.USERS)["u1"]["middle_name"] == big


# --- Excel's CSV ---------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_an_excel_export_reads_like_the_csv(tmp_path: Path, delimiter: str, word: str) -> None:
    """Given users.csv as Excel saves it where the decimal mark is a comma (BOM, CRLF,
    semicolons), when read, then it gives the same records as the comma file, with one
    issue saying how it was read."""
    plain = users_file(u02={"givenName": '"Ann, Jr"', "orgSourcedIds": '"o1,o2"'})
    orgs = ONE_ORG + "o2,active,,Other,school,,\n"
    expected = Read(bundle(tmp_path / "plain", {"orgs.csv": orgs, "users.csv": plain}))

    excel = (
        b"\xef\xbb\xbf"
        + plain.replace(",", delimiter)
        .replace(f'"Ann{delimiter} Jr"', '"Ann, Jr"')
        .replace(f'"o1{delimiter}o2"', "o1,o2")
        .replace("\n", "\r\n")
        .encode()
    )
    read = Read(bundle(tmp_path / "excel", {"orgs.csv": orgs, "users.csv": excel}))

    assert read.records == expected.records
    assert read.by_id(Entity.USERS)["u02"]["org_source_ids"] == ["o1", "o2"]
    (note,) = read.about("users.csv", action=IssueAction.NOTED)
    assert word in note.message and note.line == 1
    assert trusted(read)


def test_a_semicolon_manifest_is_read(tmp_path: Path) -> None:
    manifest = (
        "propertyName;value\r\nmanifest.version;1.0\r\nfile.orgs;bulk\r\nfile.users;delta\r\n"
    )
    read = Read(bundle(tmp_path, {"orgs.csv": ONE_ORG, "users.csv": users_file()}, manifest))
    assert read.bundle.modes[Entity.USERS] is FileMode.DELTA
    (note,) = read.about("manifest.csv")
    assert "semicolons" in note.message
