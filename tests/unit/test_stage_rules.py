from __future__ import annotations

from rostersync.changes import action_id, field_changes
from rostersync.models import Entity
from rostersync.pipeline.snapshot import content_hash
from rostersync.policy.refusals import archive_refusal
from rostersync.sources.base import ReadSummary


def test_field_changes_list_before_and_after_of_changed_fields_only():
    before = {"source_id": "u1", "given_name": "Ann", "family_name": "Lee", "grades": ["3"]}
    after = {"source_id": "u1", "given_name": "Ann", "family_name": "Li", "grades": ["4"]}
    assert field_changes(before, after) == {"family_name": ["Lee", "Li"], "grades": [["3"], ["4"]]}


def test_metadata_alone_is_not_a_change():
    a = {"source_id": "u1", "given_name": "Ann", "date_last_modified": "2026-01-01T00:00:00Z"}
    b = {**a, "date_last_modified": "2026-02-01T00:00:00Z"}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "given_name": "Anne"})


def test_action_ids_are_stable_and_distinct():
    assert action_id(Entity.USERS, "oneroster", "u1", "add") == action_id(
        Entity.USERS, "oneroster", "u1", "add"
    )
    assert action_id(Entity.USERS, "oneroster", "u1", "add") != action_id(
        Entity.USERS, "oneroster", "u1", "archive"
    )


def _read(**fields: object) -> ReadSummary:
    return ReadSummary.model_validate(
        {"entity": "users", "completeness": "complete", "label": "users.csv", **fields}
    )


def test_archive_refusal_rules():
    ok = _read(rows=100)
    assert archive_refusal(Entity.USERS, ok, 100) is None
    empty = _read(rows=0)
    assert "has no rows" in (archive_refusal(Entity.USERS, empty, 100) or "")
    assert archive_refusal(Entity.USERS, empty, 0) is None  # nothing to lose
    unreadable = _read(rows=100, unreadable_rows=1)
    assert "could not be read" in (archive_refusal(Entity.USERS, unreadable, 100) or "")
    missing = _read(missing=True)
    assert "missing" in (archive_refusal(Entity.USERS, missing, 100) or "")
    untrusted = _read(rows=100, untrusted="the file ends inside a row")
    assert "ends inside a row" in (archive_refusal(Entity.USERS, untrusted, 100) or "")


def test_new_target_ids_are_uuid5_of_the_source_identity():
    import uuid

    from rostersync.pipeline.match_decisions import _TARGET_NAMESPACE, new_target_id

    expected = uuid.uuid5(_TARGET_NAMESPACE, "t1/users/oneroster/u-1")
    assert new_target_id("t1", Entity.USERS, "oneroster", "u-1") == str(expected)
    assert new_target_id("t2", Entity.USERS, "oneroster", "u-1") != str(expected)
