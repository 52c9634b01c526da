"""Executions of the sync state machine: one per run, or per decision about a run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from rostersync.storage.objects import translate_aws_error

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


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
