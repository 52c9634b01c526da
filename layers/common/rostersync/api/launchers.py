"""Run launchers: how a recorded run reaches the state machine without waiting for it.

``runs.begin_run`` locks, records and hands the run to one of these. On AWS it is
``StepFunctionsLauncher`` (``rostersync.application.launch``, shared with the inbox and the
schedules): ``states:StartExecution`` on ``STATE_MACHINE_ARN``, the execution named by the
run id. Locally it is the local runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rostersync.application.launch import StepFunctionsLauncher

if TYPE_CHECKING:
    from rostersync.local.runtime import LocalCloud

__all__ = ["LocalCloudLauncher", "StepFunctionsLauncher"]


class LocalCloudLauncher:
    """Starts the local runtime's state machine and returns at once (moto runs the
    execution in a thread); the execution is named by the run id, as on AWS."""

    def __init__(self, cloud: LocalCloud) -> None:
        self._cloud = cloud

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self._cloud.start_execution(run_input, name=name)
