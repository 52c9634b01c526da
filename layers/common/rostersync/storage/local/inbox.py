"""The inbox's records in the embedded store: bundle starts (a conditional put, as one
transaction) and rejected keys, in the tenants table with the keys ``storage.inbox``
uses."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from rostersync.storage.inbox import RETRYABLE_STATUSES, STALE_START_SECONDS, bundle_sort_key
from rostersync.storage.keys import check_tenant
from rostersync.storage.local.database import Database, ItemTable


class LocalInboxRecords:
    """Bundle starts and rejected keys, in the tenants table."""

    def __init__(self, database: Database, table_name: str) -> None:
        self.items = ItemTable(database, table_name)

    def claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any], now: float
    ) -> bool:
        """Record that ``bundle`` at ``version`` is being started; False if it already
        was (or is being started), unless that start was deferred, failed or died."""
        item = {
            "bundle": bundle,
            "version": version,
            **attributes,
            "status": "starting",
            "claimed_at": int(now),
        }

        def take(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current.get("status") in RETRYABLE_STATUSES:
                return item
            stale = int(now) - STALE_START_SECONDS
            if current.get("status") == "starting" and int(current.get("claimed_at", 0)) < stale:
                return item
            return None

        claimed = self.items.change(check_tenant(tenant), bundle_sort_key(bundle, version), take)
        return claimed is not None

    def update_claim(
        self, tenant: str, bundle: str, version: str, attributes: dict[str, Any]
    ) -> None:
        def merge(current: dict[str, Any] | None) -> dict[str, Any]:
            return {**(current or {}), **attributes}

        self.items.change(check_tenant(tenant), bundle_sort_key(bundle, version), merge)

    def claims(self, tenant: str, bundle: str) -> list[dict[str, Any]]:
        """Every recorded start of ``bundle`` (any version), oldest claim first."""
        found = list(self.items.query(check_tenant(tenant), bundle_sort_key(bundle)))
        found.sort(key=lambda pair: (pair[1].get("claimed_at", 0), pair[0]))
        return [item for _, item in found]

    def reject(self, tenant: str, key: str, reason: str, at: datetime) -> None:
        """Keep a rejected key and why (never the file's content)."""
        stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:12]
        self.items.put(
            check_tenant(tenant),
            f"inbox#rejected#{stamp}#{digest}",
            {"key": key, "reason": reason, "rejected_at": stamp},
        )

    def rejections(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's rejected keys, newest first: ``[{key, reason, rejected_at}]``."""
        out: list[dict[str, Any]] = []
        for _, item in self.items.query(check_tenant(tenant), "inbox#rejected#", newest_first=True):
            out.append({k: item[k] for k in ("key", "reason", "rejected_at")})
            if len(out) >= limit:
                break
        return out

    def tenant_ids(self) -> list[str]:
        """Every tenant (an index of the tenants' ``meta`` items)."""
        return self.items.partitions_with("meta")
