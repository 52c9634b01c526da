"""The hostile next day: a generated district is committed on day 1, then each next day
brings a damaged or misleading copy of it. None of them archives a record or removes a
link without an admin's approval, every day-1 user stays active with the same guardians,
and each run says why it did not trust the bundle."""

from __future__ import annotations

import csv
import io
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rostersync.application.sync import SyncOutcome, export_directory
from rostersync.generator import generate_district
from rostersync.local.session import run_sync
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys
from tests.bundles import edit_rows, read_rows, write_rows

STUDENTS = 1000
SEED = 11


@dataclass
class Day:
    """One hostile next day: what it does to a copy of day 1, and what its run checks."""

    name: str
    damage: Callable[[Path, Path], dict[str, Any]]
    check: Callable[[SyncOutcome, dict[str, Any], Deps], None]


def user_ids_in(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["sourcedId"] for row in csv.DictReader(fh)]


def with_stray_quote(line: str, column: int, opening: bool) -> str:
    """The CSV line with a quote that opens (or closes) the cell of ``column``."""
    cells = next(csv.reader([line]))
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells[:column])
    before = out.getvalue()
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells[column + 1 :])
    after = out.getvalue()
    cell = f'"{cells[column]}' if opening else f'{cells[column]}"'
    return f"{before},{cell},{after}{line[len(line.rstrip(chr(13) + chr(10))) :]}"


def directory(deps: Deps) -> dict[str, dict[str, Any]]:
    """Each user of the committed directory: status and guardians."""
    return {
        u["source_id"]: {
            "status": u["status"],
            "agent_source_ids": sorted(u.get("agent_source_ids") or []),
        }
        for u in export_directory(deps, "t1")["users"]
    }


def removed_agents(action: dict[str, Any]) -> list[str]:
    change = action["changes"].get("agent_source_ids")
    if action["action"] != "update" or change is None:
        return []
    return sorted(set(change[0] or []) - set(change[1] or []))


# --- the damage done to each day ------------------------------------------------------


def cut_users(share: float) -> Callable[[Path, Path], dict[str, Any]]:
    def damage(day1: Path, bundle: Path) -> dict[str, Any]:
        users = bundle / "users.csv"
        data = users.read_bytes()
        users.write_bytes(data[: int(len(data) * share)])
        lost = set(user_ids_in(day1 / "users.csv")) - set(user_ids_in(users))
        assert lost, "the cut took users with it"
        return {"lost": lost}

    return damage


def first_half_of_users(day1: Path, bundle: Path) -> dict[str, Any]:
    users = bundle / "users.csv"
    edit_rows(users, lambda rows: rows[: len(rows) // 2])
    lost = set(user_ids_in(day1 / "users.csv")) - set(user_ids_in(users))
    assert lost
    return {"lost": lost}


def stray_quote(day1: Path, bundle: Path) -> dict[str, Any]:
    users = bundle / "users.csv"
    lines = users.read_text(encoding="utf-8").splitlines(keepends=True)
    grades = next(csv.reader([lines[0]])).index("grades")
    # A quote opening one user's grades runs on into the next row (to the quote of its
    # userIds): that user is in no row of the file.
    lines[100] = with_stray_quote(lines[100], grades, opening=True)
    swallowed = next(csv.reader([lines[101]]))[0]
    users.write_text("".join(lines), encoding="utf-8")
    assert swallowed not in user_ids_in(users)
    return {"swallowed": swallowed}


def delta_labelled_bulk(day1: Path, bundle: Path) -> dict[str, Any]:
    """The manifest still says bulk, but users, enrollments and demographics hold only
    the rows of five users whose names changed."""
    header, rows = read_rows(bundle / "users.csv")
    changed = [r for r in rows if r["role"] == "student"][:5]
    for row in changed:
        row["givenName"] = row["givenName"] + "x"
    write_rows(bundle / "users.csv", header, changed)
    ids = {r["sourcedId"] for r in changed}
    edit_rows(bundle / "enrollments.csv", lambda rs: [r for r in rs if r["userSourcedId"] in ids])
    demographics = bundle / "demographics.csv"
    if demographics.exists():
        edit_rows(demographics, lambda rs: [r for r in rs if r["sourcedId"] in ids])
    manifest = (bundle / "manifest.csv").read_text(encoding="utf-8")
    assert "file.users,bulk" in manifest
    return {"lost": {r["sourcedId"] for r in rows} - ids}


def empty_enrollments(day1: Path, bundle: Path) -> dict[str, Any]:
    enrollments = bundle / "enrollments.csv"
    header, rows = read_rows(enrollments)
    write_rows(enrollments, header, [])
    return {"enrollments": sum(r["status"] in ("", "active") for r in rows)}


def binary_users(day1: Path, bundle: Path) -> dict[str, Any]:
    users = bundle / "users.csv"
    size = users.stat().st_size
    users.write_bytes(random.Random(SEED).randbytes(size))
    return {}


# --- what each day's run must say -----------------------------------------------------


def reasons(outcome: SyncOutcome) -> str:
    report = outcome.report or {}
    refused = "; ".join(str(r.get("reason")) for r in report.get("refused", {}).values())
    held = "; ".join(str(h.get("message")) for h in report.get("hold", []))
    return f"refused: {refused} | hold: {held}"


def refused_users(cut: str) -> Callable[[SyncOutcome, dict[str, Any], Deps], None]:
    def check(outcome: SyncOutcome, found: dict[str, Any], deps: Deps) -> None:
        refused = (outcome.report or {})["refused"].get("users")
        assert refused, f"users archives were not refused: {reasons(outcome)}"
        assert cut in refused["reason"], refused["reason"]
        assert refused["archive"] >= len(found["lost"]), refused

    return check


def check_stray_quote(outcome: SyncOutcome, found: dict[str, Any], deps: Deps) -> None:
    refused = (outcome.report or {})["refused"].get("users")
    assert refused, f"users archives were not refused: {reasons(outcome)}"
    assert "unbalanced quote on line 101 of users.csv" in refused["reason"], refused["reason"]
    assert refused["archive"] >= 1, refused
    assert directory(deps)[found["swallowed"]]["status"] == "active"


def says(*words: str) -> Callable[[SyncOutcome, dict[str, Any], Deps], None]:
    def check(outcome: SyncOutcome, found: dict[str, Any], deps: Deps) -> None:
        told = reasons(outcome)
        assert any(w in told for w in words), f"none of {words} in {told}"

    return check


def check_empty_enrollments(outcome: SyncOutcome, found: dict[str, Any], deps: Deps) -> None:
    refused = (outcome.report or {})["refused"].get("enrollments")
    assert refused, f"enrollments archives were not refused: {reasons(outcome)}"
    assert "enrollments.csv has no rows" in refused["reason"], refused["reason"]
    assert refused["archive"] >= found["enrollments"], refused
    says("the enrollments file is required but empty")(outcome, found, deps)


def held_for(*words: str) -> Callable[[SyncOutcome, dict[str, Any], Deps], None]:
    def check(outcome: SyncOutcome, found: dict[str, Any], deps: Deps) -> None:
        says(*words)(outcome, found, deps)
        assert outcome.status == "held", outcome.status
        # The archives wait in the change set for an admin, not applied.
        actions = deps.store.iter_jsonl(keys.changes_key("t1", outcome.run_id, Entity.USERS))
        waiting = {a["source_id"] for a in actions if a["action"] == "archive"}
        assert waiting >= found["lost"], "archives not kept"
        assert waiting, "no archive waits for approval"

    return check


DAYS = [
    Day("users.csv cut off at 97%", cut_users(0.97), refused_users("cut off")),
    # Half of this district's users.csv ends exactly after a row's last cell, just before
    # its line end: no row is broken, so the file reads as a complete, shorter one and
    # the archive hold is what stops it.
    Day("users.csv cut off at 50%", cut_users(0.50), held_for("would be archived")),
    Day("the first half of users.csv's rows", first_half_of_users, held_for("would be archived")),
    Day("a stray quote in users.csv", stray_quote, check_stray_quote),
    Day("a delta labelled bulk", delta_labelled_bulk, held_for("would be archived")),
    Day("an empty enrollments.csv", empty_enrollments, check_empty_enrollments),
    Day("a binary users.csv", binary_users, says("the users file is required but missing")),
]


def test_no_hostile_next_day_archives_or_unlinks_anyone(cloud: tuple[Any, Deps], tmp_path: Path):
    local, deps = cloud
    day1 = tmp_path / "day1"
    stats = generate_district(day1, students=STUDENTS, seed=SEED)
    assert stats.students >= STUDENTS

    first, _ = run_sync(local, deps, "t1", day1, tmp_path / "reports")
    assert first.status == "committed", first.error
    before = directory(deps)
    assert len(before) >= STUDENTS
    assert all(u["status"] == "active" for u in before.values())
    assert any(u["agent_source_ids"] for u in before.values())

    for number, day in enumerate(DAYS, start=2):
        bundle = tmp_path / f"day{number}"
        shutil.copytree(day1, bundle)
        found = day.damage(day1, bundle)

        outcome, _ = run_sync(local, deps, "t1", bundle, tmp_path / "reports")

        assert outcome.status in ("committed", "held"), f"{day.name}: {outcome.error}"
        for entity in ENTITY_ORDER:
            actions = deps.store.iter_jsonl(keys.changes_key("t1", outcome.run_id, entity))
            included = [a for a in actions if a["included"]]
            archived = [a["source_id"] for a in included if a["action"] == "archive"]
            assert archived == [], f"{day.name}: {entity.value} archived {archived[:10]}"
            unlinked = {a["source_id"]: removed_agents(a) for a in included if removed_agents(a)}
            assert unlinked == {}, f"{day.name}: {entity.value} links removed {unlinked}"

        after = directory(deps)
        changed = {
            sid: (user, after.get(sid)) for sid, user in before.items() if after.get(sid) != user
        }
        assert changed == {}, f"{day.name}: day-1 users changed: {dict(list(changed.items())[:5])}"

        report = outcome.report or {}
        assert report.get("hold") or report.get("refused"), f"{day.name}: the run says nothing"
        try:
            day.check(outcome, found, deps)
        except AssertionError as error:
            raise AssertionError(f"{day.name}: {error}") from error
