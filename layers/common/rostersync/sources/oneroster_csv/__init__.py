"""OneRoster 1.0/1.1/1.2 CSV bundles: a zip, or a folder of files with ``manifest.csv``,
uploaded through the CLI or the API or dropped in the tenant's inbox."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ClassVar, Literal

from rostersync.errors import BundleError
from rostersync.models import Entity
from rostersync.sources.base import (
    Completeness,
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    RawFiles,
    ReadSummary,
    Record,
    SourceSpec,
)
from rostersync.sources.bundle import ZipBundle
from rostersync.sources.oneroster_csv.reader import (
    FILE_NAMES,
    EntityReadSummary,
    FileMode,
    OneRosterBundle,
    parse_date,
)

__all__ = [
    "FILE_NAMES",
    "EntityReadSummary",
    "FileMode",
    "OneRosterBundle",
    "OneRosterCsvRead",
    "OneRosterCsvSource",
    "OneRosterCsvSpec",
    "parse_date",
    "read_summary",
]

#: The name a zipped bundle has in the raw area.
ZIP_NAME = "bundle.zip"

_COMPLETENESS = {
    FileMode.BULK: Completeness.COMPLETE,
    FileMode.DELTA: Completeness.DELTA,
    FileMode.ABSENT: Completeness.ABSENT,
}


class OneRosterCsvSpec(SourceSpec):
    """A bundle in the tenant's inbox or uploads: a zip's key, or a prefix ending ``/``."""

    kind: Literal["oneroster_csv"] = "oneroster_csv"
    key: str

    def describe(self) -> str:
        return self.key


def read_summary(summary: EntityReadSummary) -> ReadSummary:
    """The reader's summary in the pipeline's source-neutral terms."""
    return ReadSummary(
        entity=summary.entity,
        completeness=_COMPLETENESS[summary.mode],
        label=summary.file,
        rows=summary.rows,
        records=summary.records,
        unknown_ids=summary.skipped_ids,
        unreadable_rows=summary.unreadable_rows,
        missing=summary.missing,
        deleted_ids=summary.deleted_ids,
        untrusted=summary.untrusted,
    )


class OneRosterCsvRead:
    """A OneRoster bundle opened for reading."""

    source_system = "oneroster"

    def __init__(self, files: RawFiles, sink: IssueSink) -> None:
        self.bundle = OneRosterBundle(files, sink, self.source_system)
        self.version: str | None = self.bundle.version

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        return self.bundle.iter_records(entity)

    def summary(self, entity: Entity) -> ReadSummary:
        return read_summary(self.bundle.summary(entity))


class OneRosterCsvSource:
    """Copies the bundle into the raw area as dropped; reads it with ``OneRosterBundle``."""

    kind: ClassVar[str] = "oneroster_csv"
    spec_model: ClassVar[type[SourceSpec]] = OneRosterCsvSpec

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        assert isinstance(spec, OneRosterCsvSpec)
        raw = ctx.raw
        if spec.key.endswith("/"):
            names = [k for k in raw.list_objects(spec.key) if not k.endswith("/")]
            if not names:
                raise BundleError("the bundle's folder holds no files")
            copied = ignored = 0
            for key in names:
                relative = key[len(spec.key) :]
                if "/" in relative:
                    ignored += 1  # nested folders are not part of a OneRoster bundle
                    continue
                raw.copy_in(key, relative)
                copied += 1
            return FetchResult({"files": copied, "ignored_nested": ignored})
        if not raw.object_exists(spec.key):
            raise BundleError("the bundle is no longer there")
        raw.copy_in(spec.key, ZIP_NAME)
        return FetchResult({"files": 1, "ignored_nested": 0})

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[OneRosterCsvRead]:
        with ExitStack() as stack:
            files: RawFiles = raw
            if raw.exists(ZIP_NAME):
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-")))
                raw.download(ZIP_NAME, tmp / ZIP_NAME)
                zipped = ZipBundle(tmp / ZIP_NAME)
                stack.callback(zipped.close)
                files = zipped
            yield OneRosterCsvRead(files, sink)
