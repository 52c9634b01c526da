"""Boto errors at the storage boundary: transient ones become StorageUnavailable (the state
machine retries it), the rest FatalError."""

from __future__ import annotations

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from rostersync.errors import FatalError, StorageUnavailable
from rostersync.storage.objects import translate_aws_error


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown"),
        client_error("ThrottlingException"),
        client_error("ProvisionedThroughputExceededException"),
        client_error("RequestTimeout"),
        client_error("ServiceUnavailable"),
        client_error("InternalServerError"),
        client_error("503"),
        S3UploadFailedError(
            "Failed to upload /tmp/x to b/k: An error occurred (SlowDown) when calling the "
            "UploadPart operation (reached max retries: 4): Please reduce your request rate."
        ),
        S3UploadFailedError("Failed to upload /tmp/x to b/k: Read timeout on endpoint URL"),
        ReadTimeoutError(endpoint_url="https://events"),
        EndpointConnectionError(endpoint_url="https://s3"),
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_transient_errors_are_storage_unavailable(exc: Exception) -> None:
    assert isinstance(translate_aws_error(exc, "put k"), StorageUnavailable)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("AccessDenied"),
        client_error("NoSuchBucket"),
        S3UploadFailedError(
            "Failed to upload /tmp/x to b/k: An error occurred (AccessDenied) when calling "
            "the PutObject operation: Access Denied"
        ),
    ],
)
def test_other_errors_are_fatal(exc: Exception) -> None:
    assert isinstance(translate_aws_error(exc, "put k"), FatalError)
