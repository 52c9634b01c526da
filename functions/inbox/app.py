"""Lambda handler for S3 "Object Created" events under inbox/: an adapter around
rostersync.application.inbox (a complete bundle starts a run; a bad key is rejected and
reported)."""

from typing import Any

from rostersync.application.inbox import handle_event
from rostersync.application.launch import default_run_start_deps
from rostersync.observability import observed


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_event(event, default_run_start_deps()).model_dump(mode="json")
