"""What the API needs beyond the pipeline's dependencies, and how it is wired."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer
from pydantic import BaseModel, ConfigDict, Field

from rostersync.application.runs import RunLauncher
from rostersync.pipeline.deps import Deps
from rostersync.storage.tables import LocksRepository


class ApiSettings(BaseModel):
    """The API's own tables (the stack's other names come through ``Deps``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    locks_table: str = Field(alias="LOCKS_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        return cls.model_validate(dict(env))


def api_settings() -> ApiSettings:
    """This process's settings (a Lambda function, or the local runtime's environment).

    Not cached: the local runtime changes the environment between sessions."""
    return ApiSettings.from_env(os.environ)


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
    import boto3
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return ApiServices(
        deps=deps,
        locks=LocksRepository(boto3.resource("dynamodb"), settings.locks_table),
        launcher=launcher,
        idempotency=DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=boto3.client("dynamodb")
        ),
    )
