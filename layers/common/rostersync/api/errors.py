"""rostersync's exceptions mapped to HTTP answers, at the API's boundary.

Bad input is always a 4xx: a malformed id is 400, a body or parameter that does not
validate is 422 (naming each field), an unknown run or tenant is 404, a run in the wrong
state for the operation (or another run in the way) is 409. Only failures of the service
itself are 5xx: storage briefly unavailable is 503.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from rostersync.application.runs import RunInProgress
from rostersync.errors import (
    InvalidKey,
    RunNotFound,
    RunStateError,
    StaleBaseline,
    TransientError,
    UnknownTenant,
)
from rostersync.settings import SettingsError

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """A refusal decided by the API itself (a tenant that already exists, no bundle)."""

    def __init__(self, status: int, message: str, *, run_id: str | None = None) -> None:
        self.status = status
        self.message = message
        self.run_id = run_id
        super().__init__(message)


def error_response(
    status: int, message: str, *, run_id: str | None = None, headers: dict[str, str] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"error": message}
    if run_id is not None:
        body["run_id"] = run_id
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers,
    )


def field_errors_response(errors: list[dict[str, str]], status: int = 422) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"errors": errors},
    )


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "hold", "archive_share")`` -> ``hold.archive_share``; parameters keep
    where they came from (``query.limit``, ``path.tenant``)."""
    parts = [str(p) for p in loc]
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field_name(tuple(err.get("loc", ()))), "message": str(err.get("msg", "invalid"))}
        for err in exc.errors()
    ]


def _invalid_request(exc: RequestValidationError) -> Response[Any]:
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return error_response(400, "the request body is not valid JSON")
    return field_errors_response(validation_errors(exc))


def _unsupported_type(exc: RequestUnsupportedContentType) -> Response[Any]:
    return error_response(415, "send the body as application/json")


def _invalid_settings(exc: SettingsError) -> Response[Any]:
    return field_errors_response(exc.errors)


def _run_in_progress(exc: RunInProgress) -> Response[Any]:
    return error_response(409, "a run is already in progress", run_id=exc.run_id)


def _not_found(exc: Exception) -> Response[Any]:
    return error_response(404, str(exc))


def _wrong_state(exc: Exception) -> Response[Any]:
    return error_response(409, str(exc))


def _invalid_key(exc: InvalidKey) -> Response[Any]:
    return error_response(400, str(exc))


def _api_error(exc: ApiError) -> Response[Any]:
    return error_response(exc.status, exc.message, run_id=exc.run_id)


def _same_key_in_flight(exc: IdempotencyAlreadyInProgressError) -> Response[Any]:
    return error_response(409, "a request with this Idempotency-Key is still in progress")


def _same_key_other_request(exc: IdempotencyValidationError) -> Response[Any]:
    return error_response(422, "this Idempotency-Key was already used for a different request body")


def _unavailable(exc: TransientError) -> Response[Any]:
    return error_response(
        503,
        "storage is briefly unavailable; retry",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _service_error(exc: ServiceError) -> Response[Any]:
    return error_response(exc.status_code, str(exc.msg))


def _no_route(exc: NotFoundError) -> Response[Any]:
    return error_response(404, "no such resource")


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    """Install the mapping on ``app`` (the most specific class of an error wins)."""
    app.exception_handler_manager.update_exception_handlers(
        {
            RequestValidationError: _invalid_request,
            RequestUnsupportedContentType: _unsupported_type,
            SettingsError: _invalid_settings,
            RunInProgress: _run_in_progress,
            RunNotFound: _not_found,
            UnknownTenant: _not_found,
            RunStateError: _wrong_state,
            StaleBaseline: _wrong_state,
            InvalidKey: _invalid_key,
            ApiError: _api_error,
            IdempotencyAlreadyInProgressError: _same_key_in_flight,
            IdempotencyValidationError: _same_key_other_request,
            TransientError: _unavailable,
            ServiceError: _service_error,
            NotFoundError: _no_route,
        }
    )


_FAILURES: dict[int, str] = {
    400: "Malformed input (an id, a key, a body that is not JSON)",
    401: "Missing, expired or invalid credentials",
    403: "Not allowed for this caller's role or tenant",
    404: "No such tenant, run or resource",
    409: "The run or tenant is not in a state that allows this",
    413: "The body is too large",
    415: "The body's content type is not accepted",
    422: "The body or a parameter does not validate; each field at fault is named",
    501: "Not available in this build",
    503: "Storage briefly unavailable; retry after Retry-After seconds",
}
#: The failures any tenant route may answer.
COMMON_FAILURES: tuple[int, ...] = (400, 401, 403, 404, 422, 503)


def documented(success: int, description: str, *failures: int) -> dict[int, OpenAPIResponse]:
    """The ``responses`` of a route for the OpenAPI document: its success (whose schema
    Powertools takes from the return annotation) and the failures it may answer."""
    from rostersync.api.models import ErrorBody, ValidationErrors

    responses: dict[int, OpenAPIResponse] = {success: {"description": description}}
    for code in sorted(set(failures)):
        model = ValidationErrors if code == 422 else ErrorBody
        responses[code] = {
            "description": _FAILURES[code],
            "content": {content_types.APPLICATION_JSON: {"model": model}},
        }
    return responses
