"""The admin API over HTTP on this machine, as API Gateway would present it to Lambda.

``make_server(host, port, state_dir=..., deps=..., launcher=...)`` returns a
``ThreadingHTTPServer`` (not yet serving: call ``serve_forever()``, typically in a thread;
``server.url`` is its address, ``port=0`` picks a free port). Each request becomes an API
Gateway REST proxy event, the way a ``/{proxy+}`` resource delivers it: method, decoded
path, headers and query string (single- and multi-value), body (base64 when not UTF-8),
``resource``/``pathParameters`` of the proxy resource, and a ``requestContext`` whose
``authorizer.claims`` hold the claims of a verified bearer token, exactly where a Cognito
user-pool authorizer puts them. A missing, garbled, expired or wrongly signed token adds
no claims, and the API answers 401.

Tokens are verified against the state directory's secret (``rostersync.api.tokens``),
created on first start. Requests are served on several threads; ``AdminApi.handle`` lets
one through the resolver at a time (Powertools keeps the current event on the class), and
the pipeline's executions run on moto's threads meanwhile.

``GET /console/`` serves the admin console's static pages (``rostersync.console``) from
the same origin as the API; every other path goes to the API.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from rostersync.api.app import AdminApi
from rostersync.api.config import ApiSettings, api_settings, build_services
from rostersync.api.tokens import InvalidToken, TokenVerifier
from rostersync.application.runs import RunLauncher
from rostersync.application.sftp_users import (
    SftpLogin,
    SftpUserConflict,
    SftpUserInvalid,
    SftpUserMissing,
    SftpUserSet,
    generated_password,
)
from rostersync.console import SECURITY_HEADERS, console_file, is_console_path
from rostersync.local.sftp import SftpUserError, sftp_user_add, sftp_user_remove, sftp_users
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys

#: API Gateway refuses larger payloads; so does the local server (413).
MAX_BODY_BYTES: Final = 10 * 1024 * 1024
STAGE: Final = "local"


@dataclass
class LocalLambdaContext:
    """The parts of a Lambda context the API and Powertools read."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "local-ApiFunction"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:local-ApiFunction"
    #: API Gateway's integration timeout.
    deadline: float = field(default_factory=lambda: time.monotonic() + 29)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _single_and_multi(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # as API Gateway does: the last value wins
        multi.setdefault(name, []).append(value)
    return single, multi


def proxy_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    claims: dict[str, str] | None,
    *,
    request_id: str,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The REST proxy event API Gateway would send for this request (``target`` is the
    request line's path and query)."""
    split = urlsplit(target)
    path = unquote(split.path) or "/"
    query = parse_qsl(split.query, keep_blank_values=True)
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(query)
    try:
        text: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    context: dict[str, Any] = {
        "accountId": "000000000000",
        "apiId": "local",
        "stage": STAGE,
        "path": path,
        "resourcePath": "/{proxy+}",
        "httpMethod": method,
        "requestId": request_id,
        "requestTimeEpoch": int(time.time() * 1000),
        "protocol": "HTTP/1.1",
        "identity": {"sourceIp": source_ip},
    }
    if claims is not None:
        context["authorizer"] = {"claims": claims}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": context,
        "body": text,
        "isBase64Encoded": encoded,
    }


class LocalApiServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one ``AdminApi`` and one token secret."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: AdminApi, verifier: TokenVerifier) -> None:
        super().__init__(address, _ApiRequestHandler)
        self.api = api
        self.verifier = verifier

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _ApiRequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    # An answer goes out as its headers, then its body: with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers, 40 ms on Linux (runs and
    # settings answers, one after another: 44 ms each; 1.4 and 0.9 ms without it).
    disable_nagle_algorithm = True

    def _dispatch(self) -> None:
        request_id = str(uuid.uuid4())
        length_header = self.headers.get("Content-Length")
        if length_header is None and self.headers.get("Transfer-Encoding"):
            self._reply(411, {"error": "send a Content-Length"}, close=True)
            return
        try:
            length = int(length_header or 0)
        except ValueError:
            self._reply(400, {"error": "bad Content-Length"}, close=True)
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._reply(413, {"error": "request body too large"}, close=True)
            return
        body = self.rfile.read(length) if length else b""
        if self.command in {"GET", "HEAD"} and is_console_path(self.path):
            self._serve_console()
            return
        event = proxy_event(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            self._claims(),
            request_id=request_id,
            source_ip=str(self.client_address[0]),
        )
        response = self.server.api.handle(event, LocalLambdaContext(aws_request_id=request_id))
        self._write(response)

    def _serve_console(self) -> None:
        """The console's static pages, beside the API (the same origin)."""
        found = console_file(self.path)
        if found is None:
            self._reply(404, {"error": "no such console page"})
            return
        self.send_response(301 if found.location else 200)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if found.location:
            self.send_header("Location", found.location)
        else:
            self.send_header("Content-Type", found.content_type)
        self.send_header("Content-Length", str(len(found.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(found.body)

    def _claims(self) -> dict[str, str] | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            return self.server.verifier.verify(token.strip())
        except InvalidToken:
            return None  # as a Cognito authorizer would, refuse: the API answers 401

    def _write(self, response: dict[str, Any]) -> None:
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        self.send_response(int(response.get("statusCode", 500)))
        sent: set[str] = set()
        for name, values in (response.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(name, str(value))
            sent.add(name.lower())
        for name, value in (response.get("headers") or {}).items():
            if name.lower() not in sent:
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reply(self, status: int, body: dict[str, Any], *, close: bool = False) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # AdminApi.handle logs each request (ids only); the default line would repeat the
        # query string on stderr.
        return

    # Every method goes to the API, which answers 404 for those it has no route for.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch
    do_TRACE = do_QUERY = _dispatch


class LocalSftpUsers:
    """The local SFTP drop box's users, in ``<state>/sftp-users.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def _all(self) -> dict[str, SftpLogin]:
        return {
            u.username: SftpLogin(u.username, u.tenant, u.has_password, u.public_keys)
            for u in sftp_users(self.state_dir)
        }

    def list(self, tenant: str) -> list[SftpLogin]:
        keys.check_tenant(tenant)
        return [user for user in self._all().values() if user.tenant == tenant]

    def _set(
        self,
        tenant: str,
        username: str,
        public_key: str | None,
        generate_password: bool,
        *,
        rotate: bool,
    ) -> SftpUserSet:
        keys.check_tenant(tenant)
        public_key = (public_key or "").strip() or None
        if not public_key and not generate_password:
            raise SftpUserInvalid("give a public key, ask for a generated password, or both")
        existing = self._all().get(username)
        if rotate and (existing is None or existing.tenant != tenant):
            raise SftpUserMissing(f"no SFTP user {username} for tenant {tenant}")
        if not rotate and existing is not None:
            raise SftpUserConflict(
                f"the SFTP user name {username} is taken; rotate it, or choose another name"
            )
        password = generated_password() if generate_password else None
        try:
            added = sftp_user_add(
                self.state_dir,
                tenant,
                username,
                password=password,
                public_key=public_key,
                rotate=rotate,
            )
        except SftpUserError as exc:
            message = str(exc)
            if "another tenant" in message or "already exists" in message:
                raise SftpUserConflict(
                    f"the SFTP user name {username} is taken; choose another name"
                ) from None
            raise SftpUserInvalid(message) from None
        login = SftpLogin(added.username, added.tenant, added.has_password, added.public_keys)
        return SftpUserSet(user=login, password=password)

    def add(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet:
        return self._set(tenant, username, public_key, generate_password, rotate=False)

    def rotate(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet:
        return self._set(tenant, username, public_key, generate_password, rotate=True)

    def remove(self, tenant: str, username: str) -> None:
        keys.check_tenant(tenant)
        existing = self._all().get(username)
        if existing is None or existing.tenant != tenant:
            raise SftpUserMissing(f"no SFTP user {username} for tenant {tenant}")
        sftp_user_remove(self.state_dir, username)


def make_server(
    host: str,
    port: int,
    *,
    state_dir: Path,
    deps: Deps,
    launcher: RunLauncher,
    settings: ApiSettings | None = None,
) -> LocalApiServer:
    """An HTTP server for the admin API on ``host:port`` (0: any free port), verifying
    tokens with ``state_dir``'s secret, starting runs with ``launcher``, and keeping the
    SFTP drop box's users in ``state_dir``."""
    services = build_services(
        settings or api_settings(), deps, launcher, sftp_users=LocalSftpUsers(state_dir)
    )
    server = LocalApiServer((host, port), AdminApi(services), TokenVerifier(state_dir))
    logger().info("admin API listening", extra={"url": server.url})
    return server
