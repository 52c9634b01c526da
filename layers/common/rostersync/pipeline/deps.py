"""The clients and repositories a step needs, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rostersync.config import StackSettings, stack_settings
from rostersync.sources.base import SecretReader
from rostersync.storage.clients import dynamodb_resource, events_client, s3_client
from rostersync.storage.events import EventPublisher
from rostersync.storage.objects import ObjectStore
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


class NoSecrets:
    """A secret store holding nothing (where no source needs a secret)."""

    def get_secret(self, tenant: str, name: str) -> str | None:
        return None


@dataclass(frozen=True)
class Deps:
    """Everything a pipeline step touches outside itself."""

    settings: StackSettings
    store: ObjectStore
    runs: RunsRepository
    directory: DirectoryRepository
    links: LinksRepository
    tenants: TenantsRepository
    events: EventPublisher
    app_edits: AppEditsRepository
    decisions: DecisionsRepository
    secrets: SecretReader


def build_deps(settings: StackSettings) -> Deps:
    """Fresh clients for ``settings`` (tests and the local runtime call this directly)."""
    dynamodb = dynamodb_resource()
    return Deps(
        settings=settings,
        store=ObjectStore(s3_client(), settings.bucket),
        runs=RunsRepository(dynamodb, settings.runs_table),
        directory=DirectoryRepository(dynamodb, settings.directory_table),
        links=LinksRepository(dynamodb, settings.links_table),
        tenants=TenantsRepository(dynamodb, settings.tenants_table),
        events=EventPublisher(events_client(), settings.event_bus),
        # Both are small per tenant and read whole by every run: they live in the tenants
        # table, not beside the millions of directory items and links.
        app_edits=AppEditsRepository(dynamodb, settings.tenants_table),
        decisions=DecisionsRepository(dynamodb, settings.tenants_table),
        secrets=build_secret_store(settings),
    )


@lru_cache(maxsize=1)
def default_deps() -> Deps:
    """The process-wide dependencies, from the environment's settings."""
    return build_deps(stack_settings())


def locks_repository(settings: StackSettings) -> LocksRepository:
    """The run lock table, where this process starts runs."""
    if not settings.locks_table:
        raise RuntimeError("LOCKS_TABLE is not configured for this function")
    return LocksRepository(dynamodb_resource(), settings.locks_table)


def reset_default_deps() -> None:
    """Forget cached clients and settings (the local runtime calls it on start)."""
    default_deps.cache_clear()
    stack_settings.cache_clear()
