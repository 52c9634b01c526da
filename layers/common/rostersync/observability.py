"""Logger, metrics and tracer, shared by every function.

Logs are structured JSON on stderr with ``tenant``, ``run`` and ``step`` keys. They carry
ids and counts only: never a roster record or an event body (children's personal data).
Metrics are CloudWatch EMF lines (namespace ``rostersync``): per step its time and its
counts (records per entity, actions, issues, holds, refused archives). The tracer sends
segments to X-Ray on Lambda and is off elsewhere. The local runtime turns metrics off
(``POWERTOOLS_METRICS_DISABLED``): its command output is on stdout.
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

Handler = TypeVar("Handler", bound=Callable[..., Any])


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


def observed(handler: Handler) -> Handler:
    """A Lambda handler with the logger's context, a trace segment and its metrics
    flushed when it returns."""
    traced = tracer().capture_lambda_handler(handler, capture_response=False)
    measured = metrics().log_metrics(traced)
    return cast(Handler, logger().inject_lambda_context(measured))


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
