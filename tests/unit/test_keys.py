from __future__ import annotations

import pytest

from rostersync.errors import InvalidKey
from rostersync.models import Entity
from rostersync.storage import keys


@pytest.mark.parametrize("tenant", ["", "A", "a/b", "../x", "a_b", "-a", "a-", "x" * 64, "a b"])
def test_bad_tenant_ids_are_refused(tenant):
    with pytest.raises(InvalidKey):
        keys.check_tenant(tenant)


@pytest.mark.parametrize("tenant", ["a", "district-12", "0x"])
def test_good_tenant_ids_pass(tenant):
    assert keys.check_tenant(tenant) == tenant


def test_run_ids_are_sortable_and_checked():
    run = keys.new_run_id()
    assert keys.check_run_id(run) == run
    with pytest.raises(InvalidKey):
        keys.check_run_id("../../state/other")


def test_keys_stay_inside_the_tenant_prefix():
    run = keys.new_run_id()
    assert keys.normalized_key("t1", run, Entity.USERS) == f"runs/t1/{run}/normalized/users.jsonl"
    with pytest.raises(InvalidKey):
        keys.report_key("t1", run, "../../other/report.json")


@pytest.mark.parametrize(
    "key",
    ["inbox/other/x.zip", "raw/t1/x", "uploads/t10/x", "inbox/t1/../other/x", "inbox/t1"],
)
def test_source_keys_outside_the_tenant_are_refused(key):
    with pytest.raises(InvalidKey):
        keys.check_source_key("t1", key)


def test_source_keys_inside_the_tenant_pass():
    assert keys.check_source_key("t1", "inbox/t1/bundle.zip") == "inbox/t1/bundle.zip"


@pytest.mark.parametrize("key", ["inbox/t1/", "inbox/T1/a.zip", "inbox/t1/a/../b", "outbox/t1/a"])
def test_inbox_keys_are_validated(key):
    with pytest.raises(InvalidKey):
        keys.tenant_of_inbox_key(key)


def test_inbox_key_splits_into_tenant_and_path():
    assert keys.tenant_of_inbox_key("inbox/t1/day/users.csv") == ("t1", "day/users.csv")


def test_runs_started_within_one_second_sort_in_the_order_they_started():
    from datetime import UTC, datetime

    from rostersync.storage.keys import check_run_id, new_run_id

    early = new_run_id(datetime(2026, 12, 1, 10, 0, 0, 5_000, tzinfo=UTC))
    late = new_run_id(datetime(2026, 12, 1, 10, 0, 0, 990_000, tzinfo=UTC))
    assert early < late and check_run_id(early) == early and check_run_id(late) == late
