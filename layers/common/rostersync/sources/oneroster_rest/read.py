"""Reading a OneRoster REST fetch back: its pages become the CSV binding's files in a
temporary folder (``rows``), read by the same ``OneRosterBundle`` that reads dropped
bundles. A full fetch is bulk (complete for what the server shares), a quick one delta
(``tobedeleted`` records and ids are the deletions). Issues name the REST collection and
the object's position in its listing instead of a CSV file and line."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rostersync.models import Entity, RowIssue
from rostersync.sources.base import IssueSink, RawFiles, ReadSummary, Record
from rostersync.sources.bundle import FolderBundle
from rostersync.sources.http import RawPages
from rostersync.sources.oneroster_csv import OneRosterBundle, read_summary
from rostersync.sources.oneroster_rest.fetch import COLLECTIONS, stream_name
from rostersync.sources.oneroster_rest.rows import (
    COLLECTION,
    FILE,
    ROLES_FILE,
    WrittenFile,
    uses_roles,
    write_entity,
    write_manifest,
)

SOURCE_SYSTEM = "oneroster"


def label(collection: str) -> str:
    return f"OneRoster REST /{collection}"


class OneRosterRestRead:
    """One OneRoster REST fetch opened for reading (a context manager: its folder of
    CSV files is removed on exit)."""

    source_system = SOURCE_SYSTEM

    def __init__(self, raw: RawFiles, sink: IssueSink) -> None:
        self.pages = RawPages(raw)
        self.sink = sink
        self.version: str | None = str(self.pages.index.get("version") or "1.1")
        self.delta = self.pages.index.get("mode") == "delta"
        self._tmp = tempfile.TemporaryDirectory(prefix="rostersync-oneroster-")
        self.folder = Path(self._tmp.name)
        self._written: dict[str, WrittenFile] = {}
        self._labels: dict[str, str] = {}
        self._write_bundle()
        self.bundle = OneRosterBundle(FolderBundle(self.folder), self._relabel, SOURCE_SYSTEM)

    def __enter__(self) -> OneRosterRestRead:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tmp.cleanup()

    def _objects(self, collection: str) -> Iterator[Any]:
        key = COLLECTIONS[collection]
        for body in self.pages.bodies(stream_name(collection)):
            items = body.get(key) if isinstance(body, Mapping) else None
            yield from items or []

    def _available(self, collection: str) -> bool:
        stream = stream_name(collection)
        return self.pages.has(stream) and not self.pages.meta(stream).get("unavailable")

    def _write_bundle(self) -> None:
        mode = "delta" if self.delta else "bulk"
        modes: dict[str, str] = {}
        for entity, collection in COLLECTION.items():
            name = FILE[entity].removesuffix(".csv")
            if not self._available(collection):
                modes[name] = "absent"
                continue
            with_roles = entity is Entity.USERS and uses_roles(self._objects(collection))
            written, roles = write_entity(
                self.folder,
                entity,
                self._objects(collection),
                self._objects(collection),
                with_roles=with_roles,
            )
            modes[name] = mode
            self._written[written.name] = written
            self._labels[written.name] = label(collection)
            if roles is not None:
                modes["roles"] = mode
                self._written[roles.name] = roles
                self._labels[roles.name] = f"{label(collection)} (roles)"
        write_manifest(self.folder, self.version or "1.1", modes)

    def _relabel(self, issue: RowIssue) -> None:
        """The reader's issue, pointing at the REST collection and object."""
        written = self._written.get(issue.file)
        line = issue.line
        if written is not None and line is not None:
            line = written.positions.get(line, line)
        message = issue.message
        for name, shown in self._labels.items():
            message = message.replace(name, shown)
        if ROLES_FILE in message:
            message = message.replace(ROLES_FILE, "the users' roles")
        self.sink(
            issue.model_copy(
                update={
                    "file": self._labels.get(issue.file, "OneRoster REST"),
                    "line": line,
                    "message": message,
                }
            )
        )

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        return self.bundle.iter_records(entity)

    def summary(self, entity: Entity) -> ReadSummary:
        collection = COLLECTION[entity]
        meta = self.pages.meta(stream_name(collection))
        summary = read_summary(self.bundle.summary(entity))
        return summary.model_copy(
            update={
                "label": label(collection),
                "untrusted": str(meta["untrusted"]) if meta.get("untrusted") else None,
            }
        )
