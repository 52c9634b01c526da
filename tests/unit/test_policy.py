"""The policy that guards children's data, on its own: hold checks, what a hold keeps
back, archive refusals, field rules and scope. Pure functions over typed inputs."""

from __future__ import annotations

from typing import Any

import pytest

from rostersync.changes import make_action
from rostersync.models import Entity
from rostersync.pipeline.contracts import NormalizedSummary
from rostersync.policy.field_rules import apply_field_rules
from rostersync.policy.holds import (
    HELD_REASON,
    EntityOutcome,
    hold_checks,
    keep_links_to_absent,
    removed_links,
    untick,
)
from rostersync.policy.refusals import archive_refusal
from rostersync.policy.scope import Scope
from rostersync.settings import HoldThresholds, TenantSettings
from rostersync.sources.base import Completeness, ReadSummary

REQUIRED = (Entity.ORGS, Entity.USERS, Entity.CLASSES, Entity.ENROLLMENTS)


def outcome(active: int, **counts: int) -> EntityOutcome:
    found = EntityOutcome(active_before=active)
    found.counts.update(counts)
    return found


def read(
    completeness: Completeness = Completeness.COMPLETE, rows: int = 100, **entities: int
) -> NormalizedSummary:
    """A normalized summary with every required input present with ``rows`` rows."""
    summaries = {
        entity: ReadSummary(entity=entity, completeness=completeness, rows=rows)
        for entity in REQUIRED
    }
    for name, n in entities.items():
        summaries[Entity(name)] = ReadSummary(
            entity=Entity(name), completeness=completeness, rows=n
        )
    return NormalizedSummary(entities=summaries)


def checks(found: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(t["check"], t["entity"]) for t in found]


# ---------------------------------------------------------------------- hold checks


def test_archives_above_the_share_hold_the_run_and_say_by_how_much():
    tripped = hold_checks(HoldThresholds(), {Entity.USERS: outcome(100, archive=11)}, read(), None)
    assert checks(tripped) == [("archive_share", "users")]
    assert tripped[0]["measured"] == 0.11 and tripped[0]["threshold"] == 0.1
    assert "11 of 100 active users" in tripped[0]["message"]


def test_archives_at_the_share_do_not_hold():
    assert (
        hold_checks(HoldThresholds(), {Entity.USERS: outcome(100, archive=10)}, read(), None) == []
    )


def test_a_tiny_entity_is_held_by_one_archive_of_few():
    # Of 3 active records, archiving 1 is 33%: a small school losing a third of its staff.
    tripped = hold_checks(HoldThresholds(), {Entity.USERS: outcome(3, archive=1)}, read(), None)
    assert checks(tripped) == [("archive_share", "users")]


def test_an_entity_with_nothing_active_cannot_trip_a_share():
    assert hold_checks(HoldThresholds(), {Entity.USERS: outcome(0, add=50)}, read(), None) == []


def test_counts_and_change_shares_have_their_own_thresholds():
    thresholds = HoldThresholds(archive_count=5, change_share=0.2, change_count=30)
    tripped = hold_checks(
        thresholds, {Entity.USERS: outcome(1000, archive=6, update=200, reactivate=1)}, read(), None
    )
    assert checks(tripped) == [
        ("archive_count", "users"),
        ("change_share", "users"),
        ("change_count", "users"),
    ]


def test_a_missing_or_empty_required_input_holds_a_full_run():
    summary = read()
    summary.entities.pop(Entity.ENROLLMENTS)
    summary.entities[Entity.CLASSES] = ReadSummary(
        entity=Entity.CLASSES, completeness=Completeness.COMPLETE, rows=0
    )
    tripped = hold_checks(HoldThresholds(), {}, summary, None)
    assert checks(tripped) == [("required_file", "classes"), ("required_file", "enrollments")]
    assert "empty" in tripped[0]["message"] and "missing" in tripped[1]["message"]


def test_delta_reads_and_quick_runs_skip_the_size_and_file_checks():
    small = read(rows=1)
    small.entities.pop(Entity.USERS)
    delta = read(Completeness.DELTA, rows=1)
    assert hold_checks(HoldThresholds(), {}, delta, last_rows=10_000) == []
    assert hold_checks(HoldThresholds(), {}, small, last_rows=10_000, full=False) == []
    full = hold_checks(HoldThresholds(), {}, small, last_rows=10_000)
    assert ("bundle_size", None) in checks(full) and ("required_file", "users") in checks(full)


def test_a_bundle_much_smaller_than_the_last_holds():
    tripped = hold_checks(HoldThresholds(), {}, read(rows=100), last_rows=1000)
    assert checks(tripped) == [("bundle_size", None)]
    assert hold_checks(HoldThresholds(), {}, read(rows=100), last_rows=700) == []


def test_a_held_run_followed_by_another_holds_again_on_the_same_archives():
    # The held run applied its adds and updates only: the next run sees the same records
    # absent against a baseline that still has them active, and holds again.
    first = hold_checks(
        HoldThresholds(), {Entity.USERS: outcome(100, archive=40, add=5)}, read(), None
    )
    again = hold_checks(HoldThresholds(), {Entity.USERS: outcome(105, archive=40)}, read(), None)
    assert checks(first) == checks(again) == [("archive_share", "users")]


# ---------------------------------------------------------------------- what a hold keeps back


@pytest.mark.parametrize("kind", ["add", "update", "reactivate"])
def test_a_hold_keeps_back_archives_only_while_safe_changes_apply(kind):
    settings = TenantSettings()
    archive = make_action(Entity.USERS, "archive", "sis", "u1", "t1")
    other = make_action(Entity.USERS, kind, "sis", "u2", "t2")  # type: ignore[arg-type]
    assert untick(archive, settings, held=True) == (HELD_REASON, True)
    assert untick(other, settings, held=True) == (None, False)
    assert untick(archive, settings, held=False) == (None, False)


def test_with_safe_changes_off_a_hold_keeps_back_everything():
    settings = TenantSettings.model_validate({"hold": {"apply_safe_changes": False}})
    add = make_action(Entity.USERS, "add", "sis", "u1", "t1")
    assert untick(add, settings, held=True) == (HELD_REASON, True)


def test_a_kind_of_change_not_synced_is_left_out_not_held():
    settings = TenantSettings.model_validate({"changes_to_sync": ["add", "update"]})
    archive = make_action(Entity.USERS, "archive", "sis", "u1", "t1")
    reason, held = untick(archive, settings, held=True)
    assert held is False and reason == "archive changes are not synced (settings)"


def link_update(before: list[str], after: list[str], **more: list[Any]):
    changes = {"agent_source_ids": [before, after], **more}
    return make_action(Entity.USERS, "update", "sis", "s1", "t1", changes=changes)


def test_an_update_taking_links_away_waits_with_the_archives():
    settings = TenantSettings()
    losing = link_update(["g1", "g2"], ["g1"], family_name=["A", "B"])
    assert removed_links(losing) == {"agent_source_ids": ["g2"]}
    assert untick(losing, settings, held=True) == (HELD_REASON, True)
    assert untick(losing, settings, held=False) == (None, False)


def test_an_update_adding_or_reordering_links_is_safe():
    settings = TenantSettings()
    for before, after in ((["g1"], ["g1", "g2"]), (["g1", "g2"], ["g2", "g1"]), ([], ["g1"])):
        action = link_update(before, after)
        assert removed_links(action) == {}
        assert untick(action, settings, held=True) == (None, False)


def test_link_removals_count_with_archives_toward_the_hold():
    thresholds = HoldThresholds(archive_share=0.1)
    found = outcome(100, archive=5, update=20)
    found.link_removals = 6
    tripped = hold_checks(thresholds, {Entity.USERS: found}, read(users=100), None)
    assert checks(tripped) == [("archive_share", "users")]
    assert "11 of 100 active users would be archived or lose links" in tripped[0]["message"]
    found.link_removals = 5
    assert hold_checks(thresholds, {Entity.USERS: found}, read(users=100), None) == []


def test_links_to_records_absent_from_an_untrusted_read_are_kept():
    before = {"agent_source_ids": ["g1", "g2", "g3"], "given_name": "A"}
    after = {"agent_source_ids": ["g1"], "given_name": "B"}
    kept = keep_links_to_absent(before, after, present={"g1", "g2"})
    # g2 is in the read and left out: the source removed it; g3 is missing from the read.
    assert kept == {"agent_source_ids": ["g1", "g3"], "given_name": "B"}
    assert keep_links_to_absent(before, before, present=set()) == before


# ---------------------------------------------------------------------- refusals


def summary(**fields: Any) -> ReadSummary:
    return ReadSummary.model_validate(
        {"entity": "users", "completeness": "complete", "label": "users.csv", **fields}
    )


def test_an_empty_input_refuses_its_archives_only_when_there_is_something_to_lose():
    assert "has no rows" in (archive_refusal(Entity.USERS, summary(rows=0), 10) or "")
    assert archive_refusal(Entity.USERS, summary(rows=0), 0) is None


def test_unreadable_rows_and_untrusted_reads_refuse_every_archive():
    assert archive_refusal(Entity.USERS, summary(rows=10, unreadable_rows=1), 10)
    refused = archive_refusal(Entity.USERS, summary(rows=10, untrusted="it was cut off"), 10)
    assert refused is not None and "cut off" in refused
    assert archive_refusal(Entity.USERS, summary(rows=10), 10) is None


def test_an_announced_but_missing_input_refuses_even_with_rows_elsewhere():
    refused = archive_refusal(Entity.USERS, summary(rows=0, missing=True), 10)
    assert refused is not None and "missing" in refused


# ---------------------------------------------------------------------- field rules


def test_blank_source_values_erase_nothing_when_ignored():
    before = {"given_name": "Ann", "email": "ann@school.org", "phone": "555"}
    after = {"given_name": "Ann", "email": "", "phone": None}
    kept = apply_field_rules(Entity.USERS, before, after, TenantSettings(blank_values="ignore"), {})
    assert kept["email"] == "ann@school.org" and kept["phone"] == "555"
    replaced = apply_field_rules(Entity.USERS, before, after, TenantSettings(), {})
    assert replaced["email"] == "" and replaced["phone"] is None


def test_class_renames_are_kept_out_when_ignored():
    settings = TenantSettings(ignore_class_renames=True)
    result = apply_field_rules(Entity.CLASSES, {"title": "Maths 7"}, {"title": "M7"}, settings, {})
    assert result["title"] == "Maths 7"
    first = apply_field_rules(Entity.CLASSES, {}, {"title": "M7"}, settings, {})
    assert first["title"] == "M7"  # the first sync names the class


def test_contact_details_edited_in_the_app_win_unless_the_sync_may_overwrite():
    before, after = {"email": "old@x.org"}, {"email": "sis@x.org"}
    app = {"email": "app@x.org"}
    assert apply_field_rules(Entity.USERS, before, after, TenantSettings(), app)["email"] == (
        "app@x.org"
    )
    overwrite = TenantSettings(overwrite_app_contact_edits=True)
    assert apply_field_rules(Entity.USERS, before, after, overwrite, app)["email"] == "sis@x.org"


# ---------------------------------------------------------------------- scope


def school(source_id: str) -> dict[str, Any]:
    return {"source_id": source_id, "type": "school", "name": source_id}


def test_a_deselected_school_takes_its_classes_and_their_enrollments_out_of_scope():
    scope = Scope(TenantSettings.model_validate({"schools": {"include": ["s1"]}}))
    assert scope.admit(Entity.ORGS, school("s1")) is not None
    assert scope.admit(Entity.ORGS, school("s2")) is None
    assert scope.admit(Entity.CLASSES, {"source_id": "c2", "school_source_id": "s2"}) is None
    enrollment = {"class_source_id": "c2", "user_source_id": "u1", "school_source_id": "s2"}
    assert scope.admit(Entity.ENROLLMENTS, enrollment) is None
    assert scope.dropped == 3


def test_homerooms_only_keeps_homerooms():
    scope = Scope(TenantSettings.model_validate({"class_filters": {"homerooms_only": True}}))
    homeroom = {"source_id": "c1", "school_source_id": "s1", "class_type": "homeroom"}
    scheduled = {"source_id": "c2", "school_source_id": "s1", "class_type": "scheduled"}
    assert scope.admit(Entity.CLASSES, homeroom) == homeroom
    assert scope.admit(Entity.CLASSES, scheduled) is None


def test_guardian_contact_types_filter_guardians_not_students():
    scope = Scope(TenantSettings.model_validate({"guardian_contact_types": ["parent"]}))
    assert scope.active
    assert scope.admit(Entity.USERS, {"source_id": "g1", "role": "relative"}) is None
    assert scope.admit(Entity.USERS, {"source_id": "g2", "role": "parent"}) is not None
    assert scope.admit(Entity.USERS, {"source_id": "u1", "role": "student"}) is not None


def test_no_filter_means_every_record_is_in_scope():
    assert not Scope(TenantSettings()).active
