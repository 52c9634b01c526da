"""Settings each Lambda function reads from its environment, validated once.

One family of models on a shared base: ``StackSettings`` (the names every function gets
from the template's Globals), ``RunStartSettings`` for functions that start runs (the
locks table and the state machine), ``ApiSettings`` for the API (its idempotency table),
and ``ScheduleTarget`` for where tenants' schedules point. This module is the only one
that reads ``os.environ``; logic takes the models as parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field


class _FromEnvironment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls.model_validate({k: v for k, v in env.items() if v != ""})


class StackSettings(_FromEnvironment):
    """The stack's resource names, as the template passes them to every function."""

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
    #: Tenants' secrets in a local 0600 file (the local runtime, tests); unset on AWS,
    #: where they live in Secrets Manager as ``{secrets_prefix}/{tenant}/{name}``.
    local_secrets_file: Path | None = Field(default=None, alias="LOCAL_SECRETS_FILE")
    secrets_prefix: str = Field(default="rostersync", alias="SECRETS_PREFIX")
    #: The embedded store's directory (the local runtime): tables, objects and events on
    #: this machine instead of DynamoDB, S3 and EventBridge. Unset on AWS.
    local_store_dir: Path | None = Field(default=None, alias="LOCAL_STORE_DIR")
    #: ``host:pid`` of the local process running the stack's handlers. Unset on AWS.
    local_runner: str | None = Field(default=None, alias="LOCAL_RUNNER")
    #: A change set of at most this many actions is committed without fanning out.
    commit_inline_actions: int = Field(default=20_000, alias="COMMIT_INLINE_ACTIONS", ge=0)
    #: A run of at most this many actions has its actions.csv written in the API's
    #: request; a larger one in the background by the state machine (the Report task),
    #: the API answering 202 meanwhile: a million actions take about 10 s to write, and
    #: API Gateway answers within 29 s.
    report_inline_actions: int = Field(default=100_000, alias="REPORT_INLINE_ACTIONS", ge=0)
    #: Lines of a change file per commit chunk when fanning out.
    commit_chunk_actions: int = Field(default=10_000, alias="COMMIT_CHUNK_ACTIONS", ge=1)
    #: Commit chunks applied at once (one writer locally: the local runtime sets 2).
    commit_concurrency: int = Field(default=16, alias="COMMIT_CONCURRENCY", ge=1, le=1000)
    #: An entity of a run with more records than this is staged in parts, by a hash of
    #: the source id, about this many records each (a 100,000-student district stays in
    #: one invocation; a million students' enrollments take four parts).
    stage_part_records: int = Field(default=2_000_000, alias="STAGE_PART_RECORDS", ge=1)
    #: The most parts one entity is staged in.
    stage_max_parts: int = Field(default=64, alias="STAGE_MAX_PARTS", ge=1, le=1000)
    #: Stage parts run at once when fanned out (the Distributed Map's MaxConcurrency).
    stage_concurrency: int = Field(default=16, alias="STAGE_CONCURRENCY", ge=1, le=1000)
    #: Stage finds unchanged records with the columnar diff (DuckDB); off, it compares
    #: every record in Python (the same outcome, slower: for comparison and diagnosis).
    columnar_diff: bool = Field(default=True, alias="COLUMNAR_DIFF")
    #: Match writes the linked and new records' decisions with DuckDB (a join of the id
    #: lines with the baseline index); off, row by row in Python (the same bytes).
    columnar_match: bool = Field(default=True, alias="COLUMNAR_MATCH")
    #: Normalize takes records whose input is unchanged since the committed run as that
    #: run's read wrote them; off, every row is read again (the same output, slower).
    normalize_reuse: bool = Field(default=True, alias="NORMALIZE_REUSE")
    #: A source file over twice this many bytes is read in parts of about this size,
    #: side by side (a 100,000-student district's files are read whole; a million
    #: students' users and enrollments take three and six parts). 0: never in parts.
    normalize_part_bytes: int = Field(default=256 << 20, alias="NORMALIZE_PART_BYTES", ge=0)
    #: The most parts one file is read in.
    normalize_max_parts: int = Field(default=64, alias="NORMALIZE_MAX_PARTS", ge=2, le=1000)
    #: Normalize parts read at once when fanned out (the Distributed Map's MaxConcurrency).
    normalize_concurrency: int = Field(default=16, alias="NORMALIZE_CONCURRENCY", ge=1, le=1000)


class RunStartSettings(StackSettings):
    """A function that starts runs: the run lock and the state machine."""

    locks_table: str = Field(alias="LOCKS_TABLE")
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")


class ApiSettings(RunStartSettings):
    """The API: its idempotency records besides what starting runs needs."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")


class ScheduleTarget(_FromEnvironment):
    """Where a tenant's schedule sends its event: the stack's function, role and group."""

    function_arn: str = Field(alias="SCHEDULED_SYNC_FUNCTION_ARN")
    role_arn: str = Field(alias="SCHEDULER_ROLE_ARN")
    group: str = Field(default="default", alias="SCHEDULE_GROUP")


@lru_cache(maxsize=1)
def stack_settings() -> StackSettings:
    """The settings of this process (a Lambda function or the local runtime)."""
    return StackSettings.from_env(os.environ)


def run_start_settings() -> RunStartSettings:
    """Not cached: the local runtime sets the environment per session."""
    return RunStartSettings.from_env(os.environ)


def api_settings() -> ApiSettings:
    """Not cached: the local runtime sets the environment per session."""
    return ApiSettings.from_env(os.environ)


def schedule_target() -> ScheduleTarget:
    """Not cached: the local runtime sets the environment per session."""
    return ScheduleTarget.from_env(os.environ)
