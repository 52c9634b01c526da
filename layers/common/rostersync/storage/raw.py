"""A run's raw area (``raw/{tenant}/{run}/``) in the object store, as sources see it.

Names are single, validated path segments; objects a source may copy in must sit under
the tenant's own inbox or uploads prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rostersync.storage import keys
from rostersync.storage.ports import ObjectStorePort


class ObjectRawArea:
    """The raw area of one run of one tenant."""

    def __init__(self, store: ObjectStorePort, tenant: str, prefix: str) -> None:
        self.store = store
        self.tenant = keys.check_tenant(tenant)
        self.prefix = prefix
        self._names: list[str] | None = None

    def _key(self, name: str) -> str:
        return self.prefix + keys.check_file_name(name)

    def names(self) -> list[str]:
        if self._names is None:
            listed = (k[len(self.prefix) :] for k in self.store.list_keys(self.prefix))
            self._names = sorted(n for n in listed if n and "/" not in n)
        return list(self._names)

    def exists(self, name: str) -> bool:
        return self.store.exists(self._key(name))

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with self.store.open_stream(self._key(name)) as body:
            yield body

    def size(self, name: str) -> int | None:
        return self.store.size(self._key(name))

    def read_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the file (one ranged read)."""
        return self.store.read_bytes(self._key(name), start, end)

    def put_bytes(self, name: str, body: bytes) -> None:
        self._names = None
        self.store.put_bytes(self._key(name), body)

    @contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        self._names = None
        with self.store.writer(self._key(name)) as out:
            yield out

    def copy_in(self, key: str, name: str) -> None:
        self._names = None
        self.store.copy(keys.check_source_key(self.tenant, key), self._key(name))

    def list_objects(self, prefix: str) -> list[str]:
        return self.store.list_keys(keys.check_source_key(self.tenant, prefix))

    def object_exists(self, key: str) -> bool:
        return self.store.exists(keys.check_source_key(self.tenant, key))

    def download(self, name: str, path: Path) -> None:
        self.store.download_file(self._key(name), path)
