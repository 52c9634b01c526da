"""Every handler logs, traces and emits its metrics; metrics are counts, never records."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rostersync.observability import (
    log_keys,
    logger,
    metrics,
    observed,
    record_failure,
    record_step,
    submit_with_log_keys,
)

REPO = Path(__file__).resolve().parents[2]


class Context:
    function_name = "rostersync-test-stage"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "req-1"


def test_a_step_handler_emits_its_time_and_counts(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics().clear_metrics()

    @observed
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        record_step("stage", 42, {"add": 3, "held": 1, "note": "not a count"})
        return {"ok": True}

    assert handler({}, Context()) == {"ok": True}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (emf,) = [e for e in emitted if "_aws" in e]
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"stage_ms", "stage_add", "stage_held"}
    assert (emf["stage_ms"], emf["stage_add"], emf["stage_held"]) == ([42.0], [3.0], [1.0])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "rostersync"


def test_nothing_is_kept_while_metrics_are_off(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics().clear_metrics()
    record_step("stage", 42, {"add": 3})
    record_failure("stage", "BundleError")
    assert metrics().metric_set == {}


def test_a_failed_step_is_counted(monkeypatch, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    @observed
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        record_failure("fetch", "SourceAuthError")
        raise RuntimeError("boom")

    metrics().clear_metrics()
    with pytest.raises(RuntimeError):
        handler({}, Context())
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (emf,) = [e for e in emitted if "_aws" in e]
    assert emf["fetch_failed"] == [1.0] and emf["error_type"] == "SourceAuthError"


@pytest.mark.parametrize("function", sorted(p.parent.name for p in REPO.glob("functions/*/app.py")))
def test_every_handler_is_observed(function: str):
    text = (REPO / "functions" / function / "app.py").read_text()
    steps = "lambda_handler_for" in text  # step handlers are observed by construction
    direct = "@observed" in text or all(
        d in text for d in ("inject_lambda_context", "log_metrics", "capture_lambda_handler")
    )
    assert steps or direct, function


# ------------------------------------------------------------------ log keys


class _Lines(logging.Handler):
    """The rostersync logger's lines as Powertools formats them, parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logger().registered_formatter)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # ``handle`` holds the handler's lock around this.
        self.lines.append(json.loads(self.format(record)))

    def said(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["message"] == message]


@pytest.fixture
def lines() -> Iterator[_Lines]:
    """The lines logged during the test, from a logger without the keys earlier tests
    of the process left on it: a Lambda adapter's ``inject_lambda_context`` keeps its
    keys for the process, and a step called without its handler adds its keys to the
    calling thread's context (neither is an invocation under ``observed``)."""
    logger().clear_state()
    logger().thread_safe_clear_keys()
    handler = _Lines()
    underlying = logging.getLogger(logger().name)
    level = logger().log_level
    logger().setLevel("INFO")
    underlying.addHandler(handler)
    yield handler
    underlying.removeHandler(handler)
    logger().setLevel(level)


def _step_like(tenant: str, inside: threading.Barrier | None = None) -> Any:
    @observed
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        log_keys(tenant=event["tenant"], run="r-1", step="stage")
        if inside is not None:
            inside.wait(timeout=10)  # every invocation is under way
        logger().info("inside")
        if inside is not None:
            inside.wait(timeout=10)
        return {}

    return handler


def test_an_invocations_keys_are_on_its_lines_and_on_no_later_one(lines):
    _step_like("t-1")({"tenant": "t-1"}, Context())
    logger().info("after")

    (inside,) = lines.said("inside")
    assert inside["function_name"] == Context.function_name
    assert inside["function_request_id"] == Context.aws_request_id
    assert (inside["tenant"], inside["run"], inside["step"]) == ("t-1", "r-1", "stage")
    assert isinstance(inside["cold_start"], bool)
    (after,) = lines.said("after")
    assert not {"function_name", "function_request_id", "tenant", "run", "step"} & set(after)


def test_invocations_in_threads_of_one_process_keep_their_own_keys(lines):
    """The local runtime: invocations and API requests in threads of one process."""
    inside = threading.Barrier(3)
    threads = [
        threading.Thread(target=_step_like(t, inside), args=({"tenant": t}, Context()))
        for t in ("t-a", "t-b")
    ]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)
    logger().info("a request meanwhile")
    inside.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(line["tenant"] for line in lines.said("inside")) == ["t-a", "t-b"]
    (meanwhile,) = lines.said("a request meanwhile")
    assert "tenant" not in meanwhile and "function_name" not in meanwhile


def test_a_pools_task_logs_with_the_keys_of_who_submitted_it(lines):
    @observed
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        log_keys(tenant="t-pool")
        with ThreadPoolExecutor(max_workers=1) as pool:
            submit_with_log_keys(pool, logger().info, "a page retried").result()
            pool.submit(logger().info, "a bare task").result()
        return {}

    handler({}, Context())
    (retried,) = lines.said("a page retried")
    assert retried["tenant"] == "t-pool" and retried["function_name"] == Context.function_name
    (bare,) = lines.said("a bare task")
    assert "tenant" not in bare
