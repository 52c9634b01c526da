"""The clients and repositories a step needs, built once per process from settings.

On AWS they are the S3, DynamoDB and EventBridge adapters; with ``LOCAL_STORE_DIR`` set
(the local runtime) the embedded store's (``storage.local``), behind the same ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from rostersync.config import StackSettings, stack_settings
from rostersync.sources.base import SecretReader
from rostersync.storage.clients import dynamodb_resource, events_client, s3_client
from rostersync.storage.events import EventPublisher
from rostersync.storage.inbox import InboxObjects, InboxRecords
from rostersync.storage.objects import ObjectStore
from rostersync.storage.ports import (
    AppEditsPort,
    DecisionsPort,
    DirectoryPort,
    EventPublisherPort,
    InboxObjectsPort,
    InboxRecordsPort,
    LinksPort,
    LocksPort,
    ObjectStorePort,
    RunsPort,
    TenantsPort,
)
from rostersync.storage.secrets import build_secret_store
from rostersync.storage.tables import (
    AppEditsRepository,
    DecisionsRepository,
    DirectoryRepository,
    LinksRepository,
    LocksRepository,
    RunsRepository,
    TenantsRepository,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer


class NoSecrets:
    """A secret store holding nothing (where no source needs a secret)."""

    def get_secret(self, tenant: str, name: str) -> str | None:
        return None


@dataclass(frozen=True)
class Deps:
    """Everything a pipeline step touches outside itself."""

    settings: StackSettings
    store: ObjectStorePort
    runs: RunsPort
    directory: DirectoryPort
    links: LinksPort
    tenants: TenantsPort
    events: EventPublisherPort
    app_edits: AppEditsPort
    decisions: DecisionsPort
    secrets: SecretReader
    #: The drop box's objects (in the bucket) and records (in the tenants table).
    inbox_objects: InboxObjectsPort
    inbox_records: InboxRecordsPort


def build_deps(settings: StackSettings) -> Deps:
    """Fresh clients for ``settings`` (tests and the local runtime call this directly)."""
    if settings.local_store_dir is not None:
        return _embedded_deps(settings)
    dynamodb = dynamodb_resource()
    s3 = s3_client()
    tenants = TenantsRepository(dynamodb, settings.tenants_table)
    return Deps(
        settings=settings,
        store=ObjectStore(s3, settings.bucket),
        runs=RunsRepository(dynamodb, settings.runs_table),
        directory=DirectoryRepository(dynamodb, settings.directory_table),
        links=LinksRepository(dynamodb, settings.links_table),
        tenants=tenants,
        events=EventPublisher(events_client(), settings.event_bus),
        # Both are small per tenant and read whole by every run: they live in the tenants
        # table, not beside the millions of directory items and links.
        app_edits=AppEditsRepository(dynamodb, settings.tenants_table),
        decisions=DecisionsRepository(dynamodb, settings.tenants_table),
        secrets=build_secret_store(settings),
        inbox_objects=InboxObjects(s3, settings.bucket),
        inbox_records=InboxRecords(tenants.table),
    )


def _embedded_deps(settings: StackSettings) -> Deps:
    from rostersync.storage.local import open_local_store
    from rostersync.storage.local.events import LocalEventPublisher
    from rostersync.storage.local.inbox import LocalInboxRecords
    from rostersync.storage.local.tables import (
        LocalAppEditsRepository,
        LocalDecisionsRepository,
        LocalDirectoryRepository,
        LocalLinksRepository,
        LocalRunsRepository,
        LocalTenantsRepository,
    )

    assert settings.local_store_dir is not None
    local = open_local_store(settings.local_store_dir)
    database = local.database
    objects = local.objects(settings.bucket)
    return Deps(
        settings=settings,
        store=objects,
        runs=LocalRunsRepository(database, settings.runs_table),
        directory=LocalDirectoryRepository(database, settings.directory_table),
        links=LocalLinksRepository(database, settings.links_table),
        tenants=LocalTenantsRepository(database, settings.tenants_table),
        events=LocalEventPublisher(local.events, settings.event_bus),
        app_edits=LocalAppEditsRepository(database, settings.tenants_table),
        decisions=LocalDecisionsRepository(database, settings.tenants_table),
        secrets=build_secret_store(settings),
        inbox_objects=objects,
        inbox_records=LocalInboxRecords(database, settings.tenants_table),
    )


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    """The process-wide dependencies, from the environment's settings."""
    return build_deps(stack_settings())


def locks_repository(settings: StackSettings, table_name: str | None = None) -> LocksPort:
    """The run lock table (``settings.locks_table`` unless named), where this process
    starts runs."""
    table = table_name or settings.locks_table
    if not table:
        raise RuntimeError("LOCKS_TABLE is not configured for this function")
    if settings.local_store_dir is not None:
        from rostersync.storage.local import open_local_store
        from rostersync.storage.local.tables import LocalLocksRepository

        return LocalLocksRepository(open_local_store(settings.local_store_dir).database, table)
    return LocksRepository(dynamodb_resource(), table)


def idempotency_store(settings: StackSettings, table_name: str) -> BasePersistenceLayer:
    """Powertools' idempotency records: the DynamoDB layer, or the embedded store's."""
    if settings.local_store_dir is not None:
        from rostersync.storage.local import open_local_store
        from rostersync.storage.local.idempotency import SqliteIdempotencyStore

        database = open_local_store(settings.local_store_dir).database
        return SqliteIdempotencyStore(database, table_name)
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from rostersync.storage.clients import dynamodb_client

    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client())


def reset_default_deps() -> None:
    """Forget cached clients and settings (the local runtime calls it on start)."""
    default_deps.cache_clear()
    stack_settings.cache_clear()
