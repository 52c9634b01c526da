"""The source seam: what every source (OneRoster files, Clever, OneRoster REST, Wonde,
Assembly, ...) gives the pipeline, in source-neutral terms.

A source does two things:

1. ``fetch``: bring the run's input into the run's raw area (``raw/{tenant}/{run}/``)
   exactly as received (a dropped bundle copied, API pages written as they came);
2. ``read``: turn that raw input into canonical record dicts per entity (shaped like
   ``Model.model_dump(mode="json")``), row issues sent to a sink, and one
   ``ReadSummary`` per entity.

Stage, hold and report read only the summaries: whether a read is complete (absences
mean archive), partial (absences mean nothing) or a delta (explicit deletions only), the
ids it deleted, the ids it could not use, how many rows it could not read at all. The
pipeline never names a format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from rostersync.models import Entity, RowIssue, SyncMode

Record = dict[str, Any]
IssueSink = Callable[[RowIssue], None]


class Completeness(StrEnum):
    """What a read says about the records it does not contain."""

    #: Every record the source has for the entity: an absent record is gone (archive).
    COMPLETE = "complete"
    #: Some records only: an absence means nothing.
    PARTIAL = "partial"
    #: Changes only: records it carries are applied, deletions are explicit.
    DELTA = "delta"
    #: The source gave nothing for the entity this run.
    ABSENT = "absent"


class ReadSummary(BaseModel):
    """What reading one entity gave, known once its records have all been read."""

    model_config = ConfigDict(extra="forbid")

    entity: Entity
    completeness: Completeness
    #: What an admin knows the input as (``users.csv``, ``Clever /v3.0/users``).
    label: str | None = None
    #: Rows (or API items) read, blank lines not counted.
    rows: int = 0
    #: Records yielded.
    records: int = 0
    #: Ids of rows that could not be used: unknown this run, never archived.
    unknown_ids: list[str] = Field(default_factory=list)
    #: Rows with no usable id (plus one if the input could not be read to its end): when
    #: non-zero, no absence of this entity can be trusted.
    unreadable_rows: int = 0
    #: The input was announced (a manifest entry) but not there.
    missing: bool = False
    #: Ids the source deleted without giving a whole record: archived by id.
    deleted_ids: list[str] = Field(default_factory=list)
    #: Why absences cannot be trusted although the read looks complete (a truncated
    #: file, rows swallowed by a stray quote, a page that failed), or None.
    untrusted: str | None = None

    @property
    def is_complete(self) -> bool:
        return self.completeness is Completeness.COMPLETE

    @property
    def is_delta(self) -> bool:
        return self.completeness is Completeness.DELTA

    @property
    def is_absent(self) -> bool:
        return self.completeness is Completeness.ABSENT

    def shown(self) -> dict[str, Any]:
        """The summary as a report shows it: id lists as counts."""
        data = self.model_dump(mode="json", exclude={"unknown_ids", "deleted_ids"})
        data["unknown"] = len(self.unknown_ids)
        data["deleted"] = len(self.deleted_ids)
        return data


class GuardianFileRef(BaseModel):
    """A guardian file given for one run (``rostersync sync --guardians FILE``): the key
    of its copy under the tenant's uploads or inbox. See ``sources.guardian_file``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    #: What an admin knows the file as (its local name), for row issues.
    name: str | None = None
    #: Every guardian the guardian files gave: one missing from this file is archived.
    #: By default a file is partial: guardians it leaves out stay as they are.
    complete: bool = False


class SourceSpec(BaseModel):
    """Where a run's data comes from. Each source declares a subclass with its own
    ``kind`` literal and fields; ``sources.registry.parse_spec`` picks it by ``kind``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    #: A guardian file merged into the run beside the source's own records (any kind).
    guardians: GuardianFileRef | None = None

    @model_serializer(mode="wrap")
    def _without_empty_guardians(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A spec without a guardian file dumps as it did before there were any.
        data = handler(self)
        if isinstance(data, dict) and data.get("guardians") is None:
            data.pop("guardians", None)
        return data

    #: Fields that only say where fetch finds the input: the read reads the raw area.
    location_fields: ClassVar[frozenset[str]] = frozenset()

    def describe(self) -> str:
        """A short, secret-free description for the run history."""
        return self.kind

    def read_settings(self) -> dict[str, Any]:
        """The spec less where fetch found the input (``location_fields``, a guardian
        file's key): what, beside the raw area's bytes, a read of them depends on."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude=set(self.location_fields))
        guardians = data.get("guardians")
        if isinstance(guardians, dict):
            guardians.pop("key", None)
        return data


class RawFiles(Protocol):
    """The files of a run's raw area (or of a bundle), by base name."""

    def names(self) -> list[str]:
        """Base names of the files present."""
        ...

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A context manager yielding a binary stream of the file."""
        ...


class RawArea(RawFiles, Protocol):
    """The run's raw area as a source fetches into it and reads from it."""

    def exists(self, name: str) -> bool: ...

    def put_bytes(self, name: str, body: bytes) -> None: ...

    def writer(self, name: str) -> AbstractContextManager[IO[bytes]]: ...

    def copy_in(self, key: str, name: str) -> None:
        """Copy an object of the tenant's (an upload, an inbox bundle) into the area."""
        ...

    def list_objects(self, prefix: str) -> list[str]:
        """Keys of the tenant's objects under ``prefix`` (an upload or inbox folder)."""
        ...

    def object_exists(self, key: str) -> bool: ...

    def download(self, name: str, path: Path) -> None:
        """Copy a raw file to local disk (a zip to open)."""
        ...


class SecretReader(Protocol):
    """Reads a tenant's secrets (Secrets Manager on AWS, a 0600 file store locally).
    A source holds a secret only for the call that needs it: never logs or stores it."""

    def get_secret(self, tenant: str, name: str) -> str | None: ...


@dataclass(frozen=True)
class FetchContext:
    """What a source's fetch gets besides its spec."""

    tenant: str
    run_id: str
    mode: SyncMode
    raw: RawArea
    secrets: SecretReader
    #: What the source saved with the tenant's last committed run (an events cursor),
    #: or None before the first commit.
    cursor: dict[str, Any] | None = None
    #: Whether the object at a source key is known to hold no secret value (an upload
    #: stored stripped and not written since): its copy need not be stripped again.
    stored_stripped: Callable[[str], bool] = field(default=lambda key: False)
    #: A zipped bundle with a file at least this large (uncompressed) is unzipped into
    #: the raw area, so that its large files can be read in parts; None: never.
    unzip_from: int | None = None


@dataclass
class FetchResult:
    """What a fetch brought: counts for the run history, and the cursor to keep with
    this run's commit (the next quick run starts from it)."""

    counts: dict[str, int] = field(default_factory=dict)
    cursor: dict[str, Any] | None = None
    #: A note for the report (``the events cursor was too old: ran a full sync``).
    note: str | None = None
    #: The mode the source actually fetched (a quick run may fall back to full).
    mode: SyncMode | None = None


class SourceRead(Protocol):
    """One read of a run's raw input."""

    #: The system the records' source ids belong to (``oneroster``, ``clever``).
    source_system: str
    #: The input's format version where it has one (OneRoster ``1.1``).
    version: str | None

    def iter_records(self, entity: Entity) -> Iterator[Record]:
        """Stream the entity's canonical records; read entities in ``ENTITY_ORDER``."""
        ...

    def summary(self, entity: Entity) -> ReadSummary:
        """What reading the entity gave (once its records have all been read)."""
        ...


class Reused(NamedTuple):
    """Records read exactly as the previous run read them: the same input text, read in
    the same context (format, header, code). They are that run's records ``numbers``
    (from 0, in this read's order), their record and id lines taken as they were
    instead of being built again."""

    numbers: list[int]


@dataclass(frozen=True)
class PreviousRead:
    """What a run before this one left for reading its unchanged input again: its raw
    area and what its read kept of one entity (``ReusingRead.reuse_state``)."""

    raw: RawArea
    state: bytes


@runtime_checkable
class ReusingRead(Protocol):
    """A read that can recognise input unchanged since a previous run's read.

    Offered a ``PreviousRead`` before an entity is read, ``iter_records`` may yield
    ``Reused`` markers among the records; after the entity, ``reuse_state`` is what the
    next run needs to recognise this run's input (None when there is nothing to keep).
    """

    def offer_reuse(self, entity: Entity, previous: PreviousRead) -> None: ...

    def iter_items(self, entity: Entity) -> Iterator[Record | Reused]: ...

    def reuse_state(self, entity: Entity) -> bytes | None: ...


@runtime_checkable
class PartedRead(SourceRead, Protocol):
    """A read that can cut an entity's input into parts, read side by side (each in an
    invocation of its own), and add them up after; and carry on in another invocation
    where it left off.

    Parts and their results are plain JSON values, kept by the pipeline between
    invocations. ``known`` is what later entities' references are checked against: the
    pipeline keeps it for an invocation that carries on (``carry_on``)."""

    def plan_parts(
        self,
        entity: Entity,
        part_bytes: int,
        max_parts: int,
        own_ids: Callable[[], AbstractContextManager[IO[bytes]]],
    ) -> list[dict[str, Any]] | None:
        """The entity's parts, or None where it is read whole. The ids of an input whose
        records refer to each other go to the writer ``own_ids`` opens."""
        ...

    def iter_part(
        self,
        entity: Entity,
        part: dict[str, Any],
        own_ids: Callable[[], set[str] | None] | None,
    ) -> Iterator[Record]:
        """One part's records; ``own_ids`` loads what the plan wrote (None: nothing)."""
        ...

    def part_result(self, entity: Entity) -> tuple[dict[str, Any], list[str] | None]:
        """What the last part read gave, and the ids it had first (for ``known``)."""
        ...

    def finish_parts(self, entity: Entity, results: list[dict[str, Any]]) -> int:
        """Add the parts' results up (issues reported once per entity go to the sink);
        how many parts are taken (a part the input cannot be read past is the last)."""
        ...

    def known(self, entity: Entity) -> set[str] | None: ...

    def carried(self) -> dict[str, Any]:
        """What another invocation needs to carry on this read (``carry_on``)."""
        ...

    def carry_on(self, state: dict[str, Any], known: dict[Entity, set[str] | None]) -> None: ...


class Source(Protocol):
    """A kind of source: one folder under ``rostersync/sources``, one registry entry."""

    kind: ClassVar[str]
    spec_model: ClassVar[type[SourceSpec]]

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        """Bring the input into ``ctx.raw`` as received. Raise a ``TransientError`` for
        what a retry may fix, a ``FatalError`` otherwise; a fetch that fails part-way
        leaves nothing to commit (the run fails)."""
        ...

    def read(
        self, spec: SourceSpec, raw: RawArea, sink: IssueSink
    ) -> AbstractContextManager[SourceRead]:
        """Open the raw input for reading; issues go to ``sink`` as they are found."""
        ...


@dataclass(frozen=True)
class SecretField:
    """A secret a source reads from the tenant's secret store, as connecting names it."""

    #: What an admin gives it as (``token``, ``client_secret``).
    name: str
    #: The spec field holding the secret's name in the store (``secret_name``).
    spec_field: str

    def secret_name(self, spec: SourceSpec) -> str:
        """The secret's name in the tenant's store for ``spec``."""
        return str(getattr(spec, self.spec_field))


@dataclass(frozen=True)
class ConnectionCheck:
    """What one cheap call with a tenant's credentials said (never a secret)."""

    ok: bool
    message: str


@runtime_checkable
class Connectable(Protocol):
    """A source a tenant connects to with secrets (an API token, an OAuth client).

    ``application.connect`` stores the spec with the tenant and each of
    ``secret_fields`` in the tenant's secret store under the name the spec gives it."""

    secret_fields: ClassVar[tuple[SecretField, ...]]

    def check_connection(
        self, spec: SourceSpec, tenant: str, secrets: SecretReader
    ) -> ConnectionCheck:
        """One cheap call with the stored secrets: whether the source accepts them."""
        ...
