"""The inbox's storage: objects under ``inbox/{tenant}/`` and the records of what arrived.

``InboxObjects`` lists, reads and writes the drop box's objects (with the size, time and
ETag each listing carries); ``InboxRecords`` keeps, in the tenants table, one item per
bundle version that was started (a conditional put: one run per bundle, however many
files or retries arrive) and one per rejected key.

```
pk={tenant}  sk=inbox#bundle#{bundle key or prefix}#{version}   a bundle's start
pk={tenant}  sk=inbox#rejected#{at}#{digest}                     a rejected key
```
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from rostersync.storage.keys import check_tenant
from rostersync.storage.objects import AWS_ERRORS, translate_aws_error
from rostersync.storage.tables import from_dynamo, to_dynamo, without_keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client

#: Bundle starts that may be claimed again: deferred behind another run, or failed to launch.
RETRYABLE_STATUSES = ("deferred", "failed")
#: A claim stuck in "starting" this long (its handler died) may be taken over.
STALE_START_SECONDS = 15 * 60
_READ_BLOCK = 256 * 1024


@dataclass(frozen=True)
class InboxObject:
    """One object in the inbox, as a listing describes it."""

    key: str
    size: int
    last_modified: datetime
    etag: str

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def token(self) -> str:
        """What tells this upload from another of the same key: a re-upload changes the
        time even when the content (the ETag) is the same."""
        return f"{self.etag}@{self.last_modified.astimezone(UTC):%Y%m%dT%H%M%S}"


@dataclass(frozen=True)
class InboxListing:
    """The objects directly in one folder, and its sub-folders (prefixes ending in '/')."""

    files: list[InboxObject]
    folders: list[str]


def _object(raw: Any) -> InboxObject:
    modified = raw["LastModified"]
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return InboxObject(
        key=str(raw["Key"]),
        size=int(raw.get("Size", raw.get("ContentLength", 0))),
        last_modified=modified,
        etag=str(raw.get("ETag", "")).strip('"'),
    )


class InboxObjects:
    """The drop box's objects in one bucket."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            request["Delimiter"] = delimiter
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**request):
                yield dict(page)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"list {prefix}") from exc

    def list_folder(self, prefix: str) -> InboxListing:
        """What sits directly under ``prefix`` (which ends in '/')."""
        files: list[InboxObject] = []
        folders: list[str] = []
        for page in self._pages(prefix, "/"):
            files.extend(_object(raw) for raw in page.get("Contents", []))
            folders.extend(str(p["Prefix"]) for p in page.get("CommonPrefixes", []))
        return InboxListing(files, folders)

    def list_all(self, prefix: str) -> Iterator[InboxObject]:
        """Every object under ``prefix``, at any depth."""
        for page in self._pages(prefix, None):
            for raw in page.get("Contents", []):
                yield _object(raw)

    def find(self, key: str) -> InboxObject | None:
        """The object at ``key`` as a listing describes it (the same ETag and time as
        ``list_folder`` gives, which a HEAD would not), or None."""
        parent = key.rsplit("/", 1)[0] + "/"
        return next((o for o in self.list_folder(parent).files if o.key == key), None)

    def has_any(self, prefix: str) -> bool:
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"list {prefix}") from exc
        return bool(page.get("KeyCount") or page.get("Contents"))

    def read_head(self, key: str, limit: int) -> bytes:
        """The first ``limit`` bytes of an object (a manifest is small; a stray huge file
        named manifest.csv is not read whole)."""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{limit - 1}"
            )
            return bytes(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # an empty object
            raise translate_aws_error(exc, f"get {key}") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"get {key}") from exc

    def open_seekable(self, item: InboxObject) -> IO[bytes]:
        """A seekable binary stream over the object by ranged GETs, so that a zip's
        central directory is read without downloading the whole archive."""
        return io.BufferedReader(_RangedReader(self, item.key, item.size), _READ_BLOCK)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` (inclusive) of an object."""
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
            )
            return bytes(response["Body"].read())
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"get {key}") from exc

    def put_file(self, path: Path, key: str) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, key)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"upload {key}") from exc

    def put_stream(self, fh: IO[bytes], key: str) -> None:
        """Upload a binary stream (read from its current position) as one object."""
        try:
            self.client.upload_fileobj(fh, self.bucket, key)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"upload {key}") from exc

    def put_bytes(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"put {key}") from exc

    def download(self, key: str, fh: IO[bytes]) -> None:
        try:
            self.client.download_fileobj(self.bucket, key, fh)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"download {key}") from exc

    def copy(self, source_key: str, dest_key: str) -> None:
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=dest_key,
                CopySource={"Bucket": self.bucket, "Key": source_key},
            )
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"copy {source_key}") from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"delete {key}") from exc


class _RangedReader(io.RawIOBase):
    """The raw, seekable view ``InboxObjects.open_seekable`` buffers."""

    def __init__(self, objects: InboxObjects, key: str, size: int) -> None:
        self._objects = objects
        self._key = key
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        end = min(self._size, self._position + len(view)) - 1
        data = self._objects.read_range(self._key, self._position, end)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def bundle_sort_key(bundle: str, version: str = "") -> str:
    return f"inbox#bundle#{bundle}#{version}"


class InboxRecords:
    """Bundle starts and rejected keys, in the tenants table."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any], now: float
    ) -> bool:
        """Record that ``bundle`` at ``version`` is being started; False if it already
        was (or is being started), unless that start was deferred, failed or died."""
        item = {
            "pk": check_tenant(tenant),
            "sk": bundle_sort_key(bundle, version),
            "bundle": bundle,
            "version": version,
            **attributes,
            "status": "starting",
            "claimed_at": int(now),
        }
        try:
            self.table.put_item(
                Item=to_dynamo(item),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #status IN (:deferred, :failed)"
                    " OR (#status = :starting AND claimed_at < :stale)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":deferred": RETRYABLE_STATUSES[0],
                    ":failed": RETRYABLE_STATUSES[1],
                    ":starting": "starting",
                    ":stale": int(now) - STALE_START_SECONDS,
                },
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise translate_aws_error(exc, "claim bundle") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "claim bundle") from exc

    def update_claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any]
    ) -> None:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": to_dynamo(value) for i, value in enumerate(attributes.values())}
        try:
            self.table.update_item(
                Key={"pk": check_tenant(tenant), "sk": bundle_sort_key(bundle, version)},
                UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(names))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "update bundle claim") from exc

    def claims(self, tenant: str, bundle: str) -> list[dict[str, Any]]:
        """Every recorded start of ``bundle`` (any version), oldest claim first."""
        found = self._query(
            KeyConditionExpression=Key("pk").eq(check_tenant(tenant))
            & Key("sk").begins_with(bundle_sort_key(bundle))
        )
        ordered = sorted(found, key=lambda item: (item.get("claimed_at", 0), item["sk"]))
        return [without_keys(item) for item in ordered]

    def reject(self, tenant: str, key: str, reason: str, at: datetime) -> None:
        """Keep a rejected key and why (never the file's content)."""
        stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:12]
        item = {
            "pk": check_tenant(tenant),
            "sk": f"inbox#rejected#{stamp}#{digest}",
            "key": key,
            "reason": reason,
            "rejected_at": stamp,
        }
        try:
            self.table.put_item(Item=to_dynamo(item))
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "record rejected key") from exc

    def rejections(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's rejected keys, newest first: ``[{key, reason, rejected_at}]``."""
        items = self._query(
            KeyConditionExpression=Key("pk").eq(check_tenant(tenant))
            & Key("sk").begins_with("inbox#rejected#"),
            ScanIndexForward=False,
        )
        out: list[dict[str, Any]] = []
        for item in items:
            out.append({k: item[k] for k in ("key", "reason", "rejected_at")})
            if len(out) >= limit:
                break
        return out

    def tenant_ids(self) -> list[str]:
        """Every tenant (a scan: for the local scheduler, on a small local table)."""
        request: dict[str, Any] = {
            "FilterExpression": Attr("sk").eq("meta"),
            "ProjectionExpression": "pk",
        }
        found: list[str] = []
        try:
            while True:
                page = self.table.scan(**request)
                found.extend(str(item["pk"]) for item in page.get("Items", []))
                last = page.get("LastEvaluatedKey")
                if not last:
                    return sorted(found)
                request["ExclusiveStartKey"] = last
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "scan tenants") from exc

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            while True:
                page = self.table.query(**kwargs)
                for item in page.get("Items", []):
                    yield dict(from_dynamo(item))
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                kwargs["ExclusiveStartKey"] = last
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"query {self.table.name}") from exc
