"""The HTTP client every API source shares: one base URL, one authenticator, a rate
limit and a concurrency cap per source, retries with backoff, errors as rostersync's own.

Only source clients touch httpx. Requests are logged by path, status and attempt: never
a header, a query's secrets (there are none: credentials go in headers) or a body.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from rostersync.observability import logger
from rostersync.sources.http.errors import (
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceRateLimited,
    SourceRequestError,
    SourceResponseError,
    SourceUnavailable,
)
from rostersync.sources.http.pagination import PageRequest, Paginator
from rostersync.sources.http.retry import (
    RETRY_STATUSES,
    Clock,
    RateLimiter,
    RetryPolicy,
    Sleep,
    server_wait,
)

ItemsOf = Callable[[Any], list[Any]]


@dataclass(frozen=True)
class Page:
    """One page as received: the request sent, the status, the body's exact bytes and
    the body parsed."""

    number: int
    request: PageRequest
    status: int
    content: bytes
    body: Any
    items: list[Any]


class HttpClient:
    """Calls one source. ``sleep``, ``clock`` (monotonic), ``wall_clock`` (Unix time, for
    ``Retry-After`` dates and ``X-RateLimit-Reset``) and ``jitter`` are injectable."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        name: str = "source",
        retry: RetryPolicy | None = None,
        rate_limit: RateLimiter | None = None,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        sleep: Sleep = time.sleep,
        wall_clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.retry = retry or RetryPolicy()
        self.rate_limit = rate_limit
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.jitter = jitter
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._base = httpx.URL(base_url)
        self._http = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", **(headers or {})},
            follow_redirects=False,  # a redirect must not carry the credentials elsewhere
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _check_origin(self, request: PageRequest) -> None:
        url = httpx.URL(request.url)
        if url.is_absolute_url and (url.scheme, url.host, url.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise SourceResponseError(
                f"{self.name}: a next link points to another host ({url.host}); not followed"
            )

    def get(self, request: PageRequest) -> httpx.Response:
        """GET ``request`` with retries; a 2xx response, or one of the source errors."""
        self._check_origin(request)
        path = httpx.URL(request.url).path
        log = logger()
        attempt = 0
        while True:
            attempt += 1
            if self.rate_limit is not None:
                self.rate_limit.acquire()
            try:
                with self._slots:
                    response = self._http.get(request.url, params=list(request.params))
            except httpx.TransportError as exc:
                failure: Exception = SourceUnavailable(
                    f"{self.name}: GET {path}: {type(exc).__name__}"
                )
                wait = self.retry.backoff(attempt, self.jitter())
                status = None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                failure = _status_error(self.name, path, status)
                if status not in RETRY_STATUSES:
                    raise failure
                asked = server_wait(response.headers, self.wall_clock())
                wait = asked if asked is not None else self.retry.backoff(attempt, self.jitter())
                if asked is not None and asked > self.retry.max_wait:
                    raise SourceRateLimited(
                        f"{self.name}: GET {path}: asked to wait {asked:.0f}s "
                        f"(more than {self.retry.max_wait:.0f}s)"
                    )
                if status == 429 and self.rate_limit is not None:
                    self.rate_limit.hold_until(self.rate_limit.clock() + wait)
            if attempt >= self.retry.attempts:
                raise failure
            log.warning(
                "source request retried",
                extra={
                    "source": self.name,
                    "path": path,
                    "status": status,
                    "attempt": attempt,
                    "wait_s": round(wait, 3),
                },
            )
            self.sleep(wait)

    def get_page(self, request: PageRequest, items_of: ItemsOf, number: int = 1) -> Page:
        """One page: the response's bytes and body, and its items (``items_of`` raises a
        ``SourceResponseError`` when the body lacks them)."""
        response = self.get(request)
        body = self._json(request, response, number)
        return Page(number, request, response.status_code, response.content, body, items_of(body))

    def _json(self, request: PageRequest, response: httpx.Response, number: int) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            path = httpx.URL(request.url).path
            raise SourceResponseError(f"{self.name}: GET {path} page {number}: not JSON") from None

    def pages(
        self, request: PageRequest, paginator: Paginator, items_of: ItemsOf
    ) -> Iterator[Page]:
        """Every page of a listing, first to last, as the paginator leads."""
        following: PageRequest | None = paginator.first(request)
        seen: set[PageRequest] = set()
        number = 0
        while following is not None:
            if following in seen:
                raise SourceResponseError(
                    f"{self.name}: {httpx.URL(following.url).path}: paging loops back"
                )
            seen.add(following)
            number += 1
            current = following
            response = self.get(current)
            body = self._json(current, response, number)
            items = items_of(body)
            yield Page(number, current, response.status_code, response.content, body, items)
            following = paginator.next(current, response, body, len(items))


def _status_error(name: str, path: str, status: int) -> SourceError:
    message = f"{name}: GET {path}: HTTP {status}"
    error: SourceError
    if status == 429:
        error = SourceRateLimited(message)
    elif status in (401, 403):
        error = SourceAuthError(message)
    elif status == 404:
        error = SourceNotFound(message)
    elif status == 408 or (status >= 500 and status != 501):
        error = SourceUnavailable(message)
    else:
        error = SourceRequestError(message)
    error.status = status
    return error
