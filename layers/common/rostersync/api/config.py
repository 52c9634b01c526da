"""What the API needs beyond the pipeline's dependencies, and how it is wired."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

from rostersync.application.runs import RunLauncher
from rostersync.config import ApiSettings, api_settings
from rostersync.pipeline.deps import Deps
from rostersync.storage.clients import dynamodb_client, dynamodb_resource
from rostersync.storage.tables import LocksRepository

__all__ = ["ApiServices", "ApiSettings", "api_settings", "build_services"]


@dataclass(frozen=True)
class ApiServices:
    """Everything the routes touch outside themselves."""

    deps: Deps
    locks: LocksRepository
    launcher: RunLauncher
    #: None: ``Idempotency-Key`` is ignored (for tests of other things only).
    idempotency: BasePersistenceLayer | None


def build_services(settings: ApiSettings, deps: Deps, launcher: RunLauncher) -> ApiServices:
    """Clients for the API's own tables around the given pipeline dependencies."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return ApiServices(
        deps=deps,
        locks=LocksRepository(dynamodb_resource(), settings.locks_table),
        launcher=launcher,
        idempotency=DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=dynamodb_client()
        ),
    )
