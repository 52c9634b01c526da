"""Stage's columnar diff (DuckDB over the id lines) gives the same change sets as the
row-by-row comparison it replaces, day after day: adds, updates, archives, reactivations,
re-issued ids and deletions by status; and it is the path a sync takes."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest

from rostersync.generator import generate_district, mutate_next_day
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys
from tests.integration.days import committed_days

TENANT = "district"
#: Fields that name the run or the moment, not the change.
VOLATILE = {"run_id", "linked_at"}


def _rewrite(folder: Path, name: str, change: Any) -> None:
    """Rewrite one CSV of a bundle row by row (``change`` returns the row or None)."""
    path = folder / name
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in (change(dict(row)) for row in reader) if r is not None]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("district")
    generate_district(root / "day1", students=80, seed=5)
    mutate_next_day(root / "day1", root / "day2", seed=6, rate=0.05)
    # Day 3: day 1 again (day 2's leavers come back: reactivations; its new students
    # leave), one student re-issued under a new id (matched to the same child: a
    # re-link), one class deleted by status.
    shutil.copytree(root / "day1", root / "day3")
    with (root / "day3" / "users.csv").open(newline="", encoding="utf-8") as fh:
        student = next(r["sourcedId"] for r in csv.DictReader(fh) if r["role"] == "student")
    for path in (root / "day3").glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(student, student + "-v2"), encoding="utf-8")
    deleted = {"done": False}

    def delete(row: dict[str, str]) -> dict[str, str]:
        if not deleted["done"]:
            row["status"] = "tobedeleted"
            deleted["done"] = True
        return row

    _rewrite(root / "day3", "classes.csv", delete)
    return [root / "day1", root / "day2", root / "day3"]


def _changes(deps: Deps, run_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        e.value: sorted(
            (
                {k: v for k, v in a.items() if k not in VOLATILE}
                for a in deps.store.iter_jsonl(keys.changes_key(TENANT, run_id, e))
            ),
            key=lambda a: (str(a["action"]), str(a["source_id"])),
        )
        for e in ENTITY_ORDER
    }


def _syncs(state: Path, days: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for deps, outcome in committed_days(state, TENANT, days):
        summary = deps.store.get_json(keys.change_summary_key(TENANT, outcome.run_id))
        out.append(
            {
                "changes": _changes(deps, outcome.run_id),
                "counts": outcome.counts,
                "unchanged": summary["unchanged"],
                "compared": summary["compared"],
            }
        )
    return out


def test_the_columnar_diff_equals_the_row_by_row_comparison(tmp_path, days, monkeypatch):
    columnar = _syncs(tmp_path / "columnar", days)
    monkeypatch.setenv("COLUMNAR_DIFF", "false")
    rows = _syncs(tmp_path / "rows", days)

    for day in columnar:
        assert set(day["compared"].values()) == {"columnar"}, day["compared"]
    for day in rows:
        assert set(day["compared"].values()) == {"rows"}, day["compared"]
    for number, (fast, slow) in enumerate(zip(columnar, rows, strict=True), start=1):
        for entity in fast["changes"]:
            assert fast["changes"][entity] == slow["changes"][entity], (number, entity)
        assert fast["counts"] == slow["counts"], number
        assert fast["unchanged"] == slow["unchanged"], number

    # The days hold every kind of change the diff must find.
    seen = {
        (entity, action["action"])
        for day in columnar
        for entity, actions in day["changes"].items()
        for action in actions
    }
    for kind in ("add", "update", "archive", "reactivate"):
        assert any(k == kind for _, k in seen), kind
    relinked = [a for a in columnar[2]["changes"]["users"] if a.get("relinked_from") is not None]
    assert len(relinked) == 1, "a re-issued id is re-linked, not added"
    assert any(a["action"] == "archive" for a in columnar[2]["changes"]["classes"]), (
        "a class deleted by status is archived"
    )
    assert columnar[1]["unchanged"]["enrollments"] > 0
