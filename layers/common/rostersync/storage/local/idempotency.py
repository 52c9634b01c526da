"""Powertools idempotency records in the embedded store, with the DynamoDB layer's
conditions: a record may be put if there is none, if it expired, or if it is in progress
past its in-progress expiry (one transaction)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)

from rostersync.storage.local.database import Database, ItemTable

_SORT_KEY = "record"


def _record(key: str, item: dict[str, Any]) -> DataRecord:
    return DataRecord(
        idempotency_key=key,
        status=str(item.get("status", "")),
        expiry_timestamp=item.get("expiration"),
        in_progress_expiry_timestamp=item.get("in_progress_expiration"),
        response_data=str(item.get("data", "")),
        payload_hash=str(item.get("validation", "")),
    )


class SqliteIdempotencyStore(BasePersistenceLayer):
    """The API's idempotency table in the local database."""

    def __init__(self, database: Database, table_name: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.items = ItemTable(database, table_name)

    def _get_record(self, idempotency_key: str) -> DataRecord:
        item = self.items.get(idempotency_key, _SORT_KEY)
        if item is None:
            raise IdempotencyItemNotFoundError
        return _record(idempotency_key, item)

    def _put_record(self, data_record: DataRecord) -> None:
        item: dict[str, Any] = {
            "status": data_record.status,
            "expiration": data_record.expiry_timestamp,
        }
        if data_record.in_progress_expiry_timestamp is not None:
            item["in_progress_expiration"] = data_record.in_progress_expiry_timestamp
        if self.payload_validation_enabled and data_record.payload_hash:
            item["validation"] = data_record.payload_hash
        now = time.time()
        existing: list[dict[str, Any]] = []

        def put_if_free(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or int(current.get("expiration") or 0) < int(now):
                return item
            in_progress_expiry = current.get("in_progress_expiration")
            if (
                current.get("status") == STATUS_CONSTANTS["INPROGRESS"]
                and in_progress_expiry is not None
                and int(in_progress_expiry) < int(now * 1000)
            ):
                return item
            existing.append(current)
            return None

        self.items.change(data_record.idempotency_key, _SORT_KEY, put_if_free)
        if existing:
            old = _record(data_record.idempotency_key, existing[0])
            self._validate_payload(data_payload=data_record, stored_data_record=old)
            self._save_to_cache(data_record=old)
            raise IdempotencyItemAlreadyExistsError(old_data_record=old)

    def _update_record(self, data_record: DataRecord) -> None:
        changes: dict[str, Any] = {
            "data": data_record.response_data,
            "expiration": data_record.expiry_timestamp,
            "status": data_record.status,
        }
        if self.payload_validation_enabled:
            changes["validation"] = data_record.payload_hash

        def merge(current: dict[str, Any] | None) -> dict[str, Any]:
            return {**(current or {}), **changes}

        self.items.change(data_record.idempotency_key, _SORT_KEY, merge)

    def _delete_record(self, data_record: DataRecord) -> None:
        self.items.delete(data_record.idempotency_key, _SORT_KEY)
