"""Logger, metrics and tracer, shared by every function.

Logs are structured JSON on stderr with ``tenant``, ``run`` and ``step`` keys. They carry
ids and counts only: never a roster record or an event body (children's personal data).
Metrics are CloudWatch EMF lines (namespace ``rostersync``): per step its time and its
counts (records per entity, actions, issues, holds, refused archives). The tracer sends
segments to X-Ray on Lambda and is off elsewhere. The local runtime turns metrics off
(``POWERTOOLS_METRICS_DISABLED``): its command output is on stdout.
"""

from __future__ import annotations

import contextvars
import logging
import resource
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from functools import lru_cache, wraps
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

Handler = TypeVar("Handler", bound=Callable[..., Any])
Result = TypeVar("Result")


@lru_cache(maxsize=1)
def logger() -> Logger:
    """The process logger (stderr, so command output on stdout stays clean)."""
    return Logger(service="rostersync", logger_handler=logging.StreamHandler(sys.stderr))


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    return Metrics(namespace="rostersync", service="rostersync")


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    return Tracer(service="rostersync")


#: Whether this process has run an invocation (the first one is a cold start).
_warm = False


def observed(handler: Handler) -> Handler:
    """A Lambda handler with the invocation's context on its log lines, a trace segment
    and its metrics flushed when it returns.

    The invocation's keys (the function, its request id, ``cold_start``, and the
    ``tenant``/``run``/``step`` a step adds with ``log_keys``) are the context's, in a
    copy of it the invocation runs in: they are on every line it logs and on no other.
    The local runtime runs several invocations and the API's requests in threads of one
    process; Powertools' ``inject_lambda_context`` keeps its keys for the whole process,
    so a request's line would name the last function and tenant that ran."""
    traced = tracer().capture_lambda_handler(handler, capture_response=False)
    measured = metrics().log_metrics(traced)

    def invocation(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        global _warm
        cold, _warm = not _warm, True
        logger().thread_safe_append_keys(
            cold_start=cold, **build_lambda_context_model(context).__dict__
        )
        return measured(event, context, *args, **kwargs)

    @wraps(handler)
    def in_own_context(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        return contextvars.copy_context().run(invocation, event, context, *args, **kwargs)

    return cast(Handler, in_own_context)


def log_keys(**keys: Any) -> None:
    """Keys on the log lines of the running invocation from here on (``observed``)."""
    logger().thread_safe_append_keys(**keys)


def submit_with_log_keys(
    pool: Executor, fn: Callable[..., Result], /, *args: Any
) -> Future[Result]:
    """``pool.submit``, the task logging with the submitter's keys (``log_keys``): a
    thread of a pool does not share its submitter's context."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


def peak_mb() -> int:
    """The peak resident memory of this process so far, in MB: an invocation's own where
    it has a process of its own (Lambda; ``LOCAL_INVOKE=process``), else an upper bound."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def record_step(step: str, elapsed_ms: int, counts: Mapping[str, Any]) -> None:
    """A step's metrics: its time and every count it reported (``stage_archive``,
    ``normalize_users``, ``normalize_issues``, ``stage_held``...). Nothing is kept where
    metrics are off: Powertools would hold them in memory, or print a full set anyway."""
    if is_metrics_disabled():
        return
    sink = metrics()
    sink.add_metric(name=f"{step}_ms", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    for name, value in counts.items():
        if isinstance(value, int) and not isinstance(value, bool):
            sink.add_metric(name=f"{step}_{name}", unit=MetricUnit.Count, value=value)


def record_failure(step: str, error_type: str) -> None:
    if is_metrics_disabled():
        return
    metrics().add_metric(name=f"{step}_failed", unit=MetricUnit.Count, value=1)
    metrics().add_metadata(key="error_type", value=error_type)
