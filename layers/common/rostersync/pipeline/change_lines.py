"""Where each line of a change file starts, written by stage beside the file it wrote.

The commit's plan cuts a change file into byte ranges of so many lines and counts its
included actions. Stage knows both as it writes the file, so it keeps them
(``changes/{entity}.lines``) with the version of the file they describe; the plan uses
them only while the change file is that version (a review or a hold that rewrites the
file makes the plan read it again), and otherwise reads every line.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rostersync.packed import pack, unpack


@dataclass
class ChangeLines:
    """A change file's line starts, its included actions, and the numbers of its
    included lines that are not adds (what a snapshot's base needs)."""

    starts: array[int] = field(default_factory=lambda: array("Q"))
    others: array[int] = field(default_factory=lambda: array("Q"))
    included: int = 0
    size: int = 0

    def add(self, line: bytes, action: Mapping[str, Any]) -> None:
        """Note ``line``, the file's next line, holding ``action``."""
        if action.get("included"):
            self.included += 1
            if action.get("action") != "add":
                self.others.append(len(self.starts))
        self.starts.append(self.size)
        self.size += len(line)

    @property
    def lines(self) -> int:
        return len(self.starts)

    def encode(self, version: str) -> bytes:
        fields = {"version": version, "included": self.included, "size": self.size}
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
            found = cls(starts, others, int(fields["included"]), int(fields["size"]))
        except (KeyError, TypeError, ValueError):
            return None
        return version, found
