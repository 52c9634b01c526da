"""The admin API: a Powertools REST resolver with validation and a generated OpenAPI document.

``AdminApi(services).handle(event, context)`` answers one API Gateway REST proxy event. It
authorizes first (``rostersync.api.auth``: the path's tenant against the caller's claims,
the method against the role), then lets the resolver route, validate and answer. The
OpenAPI document is served at ``GET /openapi.json`` and Swagger UI at ``GET /swagger``.

Logs carry the method, path (ids only), status, role and duration: never a request or
response body, which may name children.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

import orjson
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server
from aws_lambda_powertools.shared.functions import is_pydantic, pydantic_to_dict
from aws_lambda_powertools.shared.json_encoder import Encoder

import rostersync
from rostersync.api.auth import AuthError, Principal, authorize, claims_of, is_public
from rostersync.api.body_guard import body_problems
from rostersync.api.config import ApiServices, api_settings, build_services
from rostersync.api.errors import error_response, register_error_handlers
from rostersync.api.idempotency import IdempotentPosts
from rostersync.api.match_routes import IMPORT_PATH, IMPORT_REQUEST_BODY, register_match_routes
from rostersync.api.run_routes import (
    UPLOAD_MEDIA_TYPES,
    UPLOAD_REQUEST_BODY,
    UPLOADS_PATH,
    is_upload,
    register_run_routes,
)
from rostersync.api.scope import PRINCIPAL_KEY, Middleware, RequestScope
from rostersync.api.sftp_user_routes import register_sftp_user_routes
from rostersync.api.source_routes import register_source_routes
from rostersync.api.tenant_routes import register_tenant_routes
from rostersync.observability import logger

TITLE: Final = "rostersync admin API"
DESCRIPTION: Final = (
    "Settings, sync now, run history, review of prepared runs (tick, untick, commit, "
    "discard, undo, approve), identity matching and the committed roster of a tenant. "
    "Every request acts for one tenant: send a bearer token whose custom:tenant claim is "
    "the path's tenant (the platform role may act on any)."
)
SECURITY_SCHEME: Final = "tenantToken"
#: Request bodies the routes take ("" : no Content-Type, which Powertools reads as JSON).
ACCEPTED_MEDIA_TYPES: Final = frozenset({"", "application/json", "text/csv", "text/plain"})


class FairLock:
    """A lock taken in the order it was asked for. ``threading.Lock`` lets whichever
    waiting thread the scheduler wakes first take it: under 20 clients a request could
    wait behind many later ones (p99 four times the median); in turn, each waits for
    those before it only."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._held = False

    def __enter__(self) -> FairLock:
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # handed over by the holder before it
        return self

    def __exit__(self, *_: object) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().set()  # still held: now by the next in turn
            else:
                self._held = False


# Powertools keeps the current event on the router class, shared by every resolver in the
# process: one request at a time goes through any resolver (on Lambda there is only one).
_RESOLVE_LOCK = FairLock()


def _error_location(exc: BaseException) -> list[str]:
    """Where an unexpected error happened, without its message (which may quote data)."""
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    return [f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}" for frame in frames]


def _idempotency_tenant(resolver: APIGatewayRestResolver) -> str:
    """The tenant an idempotency key is scoped to: the path's, else the caller's."""
    segments = resolver.current_event.path.split("/")
    if len(segments) > 2 and segments[1] == "tenants" and segments[2]:
        return segments[2]
    principal = resolver.context.get(PRINCIPAL_KEY)
    if isinstance(principal, Principal) and principal.tenant:
        return principal.tenant
    return "*"


def _proxy_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy answer made without the resolver (refused before routing)."""
    all_headers = {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})}
    return {
        "statusCode": status,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _encodable(value: Any) -> Any:
    """What ``orjson`` does not encode itself, as Powertools' own encoder turns it."""
    if isinstance(value, Decimal):
        return None if value.is_nan() else str(value)
    if is_pydantic(value):
        return pydantic_to_dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def serialize_body(value: Any) -> str:
    """A response body's JSON, by ``orjson`` (the standard library's encoder was a sixth
    of a directory page's time); anything it refuses (an integer beyond 64 bits) by
    Powertools' own encoder."""
    try:
        return orjson.dumps(value, default=_encodable, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, separators=(",", ":"), cls=Encoder)


class AdminApi:
    """The resolver with every route, bound to one set of services."""

    def __init__(self, services: ApiServices) -> None:
        self.services = services
        resolver = APIGatewayRestResolver(enable_validation=True, serializer=serialize_body)
        resolver.configure_openapi(
            title=TITLE,
            version=rostersync.__version__,
            description=DESCRIPTION,
            security_schemes={
                SECURITY_SCHEME: HTTPBearer(
                    bearerFormat="JWT",
                    description=(
                        "On AWS a Cognito user pool ID token; locally one from "
                        "`rostersync token --tenant T --role admin|viewer|platform`"
                    ),
                )
            },
            security=[{SECURITY_SCHEME: []}],
        )
        resolver.enable_swagger(path="/swagger", title=TITLE, version=rostersync.__version__)
        register_error_handlers(resolver)
        self._register_catch_all(resolver)

        scope = RequestScope(resolver, services)
        posts: list[Middleware] = []
        if services.idempotency is not None:
            posts.append(IdempotentPosts(services.idempotency, _idempotency_tenant))
        register_tenant_routes(resolver, scope, posts)
        register_run_routes(resolver, scope, posts)
        register_match_routes(resolver, scope, posts)
        register_source_routes(resolver, scope)
        register_sftp_user_routes(resolver, scope)

        @resolver.get("/openapi.json", include_in_schema=False, enable_validation=False)
        def openapi_document() -> Response[str]:
            return Response(
                status_code=200,
                content_type=content_types.APPLICATION_JSON,
                body=self.openapi_json(servers=[Server(url=self._base_path())]),
            )

        self.resolver = resolver

    @staticmethod
    def _register_catch_all(resolver: APIGatewayRestResolver) -> None:
        def unexpected(exc: Exception) -> Response[Any]:
            # Handled here so that nothing (Powertools included) logs the message.
            logger().error(
                "unexpected error",
                extra={"error_type": type(exc).__name__, "where": _error_location(exc)},
            )
            return error_response(500, "internal error")

        resolver.exception_handler_manager.update_exception_handlers({Exception: unexpected})

    def _base_path(self) -> str:
        """``/v1`` when called through the stage's own URL, else ``/``."""
        context = self.resolver.current_event.request_context
        stage = context.stage
        if stage and stage != "$default" and context.path.startswith(f"/{stage}/"):
            return f"/{stage}"
        return "/"

    def openapi_json(self, servers: list[Server] | None = None) -> str:
        """The OpenAPI 3.1 document, generated from the routes and models."""
        document = json.loads(self.resolver.get_openapi_json_schema(servers=servers))
        # The one non-JSON body (CSV), which Powertools cannot describe from a signature.
        operation = document.get("paths", {}).get(IMPORT_PATH, {}).get("post")
        if operation is not None:
            operation["requestBody"] = IMPORT_REQUEST_BODY
        # The one binary body (a zip), likewise.
        operation = document.get("paths", {}).get(UPLOADS_PATH, {}).get("post")
        if operation is not None:
            operation["requestBody"] = UPLOAD_REQUEST_BODY
        return json.dumps(document)

    def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Answer one API Gateway REST proxy event (thread-safe)."""
        started = time.monotonic()
        method = str(event.get("httpMethod") or "").upper()
        path = str(event.get("path") or "")
        principal: Principal | None = None
        try:
            if not is_public(method, path):
                principal = authorize(method, path, claims_of(event))
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            response = _proxy_response(exc.status, {"error": exc.message}, headers)
        else:
            if is_upload(method, path):
                response = self._upload(event, context, principal)
            elif not _accepted_content_type(event):
                response = _proxy_response(415, {"error": "send JSON (or CSV for imports)"})
            elif not _text_body(event):
                response = _proxy_response(400, {"error": "the request body must be UTF-8 text"})
            elif problems := _json_body_problems(event, path):
                response = _proxy_response(422, {"errors": problems})
            else:
                response = self._resolve(event, context, principal)
        logger().info(
            "request",
            extra={
                "method": method,
                "path": path,
                "status": response.get("statusCode"),
                "role": principal.role if principal else None,
                "tenant": principal.tenant if principal else None,
                "ms": int((time.monotonic() - started) * 1000),
            },
        )
        return response

    def _upload(
        self, event: Mapping[str, Any], context: Any, principal: Principal | None
    ) -> dict[str, Any]:
        """A bundle upload: a zip body (binary), refused before routing if it is not one
        of the zip media types; the route checks the zip itself."""
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in UPLOAD_MEDIA_TYPES:
            return _proxy_response(415, {"error": "send the bundle as application/zip"})
        return self._resolve(event, context, principal)

    def _resolve(
        self, event: Mapping[str, Any], context: Any, principal: Principal | None
    ) -> dict[str, Any]:
        with _RESOLVE_LOCK:
            if principal is not None:
                # Cleared by the resolver when it has answered.
                self.resolver.context[PRINCIPAL_KEY] = principal
            try:
                return self.resolver.resolve(dict(event), context)
            except Exception as exc:  # outside any route: keep the message out of logs
                logger().error(
                    "unexpected error",
                    extra={"error_type": type(exc).__name__, "where": _error_location(exc)},
                )
                return _proxy_response(500, {"error": "internal error"})


def _accepted_content_type(event: Mapping[str, Any]) -> bool:
    """Whether a body comes as JSON or text (CSV imports). Powertools would also parse
    forms and multipart bodies (and fail on some), which no route takes."""
    if not event.get("body"):
        return True
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type in ACCEPTED_MEDIA_TYPES


def _text_body(event: Mapping[str, Any]) -> bool:
    """Whether the body is text, as every route expects (JSON or CSV). API Gateway hands
    other bytes over base64-encoded, and Powertools would fail decoding them."""
    body = event.get("body")
    if not body or not event.get("isBase64Encoded"):
        return True
    try:
        base64.b64decode(body, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _json_body_problems(event: Mapping[str, Any], path: str) -> list[dict[str, str]]:
    """What the body guard refuses in a JSON body (a CSV import is not JSON)."""
    body = event.get("body")
    if not body:
        return []
    text = str(body)
    if event.get("isBase64Encoded"):
        text = base64.b64decode(text).decode("utf-8")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in {"", "application/json"} or text.lstrip()[:1] not in {"{", "["}:
        return []
    one_line = path.rstrip("/").endswith(("/settings", "/source"))
    return body_problems(text, settings=one_line)


@lru_cache(maxsize=1)
def default_api() -> AdminApi:
    """The API of this Lambda process: the stack's clients, Step Functions for runs."""
    from rostersync.application.launch import default_run_start_deps

    starting = default_run_start_deps()
    return AdminApi(build_services(api_settings(), starting.deps, starting.launcher))
