"""DynamoDB items: runs (history), the directory, identity links.

The only module that calls DynamoDB. Items are explicit mappings from the domain models;
bulk writes go through ``batch_writer`` (point lookups and history belong here, bulk
roster state lives in S3 snapshots).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from rostersync.errors import RunNotFound
from rostersync.records import DirectoryChange, DirectoryItem, RunRecord, RunUpdate, stored_flat
from rostersync.storage.keys import check_run_id, check_tenant
from rostersync.storage.objects import AWS_ERRORS, translate_aws_error

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource, Table


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB's number type); empty strings stay strings."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


#: Batch writers a bulk put keeps busy at once (each its own BatchWriteItem calls: the
#: commit's chunks are bound by round trips, not by the table).
BATCH_WRITERS = 8
#: Items a writer takes at a time.
BATCH_PART = 500

#: DynamoDB's key attributes: how items are addressed, not part of what a caller reads.
KEY_ATTRIBUTES = ("pk", "sk", "gpk", "gsk")


def without_keys(item: dict[str, Any]) -> dict[str, Any]:
    """The item's own attributes (the table's key attributes left out)."""
    return {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES}


def from_dynamo(value: Any) -> Any:
    """Decimals back to int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


class _TableBase:
    def __init__(self, resource: DynamoDBServiceResource, table_name: str) -> None:
        self.table: Table = resource.Table(table_name)

    def _query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The items a query finds, without their key attributes."""
        for item in self._query_raw(**kwargs):
            yield without_keys(item)

    def _query_raw(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            while True:
                page = self.table.query(**kwargs)
                for item in page.get("Items", []):
                    yield from_dynamo(item)
                last = page.get("LastEvaluatedKey")
                if not last:
                    return
                kwargs["ExclusiveStartKey"] = last
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"query {self.table.name}") from exc

    def _get_item(
        self, key: dict[str, str], what: str, *, consistent: bool = False
    ) -> dict[str, Any] | None:
        """The item at ``key`` (numbers as int/float, no key attributes), or None."""
        item = self._get_raw(key, what, consistent=consistent)
        return None if item is None else without_keys(item)

    def _get_raw(
        self, key: dict[str, str], what: str, *, consistent: bool = False
    ) -> dict[str, Any] | None:
        """The item at ``key`` with its key attributes (numbers as int/float), or None."""
        try:
            response = self.table.get_item(Key=key, ConsistentRead=consistent)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"get {what}") from exc
        item = response.get("Item")
        return None if item is None else dict(from_dynamo(item))

    def _put_item(self, item: dict[str, Any], what: str) -> None:
        try:
            self.table.put_item(Item=to_dynamo(item))
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"put {what}") from exc

    def _set_attributes(self, key: dict[str, str], attributes: dict[str, Any], what: str) -> bool:
        """Set attributes on an existing item; False if there is no item at ``key``."""
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":v{i}": to_dynamo(value) for i, value in enumerate(attributes.values())}
        try:
            self.table.update_item(
                Key=key,
                UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(names))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise translate_aws_error(exc, f"update {what}") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"update {what}") from exc
        return True

    def _batch_put(self, items: Iterable[dict[str, Any]]) -> int:
        """Put every item: ``BATCH_WRITERS`` batch writers at once, each taking the items
        whose key hashes to it, in order (the same key always goes to the same writer,
        so the last put of a key wins, as it would one after the other)."""
        writers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dynamodb-put-{n}")
            for n in range(BATCH_WRITERS)
        ]
        parts: list[list[dict[str, Any]]] = [[] for _ in writers]
        pending: list[Future[int]] = []

        def write(part: list[dict[str, Any]]) -> int:
            with self.table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
                for item in part:
                    batch.put_item(Item=to_dynamo(item))
            return len(part)

        def submit(n: int) -> None:
            pending.append(writers[n].submit(write, parts[n]))
            parts[n] = []
            if len(pending) > 2 * BATCH_WRITERS:  # bounded memory: wait for the oldest
                finished.append(pending.pop(0).result())

        finished: list[int] = []
        try:
            for item in items:
                n = hash((item["pk"], item["sk"])) % BATCH_WRITERS
                parts[n].append(item)
                if len(parts[n]) >= BATCH_PART:
                    submit(n)
            for n, part in enumerate(parts):
                if part:
                    submit(n)
            finished.extend(future.result() for future in pending)
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, f"batch write {self.table.name}") from exc
        finally:
            for writer in writers:
                writer.shutdown(wait=True, cancel_futures=True)
        return sum(finished)


class RunsRepository(_TableBase):
    """Sync history: one item per run, keyed by tenant and run id (the record's
    ``run_id``)."""

    def put(self, tenant: str, run: RunRecord) -> None:
        key = {"pk": check_tenant(tenant), "sk": check_run_id(run.run_id)}
        self._put_item({**key, **run.attributes()}, "run")

    def update(self, tenant: str, run_id: str, changes: RunUpdate) -> None:
        """Set the attributes ``changes`` gives on an existing run."""
        key = {"pk": check_tenant(tenant), "sk": check_run_id(run_id)}
        if not self._set_attributes(key, changes.attributes(), "run"):
            raise RunNotFound(f"no run {run_id} for tenant {tenant}")

    def get(self, tenant: str, run_id: str) -> RunRecord:
        key = {"pk": check_tenant(tenant), "sk": check_run_id(run_id)}
        item = self._get_raw(key, "run", consistent=True)
        if item is None:
            raise RunNotFound(f"no run {run_id} for tenant {tenant}")
        return run_from_item(item)

    def list(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        """The tenant's runs, newest first."""
        items = self._query_raw(
            KeyConditionExpression=Key("pk").eq(check_tenant(tenant)), ScanIndexForward=False
        )
        out: list[RunRecord] = []
        for item in items:
            out.append(run_from_item(item))
            if len(out) >= limit:
                break
        return out


def run_from_item(item: dict[str, Any]) -> RunRecord:
    """A run record from its stored item (its id is the sort key)."""
    return RunRecord.model_validate({**without_keys(item), "run_id": str(item["sk"])})


def entity_partition(tenant: str, entity: str) -> str:
    return f"{check_tenant(tenant)}#{entity}"


class DirectoryRepository(_TableBase):
    """The committed roster the app reads: one item per record, keyed by target id,
    stored flat (``DirectoryItem.flat``)."""

    def put_many(self, tenant: str, entity: str, items: Iterable[DirectoryItem]) -> int:
        return self.put_flat(tenant, entity, (item.flat() for item in items))

    def put_flat(self, tenant: str, entity: str, items: Iterable[dict[str, Any]]) -> int:
        partition = entity_partition(tenant, entity)
        return self._batch_put({"pk": partition, "sk": item["target_id"], **item} for item in items)

    def get(self, tenant: str, entity: str, target_id: str) -> DirectoryItem | None:
        item = self._get_item(
            {"pk": entity_partition(tenant, entity), "sk": target_id}, "directory item"
        )
        return None if item is None else DirectoryItem.from_flat(item)

    def iter_entity(self, tenant: str, entity: str) -> Iterator[DirectoryItem]:
        for item in self._query_all(
            KeyConditionExpression=Key("pk").eq(entity_partition(tenant, entity))
        ):
            yield DirectoryItem.from_flat(item)

    def page(
        self, tenant: str, entity: str, offset: int, limit: int
    ) -> tuple[list[DirectoryItem], bool]:
        """Items ``offset`` to ``offset + limit``: the query pages lazily and stops one
        item past the page (DynamoDB has no offset)."""
        items: list[DirectoryItem] = []
        for index, item in enumerate(self.iter_entity(tenant, entity)):
            if index < offset:
                continue
            if len(items) == limit:
                return items, True
            items.append(item)
        return items, False

    def select(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[DirectoryItem], int]:
        """Filtered as the partition is read (one query, paged lazily by DynamoDB)."""
        rows, total = self.select_flat(tenant, entity, equals, defaults, offset, limit)
        return [DirectoryItem.from_flat(item) for item in rows], total

    def select_flat(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        items: list[dict[str, Any]] = []
        total = 0
        partition = entity_partition(tenant, entity)
        for item in self._query_all(KeyConditionExpression=Key("pk").eq(partition)):
            if all(
                (defaults.get(name) if item.get(name) is None else item.get(name)) in values
                for name, values in equals.items()
            ):
                if offset <= total < offset + limit:
                    items.append(stored_flat(item))
                total += 1
        return items, total

    def set_fields(self, tenant: str, entity: str, target_id: str, change: DirectoryChange) -> None:
        """Change the status or fields of an existing directory record (an edit made in
        the app)."""
        key = {"pk": entity_partition(tenant, entity), "sk": target_id}
        if not self._set_attributes(key, change.attributes(), "directory item"):
            raise KeyError(f"no {entity} record {target_id}")


class LinksRepository(_TableBase):
    """Identity links: (tenant, entity, source system, source id) → target id, with
    provenance. The ``by_target`` index answers "which source records point at this app
    record"."""

    def put_many(self, tenant: str, entity: str, links: Iterable[dict[str, Any]]) -> int:
        partition = entity_partition(tenant, entity)
        return self._batch_put(
            {
                "pk": partition,
                "sk": f"{link['source_system']}#{link['source_id']}",
                "gpk": partition,
                "gsk": link["target_id"],
                **link,
            }
            for link in links
        )

    def get(
        self, tenant: str, entity: str, source_system: str, source_id: str
    ) -> dict[str, Any] | None:
        key = {"pk": entity_partition(tenant, entity), "sk": f"{source_system}#{source_id}"}
        return self._get_item(key, "link")

    def iter_entity(self, tenant: str, entity: str) -> Iterator[dict[str, Any]]:
        return self._query_all(
            KeyConditionExpression=Key("pk").eq(entity_partition(tenant, entity))
        )


class TenantsRepository(_TableBase):
    """Tenants, with their settings and the history of settings changes."""

    def get_meta(self, tenant: str) -> dict[str, Any] | None:
        return self._get_item({"pk": check_tenant(tenant), "sk": "meta"}, "tenant")

    def put_meta(self, tenant: str, attributes: dict[str, Any]) -> None:
        self._put_item({"pk": check_tenant(tenant), "sk": "meta", **attributes}, "tenant")

    def get_settings(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's current settings document, if any was saved."""
        item = self._get_item({"pk": check_tenant(tenant), "sk": "settings"}, "settings")
        return None if item is None else dict(item["settings"])

    def put_settings(
        self, tenant: str, settings: dict[str, Any], *, who: str, at: str, changed: list[str]
    ) -> None:
        """Save the settings and keep the change in the tenant's settings history."""
        tenant = check_tenant(tenant)
        record = {"settings": settings, "changed_by": who, "changed_at": at, "changed": changed}
        try:
            with self.table.batch_writer() as batch:
                batch.put_item(Item=to_dynamo({"pk": tenant, "sk": "settings", **record}))
                batch.put_item(
                    Item=to_dynamo({"pk": tenant, "sk": f"settings#{at}#{who}", **record})
                )
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "put settings") from exc

    def get_source(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's connected source (``{source, secrets, connected_by, connected_at}``:
        a spec without secrets, and the names of the secrets it has in the store)."""
        return self._get_item({"pk": check_tenant(tenant), "sk": "source"}, "source")

    def put_source(self, tenant: str, connection: dict[str, Any], *, at: str) -> None:
        """Save the connected source and keep the change in the tenant's source history."""
        tenant = check_tenant(tenant)
        try:
            with self.table.batch_writer() as batch:
                batch.put_item(Item=to_dynamo({"pk": tenant, "sk": "source", **connection}))
                batch.put_item(Item=to_dynamo({"pk": tenant, "sk": f"source#{at}", **connection}))
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "put source") from exc

    def source_history(self, tenant: str) -> list[dict[str, Any]]:
        """Every change of the connected source, oldest first."""
        return list(
            self._query_all(
                KeyConditionExpression=Key("pk").eq(check_tenant(tenant))
                & Key("sk").begins_with("source#")
            )
        )

    def settings_history(self, tenant: str) -> list[dict[str, Any]]:
        """Every settings change, oldest first."""
        return list(
            self._query_all(
                KeyConditionExpression=Key("pk").eq(check_tenant(tenant))
                & Key("sk").begins_with("settings#")
            )
        )


class AppEditsRepository(_TableBase):
    """Fields the app edited on a directory record, kept apart from the directory item
    (own partition) so that commits rewriting the record never lose them."""

    def put(
        self, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str, at: str
    ) -> None:
        partition = f"{check_tenant(tenant)}#app_edits#{entity}"
        existing = self.get(tenant, entity, target_id)
        merged = {**(existing or {}), **fields}
        item = {"pk": partition, "sk": target_id, "fields": merged}
        self._put_item({**item, "edited_by": who, "edited_at": at}, "app edit")

    def all_for(self, tenant: str, entity: str) -> dict[str, dict[str, Any]]:
        """Target id → the fields the app edited, for one entity (one query: app edits
        are few, and a run may need them for thousands of updates)."""
        partition = f"{check_tenant(tenant)}#app_edits#{entity}"
        return {
            str(item["sk"]): dict(item["fields"])
            for item in self._query_raw(KeyConditionExpression=Key("pk").eq(partition))
        }

    def get(self, tenant: str, entity: str, target_id: str) -> dict[str, Any] | None:
        partition = f"{check_tenant(tenant)}#app_edits#{entity}"
        item = self._get_item({"pk": partition, "sk": target_id}, "app edit")
        return None if item is None else dict(item["fields"])


class LocksRepository(_TableBase):
    """One active run per tenant: a lock item with an expiry (DynamoDB TTL cleans up)."""

    def acquire(self, tenant: str, run_id: str, now: int, ttl_seconds: int) -> str | None:
        """Take the tenant's lock for ``run_id``; return None on success, or the id of
        the run holding it. An expired lock is taken over."""
        try:
            self.table.put_item(
                Item={
                    "pk": f"{check_tenant(tenant)}#sync",
                    "sk": "lock",
                    "run_id": check_run_id(run_id),
                    "acquired_at": now,
                    "expires_at": now + ttl_seconds,
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": now},
            )
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise translate_aws_error(exc, "acquire lock") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "acquire lock") from exc
        holder = self.holder(tenant)
        return holder or "unknown"

    def holder(self, tenant: str) -> str | None:
        key = {"pk": f"{check_tenant(tenant)}#sync", "sk": "lock"}
        item = self._get_item(key, "lock", consistent=True)
        return None if item is None else str(item["run_id"])

    def release(self, tenant: str, run_id: str) -> None:
        """Release the lock if ``run_id`` still holds it."""
        try:
            self.table.delete_item(
                Key={"pk": f"{check_tenant(tenant)}#sync", "sk": "lock"},
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": run_id},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise translate_aws_error(exc, "release lock") from exc
        except AWS_ERRORS as exc:
            raise translate_aws_error(exc, "release lock") from exc


class DecisionsRepository(_TableBase):
    """Admins' matching decisions, which outlive runs: confirmed and manual links,
    rejected pairs, app records kept ad hoc. One small partition per tenant, read whole by
    the match step."""

    def _partition(self, tenant: str) -> str:
        return f"{check_tenant(tenant)}#decisions"

    def put(self, tenant: str, sort_key: str, item: dict[str, Any]) -> None:
        self._put_item({"pk": self._partition(tenant), "sk": sort_key, **item}, "decision")

    def get(self, tenant: str, sort_key: str) -> dict[str, Any] | None:
        return self._get_item({"pk": self._partition(tenant), "sk": sort_key}, "decision")

    def all(self, tenant: str) -> list[dict[str, Any]]:
        return list(self._query_all(KeyConditionExpression=Key("pk").eq(self._partition(tenant))))
