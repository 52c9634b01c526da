"""The adapter between a Lambda event and a pipeline step.

Every step records its progress on the run (``progress: {step, operation, counts}``), so
``GET /tenants/{t}/runs/{run}`` shows what a running run is doing. The state machine's
Retry names ``TransientError`` and ``StorageUnavailable``: a transient error of another
class (a source's ``RateLimited``) is raised again as ``TransientError`` with its class
named in the message, so every transient error is retried.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rostersync.errors import RostersyncError, StorageUnavailable, TransientError
from rostersync.observability import (
    log_keys,
    logger,
    observed,
    peak_mb,
    record_failure,
    record_step,
)
from rostersync.pipeline.commit import apply_chunk_event, begin_commit, finish_commit
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps, default_deps
from rostersync.pipeline.fetch import fetch
from rostersync.pipeline.match import match
from rostersync.pipeline.normalize import normalize, normalize_next, normalize_part_event
from rostersync.pipeline.stage_fanout import begin_stage, finish_stage, run_part_event
from rostersync.records import RunProgress, RunUpdate, utc_now

Step = Callable[[RunState, Deps], RunState]

#: A step allocates millions of small lists and tuples (id lines, index entries) and
#: makes few reference cycles: with the interpreter's default thresholds the cycle
#: collector runs thousands of times over a growing heap, which measured as a third of
#: loading a baseline index. Collect young objects less often; what is loaded at import
#: is frozen out of every collection.
_GC_THRESHOLDS = (50_000, 20, 20)
gc.freeze()
gc.set_threshold(*_GC_THRESHOLDS)

STEPS: dict[str, Step] = {
    "fetch": fetch,
    "normalize": normalize,
    "normalize_next": normalize_next,
    "match": match,
    "stage": begin_stage,
    "stage_finish": finish_stage,
    "commit": begin_commit,
    "commit_finish": finish_commit,
}

#: Transient errors the state machine's Retry names as they are.
_RETRIED_BY_NAME = (TransientError, StorageUnavailable)


#: Counts that are about the steps, not the run's progress.
_NOT_PROGRESS = frozenset({"timings_ms", "peak_mb"})


def _progress(deps: Deps, state: RunState, step: str) -> None:
    counts = {name: c for name, c in state.counts.items() if name not in _NOT_PROGRESS}
    try:
        deps.runs.update(
            state.tenant,
            state.run_id,
            RunUpdate(
                progress=RunProgress(
                    step=step,
                    operation=state.operation,
                    since=utc_now(),
                    counts=counts,
                    runner=deps.settings.local_runner,
                )
            ),
        )
    except RostersyncError:
        # Progress is for people watching; a failure to note it must not fail the run.
        logger().warning("progress not recorded", extra={"step": step})


@contextmanager
def _failures_noted(name: str) -> Iterator[None]:
    """Log and count a step's failure; raise a transient error of another class again as
    ``TransientError``, which the state machine's Retry names."""
    log = logger()
    try:
        yield
    except TransientError as exc:
        log.warning("step failed, transient", extra={"error_type": type(exc).__name__})
        record_failure(name, type(exc).__name__)
        if type(exc) in _RETRIED_BY_NAME:
            raise
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        log.warning("step failed", extra={"error_type": type(exc).__name__})
        record_failure(name, type(exc).__name__)
        raise


def run_step(
    name: str, event: dict[str, Any], deps: Deps | None = None, step: Step | None = None
) -> dict[str, Any]:
    """Parse the state, run the step, time it, return the new state as JSON."""
    state = RunState.model_validate(event)
    deps = deps or default_deps()
    log = logger()
    log_keys(tenant=state.tenant, run=state.run_id, step=name)
    started = time.monotonic()
    _progress(deps, state, name)
    with _failures_noted(name):
        result = (step or STEPS[name])(state, deps)
    elapsed = int((time.monotonic() - started) * 1000)
    result.counts.setdefault("timings_ms", {}).setdefault(name, elapsed)
    result.counts.setdefault("peak_mb", {})[name] = peak_mb()
    log.info("step done", extra={"counts": result.counts.get(name, {}), "ms": elapsed})
    record_step(name, elapsed, result.counts.get(name, {}))
    return result.model_dump(mode="json")


def lambda_handler_for_step(
    name: str, step: Step
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler running ``step`` with the process's default dependencies."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return run_step(name, event, step=step)

    handler.__name__ = f"{name}_handler"
    return observed(handler)


def lambda_handler_for(name: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler running the named pipeline step."""
    return lambda_handler_for_step(name, STEPS[name])


def _map_item_handler(
    name: str, run: Callable[[dict[str, Any], Deps], dict[str, Any]]
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of one Distributed Map item of a step (``name``): ``run``
    gives the item's marker, which counts its ``rows``."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        log_keys(tenant=event.get("tenant"), run=event.get("run_id"), step=name)
        started = time.monotonic()
        with _failures_noted(name):
            marker = run(event, default_deps())
        elapsed = int((time.monotonic() - started) * 1000)
        record_step(name, elapsed, {"rows": int(marker.get("rows", 0))})
        return marker

    handler.__name__ = f"{name}_handler"
    return observed(handler)


def commit_chunk_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of one commit chunk (a Distributed Map item)."""
    return _map_item_handler("commit_chunk", apply_chunk_event)


def normalize_part_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of one normalize part (a Distributed Map item)."""
    return _map_item_handler("normalize_part", normalize_part_event)


def stage_part_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda handler of one stage part (a Distributed Map item)."""
    return _map_item_handler("stage_part", run_part_event)
