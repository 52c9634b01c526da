"""The ``rostersync`` command: the embedded default, on this machine, under moto."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rostersync.application.sync import (
    EXIT_WAITING,
    WaitingLauncher,
    commit_prepared,
    ensure_tenant,
    export_directory,
    raise_if_failed,
)
from rostersync.changes import ACTION_KINDS as ACTIONS
from rostersync.changes import action_totals
from rostersync.errors import RostersyncError
from rostersync.local.session import (
    command_hint,
    default_state_dir,
    issues_of,
    local_stack,
    plural,
    print_counts,
    print_outcome,
    run_sync,
)
from rostersync.models import ENTITY_ORDER
from rostersync.records import RunRecord, RunStatus
from rostersync.storage import keys

CREATE_TENANT_HELP = "create --tenant if it does not exist (without: only in an empty state)"


def _state_dir(args: argparse.Namespace) -> Path:
    path = Path(args.state) if args.state else default_state_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _given_state(args: argparse.Namespace) -> Path | None:
    """The ``--state`` given, for the next-step hints (None: the default)."""
    state = getattr(args, "state", None)
    return Path(state) if state else None


def _hint(args: argparse.Namespace, words: str) -> str:
    """A next step to type, with the ``--tenant`` (and ``--state``) in use."""
    return command_hint(words, args.tenant, _given_state(args))


def _open_tenant(deps: Any, args: argparse.Namespace) -> bool:
    """The ``--tenant`` made sure of: created only in an empty state or with
    ``--create-tenant``; True if created now."""
    from rostersync.application.tenants import open_tenant

    return open_tenant(deps, args.tenant, create=bool(getattr(args, "create_tenant", False)))


def cmd_sync(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    path = Path(args.path) if args.path else None
    guardians = Path(args.guardians) if args.guardians else None
    for given in (path, guardians):
        if given is not None and not given.exists():
            sys.stderr.write(f"rostersync: {given} does not exist\n")
            return 1
    if args.guardians_complete and guardians is None:
        sys.stderr.write("rostersync: --guardians-complete needs --guardians FILE\n")
        return 1
    human = None if args.json else sys.stdout
    with local_stack(state_dir) as (cloud, deps):
        outcome, report_path = run_sync(
            cloud,
            deps,
            args.tenant,
            path,
            state_dir,
            mode="quick" if args.quick else "full",
            review=args.review,
            out=human,
            guardians=guardians,
            guardians_complete=args.guardians_complete,
            create_tenant=args.create_tenant,
        )
        issues = issues_of(deps, args.tenant, outcome.run_id)
    if args.json:
        json.dump(
            {
                "run_id": outcome.run_id,
                "status": outcome.status,
                "counts": outcome.counts,
                "issues_by_severity": outcome.severities,
                "issues": issues,
                "report": str(report_path),
                "error": outcome.error,
                "source_note": (outcome.report or {}).get("source_note"),
            },
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        sys.stdout.write("\n")
    else:
        print_outcome(
            outcome, report_path, issues, sys.stdout, tenant=args.tenant, state=_given_state(args)
        )
    return outcome.exit_code


def _assignments(pairs: Sequence[str] | None, what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{what} takes NAME=VALUE, not {pair!r}")
        found[name.strip()] = value
    return found


def _setting_value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, booleans), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _read_secret_file(path: str) -> str:
    """A secret's value from a file (its surrounding whitespace and newline dropped)."""
    return Path(path).read_text(encoding="utf-8").strip()


def _describe_connection(shown: dict[str, Any]) -> str:
    lines = [f"Tenant {shown['tenant']}: {shown['kind']}"]
    if shown["kind"] == "oneroster_csv":
        lines.append(f"  OneRoster CSV bundles from the inbox (SFTP, or inbox/{shown['tenant']}/)")
    for name, value in shown["settings"].items():
        lines.append(f"  {name}: {value}")
    for name, state in shown["secrets"].items():
        lines.append(f"  {name}: {state}")
    if shown.get("connected_at"):
        lines.append(f"  connected by {shown['connected_by']} at {shown['connected_at']}")
    check = shown.get("check")
    if check is not None:
        lines.append(f"  check: {'ok' if check['ok'] else 'FAILED'}: {check['message']}")
    return "\n".join(lines)


def cmd_connect(args: argparse.Namespace) -> int:
    from rostersync.application.connect import connect_source
    from rostersync.settings import SettingsError

    try:
        settings: dict[str, Any] = {
            name: _setting_value(value) for name, value in _assignments(args.set, "--set").items()
        }
        secrets = {
            name: _read_secret_file(path)
            for name, path in _assignments(args.secret_file, "--secret-file").items()
        }
        if getattr(args, "token_file", None):
            secrets["token"] = _read_secret_file(args.token_file)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"rostersync: {exc}\n")
        return 1
    if getattr(args, "base_url", None):
        settings["base_url"] = args.base_url
    with local_stack(_state_dir(args)) as (_cloud, deps):
        created = _open_tenant(deps, args)
        try:
            connected = connect_source(
                deps,
                args.tenant,
                args.kind,
                settings,
                secrets,
                who=_who(args),
                check=not args.no_check,
            )
        except SettingsError as exc:
            for error in exc.errors:
                sys.stderr.write(f"rostersync: {error['field']}: {error['message']}\n")
            if created:  # a refused connection leaves no tenant behind
                from rostersync.application.tenants import remove_tenant

                remove_tenant(deps, args.tenant)
            return 1
        finally:
            secrets.clear()
    shown = connected.shown()
    human = _describe_connection(shown)
    if created:
        human = f"Tenant {args.tenant} created (first use).\n{human}"
    _emit(args, shown, human)
    return 2 if connected.check is not None and not connected.check.ok else 0


def cmd_connect_show(args: argparse.Namespace) -> int:
    from rostersync.application.connect import connected_source

    with local_stack(_state_dir(args)) as (_cloud, deps):
        shown = connected_source(deps, args.tenant).shown()
    _emit(args, shown, _describe_connection(shown))
    return 0


def cmd_directory_export(args: argparse.Namespace) -> int:
    with local_stack(_state_dir(args)) as (_cloud, deps):
        directory = export_directory(deps, args.tenant)
    if args.json:
        json.dump(directory, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        for entity, items in directory.items():
            active = sum(1 for i in items if i.get("status") == "active")
            sys.stdout.write(f"{entity:<20} {active:>8} active {len(items) - active:>8} archived\n")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rostersync.demo import run_demo, run_existing_demo

    if args.existing:
        return run_existing_demo(
            state=Path(args.state) if args.state else None, students=args.students, out=sys.stdout
        )
    return run_demo(
        state=Path(args.state) if args.state else None, students=args.students, out=sys.stdout
    )


def _emit(args: argparse.Namespace, value: Any, human: str) -> None:
    if getattr(args, "json", False):
        json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human if human.endswith("\n") else human + "\n")


def _who(args: argparse.Namespace) -> str:
    return str(getattr(args, "who", None) or os.environ.get("USER") or "cli")


def _changes_of(entry: dict[str, Any]) -> dict[str, list[Any]]:
    changes = entry.get("changes")
    return dict(changes) if isinstance(changes, dict) else {}


def _shown_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def cmd_settings(args: argparse.Namespace) -> int:
    from rostersync.application.tenants import (
        load_tenant_settings,
        open_tenant,
        save_tenant_settings,
        settings_changes,
        settings_history,
    )
    from rostersync.settings import SettingsError, apply_assignments

    with local_stack(_state_dir(args)) as (_cloud, deps):
        if args.settings_command == "set":
            open_tenant(deps, args.tenant, create=args.create_tenant)
        else:
            ensure_tenant(deps, args.tenant, create=False)
        current = load_tenant_settings(deps, args.tenant)
        if args.settings_command == "history":
            history = settings_history(deps, args.tenant)
            lines = [
                f"{h['changed_at']} {h['changed_by']}: "
                + "; ".join(
                    f"{name}: {_shown_value(old)} → {_shown_value(new)}"
                    for name, (old, new) in _changes_of(h).items()
                )
                for h in history
            ]
            _emit(args, history, "\n".join(lines) or "no changes")
            return 0
        if args.settings_command == "set":
            try:
                updated = apply_assignments(current, args.assignments)
                changes = settings_changes(
                    current.model_dump(mode="json"), updated.model_dump(mode="json")
                )
                save_tenant_settings(deps, args.tenant, updated, who=_who(args))
            except SettingsError as exc:
                for error in exc.errors:
                    sys.stderr.write(
                        f"rostersync: invalid setting {error['field']}: {error['message']}\n"
                    )
                return 1
            lines = [
                f"{name}: {_shown_value(old)} → {_shown_value(new)}"
                for name, (old, new) in changes.items()
            ]
            _emit(
                args,
                {"tenant": args.tenant, "changed": changes},
                "\n".join(lines) or "nothing changed (the settings already say so)",
            )
            return 0
    dump = current.model_dump(mode="json")
    _emit(args, dump, json.dumps(dump, indent=2))
    return 0


def _display_name(entity: str, record: dict[str, Any] | None) -> str:
    """What a person reads for a record: a user's names, a class's or org's title, an
    enrollment's user and class."""
    if not record:
        return ""
    if entity == "users":
        given = record.get("preferred_given_name") or record.get("given_name") or ""
        family = record.get("preferred_family_name") or record.get("family_name") or ""
        role = f" ({record['role']})" if record.get("role") else ""
        return f"{given} {family}".strip() + role
    if entity == "enrollments":
        user, klass = record.get("user_source_id"), record.get("class_source_id")
        role = f" as {record['role']}" if record.get("role") else ""
        return f"user {user} in class {klass}{role}" if user and klass else ""
    return str(record.get("name") or record.get("title") or "")


def _describe_action(action: dict[str, Any], name: str = "") -> str:
    from rostersync.pipeline.report import links_existing

    flag = "[x]" if action["included"] else ("[h]" if action.get("held") else "[ ]")
    diff = ", ".join(
        f"{field}: {before!r} → {after!r}"
        for field, (before, after) in (action.get("changes") or {}).items()
    )
    reason = f"  ({action['reason']})" if action.get("reason") else ""
    kind = action["action"]
    if kind == "add":
        kind = "add link" if links_existing(action) else "add new"
    target = f" → app {action['target_id']}" if links_existing(action) else ""
    shown = f"  {name}" if name else ""
    return (
        f"{flag} {action['id']}  {kind:<10} {action['source_id']}{shown}{target}  {diff}{reason}"
    ).rstrip()


def _action_name(deps: Any, tenant: str, action: dict[str, Any]) -> str:
    """The action's record's name; for an archive (which carries no record), the
    committed record's."""
    record = action.get("record")
    if not record and action.get("target_id"):
        item = deps.directory.get(tenant, action["entity"], action["target_id"])
        record = item.fields if item is not None else None
    return _display_name(action["entity"], record)


def cmd_review(args: argparse.Namespace) -> int:
    from rostersync.application.review import ActionFilter, list_actions

    with local_stack(_state_dir(args)) as (_cloud, deps):
        page = list_actions(
            deps,
            args.tenant,
            args.run,
            ActionFilter(
                entity=args.entity, action=args.action, offset=args.offset, limit=args.limit
            ),
        )
        shown = page.model_dump(mode="json")
        names = [_action_name(deps, args.tenant, a) for a in shown["actions"]]
    lines = [_describe_action(a, n) for a, n in zip(shown["actions"], names, strict=True)]
    if page.total:
        lines.append(
            f"{page.offset + 1}-{page.offset + len(page.actions)} of {plural(page.total, 'action')}"
        )
    else:
        lines.append("no actions")
    _emit(args, shown, "\n".join(lines))
    return 0


def _selection(args: argparse.Namespace) -> Any:
    from rostersync.application.review import Selection

    all_of = []
    for item in args.all_of or []:
        entity, _, action = item.partition(":")
        all_of.append((entity, action))
    return Selection(action_ids=args.action_ids, all_of=all_of)


def cmd_include(args: argparse.Namespace) -> int:
    from rostersync.application.review import request_select, set_included

    included = args.command == "include"
    selection = _selection(args)
    with local_stack(_state_dir(args)) as (cloud, deps):
        if selection.all_of:
            launcher = WaitingLauncher(cloud)
            request_select(deps, launcher, args.tenant, args.run, selection, included, _who(args))
            raise_if_failed(launcher, deps, args.tenant, args.run)
            last = deps.runs.get(args.tenant, args.run).last_selection
            changed = last.changed if last is not None else 0
        else:
            changed = set_included(deps, args.tenant, args.run, selection, included, _who(args))
    verb = "included" if included else "excluded"
    _emit(args, {"changed": changed}, f"{plural(changed, 'action')} {verb}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    with local_stack(_state_dir(args)) as (cloud, deps):
        report = commit_prepared(cloud, deps, args.tenant, args.run, _who(args))
    held = report.get("status") == "held"
    if args.json:
        _emit(args, report, "")
    else:
        sys.stdout.write(f"Run {args.run}: {report.get('status')}\n")
        print_counts(report.get("counts", {}), sys.stdout, report.get("adds"))
        if held:
            for trip in report.get("hold") or []:
                sys.stdout.write(f"  held: {trip['message']}\n")
            sys.stdout.write(f"Apply the held actions: {_hint(args, f'approve {args.run}')}\n")
    return EXIT_WAITING if held else 0


def cmd_discard(args: argparse.Namespace) -> int:
    from rostersync.application.review import discard_run

    with local_stack(_state_dir(args)) as (_cloud, deps):
        discard_run(deps, args.tenant, args.run, _who(args))
    _emit(args, {"run_id": args.run, "status": "discarded"}, f"Run {args.run} discarded")
    return 0


def cmd_derived(args: argparse.Namespace) -> int:
    from rostersync.application.review import request_approve, request_undo

    request = request_undo if args.command == "undo" else request_approve
    with local_stack(_state_dir(args)) as (cloud, deps):
        launcher = WaitingLauncher(cloud)
        run_id = request(deps, launcher, args.tenant, args.run, _who(args))
        raise_if_failed(launcher, deps, args.tenant, run_id)
        report = dict(deps.store.get_json(keys.report_key(args.tenant, run_id)) or {})
    if args.json:
        _emit(args, {"run_id": run_id, "report": report}, "")
    else:
        sys.stdout.write(f"Prepared run {run_id} ({args.command} of {args.run}):\n")
        print_counts(report.get("counts", {}), sys.stdout, report.get("adds"))
        sys.stdout.write(
            f"Review it: {_hint(args, f'review {run_id}')}\n"
            f"Apply it: {_hint(args, f'commit {run_id}')}\n"
        )
    return 0


def _severity_text(severities: dict[str, int]) -> str:
    shown = [f"{n} {name}" for name, n in severities.items() if n]
    return "issues: " + (", ".join(shown) if shown else "none")


def _run_line(run: RunRecord) -> list[str]:
    """A run of ``runs``: status, trigger, counts, issues by severity, then why it held,
    failed or was skipped."""
    from rostersync.application.sync import issue_severities

    totals = action_totals(run.counts)
    took = sum((run.timings_ms or {}).values()) / 1000
    severities = issue_severities(
        {"issues_by_severity": run.issues_by_severity, "issues_total": run.issue_count}
    )
    lines = [
        f"{run.run_id}  {run.status:<10} {run.trigger or '?':<8} "
        f"{run.mode or '?':<5} by {run.requested_by or '-':<10} "
        + " ".join(f"{a}={n}" for a, n in totals.items())
        + f"  {_severity_text(severities)}  {took:.1f}s"
    ]
    source = run.source_name or run.source_key
    if source:
        lines.append(f"    source: {source}")
    for trip in run.hold or []:
        lines.append(f"    held: {trip.message}")
    if run.reason and run.status in {RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.DISCARDED}:
        lines.append(f"    {run.status}: {run.reason}")
    if run.last_error:
        lines.append(f"    last error: {run.last_error}")
    return lines


def cmd_runs(args: argparse.Namespace) -> int:
    from rostersync.application.review import list_runs

    with local_stack(_state_dir(args)) as (_cloud, deps):
        ensure_tenant(deps, args.tenant, create=False)
        runs = list_runs(deps, args.tenant, args.limit)
    lines = [line for run in runs for line in _run_line(run)]
    _emit(args, [run.shown() for run in runs], "\n".join(lines) or "no runs")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rostersync.application.review import show_run
    from rostersync.application.sync import issue_severities

    with local_stack(_state_dir(args)) as (_cloud, deps):
        shown = show_run(deps, args.tenant, args.run)
    run, report = shown.run, shown.report or {}
    human = [f"Run {args.run}: {run.status} ({run.trigger})"]
    if run.reason:
        human.append(f"  reason: {run.reason}")
    for trip in report.get("hold", []):
        human.append(f"  hold: {trip['message']}")
    for entity, row in (report.get("counts") or {}).items():
        if any(row.values()):
            human.append(f"  {entity}: " + ", ".join(f"{a} {n}" for a, n in row.items() if n))
    human.append(f"  {_severity_text(issue_severities(report))}")
    for issue in report.get("issues_sample") or []:
        where = issue.get("file", "") + (f":{issue['line']}" if issue.get("line") else "")
        human.append(
            f"    {str(issue.get('severity', '')).upper():<8} {where} {issue.get('message')}"
        )
    if run.status is RunStatus.HELD:
        human.append(f"  apply the held actions: {_hint(args, f'approve {args.run}')}")
    elif run.status is RunStatus.PREPARED:
        human.append(f"  apply it: {_hint(args, f'commit {args.run}')}")
    _emit(args, {"run": run.shown(), "report": shown.report}, "\n".join(human))
    return 0


def cmd_directory_import(args: argparse.Namespace) -> int:
    from rostersync.application.matching import import_app_records

    text = Path(args.file).read_text(encoding="utf-8-sig")
    with local_stack(_state_dir(args)) as (_cloud, deps):
        _open_tenant(deps, args)
        result = import_app_records(deps, args.tenant, text, _who(args))
    # The issues name the admin's own file, not the name it is kept under.
    for issue in result["issues"]:
        issue["file"] = args.file
    lines = [f"Imported {plural(int(result['imported']), 'app record')}"]
    for issue in result["issues"]:
        column = f" [{issue['column']}]" if issue.get("column") else ""
        lines.append(
            f"  {issue['file']}:{issue.get('line')}{column} {issue['message']} → {issue['action']}"
        )
    _emit(args, result, "\n".join(lines))
    return 2 if result["issues"] else 0


def cmd_keys(args: argparse.Namespace) -> int:
    from rostersync.application.matching import confirm_keys, propose_tenant_keys

    with local_stack(_state_dir(args)) as (_cloud, deps):
        if args.confirm:
            if not args.kind:
                sys.stderr.write("rostersync: --confirm needs --kind student|teacher|guardian\n")
                return 1
            stored = confirm_keys(deps, args.tenant, args.kind, args.confirm, _who(args))
            _emit(
                args,
                stored,
                f"Keys for {args.kind}: "
                + ", ".join(":".join(map(str, k)) for k in stored["keys"]),
            )
            return 0
        proposals = propose_tenant_keys(deps, args.tenant, args.run)
    lines = [
        f"{'*' if p['strong'] else ' '} {p['kind']:<8} {p['source_field']} ↔ {p['app_field']}"
        f"{' (leading zeros stripped)' if p['strip_leading_zeros'] else ''}: "
        f"{p['support']} shared, {p['source_overlap']:.0%} of source, {p['app_overlap']:.0%} of app"
        + (f", names agree {p['agreement']:.0%}" if p["agreement"] is not None else "")
        for p in proposals
    ] or ["no key proposals (import app records first: rostersync directory import)"]
    lines.append("* = proposed; confirm with: rostersync keys --kind student --confirm SOURCE:APP")
    _emit(args, proposals, "\n".join(lines))
    return 0


def cmd_matches(args: argparse.Namespace) -> int:
    from rostersync.application.matching import list_decisions, list_match_decisions

    def named(identifier: Any, name: Any) -> str:
        return f"{identifier} ({name})" if name else str(identifier or "-")

    if args.decisions:
        with local_stack(_state_dir(args)) as (_cloud, deps):
            decisions = list_decisions(deps, args.tenant)
        lines = [
            f"{d['id']}  {d['state']:<10} {d['decision']:<9} {d['entity']:<8} "
            + (f"{named(d['source_id'], d['source_name'])} → " if d["source_id"] else "")
            + f"{named(d['target_id'], d['target_name'])}  by {d['by'] or '?'} at {d['at'] or '?'}"
            + (f" (for {d['for']})" if d.get("for") else "")
            + (f"; undone by {d['undone_by']} at {d['undone_at']}" if d["undone_at"] else "")
            for d in decisions
        ]
        if decisions:
            lines.append(f"undo one with: rostersync match undo ID --tenant {args.tenant}")
        _emit(args, decisions, "\n".join(lines) or "no matching decisions yet")
        return 0
    with local_stack(_state_dir(args)) as (_cloud, deps):
        rows = list_match_decisions(deps, args.tenant, run_id=args.run, tier=args.tier)
    if args.json:
        _emit(
            args,
            [
                {
                    k: r.get(k)
                    for k in (
                        "entity",
                        "source_id",
                        "source_name",
                        "target_id",
                        "target_name",
                        "tier",
                        "score",
                    )
                }
                | {
                    "evidence": {
                        k: r.get(k)
                        for k in ("agreed", "missing", "notes", "field_scores", "runner_up")
                    }
                }
                for r in rows
            ],
            "",
        )
        return 0
    lines = [
        f"{r['tier']:<10} {r['entity']:<8} {named(r['source_id'], r.get('source_name'))} → "
        f"{named(r.get('target_id'), r.get('target_name'))}  "
        f"score {r['score']:.2f}  agreed: {', '.join(r.get('agreed') or []) or '-'}"
        + (f"  ({', '.join(r['notes'])})" if r.get("notes") else "")
        for r in rows
    ]
    _emit(args, rows, "\n".join(lines) or "no match decisions to review")
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    from rostersync.application import matching as identity

    with local_stack(_state_dir(args)) as (cloud, deps):
        who = _who(args)
        launcher = WaitingLauncher(cloud)
        if args.match_command == "confirm":
            result = identity.confirm_match(
                deps,
                args.tenant,
                args.entity,
                args.source_id,
                who,
                args.target,
                launcher=launcher,
                replace=args.replace,
            )
        elif args.match_command == "reject":
            result = identity.reject_match(
                deps,
                args.tenant,
                args.entity,
                args.source_id,
                args.target_id,
                who,
                launcher=launcher,
            )
        elif args.match_command == "link":
            result = identity.link_manually(
                deps,
                args.tenant,
                args.entity,
                args.source_id,
                args.target_id,
                who,
                launcher=launcher,
                replace=args.replace,
            )
        elif args.match_command == "undo":
            result = identity.undo_decision(
                deps, args.tenant, args.decision_id, who, launcher=launcher
            )
        else:
            result = identity.mark_adhoc(
                deps, args.tenant, args.entity, args.target_id, not args.archive, who
            )
    if args.match_command == "undo":
        human = f"undone: {result['undone']}"
    else:
        human = f"{args.match_command}: recorded as decision {result.get('decision_id')}"
    for gone in result.get("unlinked") or []:
        name = f" ({gone['source_name']})" if gone.get("source_name") else ""
        human += f"\n  --replace unlinked {gone['source_id']}{name} from {gone['target_id']}"
    if result.get("restaged_run"):
        human += f"\nprepared run {result['restaged_run']} re-staged"
    _emit(args, result, human)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rostersync.local.serve import serve

    serve(_state_dir(args), args.api_port, args.sftp_port, out=sys.stdout)
    return 0


def cmd_sftp_user(args: argparse.Namespace) -> int:
    from rostersync.local.sftp import sftp_user_add

    key = Path(args.public_key).read_text() if args.public_key else None
    if not args.password and not key:
        sys.stderr.write("rostersync: give --password or --public-key\n")
        return 1
    with local_stack(_state_dir(args)) as (_cloud, deps):
        ensure_tenant(deps, args.tenant_id, create=False)
    user = sftp_user_add(
        _state_dir(args),
        args.tenant_id,
        args.username,
        password=args.password,
        public_key=key,
        rotate=args.rotate,
    )
    what = "password" if args.password else "key"
    done = f"{what} rotated for" if args.rotate else "added for"
    _emit(
        args,
        {"tenant": args.tenant_id, "username": args.username},
        f"SFTP user {user.username} {done} tenant {args.tenant_id}",
    )
    return 0


def cmd_sftp_user_list(args: argparse.Namespace) -> int:
    from rostersync.local.sftp import sftp_users

    users = [u for u in sftp_users(_state_dir(args)) if args.tenant_id in (None, u.tenant)]
    lines = [
        f"{u.username:<24} tenant {u.tenant:<20} "
        + ", ".join(
            (["password"] if u.has_password else [])
            + ([plural(u.public_keys, "public key")] if u.public_keys else [])
        )
        for u in users
    ]
    _emit(args, [vars(u) for u in users], "\n".join(lines) or "no SFTP users")
    return 0


def cmd_sftp_user_remove(args: argparse.Namespace) -> int:
    from rostersync.local.sftp import sftp_user_remove, sftp_users

    known = {u.username: u for u in sftp_users(_state_dir(args))}
    if args.username not in known:
        names = ", ".join(sorted(known)) or "none"
        sys.stderr.write(f"rostersync: no SFTP user {args.username} (the users: {names})\n")
        return 1
    sftp_user_remove(_state_dir(args), args.username)
    _emit(
        args,
        {"username": args.username, "removed": True},
        f"SFTP user {args.username} (tenant {known[args.username].tenant}) removed",
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from rostersync.api.tokens import issue_token

    tenant = None if args.role == "platform" and not args.tenant_id else args.tenant_id
    if tenant is None and args.role != "platform":
        sys.stderr.write("rostersync: --tenant is required for admin and viewer tokens\n")
        return 1
    token = issue_token(_state_dir(args), tenant, args.role, args.ttl)
    if args.console:
        # In the fragment, which browsers never send: the console keeps it in the tab only.
        sys.stdout.write(f"{args.console.split('#', 1)[0]}#token={token}\n")
        return 0
    sys.stdout.write(token + "\n")
    return 0


def cmd_tenants_add(args: argparse.Namespace) -> int:
    with local_stack(_state_dir(args)) as (_cloud, deps):
        created = ensure_tenant(deps, args.tenant_id, create=True)
    _emit(
        args,
        {"tenant": args.tenant_id, "created": created},
        f"Tenant {args.tenant_id} " + ("created" if created else "already exists"),
    )
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from rostersync.application.tenants import tenant_summaries

    with local_stack(_state_dir(args)) as (_cloud, deps):
        tenants = tenant_summaries(deps)
    lines = [
        f"{t['tenant']:<24} {t['source']!s:<16} created {t['created_at'] or '-'}  "
        + (f"last run {t['last_run']} ({t['last_status']})" if t["last_run"] else "no runs")
        for t in tenants
    ]
    _emit(args, tenants, "\n".join(lines) or "no tenants")
    return 0


def _confirmed(question: str, expected: str) -> bool:
    """Whether the answer read from stdin, when asked, is ``expected``."""
    sys.stderr.write(f"{question}\nType {expected} to confirm: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != expected:
        sys.stderr.write(
            "\nrostersync: not confirmed (give --yes to skip the question); nothing was removed\n"
        )
        return False
    return True


def cmd_tenants_remove(args: argparse.Namespace) -> int:
    from rostersync.application.tenants import remove_tenant

    state = _state_dir(args)
    with local_stack(state) as (_cloud, deps):
        ensure_tenant(deps, args.tenant_id, create=False)
        question = (
            f"Remove tenant {args.tenant_id} and everything of it (its roster, runs, "
            "reports, settings, secrets and SFTP users)? This cannot be undone."
        )
        if not args.yes and not _confirmed(question, args.tenant_id):
            return 1
        removed = remove_tenant(deps, args.tenant_id)
    from rostersync.local.sftp import sftp_user_remove, sftp_users_of

    removed["sftp_users"] = sum(
        sftp_user_remove(state, user.username) for user in sftp_users_of(state, args.tenant_id)
    )
    shutil.rmtree(state / "reports" / args.tenant_id, ignore_errors=True)
    _emit(
        args,
        {"tenant": args.tenant_id, "removed": removed},
        f"Tenant {args.tenant_id} removed: "
        + ", ".join(plural(n, what.replace("_", " ").rstrip("s")) for what, n in removed.items()),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rostersync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", default="default", help="tenant id (default: default)")
        p.add_argument("--state", help="local state directory (default: see README)")
        p.add_argument("--json", action="store_true", help="print one JSON object")

    sync = sub.add_parser(
        "sync", help="sync a OneRoster bundle (zip or folder), or the tenant's connected source"
    )
    sync.add_argument(
        "path", nargs="?", help="a bundle; without one, the connected source (or the inbox)"
    )
    common(sync)
    sync.add_argument(
        "--quick", action="store_true", help="apply only the changes (a delta, Clever's events)"
    )
    sync.add_argument("--review", action="store_true", help="stop at prepared; do not commit")
    sync.add_argument(
        "--create-tenant",
        action="store_true",
        help=CREATE_TENANT_HELP,
    )
    sync.add_argument("--guardians", metavar="FILE", help="a guardian file to merge into the run")
    sync.add_argument(
        "--guardians-complete",
        action="store_true",
        help="the guardian file lists every guardian (earlier files' others are archived)",
    )
    sync.set_defaults(func=cmd_sync)

    connect = sub.add_parser("connect", help="connect the tenant to its source, or show it")
    csub = connect.add_subparsers(dest="connect_command", required=True)
    show_connection = csub.add_parser("show", help="the connected source (secrets masked)")
    common(show_connection)
    show_connection.set_defaults(func=cmd_connect_show)
    from rostersync.sources.registry import source_kinds

    for kind in source_kinds():
        name = kind.replace("_", "-")
        p = csub.add_parser(
            name,
            aliases=[kind] if kind != name else [],
            help=f"connect the tenant to {kind}",
        )
        if kind == "clever":
            p.add_argument("--token-file", help="a file holding the district-app bearer token")
            p.add_argument("--base-url", help="default https://api.clever.com")
        p.add_argument("--set", action="append", metavar="NAME=VALUE", help="a setting")
        p.add_argument(
            "--secret-file", action="append", metavar="NAME=FILE", help="a secret, from a file"
        )
        p.add_argument("--no-check", action="store_true", help="do not try the secrets")
        p.add_argument("--create-tenant", action="store_true", help=CREATE_TENANT_HELP)
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=cmd_connect, kind=kind)

    directory = sub.add_parser("directory", help="the committed roster")
    dsub = directory.add_subparsers(dest="directory_command", required=True)
    export = dsub.add_parser("export", help="print the committed roster")
    common(export)
    export.set_defaults(func=cmd_directory_export)
    dimport = dsub.add_parser("import", help="load the app's existing records for matching")
    dimport.add_argument("file", help="CSV: app_id, kind, names, email, birth_date, id:<name>, ...")
    dimport.add_argument("--who")
    dimport.add_argument("--create-tenant", action="store_true", help=CREATE_TENANT_HELP)
    common(dimport)
    dimport.set_defaults(func=cmd_directory_import)

    keys_parser = sub.add_parser("keys", help="propose or confirm the exact matching keys")
    keys_parser.add_argument("--kind", choices=["student", "teacher", "guardian"])
    keys_parser.add_argument("--confirm", nargs="+", metavar="SOURCE:APP[:strip]")
    keys_parser.add_argument("--run")
    keys_parser.add_argument("--who")
    common(keys_parser)
    keys_parser.set_defaults(func=cmd_keys)

    matches = sub.add_parser("matches", help="list match decisions with their evidence")
    matches.add_argument("--run")
    matches.add_argument("--tier", choices=["key", "auto", "suggested", "unmatched", "manual"])
    matches.add_argument(
        "--decisions",
        action="store_true",
        help="every admin decision (confirm, reject, link, ad hoc) with who and when",
    )
    common(matches)
    matches.set_defaults(func=cmd_matches)

    match_parser = sub.add_parser("match", help="record a matching decision, or undo one")
    msub = match_parser.add_subparsers(dest="match_command", required=True)
    confirm = msub.add_parser("confirm", help="confirm a suggestion")
    confirm.add_argument("entity", choices=["users", "classes"])
    confirm.add_argument("source_id")
    confirm.add_argument("--target", help="the app id, if not the suggested one")
    confirm.add_argument(
        "--replace", action="store_true", help="unlink another record holding the app record"
    )
    for name, text in (("reject", "reject a pair for good"), ("link", "link by hand")):
        p = msub.add_parser(name, help=text)
        p.add_argument("entity", choices=["users", "classes"])
        p.add_argument("source_id")
        p.add_argument("target_id")
        if name == "link":
            p.add_argument(
                "--replace",
                action="store_true",
                help="unlink another record holding the app record (says which)",
            )
    adhoc = msub.add_parser("adhoc", help="an app record with no source: keep or archive")
    adhoc.add_argument("entity", choices=["users", "classes"])
    adhoc.add_argument("target_id")
    group = adhoc.add_mutually_exclusive_group(required=True)
    group.add_argument("--keep", action="store_true")
    group.add_argument("--archive", action="store_true")
    undo = msub.add_parser("undo", help="reverse one decision (ids: matches --decisions)")
    undo.add_argument("decision_id")
    for p in msub.choices.values():
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=cmd_match)

    settings = sub.add_parser("settings", help="show or change the tenant's settings")
    ssub = settings.add_subparsers(dest="settings_command", required=True)
    show_settings = ssub.add_parser("show", help="print the settings")
    common(show_settings)
    set_settings = ssub.add_parser("set", help="set field=value (dotted names, JSON values)")
    set_settings.add_argument("assignments", nargs="+", metavar="FIELD=VALUE")
    set_settings.add_argument("--who", help="who makes the change (default: $USER)")
    set_settings.add_argument(
        "--create-tenant",
        action="store_true",
        help=CREATE_TENANT_HELP,
    )
    common(set_settings)
    history = ssub.add_parser("history", help="every settings change, who and when")
    common(history)
    for p in (show_settings, set_settings, history):
        p.set_defaults(func=cmd_settings)

    review = sub.add_parser("review", help="list a prepared run's actions with their diffs")
    review.add_argument("run")
    review.add_argument("--entity", choices=[e.value for e in ENTITY_ORDER])
    review.add_argument("--action", choices=list(ACTIONS))
    review.add_argument("--offset", type=int, default=0)
    review.add_argument("--limit", type=int, default=50)
    common(review)
    review.set_defaults(func=cmd_review)

    for name, text in (("exclude", "untick actions"), ("include", "tick actions")):
        p = sub.add_parser(name, help=f"{text} of a prepared run")
        p.add_argument("run")
        p.add_argument("action_ids", nargs="*", metavar="ACTION_ID")
        p.add_argument("--all-of", action="append", metavar="ENTITY:ACTION")
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=cmd_include)

    for name, text, func in (
        ("commit", "apply a prepared run's included actions", cmd_commit),
        ("discard", "drop a prepared run", cmd_discard),
        ("undo", "prepare a run reversing a committed one", cmd_derived),
        ("approve", "prepare a run applying a held run's held actions", cmd_derived),
        ("show", "a run's report", cmd_show),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run")
        p.add_argument("--who")
        common(p)
        p.set_defaults(func=func)

    serve = sub.add_parser("serve", help="the API, an SFTP drop box and the schedules, locally")
    serve.add_argument("--api-port", type=int, default=8080)
    serve.add_argument("--sftp-port", type=int, default=2222)
    serve.add_argument("--state", help="local state directory (default: see README)")
    serve.set_defaults(func=cmd_serve)

    sftp = sub.add_parser("sftp-user", help="users of the local SFTP drop box")
    sftp_sub = sftp.add_subparsers(dest="sftp_command", required=True)
    sftp_add = sftp_sub.add_parser("add", help="add a user for a tenant (password or key)")
    sftp_add.add_argument("tenant_id", metavar="TENANT")
    sftp_add.add_argument("username")
    sftp_add.add_argument("--password")
    sftp_add.add_argument("--public-key", help="a file holding an OpenSSH public key")
    sftp_add.add_argument(
        "--rotate",
        action="store_true",
        help="the user exists: replace its password (or add the key)",
    )
    sftp_add.add_argument("--state", help="local state directory (default: see README)")
    sftp_add.add_argument("--json", action="store_true")
    sftp_add.set_defaults(func=cmd_sftp_user)
    sftp_list = sftp_sub.add_parser("list", help="the SFTP users (no secrets)")
    sftp_list.add_argument("--tenant", dest="tenant_id", help="only this tenant's users")
    sftp_list.add_argument("--state", help="local state directory (default: see README)")
    sftp_list.add_argument("--json", action="store_true")
    sftp_list.set_defaults(func=cmd_sftp_user_list)
    sftp_remove = sftp_sub.add_parser("remove", help="remove an SFTP user")
    sftp_remove.add_argument("username")
    sftp_remove.add_argument("--state", help="local state directory (default: see README)")
    sftp_remove.add_argument("--json", action="store_true")
    sftp_remove.set_defaults(func=cmd_sftp_user_remove)

    token = sub.add_parser("token", help="a signed token for the local API")
    token.add_argument("--tenant", dest="tenant_id")
    token.add_argument("--role", choices=["admin", "viewer", "platform"], default="admin")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--state", help="local state directory (default: see README)")
    token.add_argument(
        "--console",
        metavar="URL",
        help="print a sign-in link to the console at URL (http://127.0.0.1:8080/console/)",
    )
    token.set_defaults(func=cmd_token)

    tenants = sub.add_parser("tenants", help="tenants (the platform operator's)")
    tsub = tenants.add_subparsers(dest="tenants_command", required=True)
    tadd = tsub.add_parser("add", help="create a tenant")
    tadd.add_argument("tenant_id", metavar="TENANT")
    tadd.add_argument("--state", help="local state directory (default: see README)")
    tadd.add_argument("--json", action="store_true")
    tadd.set_defaults(func=cmd_tenants_add)
    tlist = tsub.add_parser("list", help="every tenant, its source and last run")
    tlist.add_argument("--state", help="local state directory (default: see README)")
    tlist.add_argument("--json", action="store_true")
    tlist.set_defaults(func=cmd_tenants_list)
    tremove = tsub.add_parser(
        "remove", help="remove a tenant and everything of it (asks to confirm)"
    )
    tremove.add_argument("tenant_id", metavar="TENANT")
    tremove.add_argument("--yes", action="store_true", help="do not ask to confirm")
    tremove.add_argument("--state", help="local state directory (default: see README)")
    tremove.add_argument("--json", action="store_true")
    tremove.set_defaults(func=cmd_tenants_remove)

    runs = sub.add_parser("runs", help="the tenant's sync history")
    runs.add_argument("--limit", type=int, default=50)
    common(runs)
    runs.set_defaults(func=cmd_runs)

    demo = sub.add_parser("demo", help="generate a district and its next day; sync both")
    demo.add_argument("--state", help="state directory (default: a fresh temporary one)")
    demo.add_argument("--students", type=int, default=500)
    demo.add_argument(
        "--existing", action="store_true", help="connect an app that already has its own records"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a mistake in its input is a message, never a traceback
    (``ROSTERSYNC_DEBUG=1`` shows the traceback of an unexpected error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RostersyncError as exc:
        sys.stderr.write(f"rostersync: {exc}\n")
        return 1
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "value"
        sys.stderr.write(f"rostersync: {where}: {exc.errors()[0]['msg']}\n")
        return 1
    except (ValueError, KeyError, OSError) as exc:
        sys.stderr.write(f"rostersync: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("rostersync: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("ROSTERSYNC_DEBUG"):
            raise
        sys.stderr.write(
            f"rostersync: unexpected error ({type(exc).__name__}); "
            "ROSTERSYNC_DEBUG=1 shows the details\n"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
