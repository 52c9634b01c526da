"""OneRoster 1.0/1.1/1.2 CSV bundles: a zip, or a folder of files with ``manifest.csv``,
uploaded through the CLI or the API or dropped in the tenant's inbox."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from rostersync.errors import BundleError
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.sources.base import (
    Completeness,
    FetchContext,
    FetchResult,
    IssueSink,
    PreviousRead,
    RawArea,
    RawFiles,
    ReadSummary,
    Record,
    Reused,
    SourceSpec,
)
from rostersync.sources.bundle import ZipBundle
from rostersync.sources.oneroster_csv.parts import FilePart
from rostersync.sources.oneroster_csv.reader import (
    FILE_NAMES,
    EntityReadSummary,
    FileMode,
    OneRosterBundle,
    PartRead,
    ReuseOffer,
    listed_files,
    parse_date,
    read_manifest_properties,
)
from rostersync.sources.oneroster_csv.secret_columns import (
    HEADER_BYTES,
    has_secret_columns,
    strip_secret_columns,
    strip_secret_columns_zip,
)

__all__ = [
    "FILE_NAMES",
    "EntityReadSummary",
    "FileMode",
    "OneRosterBundle",
    "OneRosterCsvRead",
    "OneRosterCsvSource",
    "OneRosterCsvSpec",
    "listed_files",
    "parse_date",
    "read_manifest_properties",
    "read_summary",
    "strip_secret_columns",
    "strip_secret_columns_zip",
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

    def __init__(self, files: RawFiles, sink: IssueSink, stack: ExitStack) -> None:
        self.bundle = OneRosterBundle(files, sink, self.source_system)
        self.version: str | None = self.bundle.version
        self._stack = stack
        self._previous: dict[int, RawFiles] = {}

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        return self.bundle.iter_records(entity)

    def offer_reuse(self, entity: Entity, previous: PreviousRead) -> None:
        files = self._previous.get(id(previous.raw))
        if files is None:
            files = _bundle_files(previous.raw, self._stack)
            self._previous[id(previous.raw)] = files
        self.bundle.offer_reuse(entity, ReuseOffer(files, previous.state))

    def iter_items(self, entity: Entity) -> Iterator[Record | Reused]:
        return self.bundle.iter_items(entity)

    def reuse_state(self, entity: Entity) -> bytes | None:
        return self.bundle.reuse_state(entity)

    def summary(self, entity: Entity) -> ReadSummary:
        return read_summary(self.bundle.summary(entity))

    # parts (``PartedRead``)

    def plan_parts(
        self,
        entity: Entity,
        part_bytes: int,
        max_parts: int,
        own_ids: Callable[[], AbstractContextManager[IO[bytes]]],
    ) -> list[dict[str, Any]] | None:
        parts = self.bundle.plan_parts(entity, part_bytes, max_parts, own_ids)
        return None if parts is None else [part.model_dump(mode="json") for part in parts]

    def iter_part(
        self,
        entity: Entity,
        part: dict[str, Any],
        own_ids: Callable[[], set[str] | None] | None,
    ) -> Iterator[Record]:
        return self.bundle.iter_part(entity, FilePart.model_validate(part), own_ids)

    def part_result(self, entity: Entity) -> tuple[dict[str, Any], list[str] | None]:
        read, seen = self.bundle.part_read(entity)
        return read.model_dump(mode="json"), seen

    def finish_parts(self, entity: Entity, results: list[dict[str, Any]]) -> int:
        return self.bundle.finish_parts(entity, [PartRead.model_validate(r) for r in results])

    def known(self, entity: Entity) -> set[str] | None:
        return self.bundle.known(entity)

    def carried(self) -> dict[str, Any]:
        bundle = self.bundle
        return {
            "modes": {entity.value: mode.value for entity, mode in bundle.modes.items()},
            "summaries": {
                entity.value: bundle.summary(entity).model_dump(mode="json")
                for entity in ENTITY_ORDER
                if bundle.has_summary(entity)
            },
        }

    def carry_on(self, state: dict[str, Any], known: dict[Entity, set[str] | None]) -> None:
        self.bundle.restore(
            {Entity(e): FileMode(m) for e, m in state.get("modes", {}).items()},
            known,
            {
                Entity(e): EntityReadSummary.model_validate(s)
                for e, s in state.get("summaries", {}).items()
            },
        )


def _strip_raw_file(raw: RawArea, name: str) -> bool:
    """Rewrite a raw CSV file without its secret values; whether it had any."""
    with raw.open(name) as fh:
        if not has_secret_columns(fh.read(HEADER_BYTES)):
            return False
    with raw.open(name) as fh:
        data = fh.read()
    stripped = strip_secret_columns(data)
    if stripped is data:
        return False
    raw.put_bytes(name, stripped)
    return True


def _strip_raw_zip(raw: RawArea, shown: str = ZIP_NAME) -> bool:
    """Rewrite the raw zip without the secret values of its CSV files; whether it had any.
    ``shown`` is the zip's name as dropped, which messages about it give."""
    with tempfile.TemporaryDirectory(prefix="rostersync-") as tmp:
        src, dest = Path(tmp) / shown, Path(tmp) / ("stripped-" + shown)
        raw.download(ZIP_NAME, src)
        if not strip_secret_columns_zip(src, dest):
            return False
        with dest.open("rb") as fh, raw.writer(ZIP_NAME) as out:
            shutil.copyfileobj(fh, out, 1 << 20)
    return True


def _copy_in(ctx: FetchContext, key: str, name: str) -> bool:
    """Copy a source object into the raw area; whether the copy is known to hold no
    secret value (the object was stored stripped and is that version before the copy
    and after it)."""
    known = ctx.stored_stripped(key)
    ctx.raw.copy_in(key, name)
    return known and ctx.stored_stripped(key)


class OneRosterCsvSource:
    """Copies the bundle into the raw area as dropped, less the values of secret
    (password) columns; reads it with ``OneRosterBundle``."""

    kind: ClassVar[str] = "oneroster_csv"
    spec_model: ClassVar[type[SourceSpec]] = OneRosterCsvSpec

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        assert isinstance(spec, OneRosterCsvSpec)
        raw = ctx.raw
        if spec.key.endswith("/"):
            names = [k for k in raw.list_objects(spec.key) if not k.endswith("/")]
            if not names:
                raise BundleError("the bundle's folder holds no files")
            copied = ignored = stripped = 0
            for key in names:
                relative = key[len(spec.key) :]
                if "/" in relative:
                    ignored += 1  # nested folders are not part of a OneRoster bundle
                    continue
                clean = _copy_in(ctx, key, relative)
                copied += 1
                if relative.lower().endswith(".csv") and not clean:
                    stripped += int(_strip_raw_file(raw, relative))
            return FetchResult(
                {"files": copied, "ignored_nested": ignored, "secrets_removed": stripped}
            )
        if not raw.object_exists(spec.key):
            raise BundleError("the bundle is no longer there")
        clean = _copy_in(ctx, spec.key, ZIP_NAME)
        stripped = 0 if clean else int(_strip_raw_zip(raw, spec.key.rsplit("/", 1)[-1] or ZIP_NAME))
        return FetchResult({"files": 1, "ignored_nested": 0, "secrets_removed": stripped})

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[OneRosterCsvRead]:
        with ExitStack() as stack:
            yield OneRosterCsvRead(_bundle_files(raw, stack), sink, stack)


def _bundle_files(raw: RawArea, stack: ExitStack) -> RawFiles:
    """The bundle's files in a raw area: the area's own, or those of its zip (copied to
    a temporary folder that ``stack`` removes)."""
    if not raw.exists(ZIP_NAME):
        return raw
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-")))
    raw.download(ZIP_NAME, tmp / ZIP_NAME)
    zipped = ZipBundle(tmp / ZIP_NAME)
    stack.callback(zipped.close)
    return zipped
