"""Objects in the embedded store: bodies as files under the state directory, the key index
in the database.

A write goes to a temporary file, is fsynced and renamed to a file of its own (one per
version, named by the key's hash), and only then does the index point the key at it, in
one transaction; the previous version's file is removed afterwards. A killed process
therefore leaves either the old object or the new one, never a torn body: at worst an
unreferenced file. Listing by prefix is a range of the index's primary key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from rostersync.errors import FatalError
from rostersync.storage.inbox import InboxListing, InboxObject
from rostersync.storage.local.database import Database, prefix_end
from rostersync.storage.objects import WRITE_BUFFER, dumps_line, stream_lines

_COPY_BLOCK = 1 << 20


class _Missing(FatalError):
    """No object at the key (S3's NoSuchKey)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore:
    """One bucket of the embedded store: what ``ObjectStore`` and ``InboxObjects`` do on
    S3, on files."""

    def __init__(self, database: Database, root: Path, bucket: str) -> None:
        self.database = database
        self.bucket = bucket
        self.blobs = root / "objects"
        self.temporary = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.temporary.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ index

    def _row(self, key: str) -> tuple[str, int, str | None, float] | None:
        row = self.database.run(
            lambda: (
                self.database.connection()
                .execute(
                    "SELECT blob, size, etag, modified FROM objects WHERE bucket = ? AND key = ?",
                    (self.bucket, key),
                )
                .fetchone()
            )
        )
        return None if row is None else (str(row[0]), int(row[1]), row[2], float(row[3]))

    def _rows(self, prefix: str) -> list[tuple[str, str, int, str | None, float]]:
        return self.database.run(
            lambda: (
                self.database.connection()
                .execute(
                    "SELECT key, blob, size, etag, modified FROM objects"
                    " WHERE bucket = ? AND key >= ? AND key < ? ORDER BY key",
                    (self.bucket, prefix, prefix_end(prefix)),
                )
                .fetchall()
            )
        )

    def _path(self, blob: str) -> Path:
        return self.blobs / blob[:2] / blob

    @contextmanager
    def _open(self, key: str) -> Iterator[IO[bytes]]:
        # A concurrent overwrite may remove the version just looked up: look again.
        for _ in range(5):
            row = self._row(key)
            if row is None:
                raise _Missing(f"get {key}: NoSuchKey")
            try:
                fh = self._path(row[0]).open("rb")
            except FileNotFoundError:
                continue
            with fh:
                yield fh
            return
        raise _Missing(f"get {key}: NoSuchKey")

    def _commit(
        self, key: str, temporary: Path, etag: str | None, content_type: str, size: int
    ) -> None:
        """Make a written, fsynced temporary file the object at ``key``."""
        digest = hashlib.sha256(f"{self.bucket}/{key}".encode()).hexdigest()
        blob = f"{digest}-{uuid.uuid4().hex[:12]}"
        target = self._path(blob)
        target.parent.mkdir(exist_ok=True)
        os.replace(temporary, target)
        _fsync_dir(target.parent)
        replaced: list[str] = []

        def index() -> None:
            with self.database.transaction() as tx:
                old = tx.execute(
                    "SELECT blob FROM objects WHERE bucket = ? AND key = ?", (self.bucket, key)
                ).fetchone()
                tx.execute(
                    "INSERT OR REPLACE INTO objects"
                    " (bucket, key, blob, size, etag, modified, content_type)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.bucket, key, blob, size, etag, time.time(), content_type),
                )
                if old is not None:
                    replaced.append(str(old[0]))

        try:
            self.database.run(index)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        for old in replaced:
            self._path(old).unlink(missing_ok=True)

    @contextmanager
    def _temporary(self) -> Iterator[tuple[Path, IO[bytes]]]:
        fd, name = tempfile.mkstemp(prefix="put-", suffix=".part", dir=self.temporary)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb", buffering=WRITE_BUFFER) as fh:
                yield path, fh
        finally:
            path.unlink(missing_ok=True)  # gone already once committed

    def _store_stream(
        self, key: str, source: IO[bytes], content_type: str = "application/octet-stream"
    ) -> None:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with self._temporary() as (path, fh):
            while block := source.read(_COPY_BLOCK):
                md5.update(block)
                fh.write(block)
                size += len(block)
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._commit(key, path, md5.hexdigest(), content_type, size)

    # ------------------------------------------------------- ObjectStore's calls

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        with self._temporary() as (path, fh):
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
            self._commit(key, path, etag, content_type, len(body))

    def put_json(self, key: str, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":"), default=str).encode()
        self.put_bytes(key, body, "application/json")

    def get_bytes(self, key: str) -> bytes | None:
        try:
            with self._open(key) as fh:
                return fh.read()
        except _Missing:
            return None

    def get_json(self, key: str) -> Any | None:
        body = self.get_bytes(key)
        return None if body is None else orjson.loads(body)

    def exists(self, key: str) -> bool:
        return self._row(key) is not None

    def download_url(self, key: str, filename: str, seconds: int) -> str | None:
        return None  # the local API sends the file itself

    def size(self, key: str) -> int | None:
        row = self._row(key)
        return None if row is None else int(row[1])

    def version(self, key: str) -> str | None:
        """The object's blob: every write makes a new one."""
        row = self._row(key)
        return None if row is None else row[0]

    def list_keys(self, prefix: str) -> list[str]:
        return [str(row[0]) for row in self._rows(prefix)]

    def copy(self, source_key: str, dest_key: str) -> None:
        # Blobs are never written in place (a write makes a new one, then drops the
        # old): the copy is a second link to the same file, made in no time.
        row = self._row(source_key)
        if row is not None:
            blob, size, etag, _ = row
            with self._temporary() as (path, fh):
                fh.close()
                path.unlink()
                try:
                    os.link(self._path(blob), path)
                except FileNotFoundError:
                    pass  # replaced meanwhile: copied below from what the key now holds
                else:
                    self._commit(dest_key, path, etag, "application/octet-stream", size)
                    return
        with self._open(source_key) as source:
            self._store_stream(dest_key, source)

    def upload_file(self, path: Path, key: str) -> None:
        # Copied by the kernel (a bundle's files are hundreds of megabytes); the ETag is
        # computed when a listing asks for it (see _etag).
        with Path(path).open("rb") as source, self._temporary() as (temporary, fh):
            size = _copy_file(source, fh)
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            self._commit(key, temporary, None, "application/octet-stream", size)

    def download_file(self, key: str, path: Path) -> None:
        with self._open(key) as source, Path(path).open("wb") as out:
            shutil.copyfileobj(source, out, _COPY_BLOCK)

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path | None]:
        """The object's own file, held open meanwhile; on Linux by its descriptor's path,
        so an overwrite that removes the file cannot take it from the reader."""
        if self._row(key) is None:
            yield None
            return
        with self._open(key) as fh:
            by_descriptor = Path(f"/proc/self/fd/{fh.fileno()}")
            yield by_descriptor if by_descriptor.exists() else Path(fh.name)

    @contextmanager
    def open_stream(self, key: str) -> Iterator[IO[bytes]]:
        """A binary stream of the object's body."""
        with self._open(key) as fh:
            yield fh

    def read_bytes(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object."""
        if end <= start:
            return b""
        with self._open(key) as fh:
            fh.seek(start)
            return fh.read(end - start)

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """Write an object of any size through a temporary file, stored on success only."""
        with self._temporary() as (path, fh):
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
            fh.close()
            # The ETag is computed when a listing asks for it (see _etag).
            self._commit(key, path, None, "application/octet-stream", size)

    def write_jsonl(self, key: str, rows: Iterable[Any]) -> int:
        count = 0
        with self.writer(key) as fh:
            for row in rows:
                fh.write(dumps_line(row))
                count += 1
        return count

    def iter_lines(self, key: str) -> Iterator[bytes]:
        """The non-empty lines of an object, unparsed; nothing if it does not exist."""
        try:
            with self._open(key) as body:
                yield from stream_lines(body)
        except _Missing:
            return

    def iter_jsonl(self, key: str) -> Iterator[Any]:
        loads = orjson.loads
        for line in self.iter_lines(key):
            yield loads(line)

    # ----------------------------------------------------- InboxObjects' calls

    def _etag(self, key: str, blob: str, etag: str | None) -> str:
        if etag is not None:
            return etag
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with self._path(blob).open("rb") as fh:
                while block := fh.read(_COPY_BLOCK):
                    md5.update(block)
        except FileNotFoundError:
            return ""
        return md5.hexdigest()

    def _object(
        self, key: str, blob: str, size: int, etag: str | None, modified: float
    ) -> InboxObject:
        return InboxObject(
            key=key,
            size=size,
            last_modified=datetime.fromtimestamp(modified, UTC),
            etag=self._etag(key, blob, etag),
        )

    def list_folder(self, prefix: str) -> InboxListing:
        files: list[InboxObject] = []
        folders: list[str] = []
        for key, blob, size, etag, modified in self._rows(prefix):
            rest = key[len(prefix) :]
            if "/" in rest:
                folder = prefix + rest.split("/", 1)[0] + "/"
                if not folders or folders[-1] != folder:
                    folders.append(folder)
            else:
                files.append(self._object(key, blob, size, etag, modified))
        return InboxListing(files, folders)

    def list_all(self, prefix: str) -> Iterator[InboxObject]:
        for key, blob, size, etag, modified in self._rows(prefix):
            yield self._object(key, blob, size, etag, modified)

    def find(self, key: str) -> InboxObject | None:
        row = self._row(key)
        if row is None:
            return None
        blob, size, etag, modified = row
        return self._object(key, blob, size, etag, modified)

    def has_any(self, prefix: str) -> bool:
        row = self.database.run(
            lambda: (
                self.database.connection()
                .execute(
                    "SELECT 1 FROM objects WHERE bucket = ? AND key >= ? AND key < ? LIMIT 1",
                    (self.bucket, prefix, prefix_end(prefix)),
                )
                .fetchone()
            )
        )
        return row is not None

    def read_head(self, key: str, limit: int) -> bytes:
        with self._open(key) as fh:
            return fh.read(limit)

    def open_seekable(self, item: InboxObject) -> IO[bytes]:
        row = self._row(item.key)
        if row is None:
            raise _Missing(f"get {item.key}: NoSuchKey")
        return self._path(row[0]).open("rb")

    def read_range(self, key: str, start: int, end: int) -> bytes:
        with self._open(key) as fh:
            fh.seek(start)
            return fh.read(max(0, end - start + 1))

    def put_file(self, path: Path, key: str) -> None:
        self.upload_file(path, key)

    def put_stream(self, fh: IO[bytes], key: str) -> None:
        self._store_stream(key, fh)

    def download(self, key: str, fh: IO[bytes]) -> None:
        with self._open(key) as source:
            shutil.copyfileobj(source, fh, _COPY_BLOCK)

    def delete(self, key: str) -> None:
        removed: list[str] = []

        def drop() -> None:
            with self.database.transaction() as tx:
                row = tx.execute(
                    "SELECT blob FROM objects WHERE bucket = ? AND key = ?", (self.bucket, key)
                ).fetchone()
                if row is not None:
                    removed.append(str(row[0]))
                    tx.execute(
                        "DELETE FROM objects WHERE bucket = ? AND key = ?", (self.bucket, key)
                    )

        self.database.run(drop)
        for blob in removed:
            self._path(blob).unlink(missing_ok=True)


def _copy_file(source: IO[bytes], target: IO[bytes]) -> int:
    """Copy ``source`` to ``target`` (both files, at their starts); the bytes copied."""
    target.flush()
    copied = 0
    try:
        while sent := os.sendfile(target.fileno(), source.fileno(), copied, _COPY_BLOCK):
            copied += sent
    except OSError:
        if copied:
            raise
        shutil.copyfileobj(source, target, _COPY_BLOCK)  # no sendfile here
        target.flush()
        return target.tell()
    return copied
