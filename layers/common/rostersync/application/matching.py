"""Connecting the app's existing records to the source: import, keys, review, decisions.

Library functions with typed inputs, used by the CLI and the API. Decisions are identity
links with provenance (how, who, when) and outlive runs: a rejected pair is never
suggested again; a confirmed or manual link is never re-scored. After a decision, the
tenant's prepared run (if any) is matched and staged again so the decision shows at once.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rostersync.application.review import RunLauncher, request_restage
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.errors import RostersyncError, RunStateError
from rostersync.matching import propose_keys
from rostersync.models import Entity, IssueAction, RowIssue
from rostersync.pipeline.deps import Deps
from rostersync.pipeline.identity_match import (
    APP_SYSTEM,
    app_person,
    decision_key,
    person_kind,
    source_person,
)
from rostersync.settings import TenantSettings
from rostersync.sources.oneroster_csv import parse_date
from rostersync.storage import keys

PERSON_KINDS = {"student", "teacher", "guardian"}
KIND_ROLE = {"student": "student", "teacher": "teacher", "guardian": "guardian"}
PERSON_FIELDS = ("given_name", "family_name", "email", "birth_date", "grade", "school")
CLASS_FIELDS = (
    "title",
    "subject",
    "class_code",
    "teacher_app_id",
    "start_date",
    "end_date",
    "school",
)
IMPORT_FILE = "import.csv"


class MatchDecisionError(RostersyncError):
    """A decision that cannot be applied (no such suggestion, unknown entity...)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def import_app_records(deps: Deps, tenant: str, csv_text: str, who: str) -> dict[str, Any]:
    """Load the app's own students, teachers, guardians and classes (made before the SIS
    was connected) into the directory, without a source link, for matching.

    Columns: ``app_id, kind`` (student | teacher | guardian | class), for people
    ``given_name, family_name, email, birth_date, grade, school``, any number of the
    app's identifiers as ``id:<name>``; for classes ``title, subject, class_code,
    teacher_app_id, start_date, end_date``. Bad rows are skipped with a row issue."""
    keys.check_tenant(tenant)
    issues: list[RowIssue] = []
    reader = csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if "app_id" not in header or "kind" not in header:
        raise MatchDecisionError("the file needs app_id and kind columns")
    people: dict[str, dict[str, Any]] = {
        r["app_id"]: r for r in deps.store.iter_jsonl(keys.app_records_key(tenant, "people"))
    }
    classes: dict[str, dict[str, Any]] = {
        r["app_id"]: r for r in deps.store.iter_jsonl(keys.app_records_key(tenant, "classes"))
    }
    seen: set[str] = set()
    imported = 0

    def issue(line: int, column: str | None, message: str, value: str | None = None) -> None:
        issues.append(
            RowIssue(
                file=IMPORT_FILE,
                line=line,
                column=column,
                value=value,
                message=message,
                action=IssueAction.ROW_SKIPPED,
            )
        )

    for row in reader:
        line = reader.line_num
        app_id = (row.get("app_id") or "").strip()
        kind = (row.get("kind") or "").strip().lower()
        if not app_id:
            issue(line, "app_id", "app_id is blank")
            continue
        if app_id in seen:
            issue(line, "app_id", "app_id appears twice; the first row is kept", app_id)
            continue
        if kind not in PERSON_KINDS | {"class"}:
            issue(line, "kind", "kind must be student, teacher, guardian or class", kind)
            continue
        seen.add(app_id)
        fields = CLASS_FIELDS if kind == "class" else PERSON_FIELDS
        record: dict[str, Any] = {"app_id": app_id, "kind": kind}
        bad = False
        for name in fields:
            value = (row.get(name) or "").strip()
            if name.endswith("date") and value:
                parsed = parse_date(value)
                if parsed is None:
                    issue(line, name, "not a date (YYYY-MM-DD or M/D/YYYY)", value)
                    bad = True
                    break
                value = parsed
            record[name] = value or None
        if bad:
            continue
        if kind == "class" and not record.get("title"):
            issue(line, "title", "a class needs a title")
            continue
        if kind != "class" and not (record.get("given_name") and record.get("family_name")):
            issue(
                line,
                "given_name" if not record.get("given_name") else "family_name",
                "a person needs a given and a family name",
            )
            continue
        record["identifiers"] = {
            name[3:].strip(): (row.get(name) or "").strip()
            for name in header
            if name.startswith("id:") and (row.get(name) or "").strip()
        }
        if record.get("email"):
            record["identifiers"]["email"] = record["email"]
        (classes if kind == "class" else people)[app_id] = record
        imported += 1

    deps.store.write_jsonl(keys.app_records_key(tenant, "people"), people.values())
    deps.store.write_jsonl(keys.app_records_key(tenant, "classes"), classes.values())
    items_users = [_directory_person(r) for r in people.values() if r["app_id"] in seen]
    items_classes = [_directory_class(r) for r in classes.values() if r["app_id"] in seen]
    existing = {
        i["target_id"]
        for entity in ("users", "classes")
        for i in deps.directory.iter_entity(tenant, entity)
        if i.get("source_system") != APP_SYSTEM
    }
    # A record already linked to the source keeps its synced data.
    deps.directory.put_many(
        tenant, "users", [i for i in items_users if i["target_id"] not in existing]
    )
    deps.directory.put_many(
        tenant, "classes", [i for i in items_classes if i["target_id"] not in existing]
    )
    return {
        "imported": imported,
        "issues": [i.model_dump(mode="json", exclude_none=True) for i in issues],
        "by": who,
    }


def _directory_person(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "target_id": record["app_id"],
        "source_system": APP_SYSTEM,
        "source_id": record["app_id"],
        "status": "active",
        "role": KIND_ROLE[record["kind"]],
        "given_name": record.get("given_name"),
        "family_name": record.get("family_name"),
        "email": record.get("email"),
        "grades": [record["grade"]] if record.get("grade") else [],
        "app_identifiers": record.get("identifiers") or {},
    }


def _directory_class(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "target_id": record["app_id"],
        "source_system": APP_SYSTEM,
        "source_id": record["app_id"],
        "status": "active",
        "title": record.get("title"),
        "class_code": record.get("class_code"),
        "subjects": [record["subject"]] if record.get("subject") else [],
    }


# ---------------------------------------------------------------------- review


def latest_run_id(deps: Deps, tenant: str) -> str | None:
    runs = deps.runs.list(tenant, limit=1)
    return str(runs[0]["run_id"]) if runs else None


def list_match_decisions(
    deps: Deps, tenant: str, *, run_id: str | None = None, tier: str | None = None
) -> list[dict[str, Any]]:
    """The run's non-trivial match decisions (key, auto, suggested, scored unmatched)
    with their evidence; the latest run by default."""
    run_id = run_id or latest_run_id(deps, tenant)
    if run_id is None:
        return []
    deps.runs.get(tenant, run_id)  # another tenant's run id is not found here
    rows = deps.store.iter_jsonl(keys.match_review_key(tenant, run_id))
    return [r for r in rows if tier is None or r["tier"] == tier]


def _entity(entity: str) -> Entity:
    if entity not in {Entity.USERS.value, Entity.CLASSES.value}:
        raise MatchDecisionError("matching decisions are about users or classes")
    return Entity(entity)


def _record_decision(
    deps: Deps,
    tenant: str,
    entity: Entity,
    source_id: str,
    update: dict[str, Any],
    who: str,
    launcher: RunLauncher,
) -> dict[str, Any]:
    sort_key = decision_key(entity.value, "any", source_id)
    item = deps.decisions.get(tenant, sort_key) or {
        "entity": entity.value,
        "source_id": source_id,
        "rejected_targets": [],
    }
    item.pop("pk", None)
    item.pop("sk", None)
    item.update(update)
    item["decided_by"] = who
    item["decided_at"] = _now()
    deps.decisions.put(tenant, sort_key, item)
    restaged = _restage_prepared(deps, tenant, launcher)
    return {**item, "restaged_run": restaged}


def confirm_match(
    deps: Deps,
    tenant: str,
    entity: str,
    source_id: str,
    who: str,
    target_id: str | None = None,
    *,
    launcher: RunLauncher,
) -> dict[str, Any]:
    """Confirm a suggestion (its candidate, or ``target_id``): a link from now on. The
    tenant's prepared run, if any, is re-staged through ``launcher``."""
    kind = _entity(entity)
    if target_id is None:
        suggestion = next(
            (
                r
                for r in list_match_decisions(deps, tenant, tier="suggested")
                if r["entity"] == kind.value and r["source_id"] == source_id
            ),
            None,
        )
        if suggestion is None or not suggestion.get("target_id"):
            raise MatchDecisionError(f"no suggestion for {entity} {source_id} in the latest run")
        target_id = str(suggestion["target_id"])
    return _record_decision(
        deps,
        tenant,
        kind,
        source_id,
        {"decision": "confirmed", "target_id": target_id},
        who,
        launcher,
    )


def reject_match(
    deps: Deps,
    tenant: str,
    entity: str,
    source_id: str,
    target_id: str,
    who: str,
    *,
    launcher: RunLauncher,
) -> dict[str, Any]:
    """Reject a pair: it is never suggested again."""
    kind = _entity(entity)
    current = deps.decisions.get(tenant, decision_key(kind.value, "any", source_id)) or {}
    rejected = sorted(set(current.get("rejected_targets") or []) | {target_id})
    update: dict[str, Any] = {"rejected_targets": rejected}
    if current.get("target_id") == target_id:
        update.update({"decision": "rejected", "target_id": None})
    return _record_decision(deps, tenant, kind, source_id, update, who, launcher)


def _check_link(deps: Deps, tenant: str, kind: Entity, source_id: str, target_id: str) -> None:
    """Refuse a link to an app record that does not exist, or across kinds of person (a
    student to a teacher's record)."""
    target = deps.directory.get(tenant, kind.value, target_id)
    if target is None:
        raise MatchDecisionError(f"no app {kind.value} record {target_id!r}")
    if kind is not Entity.USERS:
        return
    run_id = latest_run_id(deps, tenant)
    source = None
    if run_id is not None:
        source = next(
            (
                r
                for r in deps.store.iter_jsonl(keys.normalized_key(tenant, run_id, kind))
                if r.get("source_id") == source_id
            ),
            None,
        )
    if source is None:
        raise MatchDecisionError(f"no source user {source_id!r} in the latest run")
    wanted, found = person_kind(source.get("role")), person_kind(target.get("role"))
    if wanted is not None and found is not None and wanted != found:
        raise MatchDecisionError(
            f"{source_id} is a {wanted.value} but {target_id} is a {found.value}'s record: "
            "a link never crosses kinds of person"
        )


def link_manually(
    deps: Deps,
    tenant: str,
    entity: str,
    source_id: str,
    target_id: str,
    who: str,
    *,
    launcher: RunLauncher,
) -> dict[str, Any]:
    """Link a source record to an app record by hand (the record must exist and be of
    the same kind of person)."""
    kind = _entity(entity)
    _check_link(deps, tenant, kind, source_id, target_id)
    return _record_decision(
        deps,
        tenant,
        kind,
        source_id,
        {"decision": "manual", "target_id": target_id},
        who,
        launcher,
    )


def mark_adhoc(
    deps: Deps, tenant: str, entity: str, target_id: str, keep: bool, who: str
) -> dict[str, Any]:
    """An app record with no source record: keep it (ad hoc) or archive it. Either way it
    is no longer offered to matching."""
    kind = _entity(entity)
    item = deps.directory.get(tenant, kind.value, target_id)
    if item is None or item.get("source_system") != APP_SYSTEM:
        raise MatchDecisionError(f"{target_id} is not an app record without a source link")
    decision = "adhoc" if keep else "archived"
    deps.directory.set_fields(
        tenant, kind.value, target_id, {"adhoc": keep, "status": "active" if keep else "archived"}
    )
    sort_key = f"app#{kind.value}#{target_id}"
    record = {
        "entity": kind.value,
        "target_id": target_id,
        "decision": decision,
        "decided_by": who,
        "decided_at": _now(),
    }
    deps.decisions.put(tenant, sort_key, record)
    return record


def _restage_prepared(deps: Deps, tenant: str, launcher: RunLauncher) -> str | None:
    """Start matching and staging the tenant's latest run again if it is prepared,
    keeping the actions an admin unticked."""
    run_id = latest_run_id(deps, tenant)
    if run_id is None or deps.runs.get(tenant, run_id).get("status") != "prepared":
        return None
    return request_restage(deps, launcher, tenant, run_id)


# ---------------------------------------------------------------------- keys


def propose_tenant_keys(deps: Deps, tenant: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Which source identifier lines up with which app identifier, per kind of person,
    with the overlap that supports it (from the latest run's users)."""
    run_id = run_id or latest_run_id(deps, tenant)
    if run_id is None:
        raise RunStateError("no run yet: sync a bundle first")
    app = [app_person(p) for p in deps.store.iter_jsonl(keys.app_records_key(tenant, "people"))]
    source = [
        person
        for record in deps.store.iter_jsonl(keys.normalized_key(tenant, run_id, Entity.USERS))
        if (person := source_person(record, {}, {})) is not None
    ]
    out: list[dict[str, Any]] = []
    for kind in ("teacher", "student", "guardian"):
        src = [p for p in source if p.kind.value == kind]
        tgt = [p for p in app if p.kind.value == kind]
        if not src or not tgt:
            continue
        for proposal in propose_keys(src, tgt):
            out.append(
                {
                    "kind": kind,
                    "source_field": proposal.source_field,
                    "app_field": proposal.target_field,
                    "strip_leading_zeros": proposal.strip_leading_zeros,
                    "support": proposal.support,
                    "ambiguous": proposal.ambiguous,
                    "source_overlap": round(proposal.source_overlap, 4),
                    "app_overlap": round(proposal.target_overlap, 4),
                    "agreement": proposal.agreement,
                    "strong": proposal.strong,
                }
            )
    return out


def confirm_keys(deps: Deps, tenant: str, kind: str, specs: list[str], who: str) -> dict[str, Any]:
    """Store the tenant's exact keys for a kind of person, in order:
    ``source_field:app_field[:strip]`` each, in ``settings.match_keys`` (kept in the
    settings history with who and when)."""
    if kind not in PERSON_KINDS:
        raise MatchDecisionError("kind must be student, teacher or guardian")
    parsed = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in {2, 3} or not parts[0] or not parts[1]:
            raise MatchDecisionError(f"key {spec!r}: expected source_field:app_field[:strip]")
        parsed.append([parts[0], parts[1], len(parts) == 3 and parts[2] == "strip"])
    settings = load_tenant_settings(deps, tenant)
    names = [f"{s}:{a}:strip" if strip else f"{s}:{a}" for s, a, strip in parsed]
    try:
        keys = settings.match_keys.model_copy(update={kind + "s": names})
        updated = TenantSettings.model_validate(
            {**settings.model_dump(mode="json"), "match_keys": keys.model_dump()}
        )
    except ValidationError as exc:
        raise MatchDecisionError(f"keys {specs!r}: {exc.errors()[0]['msg']}") from exc
    save_tenant_settings(deps, tenant, updated, who=who)
    return {"kind": kind, "keys": parsed}
