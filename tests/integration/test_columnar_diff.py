"""Stage's columnar diff (DuckDB over the id lines) gives the same change sets as the
row-by-row comparison it replaces, day after day: adds, updates, archives, reactivations,
re-issued ids and deletions by status; and it is the path a sync takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rostersync.storage import keys
from tests.integration.days import change_sets, committed_days, three_days

TENANT = "district"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return three_days(tmp_path_factory.mktemp("district"))


def _syncs(state: Path, days: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for deps, outcome in committed_days(state, TENANT, days):
        summary = deps.store.get_json(keys.change_summary_key(TENANT, outcome.run_id))
        out.append(
            {
                "changes": change_sets(deps, TENANT, outcome.run_id),
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
