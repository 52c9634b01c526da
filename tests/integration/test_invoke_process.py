"""With ``LOCAL_INVOKE=process`` every Lambda invocation runs in a process of its own, as
on Lambda: two days of a district commit what they commit with the handlers in the
runtime's process, none of the handlers runs there, and the report gives each step's and
each commit chunk's own peak memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rostersync.pipeline.steps as steps
from rostersync.generator import generate_district, mutate_next_day
from rostersync.local.runtime import LocalCloud
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.snapshot import iter_snapshot_lines
from tests.integration.days import committed_days

TENANT = "district"


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("district")
    generate_district(root / "day1", students=60, seed=3)
    mutate_next_day(root / "day1", root / "day2", seed=4, rate=0.03)
    return [root / "day1", root / "day2"]


def _synced(state: Path, days: list[Path]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    reports, sizes = [], {}
    for deps, outcome in committed_days(state, TENANT, days):
        assert outcome.report is not None
        reports.append(outcome.report)
        for entity in ENTITY_ORDER:
            lines = iter_snapshot_lines(deps.store, TENANT, outcome.run_id, entity)
            sizes[entity.value] = sum(1 for _ in lines)
    return reports, sizes


def test_each_invocation_in_a_process_of_its_own(
    tmp_path: Path, days: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_threads, threads_sizes = _synced(tmp_path / "threads", days)

    calls: list[str] = []
    original = steps.run_step

    def watched(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(steps, "run_step", watched)
    monkeypatch.setenv("LOCAL_INVOKE", "process")
    in_processes, processes_sizes = _synced(tmp_path / "processes", days)

    assert calls == [], "no step ran in the runtime's own process"
    assert processes_sizes == threads_sizes
    for threaded, alone in zip(in_threads, in_processes, strict=True):
        assert alone["counts"] == threaded["counts"]
        assert alone["issues_by_severity"] == threaded["issues_by_severity"]
        assert set(alone["peak_mb"]) >= {"fetch", "normalize", "match", "stage"}
        assert all(mb > 0 for mb in alone["peak_mb"].values())
        chunks = alone.get("chunks") or []
        assert chunks and all(chunk["peak_mb"] > 0 for chunk in chunks)


def test_process_invocations_need_the_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_INVOKE", "process")
    with pytest.raises(ValueError, match="embedded store"), LocalCloud(None):
        pass
    monkeypatch.setenv("LOCAL_INVOKE", "fork")
    with pytest.raises(ValueError, match="LOCAL_INVOKE"), LocalCloud(None):
        pass
