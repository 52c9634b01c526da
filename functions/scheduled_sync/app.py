"""Lambda handler for a tenant's daily schedule (EventBridge Scheduler): an adapter around
rostersync.application.schedules.scheduled_sync (the tenant's connected source, or its newest
complete inbox bundle)."""

from typing import Any

from rostersync.application.launch import default_run_start_deps
from rostersync.application.schedules import ScheduledSyncEvent, scheduled_sync
from rostersync.observability import observed


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    scheduled = ScheduledSyncEvent.model_validate(event)
    outcome = scheduled_sync(default_run_start_deps(), scheduled.tenant, scheduled.mode)
    return outcome.model_dump(mode="json")
