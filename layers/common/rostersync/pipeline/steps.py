"""The adapter between a Lambda event and a pipeline step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rostersync.observability import logger
from rostersync.pipeline.commit import commit
from rostersync.pipeline.contracts import RunState
from rostersync.pipeline.deps import Deps, default_deps
from rostersync.pipeline.fetch import fetch
from rostersync.pipeline.match import match
from rostersync.pipeline.normalize import normalize
from rostersync.pipeline.stage import stage

Step = Callable[[RunState, Deps], RunState]

STEPS: dict[str, Step] = {
    "fetch": fetch,
    "normalize": normalize,
    "match": match,
    "stage": stage,
    "commit": commit,
}


def run_step(name: str, event: dict[str, Any], deps: Deps | None = None) -> dict[str, Any]:
    """Parse the state, run the step, time it, return the new state as JSON."""
    state = RunState.model_validate(event)
    log = logger()
    log.append_keys(tenant=state.tenant, run=state.run_id, step=name)
    started = time.monotonic()
    try:
        result = STEPS[name](state, deps or default_deps())
    except Exception as exc:
        log.warning("step failed", extra={"error_type": type(exc).__name__})
        raise
    elapsed = int((time.monotonic() - started) * 1000)
    result.counts.setdefault("timings_ms", {}).setdefault(name, elapsed)
    log.info("step done", extra={"counts": result.counts.get(name, {}), "ms": elapsed})
    return result.model_dump(mode="json")


def lambda_handler_for(name: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A Lambda handler running the named step with the process's default dependencies."""

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return run_step(name, event)

    handler.__name__ = f"{name}_handler"
    return handler
