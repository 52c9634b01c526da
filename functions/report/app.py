"""Lambda handler writing a run's actions.csv in the background (the state machine's
Report task): an adapter around rostersync.application.reports."""

from typing import Any

from rostersync.application.reports import write_actions_in_background
from rostersync.observability import observed
from rostersync.pipeline.deps import default_deps


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return write_actions_in_background(event, default_deps())
