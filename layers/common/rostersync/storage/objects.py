"""S3 objects: the bulk state of runs and snapshots.

The only module that calls S3. Bodies are streamed: JSONL is written through a temporary
file and read line by line, so no step holds a whole entity in memory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import orjson
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from rostersync.errors import FatalError, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

#: How objects are copied within the bucket: whole up to 1 GiB, above in parts of
#: 256 MiB copied side by side (S3 copies one object whole only up to 5 GB).
COPY_CONFIG = TransferConfig(multipart_threshold=1 << 30, multipart_chunksize=1 << 28)

_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TooManyRequestsException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServerError",
        "InternalException",
        "ServiceUnavailableException",
        "RequestThrottled",
        "RequestThrottledException",
        "ThrottledException",
        "RequestTimeoutException",
        "503",
    }
)

#: The buffer of a file an object is written through (the default is the file system's
#: block, 4 KiB): each write of it to the file is a system call that lets go of the GIL,
#: and taking the GIL back waits for a busy thread's switch interval. A 100k first
#: sync's commit chunks, side by side, were sampled 14 s of their 74 s thread-seconds
#: on the line writing snapshot lines; with 1 MiB, 256 times fewer calls (system time
#: 13.9 to 17.4 s against 16.8 to 23.4 s, wall time within the host's spread).
WRITE_BUFFER = 1 << 20


def translate_aws_error(exc: Exception, what: str) -> Exception:
    """Map a boto error to rostersync's own: transient ones (throttling, ``SlowDown``,
    timeouts, connection errors, 5xx) become ``StorageUnavailable``, which the state
    machine retries. boto3's managed transfers wrap the part that failed in
    ``S3UploadFailedError`` (a message naming the code), so its message is read too."""
    if isinstance(exc, S3UploadFailedError):
        message = str(exc)
        if any(code in message for code in _TRANSIENT_CODES) or _TRANSIENT_WORDS.search(message):
            return StorageUnavailable(f"{what}: upload failed, transient")
        return FatalError(f"{what}: upload failed")
    if isinstance(exc, TimeoutError | ConnectionError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _TRANSIENT_CODES or code.startswith("5"):
            return StorageUnavailable(f"{what}: {code}")
        return FatalError(f"{what}: {code}")
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    return exc


#: Words of a wrapped error message that mean "try again" (timeouts, resets, 5xx).
_TRANSIENT_WORDS = re.compile(
    r"timed? ?out|timeout|connection (?:was )?(?:reset|closed|aborted|refused)|"
    r"\b50[0-4]\b|reduce your request rate|throttl",
    re.IGNORECASE,
)

#: Everything the adapters turn into rostersync's errors.
AWS_ERRORS = (ClientError, BotoCoreError, S3UploadFailedError, TimeoutError, ConnectionError)


def _guard(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except AWS_ERRORS as exc:
        raise translate_aws_error(exc, what) from exc


class ObjectStore:
    """One bucket, addressed by key."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put_bytes(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        _guard(
            f"put {key}",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            ),
        )

    def put_json(self, key: str, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":"), default=str).encode()
        self.put_bytes(key, body, "application/json")

    def get_bytes(self, key: str) -> bytes | None:
        """The object's body, or None if there is no such key."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise translate_aws_error(exc, f"get {key}") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"get {key}") from exc

    def get_json(self, key: str) -> Any | None:
        body = self.get_bytes(key)
        return None if body is None else json.loads(body)

    def exists(self, key: str) -> bool:
        return self.version(key) is not None

    def _head(self, key: str) -> Any | None:
        """The object's metadata, or None if there is no such object."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise translate_aws_error(exc, f"head {key}") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"head {key}") from exc

    def size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def version(self, key: str) -> str | None:
        """The object's ETag (a digest of its bytes, or of its parts' digests)."""
        head = self._head(key)
        return None if head is None else str(head["ETag"])

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []

        def _list() -> None:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))

        _guard(f"list {prefix}", _list)
        return keys

    def copy(self, source_key: str, dest_key: str) -> None:
        # The managed copy: one CopyObject below the threshold, parts copied side by side
        # above it (a single CopyObject stops at 5 GB; a snapshot can be larger).
        _guard(
            f"copy {source_key}",
            lambda: self.client.copy(
                {"Bucket": self.bucket, "Key": source_key},
                self.bucket,
                dest_key,
                Config=COPY_CONFIG,
            ),
        )

    def delete(self, key: str) -> None:
        _guard(f"delete {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def download_url(self, key: str, filename: str, seconds: int) -> str | None:
        kind = (
            "text/csv; charset=utf-8" if filename.endswith(".csv") else "application/octet-stream"
        )
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": kind,
            },
            ExpiresIn=seconds,
        )
        return url

    def upload_file(self, path: Path, key: str) -> None:
        _guard(f"upload {key}", lambda: self.client.upload_file(str(path), self.bucket, key))

    def download_file(self, key: str, path: Path) -> None:
        _guard(f"download {key}", lambda: self.client.download_file(self.bucket, key, str(path)))

    @contextmanager
    def local_file(self, key: str) -> Iterator[Path | None]:
        """The object downloaded to a temporary file, removed afterwards."""
        if not self.exists(key):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="rostersync-") as folder:
            path = Path(folder) / "object"
            self.download_file(key, path)
            yield path

    @contextmanager
    def open_stream(self, key: str) -> Iterator[IO[bytes]]:
        """A binary stream of the object's body (not buffered whole)."""
        response = _guard(f"get {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        body = response["Body"]
        try:
            yield body  # type: ignore[misc]
        finally:
            body.close()

    def read_bytes(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the object: one ranged GET."""
        if end <= start:
            return b""
        response = _guard(
            f"get {key}",
            lambda: self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            ),
        )
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """Write a large object through a temporary file, uploaded on success only."""
        fd, name = tempfile.mkstemp(prefix="rostersync-", suffix=".part")
        try:
            with os.fdopen(fd, "wb", buffering=WRITE_BUFFER) as fh:
                yield fh
            self.upload_file(Path(name), key)
        finally:
            Path(name).unlink(missing_ok=True)

    def write_jsonl(self, key: str, rows: Iterable[Any]) -> int:
        """Write rows as JSON lines; return how many."""
        count = 0
        with self.writer(key) as fh:
            for row in rows:
                fh.write(dumps_line(row))
                count += 1
        return count

    def iter_lines(self, key: str) -> Iterator[bytes]:
        """The non-empty lines of an object, unparsed; nothing if it does not exist."""
        if not self.exists(key):
            return
        with self.open_stream(key) as body:
            yield from stream_lines(body)

    def iter_jsonl(self, key: str) -> Iterator[Any]:
        """Rows of a JSON-lines object; nothing if the object does not exist."""
        loads = orjson.loads
        for line in self.iter_lines(key):
            yield loads(line)


def stream_lines(body: IO[bytes]) -> Iterator[bytes]:
    """The non-empty lines of a binary stream, read a megabyte at a time."""
    pending = b""
    while True:
        chunk = body.read(1 << 20)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line:
                yield line
    if pending.strip():
        yield pending


def copy_range(source: IO[bytes], start: int, stop: int, out: IO[bytes]) -> None:
    """Append bytes ``start`` to ``stop`` of the file ``source`` to ``out``: copied by
    the kernel where both are files (no pass through the process: a run's unchanged
    lines are most of what it writes), else read and written a megabyte at a time."""
    if stop <= start:
        return
    try:
        source_fd, out_fd = source.fileno(), out.fileno()
    except (AttributeError, OSError, ValueError):
        source_fd = out_fd = -1
    if source_fd >= 0:
        out.flush()
        at = start
        try:
            while at < stop:
                copied = os.copy_file_range(source_fd, out_fd, stop - at, at)
                if not copied:
                    raise EOFError(f"the file ends at {at}, before {stop}")
                at += copied
            return
        except OSError:
            if at != start:
                raise
            # A file system or kernel without the call: copied below.
    source.seek(start)
    left = stop - start
    while left:
        block = source.read(min(left, 1 << 20))
        if not block:
            raise EOFError(f"the file ends {left} bytes before {stop}")
        out.write(block)
        left -= len(block)


def copy_rest(source: IO[bytes], out: IO[bytes]) -> None:
    """Append the rest of ``source`` to ``out``: copied by the kernel where both are
    files (``copy_range``), else read and written a megabyte at a time."""
    try:
        at, size = source.tell(), os.fstat(source.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        shutil.copyfileobj(source, out, 1 << 20)
        return
    copy_range(source, at, size, out)


def own_size(body: bytes) -> bytes:
    """``body`` in a buffer of its own size. orjson (3.12 on) hands back bytes whose
    buffer keeps the 4 KiB or more it wrote into: what is held in numbers (a bulk put's
    rows, a review's changed lines) is copied (about 0.05 µs; 200,000 directory items
    took 1.55 GB as orjson made them)."""
    return b"".join((body, b""))


def _default(value: Any) -> str:
    return str(value)


def dumps_line(row: Any) -> bytes:
    """One JSON line, compact, UTF-8, with a newline."""
    return orjson.dumps(row, default=_default, option=orjson.OPT_APPEND_NEWLINE)


# ------------------------------------------------- uploads stored without secrets


class _Versions(Protocol):
    """What the markers need of an object store (either adapter)."""

    def version(self, key: str) -> str | None: ...

    def get_json(self, key: str) -> Any | None: ...

    def put_json(self, key: str, value: Any) -> None: ...


def stripped_marker_key(key: str) -> str | None:
    """Where the marker of an upload stored without secrets sits: beside the upload's
    folder, not in it (``uploads/{tenant}/.stripped/{rest}.json``), so that no listing
    of a bundle's folder meets it. None for a key outside ``uploads/``."""
    root, _, rest = key.partition("/")
    tenant, _, rest = rest.partition("/")
    if root != "uploads" or not tenant or not rest:
        return None
    return f"uploads/{tenant}/.stripped/{rest}.json"


def mark_stored_stripped(store: _Versions, key: str) -> None:
    """Note that the object now at ``key`` holds no secret value (it was stored with
    its secret columns emptied, or had none): its version, which any later write of the
    key changes."""
    marker = stripped_marker_key(key)
    version = store.version(key)
    if marker is not None and version is not None:
        store.put_json(marker, {"version": version})


def stored_stripped(store: _Versions, key: str) -> bool:
    """Whether the object at ``key`` is the very one ``mark_stored_stripped`` noted (its
    current version is the marker's): then it holds no secret value and need not be
    stripped again. False for any other object: one written since, one never marked (an
    inbox file, another upload), one without a version."""
    marker = stripped_marker_key(key)
    if marker is None:
        return False
    noted = store.get_json(marker)
    if not isinstance(noted, dict) or not isinstance(noted.get("version"), str):
        return False
    current = store.version(key)
    return current is not None and current == noted["version"]
