"""Days of a district synced one after the other, as a user runs them."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.application.sync import SyncOutcome, ensure_tenant
from rostersync.config import stack_settings
from rostersync.generator import generate_district, mutate_next_day
from rostersync.local.runtime import LocalCloud
from rostersync.local.session import run_sync
from rostersync.models import ENTITY_ORDER
from rostersync.pipeline.deps import Deps, build_deps
from rostersync.storage import keys


def committed_days(
    state: Path, tenant: str, days: list[Path], *, moto: bool = False
) -> Iterator[tuple[Deps, SyncOutcome]]:
    """Each day's bundle synced in turn on the state directory ``state`` (``moto``: in
    moto's S3 and DynamoDB, the reports under ``state``), each run committed (else the
    test fails)."""
    with LocalCloud(None if moto else state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, tenant, create=True)
        for folder in days:
            outcome, _ = run_sync(cloud, deps, tenant, folder, state / "reports")
            assert outcome.status == "committed", outcome.error
            yield deps, outcome


def rewrite_csv(
    folder: Path, name: str, change: Callable[[dict[str, str]], dict[str, str] | None]
) -> None:
    """Rewrite one CSV of a bundle row by row (``change`` returns the row or None)."""
    path = folder / name
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in (change(dict(row)) for row in reader) if r is not None]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def three_days(root: Path) -> list[Path]:
    """A district's bundles for three days under ``root``. Day 2: renames, new students,
    leavers, moved enrollments. Day 3: day 1 again (day 2's leavers come back:
    reactivations; its new students leave), one student re-issued under a new id
    (matched to the same child: a re-link), one class deleted by status (an archive)."""
    generate_district(root / "day1", students=80, seed=5)
    mutate_next_day(root / "day1", root / "day2", seed=6, rate=0.05)
    shutil.copytree(root / "day1", root / "day3")
    with (root / "day3" / "users.csv").open(newline="", encoding="utf-8") as fh:
        student = next(r["sourcedId"] for r in csv.DictReader(fh) if r["role"] == "student")
    for path in (root / "day3").glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(student, student + "-v2"), encoding="utf-8")
    deleted = {"done": False}

    def delete(row: dict[str, str]) -> dict[str, str]:
        if not deleted["done"]:
            row["status"] = "tobedeleted"
            deleted["done"] = True
        return row

    rewrite_csv(root / "day3", "classes.csv", delete)
    return [root / "day1", root / "day2", root / "day3"]


#: Fields of directory items and links that name the run or the moment, not the record.
VOLATILE = frozenset({"run_id", "linked_at"})


def _stable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in VOLATILE}


def change_sets(deps: Deps, tenant: str, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """A run's change files per entity, sorted, without the fields that name the run or
    the moment: two syncs of the same days compare equal."""
    return {
        e.value: sorted(
            (_stable(a) for a in deps.store.iter_jsonl(keys.changes_key(tenant, run_id, e))),
            key=lambda a: (str(a["action"]), str(a["source_id"])),
        )
        for e in ENTITY_ORDER
    }


def directory_and_links(deps: Deps, tenant: str) -> dict[str, Any]:
    """The tenant's directory items and links per entity, in key order, without the
    fields that name the run or the moment: two syncs of the same days compare equal."""
    directory = {
        e.value: sorted(
            (_stable(i.flat()) for i in deps.directory.iter_entity(tenant, e.value)),
            key=lambda i: str(i["target_id"]),
        )
        for e in ENTITY_ORDER
    }
    links = {
        e.value: sorted(
            (_stable(i) for i in deps.links.iter_entity(tenant, e.value)),
            key=lambda i: (str(i["source_system"]), str(i["source_id"])),
        )
        for e in ENTITY_ORDER
    }
    return {"directory": directory, "links": links}


def sync_days(
    state: Path,
    tenant: str,
    days: list[Path],
    day: Callable[[Deps, str, dict[str, Any]], dict[str, Any]],
    review: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """Each day synced in turn (committed, held or prepared; the days numbered in
    ``review``, from 0, stop at prepared): per day what ``day`` gives of the run (deps,
    run id, report), the states it went through, its report and its run id."""
    out: dict[str, Any] = {"days": [], "states": [], "reports": [], "runs": []}
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        ensure_tenant(deps, tenant, create=True)
        for number, folder in enumerate(days):
            outcome, _ = run_sync(
                cloud, deps, tenant, folder, state / "reports", review=number in review
            )
            assert outcome.status in {"committed", "held", "prepared"}, outcome.error
            report = outcome.report or {}
            out["days"].append(day(deps, outcome.run_id, report))
            out["states"].append(outcome.states)
            out["reports"].append(report)
            out["runs"].append(outcome.run_id)
    return out


def inline_and_fanned(
    factory: pytest.TempPathFactory,
    sync: Callable[[Path], dict[str, Any]],
    environment: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """``sync`` on a state of its own as configured, then on another with
    ``environment`` set (the settings that fan a step out): both outcomes, and the
    second's state directory."""
    inline = sync(factory.mktemp("inline"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        stack_settings.cache_clear()
        fanned_state = factory.mktemp("fanned")
        try:
            fanned = sync(fanned_state)
        finally:
            stack_settings.cache_clear()
    return inline, fanned, fanned_state
