"""The local runtime's launcher: how a recorded run reaches the local state machine
without waiting for it (``rostersync serve``, tests). On AWS it is
``storage.executions.StepFunctionsLauncher``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rostersync.local.runtime import LocalCloud


class LocalCloudLauncher:
    """Starts the local runtime's state machine and returns at once (moto runs the
    execution in a thread); the execution is named as on AWS."""

    def __init__(self, cloud: LocalCloud) -> None:
        self._cloud = cloud

    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        self._cloud.start_execution(run_input, name=name)
