"""What the code uses of each storage adapter, as Protocols.

Two families implement them: the AWS adapters (S3, DynamoDB, EventBridge: ``objects``,
``tables``, ``events``, ``inbox``) and the embedded ones in ``storage.local`` (SQLite,
files, an append-only event log). Run records and directory items cross this boundary
as models (``rostersync.records``): the adapters map them to and from their items, so
no caller sees a stored attribute's name, nor the DynamoDB key attributes (``pk``,
``sk``, ``gpk``, ``gsk``). Other items come back as plain attributes, without the key
attributes.
The contract tests (tests/integration/test_storage_contract.py) hold both to the same
behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from rostersync.records import DirectoryChange, DirectoryItem, RunRecord, RunUpdate

if TYPE_CHECKING:
    from rostersync.storage.inbox import InboxListing, InboxObject


class ObjectStorePort(Protocol):
    """One bucket of objects, addressed by key; bodies streamed."""

    bucket: str

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None: ...

    def put_json(self, key: str, value: Any) -> None: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def get_json(self, key: str) -> Any | None: ...

    def exists(self, key: str) -> bool: ...

    def version(self, key: str) -> str | None:
        """A token that is the same for as long as the object is not written again (a
        write of different bytes always changes it); None if there is no such object."""
        ...

    def size(self, key: str) -> int | None:
        """The object's length in bytes; None if there is no such object."""
        ...

    def list_keys(self, prefix: str) -> list[str]: ...

    def copy(self, source_key: str, dest_key: str) -> None: ...

    def delete(self, key: str) -> None:
        """Delete the object at ``key`` (nothing if there is none)."""
        ...

    def upload_file(self, path: Path, key: str) -> None: ...

    def download_file(self, key: str, path: Path) -> None: ...

    def open_stream(self, key: str) -> AbstractContextManager[IO[bytes]]: ...

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]: ...

    def write_jsonl(self, key: str, rows: Iterable[Any]) -> int: ...

    def iter_lines(self, key: str) -> Iterator[bytes]: ...

    def read_bytes(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object."""
        ...

    def local_file(self, key: str) -> AbstractContextManager[Path | None]:
        """A file on this machine holding the object's body, for an engine that reads
        files (the columnar diff): the object's own file in the embedded store, a
        temporary download on S3. ``None`` if there is no such object."""
        ...

    def iter_jsonl(self, key: str) -> Iterator[Any]: ...

    def download_url(self, key: str, filename: str, seconds: int) -> str | None:
        """A link that downloads the object as ``filename`` for ``seconds``, without
        other credentials (S3's presigned URL); ``None`` where the store has none."""
        ...


class RunsPort(Protocol):
    """Sync history: one record per run."""

    def put(self, tenant: str, run: RunRecord) -> None:
        """Write the whole record (a run that starts)."""
        ...

    def update(self, tenant: str, run_id: str, changes: RunUpdate) -> None:
        """Set the attributes ``changes`` gives on an existing run (RunNotFound if none)."""
        ...

    def get(self, tenant: str, run_id: str) -> RunRecord: ...

    def list(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        """The tenant's runs, newest first."""
        ...


class DirectoryPort(Protocol):
    """The committed roster, one item per target id."""

    def put_many(self, tenant: str, entity: str, items: Iterable[DirectoryItem]) -> int: ...

    def put_flat(self, tenant: str, entity: str, items: Iterable[dict[str, Any]]) -> int:
        """``put_many`` for items in their flat shape (``DirectoryItem.flat``: identity
        and fields side by side, ``target_id`` among them), built by the caller without
        a model each (the commit writes a million)."""
        ...

    def get(self, tenant: str, entity: str, target_id: str) -> DirectoryItem | None: ...

    def iter_entity(self, tenant: str, entity: str) -> Iterator[DirectoryItem]: ...

    def page(
        self, tenant: str, entity: str, offset: int, limit: int
    ) -> tuple[list[DirectoryItem], bool]:
        """Items ``offset`` to ``offset + limit`` in target-id order, and whether more
        follow."""
        ...

    def select(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[DirectoryItem], int]:
        """A page of the items whose every attribute in ``equals`` (a field or
        ``status``, ``source_system``) holds one of its values (``defaults`` stands for
        one an item lacks), in target-id order, and how many items match in all."""
        ...

    def select_flat(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """``select``'s page as the items' flat shapes (``DirectoryItem.flat``), built
        without the model (what the directory's API pages answer with)."""
        ...

    def set_fields(self, tenant: str, entity: str, target_id: str, change: DirectoryChange) -> None:
        """Apply ``change`` to an existing item (KeyError if there is none)."""
        ...


class LinksPort(Protocol):
    """Identity links: (tenant, entity, source system, source id) → target id."""

    def put_many(self, tenant: str, entity: str, links: Iterable[dict[str, Any]]) -> int: ...

    def get(
        self, tenant: str, entity: str, source_system: str, source_id: str
    ) -> dict[str, Any] | None: ...

    def iter_entity(self, tenant: str, entity: str) -> Iterator[dict[str, Any]]: ...


class TenantsPort(Protocol):
    """Tenants, their settings and the settings' history."""

    def get_meta(self, tenant: str) -> dict[str, Any] | None: ...

    def put_meta(self, tenant: str, attributes: dict[str, Any]) -> None: ...

    def get_settings(self, tenant: str) -> dict[str, Any] | None: ...

    def put_settings(
        self, tenant: str, settings: dict[str, Any], *, who: str, at: str, changed: list[str]
    ) -> None: ...

    def settings_history(self, tenant: str) -> list[dict[str, Any]]: ...

    def get_source(self, tenant: str) -> dict[str, Any] | None: ...

    def put_source(self, tenant: str, connection: dict[str, Any], *, at: str) -> None: ...

    def source_history(self, tenant: str) -> list[dict[str, Any]]: ...


class AppEditsPort(Protocol):
    """Fields the app edited on directory records."""

    def put(
        self, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str, at: str
    ) -> None: ...

    def all_for(self, tenant: str, entity: str) -> dict[str, dict[str, Any]]: ...

    def get(self, tenant: str, entity: str, target_id: str) -> dict[str, Any] | None: ...


class LocksPort(Protocol):
    """One active run per tenant: a lock with an expiry, taken over once expired."""

    def acquire(self, tenant: str, run_id: str, now: int, ttl_seconds: int) -> str | None: ...

    def holder(self, tenant: str) -> str | None: ...

    def release(self, tenant: str, run_id: str) -> None: ...


class DecisionsPort(Protocol):
    """Admins' matching decisions, by sort key within the tenant."""

    def put(self, tenant: str, sort_key: str, item: dict[str, Any]) -> None: ...

    def get(self, tenant: str, sort_key: str) -> dict[str, Any] | None: ...

    def all(self, tenant: str) -> list[dict[str, Any]]: ...


class EventPublisherPort(Protocol):
    """Change events and run notifications on the rostersync bus."""

    def publish(self, events: Iterable[tuple[str, dict[str, Any]]]) -> int: ...


class InboxObjectsPort(Protocol):
    """The drop box's objects under ``inbox/{tenant}/``."""

    bucket: str

    def list_folder(self, prefix: str) -> InboxListing: ...

    def list_all(self, prefix: str) -> Iterator[InboxObject]: ...

    def find(self, key: str) -> InboxObject | None: ...

    def has_any(self, prefix: str) -> bool: ...

    def read_head(self, key: str, limit: int) -> bytes: ...

    def open_seekable(self, item: InboxObject) -> IO[bytes]: ...

    def read_range(self, key: str, start: int, end: int) -> bytes: ...

    def put_file(self, path: Path, key: str) -> None: ...

    def put_stream(self, fh: IO[bytes], key: str) -> None: ...

    def put_bytes(self, key: str, body: bytes) -> None: ...

    def download(self, key: str, fh: IO[bytes]) -> None: ...

    def copy(self, source_key: str, dest_key: str) -> None: ...

    def delete(self, key: str) -> None: ...


class InboxRecordsPort(Protocol):
    """Bundle starts (one run per bundle version) and rejected keys."""

    def claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any], now: float
    ) -> bool: ...

    def update_claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any]
    ) -> None: ...

    def claims(self, tenant: str, bundle: str) -> list[dict[str, Any]]: ...

    def reject(self, tenant: str, key: str, reason: str, at: datetime) -> None: ...

    def rejections(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def tenant_ids(self) -> list[str]: ...
