"""Where each line of a change file starts, written by stage beside the file it wrote.

The commit's plan cuts a change file into byte ranges of so many lines and counts its
included actions. Stage knows both as it writes the file, so it keeps them
(``changes/{entity}.lines``) with the version of the file they describe, and its included
adds split into new and linked (what the report counts). They are used only while the
change file is that version: an admin's tick or untick, which rewrites the file, follows
them through the rewrite (``Relined``, or ``replaced_lines`` where only a few lines were
found and replaced), and a hold or a setting that unticks actions notes the file it
rewrites as stage does. A file written otherwise is read again.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy

from rostersync.changes import links_existing
from rostersync.packed import pack, unpack
from rostersync.storage.ports import ObjectStorePort

#: What a line counts for in its ``ChangeLines``: included, included and not an add,
#: an included add that links to an existing app record.
Marks = tuple[bool, bool, bool]


def marks(action: Mapping[str, Any]) -> Marks:
    included = bool(action.get("included"))
    other = included and action.get("action") != "add"
    return included, other, included and not other and links_existing(action)


@dataclass
class ChangeLines:
    """A change file's line starts, its included actions, and the numbers of its
    included lines that are not adds (what a snapshot's base needs)."""

    starts: array[int] = field(default_factory=lambda: array("Q"))
    others: array[int] = field(default_factory=lambda: array("Q"))
    included: int = 0
    size: int = 0
    #: Included adds that link to an existing app record (None: not counted, lines
    #: noted before they were).
    linked: int | None = 0

    def add(self, line: bytes, action: Mapping[str, Any]) -> None:
        """Note ``line``, the file's next line, holding ``action``."""
        included, other, linked = marks(action)
        self.included += included
        if other:
            self.others.append(len(self.starts))
        elif linked and self.linked is not None:
            self.linked += 1
        self.starts.append(self.size)
        self.size += len(line)

    @property
    def adds(self) -> dict[str, int] | None:
        """The included adds, new app records and links to existing ones."""
        if self.linked is None:
            return None
        return {"new": self.included - len(self.others) - self.linked, "linked": self.linked}

    @property
    def lines(self) -> int:
        return len(self.starts)

    def encode(self, version: str) -> bytes:
        fields = {"version": version, "included": self.included, "size": self.size}
        if self.linked is not None:
            fields["linked"] = self.linked
        return pack(fields, self.starts, self.others)

    @classmethod
    def decode(cls, body: bytes) -> tuple[str, ChangeLines] | None:
        """The version a body describes and what it says, or None if it is not one."""
        unpacked = unpack(body, ("Q", "Q"))
        if unpacked is None:
            return None
        fields, (starts, others) = unpacked
        try:
            version = str(fields["version"])
            linked = fields.get("linked")
            found = cls(
                starts,
                others,
                int(fields["included"]),
                int(fields["size"]),
                None if linked is None else int(linked),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return version, found


class Relined:
    """A change file's ``ChangeLines`` followed through a rewrite that changes some of
    its lines and copies the others as they are: each line written is noted with its
    size, and a changed one with its marks before and after."""

    def __init__(self, before: ChangeLines) -> None:
        self._after = ChangeLines(included=before.included, linked=before.linked)
        self._others = set(before.others)

    def line(self, size: int, was: Marks | None = None, now: Marks | None = None) -> None:
        after = self._after
        n = len(after.starts)
        after.starts.append(after.size)
        after.size += size
        if was is not None and now is not None:
            self.marked(n, was, now)

    def marked(self, n: int, was: Marks, now: Marks) -> None:
        """Line ``n``'s marks turned from ``was`` to ``now``."""
        if was == now:
            return
        after = self._after
        after.included += now[0] - was[0]
        if was[1]:
            self._others.discard(n)
        if now[1]:
            self._others.add(n)
        if after.linked is not None:
            after.linked += now[2] - was[2]

    def done(self) -> ChangeLines:
        self._after.others = array("Q", sorted(self._others))
        return self._after


def replaced_lines(
    before: ChangeLines, changes: Sequence[tuple[int, int, Marks, Marks]]
) -> ChangeLines:
    """``before`` followed through a rewrite that replaced only the lines ``changes``
    names, each ``(line number, its new size, marks before, marks after)``, and copied
    every other line as it was: what ``Relined`` gives line by line, without a step per
    line (the starts after a changed line move by its change in size, as one array)."""
    relined = Relined(before)
    starts = numpy.frombuffer(before.starts, dtype=numpy.uint64).astype(numpy.int64)
    ends = numpy.append(starts[1:], before.size)
    size = before.size
    for n, new_size, was, now in sorted(changes, key=itemgetter(0)):
        # Both ends of a line move alike: its size is still end - start.
        grown = new_size - int(ends[n] - starts[n])
        starts[n + 1 :] += grown
        ends[n:] += grown
        size += grown
        relined.marked(n, was, now)
    after = relined.done()
    after.starts = array("Q", starts.astype(numpy.uint64).tobytes())
    after.size = size
    return after


def keep_lines(store: ObjectStorePort, key: str, lines_key: str, lines: ChangeLines) -> None:
    """Keep ``lines`` (at ``lines_key``) as what is noted of the change file at ``key``,
    as the file now is (``noted_lines`` gives them back while it is that version)."""
    version = store.version(key)
    if version is not None:
        store.put_bytes(lines_key, lines.encode(version))


def noted_lines(store: ObjectStorePort, key: str, lines_key: str) -> ChangeLines | None:
    """What was noted (at ``lines_key``) of the change file at ``key``, while the file is
    the version it was noted of; None otherwise."""
    body = store.get_bytes(lines_key)
    decoded = None if body is None else ChangeLines.decode(body)
    if decoded is None or decoded[0] != store.version(key):
        return None
    return decoded[1]
