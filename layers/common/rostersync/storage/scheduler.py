"""The tenants' daily schedules in EventBridge Scheduler: one schedule
``rostersync-{tenant}`` per tenant, pointing at the ScheduledSyncFunction. Scheduler's
errors become rostersync's own here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from rostersync.config import ScheduleTarget, schedule_target
from rostersync.errors import FatalError
from rostersync.settings import Schedule, TenantSettings
from rostersync.storage import keys
from rostersync.storage.clients import scheduler_client
from rostersync.storage.objects import translate_aws_error

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient


SCHEDULE_PREFIX = "rostersync-"

ScheduleChange = Literal["created", "updated", "unchanged", "deleted", "absent"]


class InvalidSchedule(FatalError):
    """The Scheduler refused the schedule (an unknown time zone, for one)."""


def default_scheduler() -> EventBridgeSchedulerClient:
    """A Scheduler client for this process's region (moto's while LocalCloud runs)."""
    return scheduler_client()


def schedule_name(tenant: str) -> str:
    return SCHEDULE_PREFIX + keys.check_tenant(tenant)


def schedule_expression(schedule: Schedule) -> str:
    """``cron(MM HH * * ? *)``: every day at the schedule's time (in its time zone)."""
    hour, minute = (int(part) for part in schedule.time.split(":"))
    return f"cron({minute} {hour} * * ? *)"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def sync_schedule(
    scheduler: EventBridgeSchedulerClient | None,
    tenant: str,
    settings: TenantSettings,
    target: ScheduleTarget | None = None,
) -> ScheduleChange:
    """Create, update or delete the tenant's Scheduler schedule to match
    ``settings.schedule``; return what changed. ``None`` for the client or the target
    means this process's (``default_scheduler()``, ``schedule_target()``)."""
    client = scheduler if scheduler is not None else default_scheduler()
    where = target if target is not None else schedule_target()
    name = schedule_name(tenant)
    try:
        existing: dict[str, Any] | None = dict(
            client.get_schedule(Name=name, GroupName=where.group)
        )
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise translate_aws_error(exc, "get schedule") from exc
        existing = None
    except BotoCoreError as exc:
        raise translate_aws_error(exc, "get schedule") from exc

    if settings.schedule is None:
        if existing is None:
            return "absent"
        try:
            client.delete_schedule(Name=name, GroupName=where.group)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise translate_aws_error(exc, "delete schedule") from exc
        except BotoCoreError as exc:
            raise translate_aws_error(exc, "delete schedule") from exc
        return "deleted"

    wanted: dict[str, Any] = {
        "Name": name,
        "GroupName": where.group,
        "ScheduleExpression": schedule_expression(settings.schedule),
        "ScheduleExpressionTimezone": settings.schedule.timezone,
        # At the time set, not within a window: admins expect the hour they chose.
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED",
        "Description": f"rostersync daily sync of tenant {tenant}",
        "Target": {
            "Arn": where.function_arn,
            "RoleArn": where.role_arn,
            "Input": json.dumps({"tenant": tenant, "mode": settings.schedule.mode}),
            # A busy tenant or an empty inbox is an answer, not an error; only a failure
            # is retried, and not past the hour (Scheduler's default is a day).
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        },
    }
    if existing is not None and _same(existing, wanted):
        return "unchanged"
    try:
        if existing is None:
            _ensure_group(client, where.group)
            client.create_schedule(**wanted)
        else:
            client.update_schedule(**wanted)
    except ClientError as exc:
        if _code(exc) == "ValidationException":
            raise InvalidSchedule(f"the schedule of tenant {tenant} was refused: {exc}") from exc
        raise translate_aws_error(exc, "put schedule") from exc
    except BotoCoreError as exc:
        raise translate_aws_error(exc, "put schedule") from exc
    return "created" if existing is None else "updated"


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    fields = ("ScheduleExpression", "ScheduleExpressionTimezone", "State")
    target = existing.get("Target") or {}
    return all(existing.get(f) == wanted[f] for f in fields) and all(
        target.get(f) == wanted["Target"][f] for f in ("Arn", "RoleArn", "Input")
    )


def _ensure_group(client: EventBridgeSchedulerClient, group: str) -> None:
    """The stack's template creates the group on AWS; the local stack does not."""
    if group == "default":
        return
    try:
        client.get_schedule_group(Name=group)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        client.create_schedule_group(Name=group)
