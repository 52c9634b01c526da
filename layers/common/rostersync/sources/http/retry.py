"""When to retry a request, how long to wait, and how fast a source may be called.

Waits are computed from the response where the source says (``Retry-After`` in seconds
or as an HTTP date, ``X-RateLimit-Reset`` as a Unix time), otherwise by exponential
backoff with jitter. Clocks, sleeps and jitter are parameters so that tests run
instantly and deterministically.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], None]
Clock = Callable[[], float]

#: Statuses worth another try: throttling and the server errors that say "try later".
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a request and how long to wait between tries."""

    #: Tries in all, the first included.
    attempts: int = 5
    #: The first backoff; doubled at each further try, up to ``max_delay``.
    base_delay: float = 1.0
    max_delay: float = 30.0
    #: The longest wait a source may ask for; a longer ask fails the request (transient),
    #: leaving the retry to the state machine rather than holding a Lambda idle.
    max_wait: float = 120.0

    def backoff(self, attempt: int, jitter: float) -> float:
        """The wait after failed try number ``attempt`` (1-based), ``jitter`` in [0, 1):
        half the capped exponential delay plus a random part of the other half."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * jitter


def server_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The wait the source asked for, in seconds, or None if it did not say.

    ``Retry-After`` is seconds or an HTTP date; ``X-RateLimit-Reset`` is the Unix time the
    window resets (a value too small to be one is taken as seconds from now)."""
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        value = retry_after.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            moment = float(reset.strip())
        except ValueError:
            return None
        if moment < 1_000_000_000:  # seconds until the reset, not a timestamp
            return max(0.0, moment)
        return max(0.0, moment - now)
    return None


class RateLimiter:
    """At most ``requests`` calls in any ``per`` seconds (a sliding window), shared by
    every thread calling one source; ``hold_until`` pauses them all (a 429's reset)."""

    def __init__(
        self,
        requests: int,
        per: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if requests < 1 or per <= 0:
            raise ValueError("a rate limit needs at least one request per positive period")
        self.requests = requests
        self.per = per
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[float] = deque()
        self._held_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait until one more call fits in the window, then count it."""
        with self._lock:
            while True:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.per:
                    self._sent.popleft()
                wait = self._held_until - now
                if len(self._sent) >= self.requests:
                    wait = max(wait, self._sent[0] + self.per - now)
                if wait <= 0:
                    self._sent.append(now)
                    return
                self.sleep(wait)

    def hold_until(self, moment: float) -> None:
        """No call before ``moment`` (on this limiter's clock)."""
        with self._lock:
            self._held_until = max(self._held_until, moment)
