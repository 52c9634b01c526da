"""Run notifications: one event on the bus at the end of every run (``run.committed``,
``run.held``, ``run.prepared``; ``run.failed`` comes from the state machine), except a
committed run that changed nothing, which is silent unless the tenant's
``announce_unchanged_runs`` asks for it. The template routes ``run.*`` events to the
notifications topic (email). Ids and counts only, never a record."""

from __future__ import annotations

from typing import Any

from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import action_totals
from rostersync.pipeline.tenant_settings import load_settings


def changed_nothing(report: dict[str, Any]) -> bool:
    """Whether a run's change set was empty: no action applied, refused, unticked or
    held, and no hold."""
    return not (
        any(action_totals(report.get("counts")).values())
        or any(int(r.get("archive", 0)) for r in (report.get("refused") or {}).values())
        or any(action_totals(report.get("excluded")).values())
        or report.get("hold")
        or report.get("held")
    )


def notify_run(
    deps: Deps,
    tenant: str,
    run_id: str,
    status: str,
    report: dict[str, Any],
    *,
    change_files: list[str] | None = None,
) -> None:
    """``change_files``: the run had more changes than the tenant's change-event limit,
    so no change events were sent; the app reads the changes from these files."""
    if (
        status == "committed"
        and changed_nothing(report)
        and not load_settings(deps, tenant).announce_unchanged_runs
    ):
        return
    totals = action_totals(report.get("counts"))
    detail: dict[str, Any] = {
        # One per run and status: a repeat (a retried step) has the same id.
        "event_id": f"{tenant}:{run_id}:run.{status}",
        "tenant": tenant,
        "run_id": run_id,
        "status": status,
        "counts": totals,
        "issues": int(report.get("issues_total") or 0),
        "hold": [h.get("check") for h in report.get("hold") or []],
        "change_events": change_files is None,
    }
    if change_files is not None:
        detail["change_files"] = change_files
    deps.events.publish([(f"run.{status}", detail)])
