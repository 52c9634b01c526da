"""Every handler logs, traces and emits its metrics; metrics are counts, never records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rostersync.observability import metrics, observed, record_failure, record_step

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
