"""What starting a run needs outside the pipeline: the run lock and a launcher.

``StepFunctionsLauncher`` (storage) starts the sync state machine (on AWS, and under moto
with the same call); ``RunStartDeps`` bundles it with the pipeline's dependencies and the
locks table, as ``runs.begin_run`` takes them. Functions that start runs (the inbox, the
schedules) get ``LOCKS_TABLE`` and ``STATE_MACHINE_ARN`` through ``RunStartSettings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rostersync.application.runs import RunLauncher
from rostersync.config import RunStartSettings, run_start_settings
from rostersync.pipeline.deps import Deps, default_deps, locks_repository
from rostersync.storage.clients import stepfunctions_client
from rostersync.storage.executions import StepFunctionsLauncher
from rostersync.storage.ports import LocksPort

__all__ = ["RunStartDeps", "StepFunctionsLauncher", "build_run_start_deps"]


@dataclass(frozen=True)
class RunStartDeps:
    """Everything ``runs.begin_run`` takes besides the run itself."""

    deps: Deps
    locks: LocksPort
    launcher: RunLauncher


def build_run_start_deps(deps: Deps, settings: RunStartSettings) -> RunStartDeps:
    """Fresh clients for ``settings`` (tests and the local runtime call this directly)."""
    return RunStartDeps(
        deps=deps,
        locks=locks_repository(settings),
        launcher=StepFunctionsLauncher(stepfunctions_client(), settings.state_machine_arn),
    )


@lru_cache(maxsize=1)
def default_run_start_deps() -> RunStartDeps:
    """The process-wide run-starting dependencies, from the environment."""
    return build_run_start_deps(default_deps(), run_start_settings())
