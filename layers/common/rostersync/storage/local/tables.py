"""The stack's tables in the embedded store: the same repositories as ``storage.tables``,
over SQLite, with the same keys (so the state machine's own ``dynamodb:updateItem``
tasks address the same items) and the same conditions, each a transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rostersync.errors import RunNotFound
from rostersync.records import (
    DirectoryChange,
    DirectoryItem,
    ItemStatus,
    RunRecord,
    RunUpdate,
    stored_flat,
)
from rostersync.storage.keys import check_run_id, check_tenant
from rostersync.storage.local.database import Database, ItemTable, encode
from rostersync.storage.tables import entity_partition


class _LocalTable:
    def __init__(self, database: Database, table_name: str) -> None:
        self.items = ItemTable(database, table_name)

    def _set_attributes(self, pk: str, sk: str, attributes: dict[str, Any]) -> bool:
        """Set attributes on an existing item; False if there is none."""

        def merge(current: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if current is None else {**current, **attributes}

        return self.items.change(pk, sk, merge) is not None


class LocalRunsRepository(_LocalTable):
    """Sync history: one item per run, keyed by tenant and run id."""

    def put(self, tenant: str, run: RunRecord) -> None:
        self.items.put(check_tenant(tenant), check_run_id(run.run_id), run.attributes())

    def update(self, tenant: str, run_id: str, changes: RunUpdate) -> None:
        attributes = changes.attributes()
        if not self._set_attributes(check_tenant(tenant), check_run_id(run_id), attributes):
            raise RunNotFound(f"no run {run_id} for tenant {tenant}")

    def get(self, tenant: str, run_id: str) -> RunRecord:
        item = self.items.get(check_tenant(tenant), check_run_id(run_id))
        if item is None:
            raise RunNotFound(f"no run {run_id} for tenant {tenant}")
        return RunRecord.model_validate({**item, "run_id": run_id})

    def list(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        """The tenant's runs, newest first."""
        out: list[RunRecord] = []
        for run_id, item in self.items.query(check_tenant(tenant), newest_first=True):
            out.append(RunRecord.model_validate({**item, "run_id": run_id}))
            if len(out) >= limit:
                break
        return out


class LocalDirectoryRepository(_LocalTable):
    """The committed roster the app reads: one item per record, keyed by target id,
    stored flat (``DirectoryItem.flat``)."""

    #: The fields the directory's lists filter on (``application.directory``), indexed
    #: for users (a quarter of a district's items, the list admins filter): an item
    #: without a status is active. Other entities' filtered lists read the bodies.
    FACETS: Mapping[str, str | None] = {
        "role": None,
        "status": ItemStatus.ACTIVE.value,
        "source_system": None,
    }
    FACETED = "#users"

    def __init__(self, database: Database, table_name: str) -> None:
        self.items = ItemTable(database, table_name, self.FACETS, self.FACETED)

    def put_many(self, tenant: str, entity: str, items: Iterable[DirectoryItem]) -> int:
        return self.put_flat(tenant, entity, (item.flat() for item in items))

    def put_flat(self, tenant: str, entity: str, items: Iterable[dict[str, Any]]) -> int:
        partition = entity_partition(tenant, entity)
        return self.items.put_encoded(
            (partition, item["target_id"], encode(item)) for item in items
        )

    def get(self, tenant: str, entity: str, target_id: str) -> DirectoryItem | None:
        item = self.items.get(entity_partition(tenant, entity), target_id)
        return None if item is None else DirectoryItem.from_flat(item)

    def iter_entity(self, tenant: str, entity: str) -> Iterator[DirectoryItem]:
        for _, item in self.items.query(entity_partition(tenant, entity)):
            yield DirectoryItem.from_flat(item)

    def page(
        self, tenant: str, entity: str, offset: int, limit: int
    ) -> tuple[list[DirectoryItem], bool]:
        # The database skips to the offset: only the page's items are decoded.
        rows = self.items.slice(entity_partition(tenant, entity), offset, limit + 1)
        return [DirectoryItem.from_flat(row) for row in rows[:limit]], len(rows) > limit

    def select(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[DirectoryItem], int]:
        rows, total = self.select_flat(tenant, entity, equals, defaults, offset, limit)
        return [DirectoryItem.from_flat(row) for row in rows], total

    def select_flat(
        self,
        tenant: str,
        entity: str,
        equals: Mapping[str, Sequence[str]],
        defaults: Mapping[str, str],
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], int]:
        rows, total = self.items.select(
            entity_partition(tenant, entity), equals, defaults, offset, limit
        )
        return [stored_flat(row) for row in rows], total

    def set_fields(self, tenant: str, entity: str, target_id: str, change: DirectoryChange) -> None:
        attributes = change.attributes()
        if not self._set_attributes(entity_partition(tenant, entity), target_id, attributes):
            raise KeyError(f"no {entity} record {target_id}")


class LocalLinksRepository(_LocalTable):
    """Identity links: (tenant, entity, source system, source id) → target id."""

    def put_many(self, tenant: str, entity: str, links: Iterable[dict[str, Any]]) -> int:
        partition = entity_partition(tenant, entity)
        return self.items.put_encoded(
            (partition, f"{link['source_system']}#{link['source_id']}", encode(link))
            for link in links
        )

    def get(
        self, tenant: str, entity: str, source_system: str, source_id: str
    ) -> dict[str, Any] | None:
        return self.items.get(entity_partition(tenant, entity), f"{source_system}#{source_id}")

    def iter_entity(self, tenant: str, entity: str) -> Iterator[dict[str, Any]]:
        for _, item in self.items.query(entity_partition(tenant, entity)):
            yield item


class LocalTenantsRepository(_LocalTable):
    """Tenants, with their settings and the history of settings changes."""

    def get_meta(self, tenant: str) -> dict[str, Any] | None:
        return self.items.get(check_tenant(tenant), "meta")

    def put_meta(self, tenant: str, attributes: dict[str, Any]) -> None:
        self.items.put(check_tenant(tenant), "meta", dict(attributes))

    def get_settings(self, tenant: str) -> dict[str, Any] | None:
        item = self.items.get(check_tenant(tenant), "settings")
        return None if item is None else dict(item["settings"])

    def put_settings(
        self, tenant: str, settings: dict[str, Any], *, who: str, at: str, changed: list[str]
    ) -> None:
        tenant = check_tenant(tenant)
        record = {"settings": settings, "changed_by": who, "changed_at": at, "changed": changed}
        self.items.put_many(
            [(tenant, "settings", record), (tenant, f"settings#{at}#{who}", record)]
        )

    def settings_history(self, tenant: str) -> list[dict[str, Any]]:
        """Every settings change, oldest first."""
        return [item for _, item in self.items.query(check_tenant(tenant), "settings#")]

    def get_source(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's connected source (a spec without secrets, the secrets' names)."""
        return self.items.get(check_tenant(tenant), "source")

    def put_source(self, tenant: str, connection: dict[str, Any], *, at: str) -> None:
        """Save the connected source and keep the change in the tenant's source history."""
        tenant = check_tenant(tenant)
        self.items.put_many([(tenant, "source", connection), (tenant, f"source#{at}", connection)])

    def source_history(self, tenant: str) -> list[dict[str, Any]]:
        """Every change of the connected source, oldest first."""
        return [item for _, item in self.items.query(check_tenant(tenant), "source#")]


class LocalAppEditsRepository(_LocalTable):
    """Fields the app edited on a directory record, in their own partition."""

    def put(
        self, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str, at: str
    ) -> None:
        partition = f"{check_tenant(tenant)}#app_edits#{entity}"

        def merge(current: dict[str, Any] | None) -> dict[str, Any]:
            merged = {**((current or {}).get("fields") or {}), **fields}
            return {"fields": merged, "edited_by": who, "edited_at": at}

        self.items.change(partition, target_id, merge)

    def all_for(self, tenant: str, entity: str) -> dict[str, dict[str, Any]]:
        partition = f"{check_tenant(tenant)}#app_edits#{entity}"
        return {sk: dict(item["fields"]) for sk, item in self.items.query(partition)}

    def get(self, tenant: str, entity: str, target_id: str) -> dict[str, Any] | None:
        item = self.items.get(f"{check_tenant(tenant)}#app_edits#{entity}", target_id)
        return None if item is None else dict(item["fields"])


class LocalLocksRepository(_LocalTable):
    """One active run per tenant: a lock item with an expiry, taken in a transaction."""

    def acquire(self, tenant: str, run_id: str, now: int, ttl_seconds: int) -> str | None:
        """Take the tenant's lock for ``run_id``; None on success, else the holder's id.
        An expired lock is taken over."""
        run_id = check_run_id(run_id)
        held_by: list[str] = []

        def take(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is not None and not int(current.get("expires_at", 0)) < now:
                held_by.append(str(current.get("run_id") or "unknown"))
                return None
            return {"run_id": run_id, "acquired_at": now, "expires_at": now + ttl_seconds}

        self.items.change(f"{check_tenant(tenant)}#sync", "lock", take)
        return held_by[0] if held_by else None

    def holder(self, tenant: str) -> str | None:
        item = self.items.get(f"{check_tenant(tenant)}#sync", "lock")
        return None if item is None else str(item["run_id"])

    def release(self, tenant: str, run_id: str) -> None:
        """Release the lock if ``run_id`` still holds it."""

        def mine(current: dict[str, Any] | None) -> dict[str, Any] | None:
            return current if current is not None and current.get("run_id") == run_id else None

        self.items.change(f"{check_tenant(tenant)}#sync", "lock", mine, delete=True)


class LocalDecisionsRepository(_LocalTable):
    """Admins' matching decisions, one partition per tenant."""

    def _partition(self, tenant: str) -> str:
        return f"{check_tenant(tenant)}#decisions"

    def put(self, tenant: str, sort_key: str, item: dict[str, Any]) -> None:
        self.items.put(self._partition(tenant), sort_key, dict(item))

    def get(self, tenant: str, sort_key: str) -> dict[str, Any] | None:
        return self.items.get(self._partition(tenant), sort_key)

    def all(self, tenant: str) -> list[dict[str, Any]]:
        return [item for _, item in self.items.query(self._partition(tenant))]
