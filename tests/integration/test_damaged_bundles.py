"""Damaged files through the real state machine: a generated district committed on day 1,
then a day-2 users.csv cut off or broken by a stray quote archives nobody, and says why."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.sync import SyncOutcome, export_directory
from rostersync.generator import generate_district
from rostersync.local.session import run_sync
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys

STUDENTS = 1000


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("district")
    stats = generate_district(out, students=STUDENTS, seed=11)
    assert stats.students >= STUDENTS
    return out


def sync(cloud: tuple[Any, Deps], path: Path, tmp_path: Path) -> SyncOutcome:
    local, deps = cloud
    outcome, _ = run_sync(local, deps, "t1", path, tmp_path / "reports")
    return outcome


def day2(district: Path, tmp_path: Path) -> Path:
    out = tmp_path / "day2"
    shutil.copytree(district, out)
    return out


def active_user_ids(deps: Deps) -> set[str]:
    users = export_directory(deps, "t1")["users"]
    return {u["source_id"] for u in users if u["status"] == "active"}


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


def assert_nobody_archived(cloud: tuple[Any, Deps], outcome: SyncOutcome, before: set[str]):
    assert outcome.status in ("committed", "held"), outcome.error
    assert outcome.counts["users"]["archive"] == 0
    archived = [
        a
        for a in cloud[1].store.iter_jsonl(keys.changes_key("t1", outcome.run_id, Entity.USERS))
        if a["action"] == "archive" and a["included"]
    ]
    assert archived == []
    assert active_user_ids(cloud[1]) >= before


def test_a_users_file_cut_off_at_97_percent_archives_nobody_and_says_why(cloud, tmp_path, district):
    first = sync(cloud, district, tmp_path)
    assert first.status == "committed", first.error
    before = active_user_ids(cloud[1])
    assert len(before) >= STUDENTS

    bundle = day2(district, tmp_path)
    users = bundle / "users.csv"
    data = users.read_bytes()
    users.write_bytes(data[: int(len(data) * 0.97)])
    lost = set(user_ids_in(district / "users.csv")) - set(user_ids_in(users))
    assert lost  # the cut took users with it

    outcome = sync(cloud, bundle, tmp_path)

    assert_nobody_archived(cloud, outcome, before)
    reason = outcome.report["refused"]["users"]["reason"]
    assert "ends in the middle of a row (cut off?)" in reason
    assert outcome.report["refused"]["users"]["archive"] >= len(lost)


def test_a_stray_quote_in_users_archives_nobody(cloud, tmp_path, district):
    first = sync(cloud, district, tmp_path)
    assert first.status == "committed", first.error
    before = active_user_ids(cloud[1])

    bundle = day2(district, tmp_path)
    users = bundle / "users.csv"
    lines = users.read_text(encoding="utf-8").splitlines(keepends=True)
    grades = next(csv.reader([lines[0]])).index("grades")
    # A quote opening one user's grades runs on into the next row (to the quote of its
    # userIds): that user is in no row of the file.
    lines[100] = with_stray_quote(lines[100], grades, opening=True)
    swallowed = next(csv.reader([lines[101]]))[0]
    users.write_text("".join(lines), encoding="utf-8")
    assert swallowed not in user_ids_in(users)

    outcome = sync(cloud, bundle, tmp_path)

    assert_nobody_archived(cloud, outcome, before)
    reason = outcome.report["refused"]["users"]["reason"]
    assert "unbalanced quote on line 101 of users.csv" in reason
    assert outcome.report["refused"]["users"]["archive"] >= 1
    assert swallowed in active_user_ids(cloud[1])
