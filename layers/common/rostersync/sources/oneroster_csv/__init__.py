"""OneRoster 1.0/1.1/1.2 CSV bundles: a zip, or a folder of files with ``manifest.csv``,
uploaded through the CLI or the API or dropped in the tenant's inbox."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from rostersync.errors import BundleError, InvalidKey
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
from rostersync.storage import keys

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
#: Beside a zip unzipped at fetch: the names of its files, each then a raw file of its own.
UNZIPPED_NAME = "bundle.zip.files.json"

_COMPLETENESS = {
    FileMode.BULK: Completeness.COMPLETE,
    FileMode.DELTA: Completeness.DELTA,
    FileMode.ABSENT: Completeness.ABSENT,
}


class OneRosterCsvSpec(SourceSpec):
    """A bundle in the tenant's inbox or uploads: a zip's key, or a prefix ending ``/``."""

    kind: Literal["oneroster_csv"] = "oneroster_csv"
    key: str
    location_fields: ClassVar[frozenset[str]] = frozenset({"key"})

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


def _strip_raw_zip(raw: RawArea, src: Path) -> Path | None:
    """Rewrite the raw zip, downloaded at ``src`` (named as dropped, which messages about
    it give), without the secret values of its CSV files: the zip as stored then, beside
    ``src``; None if it had none (the zip stays as it is)."""
    dest = src.with_name("stripped-" + src.name)
    if not strip_secret_columns_zip(src, dest):
        return None
    with dest.open("rb") as fh, raw.writer(ZIP_NAME) as out:
        shutil.copyfileobj(fh, out, 1 << 20)
    return dest


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
        stripped = unzipped = 0
        if not clean or ctx.unzip_from:
            # Downloaded once: to empty its secret columns, then to unzip what it became.
            with tempfile.TemporaryDirectory(prefix="rostersync-") as tmp:
                local = Path(tmp) / (spec.key.rsplit("/", 1)[-1] or ZIP_NAME)
                raw.download(ZIP_NAME, local)
                if not clean and (rewritten := _strip_raw_zip(raw, local)) is not None:
                    local, stripped = rewritten, 1
                if ctx.unzip_from:
                    unzipped = _unzip_large(raw, local, ctx.unzip_from)
        counts = {"files": 1, "ignored_nested": 0, "secrets_removed": stripped}
        if unzipped:
            counts["unzipped"] = unzipped
        return FetchResult(counts)

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[OneRosterCsvRead]:
        with ExitStack() as stack:
            yield OneRosterCsvRead(_bundle_files(raw, stack), sink, stack)


def _unzip_large(raw: RawArea, path: Path, unzip_from: int) -> int:
    """Unzip the raw zip into the raw area, a file each, when one of its files is at
    least ``unzip_from`` bytes (a million students' users and enrollments): then they can
    be read by byte range, in parts. The zip stays as it was (what was dropped), the list
    of its files beside it. Returns the files unzipped (0: the zip is read as it is,
    which it also is when a file's name cannot be a raw file's, as ``notes (1).txt``).
    ``path``: the raw zip, downloaded."""
    zipped = ZipBundle(path)
    try:
        names = zipped.names()
        if max(map(zipped.size, names), default=0) < unzip_from:
            return 0
        if any(not _raw_name(name) for name in names):
            return 0
        for name in names:
            with zipped.open(name) as member, raw.writer(name) as out:
                shutil.copyfileobj(member, out, 1 << 20)
    finally:
        zipped.close()
    raw.put_bytes(UNZIPPED_NAME, json.dumps(names).encode())
    return len(names)


def _raw_name(name: str) -> bool:
    """Whether a zip's file can be a raw file of its own, by the same name."""
    if name.lower() in {ZIP_NAME, UNZIPPED_NAME}:
        return False
    try:
        keys.check_file_name(name)
    except InvalidKey:
        return False
    return True


class _Unzipped:
    """A zip's files unzipped into the raw area (``_unzip_large``): the raw area's
    files of those names, readable by byte range."""

    def __init__(self, raw: RawArea, names: list[str]) -> None:
        self._raw = raw
        self._names = sorted(names)

    def names(self) -> list[str]:
        return list(self._names)

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        return self._raw.open(self._own(name))

    def size(self, name: str) -> int | None:
        return self._raw.size(self._own(name))  # type: ignore[attr-defined,no-any-return]

    def read_range(self, name: str, start: int, end: int) -> bytes:
        return self._raw.read_range(self._own(name), start, end)  # type: ignore[attr-defined,no-any-return]

    def _own(self, name: str) -> str:
        if name not in self._names:
            raise BundleError(f"{name} is not a file of the bundle")
        return name


def _unzipped_names(raw: RawArea) -> list[str] | None:
    """The names ``_unzip_large`` listed, if it unzipped the raw zip."""
    if not raw.exists(UNZIPPED_NAME):
        return None
    with raw.open(UNZIPPED_NAME) as fh:
        names = json.loads(fh.read())
    if not isinstance(names, list) or not all(isinstance(n, str) and _raw_name(n) for n in names):
        raise BundleError(f"{UNZIPPED_NAME} is not a list of the zip's files")
    return names


def _bundle_files(raw: RawArea, stack: ExitStack) -> RawFiles:
    """The bundle's files in a raw area: the area's own, those of its zip unzipped at
    fetch, or those of its zip (copied to a temporary folder that ``stack`` removes)."""
    if not raw.exists(ZIP_NAME):
        return raw
    unzipped = _unzipped_names(raw)
    if unzipped is not None:
        return _Unzipped(raw, unzipped)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rostersync-")))
    raw.download(ZIP_NAME, tmp / ZIP_NAME)
    zipped = ZipBundle(tmp / ZIP_NAME)
    stack.callback(zipped.close)
    return zipped
