"""Authenticators: httpx ``Auth`` flows that add credentials to each request.

The credential lives only in the authenticator object, is set on the request as it is
sent, and is never part of a repr, a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` on every request (Clever district-app tokens)."""

    def __init__(self, token: str) -> None:
        if not token or any(c in token for c in "\r\n"):
            raise ValueError("a bearer token must be a non-empty single line")
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"
