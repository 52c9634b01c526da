"""A daily sync's stage takes the diff its match step computed beside the decisions:
for every entity of a day after the first, the same diff stage would compute from the
files (the change sets are those of the row-by-row comparison: test_columnar_diff)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from rostersync.generator import generate_district, mutate_next_day
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline import match_columnar
from rostersync.pipeline.columnar import diff_entity, handed_diff, handed_keys
from rostersync.storage import keys
from tests.integration.days import committed_days

TENANT = "district"


def test_each_day_after_the_first_stage_takes_the_diff_match_handed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A district this small is below the size from which the diff is handed over.
    monkeypatch.setattr(match_columnar, "_HAND_FROM", 0)
    generate_district(tmp_path / "day1", students=60, seed=11)
    mutate_next_day(tmp_path / "day1", tmp_path / "day2", seed=12, rate=0.05)
    days = list(committed_days(tmp_path / "state", TENANT, [tmp_path / "day1", tmp_path / "day2"]))
    (deps1, first), (deps, second) = days
    for entity in ENTITY_ORDER:
        # No baseline on the first day: stage computes the diff itself.
        assert deps1.store.get_json(handed_keys(TENANT, first.run_id, entity)[0]) is None
        head = deps.store.get_json(handed_keys(TENANT, second.run_id, entity)[0])
        assert head is not None and head["baseline"] == first.run_id, entity
        with ExitStack() as stack:
            handed = handed_diff(deps.store, TENANT, second.run_id, entity, first.run_id, stack)
            computed = diff_entity(
                deps.store,
                keys.normalized_ids_key(TENANT, second.run_id, entity),
                keys.matched_key(TENANT, second.run_id, entity),
                [keys.state_index_key(TENANT, first.run_id, entity)],
                stack,
            )
            assert handed is not None and computed is not None, entity
            assert list(handed.rows) == list(computed.rows), entity
            assert handed.absent == computed.absent, entity
            assert handed.records == computed.records == head["records"], entity
            assert handed.active_before == computed.active_before, entity
    summary = deps.store.get_json(keys.change_summary_key(TENANT, second.run_id))
    assert set(summary["compared"].values()) == {"columnar"}
    counts = second.counts
    assert any(sum(row.values()) for row in counts.values()), "day 2 changes something"
