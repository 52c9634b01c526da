"""A stored directory item's flat shape, built without the model, is the model's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rostersync.records import DirectoryItem, stored_flat


@pytest.mark.parametrize(
    "item",
    [
        {"target_id": "t1", "given_name": "Ann", "status": "archived", "run_id": "r1"},
        {"target_id": "t2", "source_system": "sis", "source_id": "s2", "grades": ["05"]},
        {"target_id": "t3", "source_id": None, "adhoc": True, "note": None},
        {"role": "student", "target_id": "t4", "status": "active", "source_system": None},
    ],
)
def test_a_stored_item_reads_as_the_models_flat_shape(item):
    expected = DirectoryItem.from_flat(item).flat()
    assert stored_flat(item) == expected
    assert list(stored_flat(item)) == list(expected)


@pytest.mark.parametrize(
    "item",
    [
        {"target_id": 7},
        {"target_id": "t", "status": "deleted"},
        {"target_id": "t", "source_id": 12},
        {"target_id": "t", "adhoc": "yes please"},
    ],
)
def test_an_item_not_as_the_commit_stores_it_is_checked_by_the_model(item):
    try:
        expected = DirectoryItem.from_flat(item).flat()
    except ValidationError:
        with pytest.raises(ValidationError):
            stored_flat(item)
    else:
        assert stored_flat(item) == expected
