"""What every HTTP source shares: its clocks, sleep, jitter, retry policy and transport
as parameters, so tests run instantly and can answer in process."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from rostersync.sources.http.retry import RetryPolicy


class HttpSource:
    """The base of the HTTP sources (Clever, OneRoster REST, Wonde, Assembly)."""

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
