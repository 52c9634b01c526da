"""Normalize takes the records whose input lines are unchanged since the committed run
as that run's read wrote them, and its output is exactly a fresh read's: the same
record and id files byte for byte, the same issues (lines included) and summaries, day
after day, whatever changed around the unchanged lines."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from rostersync.generator import generate_district, mutate_next_day
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.normalize import load_normalized_summary
from rostersync.storage import keys
from tests.integration.days import committed_days

TENANT = "district"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _line(fields: list[str], row: dict[str, str]) -> str:
    """The row's line as ``_write`` writes it."""
    out = io.StringIO(newline="")
    csv.DictWriter(out, fieldnames=fields).writerow(row)
    return out.getvalue()


def _agents(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _day3(day2: Path, day3: Path) -> dict[str, str]:
    """Day 2 with what unchanged lines must not hide: a user gone whose enrollment lines
    stay as they were, a course gone whose class line stays, a repeated unchanged line,
    lines in another order, a bad row after many unchanged ones, a new header order, a
    quoted cell over two lines, an unchanged line inside another row's quoted cell (its
    parent gone, a pupil still pointing at it), a gone parent's id as a line inside a cell."""
    shutil.copytree(day2, day3)
    fields, users = _rows(day3 / "users.csv")
    _, enrollments = _rows(day3 / "enrollments.csv")
    enrolled = {row["userSourcedId"] for row in enrollments}
    gone = next(u for u in users if u["role"] == "student" and u["sourcedId"] in enrolled)
    # A parent whose line is now only the inside of another row's quoted cell (a line as
    # it was, but not a row), with a pupil's unchanged line still pointing at it.
    pointed_at = {a for u in users if u["role"] == "student" for a in _agents(u["agentSourcedIds"])}
    hidden = next(
        u
        for u in users
        if u["role"] == "parent" and u["sourcedId"] in pointed_at and '"' not in _line(fields, u)
    )
    # Another parent gone whose id is now a line of its own inside a quoted cell (no row),
    # a pupil's unchanged line still pointing at it.
    still_pointed_at = {
        a
        for u in users
        if u["role"] == "student" and u is not gone
        for a in _agents(u["agentSourcedIds"])
    }
    orphan = next(
        u
        for u in users
        if u["role"] == "parent"
        and u["sourcedId"] in still_pointed_at
        and u is not hidden
        and gone["sourcedId"] not in u["agentSourcedIds"]
    )
    kept = [u for u in users if u is not gone and u is not hidden and u is not orphan]
    kept.reverse()  # the same lines, in another order (parents before their pupils)
    kept.append(dict(kept[5]))  # an unchanged line twice: the second is a repeat
    holder = dict(kept[-3])
    holder["middleName"] = "open\r\n" + _line(fields, hidden).rstrip("\r\n") + "\r\nclose"
    kept[-3] = holder
    holder = dict(kept[-4])
    holder["middleName"] = "open\r\n" + orphan["sourcedId"] + "\r\nclose"
    kept[-4] = holder
    _write(day3 / "users.csv", fields, kept)

    fields, classes = _rows(day3 / "classes.csv")
    _, courses = _rows(day3 / "courses.csv")
    course = classes[3]["courseSourcedId"]
    course_fields, _ = _rows(day3 / "courses.csv")
    _write(day3 / "courses.csv", course_fields, [c for c in courses if c["sourcedId"] != course])
    classes[10]["title"] = 'Art "studio"\nsecond line'  # quoted, over two lines
    _write(day3 / "classes.csv", fields, classes)

    fields, rows = _rows(day3 / "enrollments.csv")
    rows[len(rows) // 2]["role"] = "wizard"  # a bad row after many unchanged lines
    _write(day3 / "enrollments.csv", fields, rows)

    fields, rows = _rows(day3 / "demographics.csv")
    _write(day3 / "demographics.csv", list(reversed(fields)), rows)
    return {"gone_user": gone["sourcedId"], "gone_course": course, "orphan": orphan["sourcedId"]}


def _empty_quoted_agents(users: Path, count: int = 3) -> None:
    """The first ``count`` lines of users.csv with no agent given as ``""`` there (a cell
    of nothing, quoted), the same lines each day: an unchanged line whose reference
    reads as nothing only once parsed."""
    fields, _ = _rows(users)
    at = fields.index("agentSourcedIds")
    with users.open(encoding="utf-8", newline="") as fh:
        lines = fh.readlines()
    done = 0
    for n, line in enumerate(lines[1:], start=1):
        cells = line.split(",")
        if done < count and len(cells) == len(fields) and cells[at] == "" and '"' not in line:
            cells[at] = '""'
            lines[n] = ",".join(cells)
            done += 1
    assert done == count
    with users.open("w", encoding="utf-8", newline="") as fh:
        fh.write("".join(lines))


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, str]]:
    root = tmp_path_factory.mktemp("district")
    generate_district(root / "day1", students=120, seed=11)
    mutate_next_day(root / "day1", root / "day2", seed=12, rate=0.05)
    _empty_quoted_agents(root / "day2" / "users.csv")
    facts = _day3(root / "day2", root / "day3")
    _empty_quoted_agents(root / "day3" / "users.csv")
    # Day 4: day 3 again beside a file no entity is read from (not the same bundle:
    # read line by line). Day 5: day 4 again, byte for byte (its read taken whole).
    shutil.copytree(root / "day3", root / "day4")
    (root / "day4" / "notes.txt").write_text("exported by the SIS\n", encoding="utf-8")
    shutil.copytree(root / "day4", root / "day5")
    days = [root / f"day{n}" for n in range(1, 6)]
    return days, facts


def _read(deps: Deps, run_id: str) -> dict[str, Any]:
    summary = load_normalized_summary(deps, TENANT, run_id)
    return {
        "records": {
            e.value: deps.store.get_bytes(keys.normalized_key(TENANT, run_id, e))
            for e in ENTITY_ORDER
        },
        "ids": {
            e.value: deps.store.get_bytes(keys.normalized_ids_key(TENANT, run_id, e))
            for e in ENTITY_ORDER
        },
        "issues": list(deps.store.iter_jsonl(keys.issues_key(TENANT, run_id))),
        "entities": summary.model_dump(mode="json")["entities"],
        "reused": summary.reused,
        "whole": summary.whole,
    }


def _syncs(state: Path, days: list[Path]) -> list[dict[str, Any]]:
    return [_read(deps, outcome.run_id) for deps, outcome in committed_days(state, TENANT, days)]


def test_reused_records_equal_a_fresh_read(tmp_path, days, monkeypatch):
    folders, facts = days
    reusing = _syncs(tmp_path / "reusing", folders)
    monkeypatch.setenv("NORMALIZE_REUSE", "false")
    fresh = _syncs(tmp_path / "fresh", folders)

    for number, (fast, slow) in enumerate(zip(reusing, fresh, strict=True), start=1):
        for entity in fast["records"]:
            assert fast["records"][entity] == slow["records"][entity], (number, entity)
            assert fast["ids"][entity] == slow["ids"][entity], (number, entity)
        assert fast["issues"] == slow["issues"], number
        assert fast["entities"] == slow["entities"], number
        assert slow["reused"] == {}, "NORMALIZE_REUSE=false reads every row"

    day1, day2, day3, day4, day5 = reusing
    assert day1["reused"] == {}, "nothing to take on the first sync"
    records = {e: body.count(b"\n") for e, body in day2["records"].items() if body}
    # Day 2 changed a few per cent of the rows: nearly every record is taken.
    for entity in ("users", "enrollments", "classes"):
        assert day2["reused"][entity] >= 0.8 * records[entity], entity
    # Day 3: lines in another order are still taken; a new header order is read afresh.
    assert day3["reused"]["users"] > 0
    assert "demographics" not in day3["reused"]
    assert day4["reused"]["demographics"] > 0
    # Day 5 is day 4 byte for byte: its read is day 4's, taken whole.
    assert day5["whole"] and not day4["whole"]
    assert day5["reused"] == {
        e: n for e, body in day4["records"].items() if (n := body.count(b"\n"))
    }
    assert day5["issues"] == day4["issues"]
    # Day 4 is day 3 again: every record is taken but those read with an issue (read
    # again, so the issue is reported again) and those over several lines.
    with_issue: dict[str, set[str]] = {}
    for issue in day4["issues"]:
        if issue.get("source_id") and issue["action"] != "row skipped":
            with_issue.setdefault(issue["entity"], set()).add(issue["source_id"])
    assert with_issue.get("users") and with_issue.get("classes")
    for entity, body in day4["records"].items():
        if body:
            spanning = 1 if entity in ("classes", "users") else 0
            expected = body.count(b"\n") - len(with_issue.get(entity, ())) - spanning
            assert day4["reused"].get(entity) == expected, entity

    # What the unchanged lines must not hide, found on day 3 as a fresh read finds it.
    issues = day3["issues"]

    def about(text: str) -> list[dict[str, Any]]:
        return [i for i in issues if text in i.get("message", "")]

    assert any(i["file"] == "enrollments.csv" for i in about(f"No user {facts['gone_user']!r}"))
    assert about(f"No course {facts['gone_course']!r}") or any(
        facts["gone_course"] in str(i.get("value")) for i in issues
    )
    assert about("appears earlier in the file"), "the repeated line is a repeat"
    # The lines inside the cells are no rows: the first holder's row is reported as
    # swallowing one; the second's id line leaves the pupil pointing at nobody.
    assert about("runs on to line"), "the quoted cell holding an unchanged line"
    assert about(f"No user {facts['orphan']!r}"), "an id line inside a cell is no user"
    assert about("'wizard' is not a OneRoster role")
