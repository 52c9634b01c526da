"""Days of a district synced one after the other, as a user runs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rostersync.application.sync import SyncOutcome, ensure_tenant
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.local.session import run_sync
from rostersync.pipeline.deps import Deps, build_deps


def committed_days(
    state: Path, tenant: str, days: list[Path]
) -> Iterator[tuple[Deps, SyncOutcome]]:
    """Each day's bundle synced in turn on the state directory ``state``, each run
    committed (else the test fails)."""
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, tenant, create=True)
        for folder in days:
            outcome, _ = run_sync(cloud, deps, tenant, folder, state / "reports")
            assert outcome.status == "committed", outcome.error
            yield deps, outcome
