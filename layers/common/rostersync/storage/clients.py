"""The one place boto3 clients are built.

Built per call, not at import: a Lambda builds them once per process through its cached
dependencies, and the local runtime (moto) swaps the endpoints between sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient, DynamoDBServiceResource
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_stepfunctions import SFNClient


def dynamodb_resource() -> DynamoDBServiceResource:
    return boto3.resource("dynamodb")


def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb")


def s3_client() -> S3Client:
    # Streamed reads of multipart objects: botocore's whole-object checksum check does
    # not apply to them (and moto reports a checksum that never matches a stream).
    return boto3.client("s3", config=Config(response_checksum_validation="when_required"))


def events_client() -> EventBridgeClient:
    return boto3.client("events")


def stepfunctions_client() -> SFNClient:
    return boto3.client("stepfunctions")


def scheduler_client() -> EventBridgeSchedulerClient:
    return boto3.client("scheduler")


def secretsmanager_client() -> SecretsManagerClient:
    return boto3.client("secretsmanager")
