"""A change file's line starts and counts as stage keeps them: the included adds split
into new records and links to existing ones, across parts joined, and none claimed for
lines noted before adds were split."""

from __future__ import annotations

from typing import Any

from rostersync.packed import pack
from rostersync.pipeline.change_lines import ChangeLines
from rostersync.pipeline.stage_fanout import _extend


def _action(kind: str, tier: str | None, included: bool = True) -> dict[str, Any]:
    return {"action": kind, "tier": tier, "included": included}


def _noted(*actions: dict[str, Any]) -> ChangeLines:
    lines = ChangeLines()
    for action in actions:
        lines.add(b'{"line": 1}\n', action)
    return lines


def test_included_adds_are_split_into_new_and_linked_and_survive_encoding() -> None:
    lines = _noted(
        _action("add", "unmatched"),
        _action("add", "auto"),
        _action("add", "key"),
        _action("add", "auto", included=False),
        _action("update", "linked"),
    )
    assert lines.adds == {"new": 1, "linked": 2}
    version, decoded = ChangeLines.decode(lines.encode("v1")) or ("", ChangeLines())
    assert version == "v1" and decoded.adds == {"new": 1, "linked": 2}
    assert list(decoded.others) == [4] and decoded.included == 4


def test_parts_joined_add_up_and_lines_noted_without_the_split_claim_none() -> None:
    joined = ChangeLines()
    _extend(joined, _noted(_action("add", "manual"), _action("add", None)))
    _extend(joined, _noted(_action("add", None)))
    assert joined.adds == {"new": 2, "linked": 1}

    # Lines kept before adds were split: the report counts from the file instead.
    older = pack({"version": "v0", "included": 1, "size": 12}, joined.starts, joined.others)
    found = ChangeLines.decode(older)
    assert found is not None and found[1].adds is None
    _extend(joined, found[1])
    assert joined.adds is None
