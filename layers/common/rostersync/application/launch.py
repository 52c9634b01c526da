"""What starting a run needs outside the pipeline: the run lock and a launcher.

``StepFunctionsLauncher`` starts the sync state machine (on AWS, and under moto with the
same call); ``RunStartDeps`` bundles it with the pipeline's dependencies and the locks
table, as ``runs.begin_run`` takes them. Functions that start runs (the inbox, the
schedules) read ``LOCKS_TABLE`` and ``STATE_MACHINE_ARN`` through ``LaunchSettings``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from rostersync.application.runs import RunLauncher
from rostersync.pipeline.deps import Deps, default_deps
from rostersync.storage.objects import translate_aws_error
from rostersync.storage.tables import LocksRepository

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class LaunchSettings(BaseModel):
    """The resources a run-starting function needs beyond the stack's common ones."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    locks_table: str = Field(alias="LOCKS_TABLE")
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LaunchSettings:
        return cls.model_validate(dict(env))


class StepFunctionsLauncher:
    """Starts one execution of the sync state machine per run, named by the run id."""

    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self.client = client
        self.state_machine_arn = state_machine_arn

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        try:
            self.client.start_execution(
                stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(run_input)
            )
        except ClientError as exc:
            # The run id names the execution: a retried launch of the same run is a no-op.
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return
            raise translate_aws_error(exc, "start execution") from exc
        except BotoCoreError as exc:
            raise translate_aws_error(exc, "start execution") from exc


@dataclass(frozen=True)
class RunStartDeps:
    """Everything ``runs.begin_run`` takes besides the run itself."""

    deps: Deps
    locks: LocksRepository
    launcher: RunLauncher


def build_run_start_deps(deps: Deps, settings: LaunchSettings) -> RunStartDeps:
    """Fresh clients for ``settings`` (tests and the local runtime call this directly)."""
    return RunStartDeps(
        deps=deps,
        locks=LocksRepository(boto3.resource("dynamodb"), settings.locks_table),
        launcher=StepFunctionsLauncher(boto3.client("stepfunctions"), settings.state_machine_arn),
    )


@lru_cache(maxsize=1)
def default_run_start_deps() -> RunStartDeps:
    """The process-wide run-starting dependencies, from the environment."""
    return build_run_start_deps(default_deps(), LaunchSettings.from_env(os.environ))
