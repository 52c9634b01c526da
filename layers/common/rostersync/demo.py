"""``rostersync demo``: a generated district synced on day 1, then its next day."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, TextIO

from rostersync.api.tokens import issue_token
from rostersync.application.review import (
    ActionFilter,
    Selection,
    list_actions,
    list_runs,
    set_included,
)
from rostersync.application.sync import WaitingLauncher, commit_prepared
from rostersync.errors import RostersyncError
from rostersync.generator import MutationSummary, generate_district, mutate_next_day
from rostersync.local.session import local_stack, print_counts, run_sync
from rostersync.models import ENTITY_ORDER, Entity
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.report import action_totals
from rostersync.storage import keys

TENANT = "demo-district"
SHOWN_PER_KIND = 4


def _describe(action: dict[str, Any]) -> str:
    record = action.get("record") or {}
    name = record.get("title") or record.get("name")
    if record.get("given_name"):
        name = f"{record['given_name']} {record['family_name']}"
    label = f"{action['entity']} {action['source_id']}" + (f" ({name})" if name else "")
    if action["action"] == "update":
        diffs = ", ".join(
            f"{field}: {before!r} → {after!r}"
            for field, (before, after) in action["changes"].items()
        )
        return f"{label}: {diffs}"
    return label


def show_changes(deps: Deps, run_id: str, out: TextIO) -> None:
    """A few of each kind of action the run committed, with field diffs for updates."""
    for kind in ("add", "update", "archive", "reactivate"):
        shown = total = 0
        lines = []
        for entity in ENTITY_ORDER:
            for action in deps.store.iter_jsonl(keys.changes_key(TENANT, run_id, entity)):
                if action["action"] != kind or not action["included"]:
                    continue
                total += 1
                if shown < SHOWN_PER_KIND:
                    lines.append(f"    {_describe(action)}")
                    shown += 1
        if total:
            out.write(f"  {kind} ({total}):\n" + "\n".join(lines) + "\n")
            if total > shown:
                out.write(f"    … and {total - shown} more (all in actions.csv)\n")


def _mutation_line(summary: MutationSummary) -> str:
    return (
        f"{len(summary.renamed)} renamed, {len(summary.added)} new students, "
        f"{len(summary.removed)} leavers, {len(summary.moved_enrollments)} moved enrollments, "
        f"{len(summary.guardian_changed)} changed guardians"
    )


#: Marks a state directory a demo made, so a later demo may empty it (and no other).
DEMO_MARKER = ".rostersync-demo"


def _fresh_state_dir(state: Path | None, name: str) -> Path:
    """The demo's state directory: a new temporary one unless ``state`` is given. A given
    folder is emptied only if an earlier demo made it; any other non-empty folder is
    refused, so a demo never deletes what it did not create."""
    if state is None:
        state_dir = Path(tempfile.mkdtemp(prefix=f"rostersync-{name}-"))
    else:
        state_dir = state
        if state_dir.exists() and any(state_dir.iterdir()):
            if not (state_dir / DEMO_MARKER).is_file():
                raise RostersyncError(
                    f"{state_dir} is not empty and no demo made it: give an empty or new "
                    "folder, or leave --state out for a fresh temporary one"
                )
            shutil.rmtree(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DEMO_MARKER).write_text("made by rostersync demo\n")
    return state_dir


def run_demo(*, state: Path | None, students: int, out: TextIO) -> int:
    """Generate, sync day 1, prepare day 2 for review, untick one action, commit it,
    show the history. Returns an exit code."""
    state_dir = _fresh_state_dir(state, "demo")
    with tempfile.TemporaryDirectory(prefix="rostersync-demo-") as tmp:
        work = Path(tmp)
        day1, day2 = work / "day1", work / "day2"
        stats = generate_district(day1, students=students, seed=1)
        summary = mutate_next_day(day1, day2, seed=2)
        out.write(
            f"Generated a district: {stats.schools} schools, {stats.students} students, "
            f"{stats.teachers} teachers, {stats.guardians} guardians, "
            f"{stats.rows.get('classes.csv', 0)} classes, "
            f"{stats.rows.get('enrollments.csv', 0)} enrollments\n"
        )
        out.write(f"Its next day: {_mutation_line(summary)}\n\n")
        with local_stack(state_dir) as (cloud, deps):
            out.write("== Day 1: the first sync, committed at once\n")
            first, report1 = run_sync(cloud, deps, TENANT, day1, state_dir, out=out)
            if first.status != "committed":
                out.write(f"day 1 failed: {first.error}\n")
                return 1
            print_counts(first.counts, out)

            out.write("\n== Day 2: the next day's bundle, prepared for review\n")
            second, report2 = run_sync(cloud, deps, TENANT, day2, state_dir, review=True, out=out)
            if second.status != "prepared":
                out.write(f"day 2 failed: {second.error}\n")
                return 1
            print_counts(second.counts, out)
            out.write("\nDay 2's changes:\n")
            show_changes(deps, second.run_id, out)

            updates = list_actions(
                deps, TENANT, second.run_id, ActionFilter(entity=Entity.USERS, action="update")
            ).actions
            if updates:
                skipped = updates[0]
                out.write(
                    f"\nThe admin unticks one action: {skipped['id']} ({_describe(skipped)})\n"
                )
                set_included(
                    deps,
                    TENANT,
                    second.run_id,
                    Selection(action_ids=[skipped["id"]]),
                    False,
                    "demo-admin",
                )
            report = commit_prepared(cloud, deps, TENANT, second.run_id, "demo-admin")
            out.write(f"Committed run {second.run_id}: {report['status']}\n")
            print_counts(report["counts"], out)

            out.write("\n== History\n")
            for run in list_runs(deps, TENANT):
                totals = action_totals(run.counts)
                out.write(
                    f"  {run.run_id}  {run.status:<10} {run.trigger}  "
                    + "  ".join(f"{a} {n}" for a, n in totals.items())
                    + "\n"
                )
            out.write(f"\nReports: {report1.parent} and {report2.parent}\n")
            out.write(
                f"Directory: rostersync directory export --tenant {TENANT} --state {state_dir}\n"
            )
    _print_console_link(state_dir, out)
    return 0


def _print_console_link(state_dir: Path, out: TextIO) -> None:
    """How to open the admin console on the demo tenant (a sign-in link valid 8 hours)."""
    token = issue_token(state_dir, TENANT, "admin", 8 * 3600)
    out.write(
        "\nThe admin console: run\n"
        f"  .venv/bin/rostersync serve --state {state_dir}\n"
        "then open (sign-in link, valid 8 hours):\n"
        f"  http://127.0.0.1:8080/console/#token={token}\n"
    )


def _print_tiers(decisions: list[dict[str, Any]], out: TextIO, when: str) -> None:
    tiers: dict[str, int] = {}
    for d in decisions:
        tiers[f"{d['entity']} {d['tier']}"] = tiers.get(f"{d['entity']} {d['tier']}", 0) + 1
    out.write(f"Matches {when}: " + ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) + "\n")


def run_existing_demo(*, state: Path | None, students: int, out: TextIO) -> int:
    """An app with teachers, students and classes of its own is connected to its SIS:
    staff linked first, the key proposal, automatic matches, suggestions, unmatched;
    then confirmations, a commit, and a second sync that keeps every decision."""
    from rostersync.application.matching import (
        confirm_keys,
        confirm_match,
        import_app_records,
        list_match_decisions,
        propose_tenant_keys,
    )
    from rostersync.application.review import request_restage
    from rostersync.application.sync import ensure_tenant
    from rostersync.existing_app import build_existing_app

    state_dir = _fresh_state_dir(state, "demo-existing")
    with tempfile.TemporaryDirectory(prefix="rostersync-demo-") as tmp:
        work = Path(tmp)
        day1, day2 = work / "day1", work / "day2"
        generate_district(day1, students=students, seed=1)
        mutate_next_day(day1, day2, seed=2)
        app = build_existing_app(day1, work / "app.csv", seed=3)
        out.write(
            f"The app already has {sum(1 for s in app.truth.values() if s) + len(app.app_only)} "
            f"records made by hand: {len(app.typos)} students with typos, {len(app.app_only)} "
            f"who left (not in the SIS); {len(app.sis_only)} SIS students are new to the app.\n"
        )
        with local_stack(state_dir) as (cloud, deps):
            ensure_tenant(deps, TENANT, create=True)
            imported = import_app_records(deps, TENANT, app.path.read_text(), "demo-admin")
            out.write(
                f"Imported {imported['imported']} app records (rostersync directory import)\n\n"
            )
            out.write("== Connecting: the first sync, prepared for review\n")
            first, _ = run_sync(cloud, deps, TENANT, day1, state_dir, review=True, out=out)
            decisions = list_match_decisions(deps, TENANT, run_id=first.run_id)
            staff = [d for d in decisions if d["tier"] == "key"]
            out.write(f"Staff first: {len(staff)} teachers linked by email\n")

            out.write("\nKey proposal (rostersync keys):\n")
            proposals = [p for p in propose_tenant_keys(deps, TENANT) if p["strong"]]
            for proposal in proposals[:3]:
                out.write(
                    f"  {proposal['kind']}: {proposal['source_field']} ↔ {proposal['app_field']} "
                    f"({proposal['support']} shared, {proposal['app_overlap']:.0%} of the app's)\n"
                )
            first_decisions = list_match_decisions(deps, TENANT, run_id=first.run_id)
            _print_tiers(first_decisions, out, "first")
            suggestions = [d for d in first_decisions if d["tier"] == "suggested"]
            for d in suggestions[:5]:
                out.write(
                    f"  suggested {d['entity']} {d['source_id']} → {d['target_id']} "
                    f"score {d['score']:.2f}, agreed: {', '.join(d['agreed'])}"
                    + (f" ({', '.join(d['notes'])})" if d["notes"] else "")
                    + "\n"
                )
            out.write(f"The admin confirms the {len(suggestions)} suggestions\n")
            for d in suggestions:
                confirm_match(
                    deps,
                    TENANT,
                    d["entity"],
                    d["source_id"],
                    "demo-admin",
                    launcher=WaitingLauncher(cloud),
                )
            student_key = next((p for p in proposals if p["kind"] == "student"), None)
            if student_key is not None:
                spec = f"{student_key['source_field']}:{student_key['app_field']}"
                confirm_keys(deps, TENANT, "student", [spec], "demo-admin")
                out.write(f"and confirms {spec} as the students' key\n")
                request_restage(deps, WaitingLauncher(cloud), TENANT, first.run_id)
            decisions = list_match_decisions(deps, TENANT, run_id=first.run_id)
            _print_tiers(decisions, out, "now")
            new_users = list_actions(
                deps,
                TENANT,
                first.run_id,
                ActionFilter(entity=Entity.USERS, action="add", limit=1000),
            ).actions
            roles: dict[str, int] = {}
            for action in new_users:
                if action["tier"] == "unmatched":
                    role = (action.get("record") or {}).get("role", "?")
                    roles[role] = roles.get(role, 0) + 1
            out.write(
                "  unmatched, created as new: "
                + ", ".join(f"{n} {role}s" for role, n in sorted(roles.items()))
                + "\n"
            )
            report = commit_prepared(cloud, deps, TENANT, first.run_id, "demo-admin")
            out.write(f"Committed run {first.run_id}: {report['status']}\n")
            print_counts(report["counts"], out)

            out.write("\n== The next day's sync keeps every decision\n")
            second, _ = run_sync(cloud, deps, TENANT, day2, state_dir, out=out)
            print_counts(second.counts, out)
            wrong = [
                d
                for d in decisions
                if d["tier"] in {"key", "auto"} and app.truth.get(d["target_id"]) != d["source_id"]
            ]
            out.write(f"Automatic links checked against the truth: {len(wrong)} wrong\n")
    return 0 if second.status in {"committed", "held"} else 1
