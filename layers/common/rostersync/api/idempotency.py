"""``Idempotency-Key`` on POST: a retried request gets the first answer, the work is done once.

Powertools Idempotency with its DynamoDB persistence layer (the stack's idempotency table).
The key is the tenant, the path and the header's value; the body is hashed beside it, so
the same key sent with a different body is refused (422) rather than answered with the
other request's result. Failed requests are not remembered (Powertools deletes the record
when the work raises), so a retry after a 409 or a 503 really retries. A replayed answer
carries ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import BaseMiddlewareHandler, NextMiddleware
from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from rostersync.api.errors import ApiError

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
#: How long a key is remembered (clients retry within minutes; a day is generous).
EXPIRES_AFTER_SECONDS: Final = 24 * 60 * 60
MAX_KEY_LENGTH: Final = 255
#: Stable across functions and the local runtime (Powertools defaults to the function name).
KEY_PREFIX: Final = "rostersync-api"


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Any:
    if isinstance(response, dict):
        return {**response, "replayed": True}
    return response


def _check_key(value: str) -> str:
    if not 0 < len(value) <= MAX_KEY_LENGTH or not value.isprintable() or not value.isascii():
        raise ApiError(400, f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters")
    return value


class IdempotentPosts(BaseMiddlewareHandler[APIGatewayRestResolver]):
    """A route middleware making POSTs idempotent when the client sends the header."""

    def __init__(
        self,
        persistence: BasePersistenceLayer,
        tenant_of: Callable[[APIGatewayRestResolver], str],
        *,
        expires_after_seconds: int = EXPIRES_AFTER_SECONDS,
    ) -> None:
        self._tenant_of = tenant_of
        self._config = config = IdempotencyConfig(
            event_key_jmespath="[tenant, path, key]",
            payload_validation_jmespath="body_sha256",
            expires_after_seconds=expires_after_seconds,
            raise_on_no_idempotency_key=True,
            response_hook=_mark_replayed,
        )

        def perform(*, request: dict[str, str], work: Callable[[], dict[str, Any]]) -> Any:
            return work()

        self._once: Callable[..., Any] = idempotent_function(
            perform,
            data_keyword_argument="request",
            persistence_store=persistence,
            config=config,
            key_prefix=KEY_PREFIX,
        )

    def handler(
        self, app: APIGatewayRestResolver, next_middleware: NextMiddleware
    ) -> Response[Any]:
        header = app.current_event.headers.get(HEADER)  # headers are case-insensitive here
        if header is None:
            return next_middleware(app)
        if app.lambda_context is not None:
            # A request cut off by the function's timeout leaves an in-progress record;
            # with the context, Powertools lets a retry take it over once that time passed.
            self._config.register_lambda_context(app.lambda_context)
        body = app.current_event.body or ""
        request = {
            "tenant": self._tenant_of(app),
            "path": app.current_event.path,
            "key": _check_key(header),
            "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
        }

        def work() -> dict[str, Any]:
            response = next_middleware(app)
            # Only successes reach here (errors raise), and their bodies are already the
            # JSON-ready output of the response model.
            return {
                "status": response.status_code,
                "body": response.body,
                "content_type": response.headers.get(
                    "Content-Type", content_types.APPLICATION_JSON
                ),
            }

        stored = self._once(request=request, work=work)
        headers = {REPLAYED_HEADER: "true"} if stored.get("replayed") else None
        return Response(
            status_code=int(stored["status"]),
            content_type=str(stored["content_type"]),
            body=stored["body"],
            headers=headers,
        )
