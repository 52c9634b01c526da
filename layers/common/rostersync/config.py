"""Settings each Lambda function reads from its environment, validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class StackSettings(BaseModel):
    """The stack's resource names, as the template passes them to every function."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    bucket: str = Field(alias="BUCKET_NAME")
    runs_table: str = Field(alias="RUNS_TABLE")
    links_table: str = Field(alias="LINKS_TABLE")
    directory_table: str = Field(alias="DIRECTORY_TABLE")
    tenants_table: str = Field(alias="TENANTS_TABLE")
    event_bus: str = Field(alias="EVENT_BUS_NAME")
    #: The per-tenant run lock (only where runs are started: the API, the inbox, the CLI).
    locks_table: str | None = Field(default=None, alias="LOCKS_TABLE")
    #: Largest share of an entity's active records one run may archive without review.
    max_archive_share: float = Field(default=0.10, alias="MAX_ARCHIVE_SHARE", ge=0.0, le=1.0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackSettings:
        return cls.model_validate(dict(env))


@lru_cache(maxsize=1)
def stack_settings() -> StackSettings:
    """The settings of this process (a Lambda function or the local runtime)."""
    return StackSettings.from_env(os.environ)
