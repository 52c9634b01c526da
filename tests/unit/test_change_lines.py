"""A change file's line starts and counts as stage keeps them: the included adds split
into new records and links to existing ones, across parts joined, and none claimed for
lines noted before adds were split."""

from __future__ import annotations

from typing import Any

from rostersync.packed import pack
from rostersync.pipeline.change_lines import ChangeLines, Relined, marks, replaced_lines
from rostersync.pipeline.stage_fanout import _extend


def _action(kind: str, tier: str | None, included: bool = True) -> dict[str, Any]:
    return {"action": kind, "tier": tier, "included": included}


#: Kinds of action and match tiers: adds new and linked, updates, archives.
_KINDS = [("add", "unmatched"), ("add", "auto"), ("update", "linked"), ("archive", "linked")]


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


def test_a_rewrite_followed_line_by_line_equals_the_lines_noted_afresh() -> None:
    """Relined: lines copied keep their marks, changed lines move between included,
    others and linked, and every start after a line that grew moves with it."""
    before = [
        _action("add", "auto"),
        _action("update", "linked"),
        _action("add", None),
        _action("archive", "linked"),
    ]
    sizes = [10, 12, 9, 11]
    noted = ChangeLines()
    for action, size in zip(before, sizes, strict=True):
        noted.add(b"x" * size, action)
    after = [
        _action("add", "auto", included=False),  # a linked add unticked
        _action("update", "linked"),
        _action("add", None),
        _action("archive", "linked", included=False),  # an archive unticked, line longer
    ]
    new_sizes = [15, 12, 9, 30]
    relined = Relined(noted)
    for was, now, size in zip(before, after, new_sizes, strict=True):
        if was == now:
            relined.line(size)
        else:
            relined.line(size, marks(was), marks(now))
    followed = relined.done()
    afresh = ChangeLines()
    for action, size in zip(after, new_sizes, strict=True):
        afresh.add(b"x" * size, action)
    assert followed == afresh
    assert followed.included == 2 and list(followed.others) == [1]
    assert followed.adds == {"new": 1, "linked": 0}


def test_lines_replaced_in_place_equal_the_rewrite_followed_line_by_line() -> None:
    """replaced_lines: the few changed lines' new sizes and marks, the rest copied, give
    what Relined gives line by line (and what noting the new file afresh gives)."""
    before = [_action(kind, tier) for kind, tier in _KINDS * 50]
    sizes = [10 + (n * 7) % 23 for n in range(len(before))]
    noted = ChangeLines()
    for action, size in zip(before, sizes, strict=True):
        noted.add(b"x" * size, action)
    changed = {0: 3, 17: 40, 18: 11, len(before) - 1: 25, 99: sizes[99]}
    after = [
        _action(a["action"], a["tier"], included=not a["included"]) if n in changed else a
        for n, a in enumerate(before)
    ]
    new_sizes = [changed.get(n, size) for n, size in enumerate(sizes)]
    relined = Relined(noted)
    for n, (was, now, size) in enumerate(zip(before, after, new_sizes, strict=True)):
        relined.line(size, *((marks(was), marks(now)) if n in changed else ()))
    in_place = replaced_lines(
        noted, [(n, new_sizes[n], marks(before[n]), marks(after[n])) for n in changed]
    )
    afresh = ChangeLines()
    for action, size in zip(after, new_sizes, strict=True):
        afresh.add(b"x" * size, action)
    assert in_place == relined.done() == afresh
    assert in_place.size == sum(new_sizes) and in_place.included != noted.included
