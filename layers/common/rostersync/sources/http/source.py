"""What every HTTP source shares: its clocks, sleep, jitter, retry policy and transport
as parameters, so tests run instantly and can answer in process."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx

from rostersync.sources.base import ConnectionCheck, SecretField, SecretReader, SourceSpec
from rostersync.sources.http.client import HttpClient
from rostersync.sources.http.retry import RateLimiter, RetryPolicy


class HttpSource:
    """The base of the HTTP sources (Clever, OneRoster REST, Wonde, Assembly)."""

    secret_fields: ClassVar[tuple[SecretField, ...]] = ()

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.sleep = sleep
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.jitter = jitter
        self.retry = retry or RetryPolicy()
        self.transport = transport

    def http_client(
        self,
        base_url: str,
        auth: httpx.Auth,
        *,
        name: str,
        requests_per_minute: int | None,
        max_concurrency: int,
        **options: Any,
    ) -> HttpClient:
        """A client with this source's clocks, retry policy and transport, limited to
        ``requests_per_minute`` (when given) and ``max_concurrency`` requests at once."""
        limit = None
        if requests_per_minute is not None:
            limit = RateLimiter(requests_per_minute, 60.0, clock=self.monotonic, sleep=self.sleep)
        return HttpClient(
            base_url,
            auth=auth,
            name=name,
            retry=options.pop("retry", None) or self.retry,
            rate_limit=limit,
            max_concurrency=max_concurrency,
            sleep=self.sleep,
            wall_clock=self.wall_clock,
            jitter=self.jitter,
            transport=self.transport,
            **options,
        )

    def check_connection(
        self, spec: SourceSpec, tenant: str, secrets: SecretReader
    ) -> ConnectionCheck:
        """Whether every secret the source declares is stored; the next sync is the first
        call that uses them (a source with a cheap call to try them overrides this)."""
        for field in self.secret_fields:
            name = field.secret_name(spec)
            if not secrets.get_secret(tenant, name):
                return ConnectionCheck(False, f"no secret stored under {name!r}")
        return ConnectionCheck(True, "stored; the next sync is the first to use it")
