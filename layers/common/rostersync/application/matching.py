"""Connecting the app's existing records to the source: import, keys, review, decisions.

Library functions with typed inputs, used by the CLI and the API. Decisions are identity
links with provenance (how, who, when) and outlive runs: a rejected pair is never
suggested again; a confirmed or manual link is never re-scored. After a decision, the
tenant's prepared run (if any) is matched and staged again so the decision shows at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rostersync.application.directory import display_name
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
from rostersync.records import DirectoryChange, DirectoryItem, ItemStatus, RunStatus
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

    def issue(
        line: int,
        column: str | None,
        message: str,
        value: str | None = None,
        action: IssueAction = IssueAction.ROW_SKIPPED,
    ) -> None:
        issues.append(
            RowIssue(
                file=IMPORT_FILE,
                line=line,
                column=column,
                value=value,
                message=message,
                action=action,
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
        for name in fields:
            value = (row.get(name) or "").strip()
            if name.endswith("date") and value:
                parsed = parse_date(value)
                if parsed is None:
                    # The record is kept without it: one bad date loses no one.
                    issue(
                        line,
                        name,
                        "not a date (YYYY-MM-DD or M/D/YYYY); the record is kept without it",
                        value,
                        IssueAction.FIELD_DROPPED,
                    )
                    parsed = ""
                value = parsed
            record[name] = value or None
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
        i.target_id
        for entity in ("users", "classes")
        for i in deps.directory.iter_entity(tenant, entity)
        if i.source_system != APP_SYSTEM
    }
    # A record already linked to the source keeps its synced data.
    deps.directory.put_many(
        tenant, "users", [i for i in items_users if i.target_id not in existing]
    )
    deps.directory.put_many(
        tenant, "classes", [i for i in items_classes if i.target_id not in existing]
    )
    return {
        "imported": imported,
        "issues": [i.model_dump(mode="json", exclude_none=True) for i in issues],
        "by": who,
    }


def _app_item(record: dict[str, Any], fields: dict[str, Any]) -> DirectoryItem:
    """The directory item of a record the app holds alone (source system ``app``)."""
    return DirectoryItem(
        target_id=record["app_id"],
        source_system=APP_SYSTEM,
        source_id=record["app_id"],
        status=ItemStatus.ACTIVE,
        fields=fields,
    )


def _directory_person(record: dict[str, Any]) -> DirectoryItem:
    return _app_item(
        record,
        {
            "role": KIND_ROLE[record["kind"]],
            "given_name": record.get("given_name"),
            "family_name": record.get("family_name"),
            "email": record.get("email"),
            "grades": [record["grade"]] if record.get("grade") else [],
            "app_identifiers": record.get("identifiers") or {},
        },
    )


def _directory_class(record: dict[str, Any]) -> DirectoryItem:
    return _app_item(
        record,
        {
            "title": record.get("title"),
            "class_code": record.get("class_code"),
            "subjects": [record["subject"]] if record.get("subject") else [],
        },
    )


# ---------------------------------------------------------------------- review


def latest_run_id(deps: Deps, tenant: str) -> str | None:
    runs = deps.runs.list(tenant, limit=1)
    return runs[0].run_id if runs else None


def list_match_decisions(
    deps: Deps, tenant: str, *, run_id: str | None = None, tier: str | None = None
) -> list[dict[str, Any]]:
    """The run's non-trivial match decisions (key, auto, suggested, scored unmatched)
    with their evidence and the names of both sides (``source_name``, ``target_name``);
    the latest run by default."""
    run_id = run_id or latest_run_id(deps, tenant)
    if run_id is None:
        return []
    deps.runs.get(tenant, run_id)  # another tenant's run id is not found here
    rows = [
        r
        for r in deps.store.iter_jsonl(keys.match_review_key(tenant, run_id))
        if tier is None or r["tier"] == tier
    ]
    if tier in {None, "unmatched"}:
        rows += _unscored(deps, tenant, run_id, {(r["entity"], r["source_id"]) for r in rows})
    if rows:
        names = _Names(deps, tenant, run_id)
        for row in rows:
            row["source_name"] = names.source(row["entity"], row["source_id"])
            row["target_name"] = names.target(row["entity"], row.get("target_id"))
            row["kind"] = names.kind(row["entity"], row["source_id"])
            row["alternatives"] = [
                [alt[0], alt[1], names.target(row["entity"], alt[0])]
                for alt in row.get("alternatives") or []
            ]
    return rows


def _unscored(
    deps: Deps, tenant: str, run_id: str, listed: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The run's new people and classes that nothing in the app came close to (no
    candidate scored), so the unmatched queue is complete: those of the kinds the app has
    records of (students, teachers, guardians, classes)."""
    kinds = {
        str(r.get("kind")) for r in deps.store.iter_jsonl(keys.app_records_key(tenant, "people"))
    }
    if any(True for _ in deps.store.iter_jsonl(keys.app_records_key(tenant, "classes"))):
        kinds.add("class")
    if not kinds:
        return []
    out: list[dict[str, Any]] = []
    for entity in (Entity.USERS, Entity.CLASSES):
        for action in deps.store.iter_jsonl(keys.changes_key(tenant, run_id, entity)):
            if action.get("action") != "add" or action.get("tier") != "unmatched":
                continue
            if (entity.value, action.get("source_id")) in listed:
                continue
            person = person_kind((action.get("record") or {}).get("role"))
            kind = "class" if entity is Entity.CLASSES else person and person.value
            if kind not in kinds:
                continue  # nothing of its kind in the app to link it to
            out.append(
                {
                    "entity": entity.value,
                    "source_id": action["source_id"],
                    "target_id": None,
                    "tier": "unmatched",
                    "score": 0.0,
                    "runner_up": 0.0,
                    "agreed": [],
                    "missing": [],
                    "notes": ["no app record came close"],
                    "field_scores": {},
                    "alternatives": [],
                }
            )
    return out


class _Names:
    """Names for the ids a decision names: source records of one run, app records."""

    def __init__(self, deps: Deps, tenant: str, run_id: str | None) -> None:
        self._deps, self._tenant, self._run_id = deps, tenant, run_id
        self._sources: dict[str, dict[str, str | None]] = {}
        self._targets: dict[str, dict[str, str | None]] = {}
        self._kinds: dict[str, str | None] = {}

    def kind(self, entity: str, source_id: str | None) -> str | None:
        """teacher (staff), student, guardian, or class."""
        if entity == Entity.CLASSES.value:
            return "class"
        self.source(entity, source_id)
        return self._kinds.get(str(source_id))

    def source(self, entity: str, source_id: str | None) -> str | None:
        if source_id is None or entity not in {e.value for e in Entity}:
            return None
        if entity not in self._sources:
            found: dict[str, str | None] = {}
            if self._run_id is not None:
                key = keys.normalized_key(self._tenant, self._run_id, Entity(entity))
                for record in self._deps.store.iter_jsonl(key):
                    found[str(record.get("source_id"))] = display_name(record)
                    if entity == Entity.USERS.value:
                        person = person_kind(record.get("role"))
                        self._kinds[str(record.get("source_id"))] = person and person.value
            for item in self._deps.directory.iter_entity(self._tenant, entity):
                if item.source_system != APP_SYSTEM:
                    found.setdefault(str(item.source_id), display_name(item.fields))
            self._sources[entity] = found
        return self._sources[entity].get(source_id)

    def target(self, entity: str, target_id: str | None) -> str | None:
        if target_id is None or entity not in {e.value for e in Entity}:
            return None
        if entity not in self._targets:
            self._targets[entity] = {
                item.target_id: display_name(item.fields)
                for item in self._deps.directory.iter_entity(self._tenant, entity)
            }
        return self._targets[entity].get(target_id)


def _entity(entity: str) -> Entity:
    if entity not in {Entity.USERS.value, Entity.CLASSES.value}:
        raise MatchDecisionError("matching decisions are about users or classes")
    return Entity(entity)


#: What each kind of decision is, as the decision list says it.
DECISION_KINDS = {
    "confirmed": "a suggestion confirmed",
    "manual": "a link made by hand",
    "rejected": "a pair rejected",
    "unlinked": "a link taken away by --replace",
    "adhoc": "an app record kept without a source record",
    "archived": "an app record archived",
}
LINK_DECISIONS = frozenset({"confirmed", "manual"})


def _entry_id(sort_key: str, decision: str, target: str | None, at: str) -> str:
    digest = hashlib.blake2b(
        f"{sort_key}|{decision}|{target}|{at}".encode(), digest_size=5
    ).hexdigest()
    return f"d-{digest}"


def _sort_key_of(item: dict[str, Any]) -> str:
    """Where a decision item is kept: by source record, or (ad hoc) by app record."""
    entity = str(item.get("entity") or "")
    if item.get("source_id"):
        return decision_key(entity, "any", str(item["source_id"]))
    return f"app#{entity}#{item.get('target_id')}"


def _log_of(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The decision item's log; an item recorded before decisions were logged gets the
    entries its fields tell (its link or kept/archived state, its rejected targets)."""
    log = item.get("log")
    if isinstance(log, list):
        return [dict(e) for e in log]
    sort_key = _sort_key_of(item)
    at, who = str(item.get("decided_at") or ""), item.get("decided_by")
    entries = []
    decision = item.get("decision")
    if decision in LINK_DECISIONS | {"adhoc", "archived"} and item.get("target_id"):
        entries.append({"decision": decision, "target_id": item["target_id"]})
    entries += [
        {"decision": "rejected", "target_id": t} for t in item.get("rejected_targets") or []
    ]
    return [
        {
            **e,
            "id": _entry_id(sort_key, e["decision"], e["target_id"], at),
            "by": who,
            "at": at,
        }
        for e in entries
    ]


def _store_item(deps: Deps, tenant: str, sort_key: str, item: dict[str, Any]) -> None:
    item = {k: v for k, v in item.items() if k not in {"pk", "sk"}}
    deps.decisions.put(tenant, sort_key, item)


def _append(
    deps: Deps,
    tenant: str,
    sort_key: str,
    base: dict[str, Any],
    update: dict[str, Any],
    entry: dict[str, Any],
    who: str,
) -> dict[str, Any]:
    """Apply ``update`` to the decision item at ``sort_key`` and log ``entry``."""
    item = deps.decisions.get(tenant, sort_key) or dict(base)
    item["sk"] = sort_key
    log = _log_of(item)
    at = _now()
    logged = {
        **entry,
        "id": _entry_id(sort_key, entry["decision"], entry.get("target_id"), at + str(len(log))),
        "by": who,
        "at": at,
    }
    item.update(update)
    item["log"] = [*log, logged]
    item["decided_by"] = who
    item["decided_at"] = at
    _store_item(deps, tenant, sort_key, item)
    item.pop("sk", None)
    item.pop("pk", None)
    return {**item, "decision_id": logged["id"]}


def _record_decision(
    deps: Deps,
    tenant: str,
    entity: Entity,
    source_id: str,
    update: dict[str, Any],
    entry: dict[str, Any],
    who: str,
    launcher: RunLauncher,
    unlinked: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    sort_key = decision_key(entity.value, "any", source_id)
    base: dict[str, Any] = {"entity": entity.value, "source_id": source_id, "rejected_targets": []}
    item = _append(deps, tenant, sort_key, base, update, entry, who)
    restaged = _restage_prepared(deps, tenant, launcher)
    return {**item, "unlinked": unlinked or [], "restaged_run": restaged}


def confirm_match(
    deps: Deps,
    tenant: str,
    entity: str,
    source_id: str,
    who: str,
    target_id: str | None = None,
    *,
    launcher: RunLauncher,
    replace: bool = False,
) -> dict[str, Any]:
    """Confirm a suggestion (its candidate, or ``target_id``): a link from now on. The
    same checks as a manual link; the tenant's prepared run, if any, is re-staged
    through ``launcher``."""
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
    _check_link(deps, tenant, kind, source_id, target_id)
    unlinked = _free_target(deps, tenant, kind, source_id, target_id, replace, who)
    return _record_decision(
        deps,
        tenant,
        kind,
        source_id,
        {"decision": "confirmed", "target_id": target_id},
        {"decision": "confirmed", "target_id": target_id},
        who,
        launcher,
        unlinked,
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
    if deps.directory.get(tenant, kind.value, target_id) is None:
        raise MatchDecisionError(f"no app {kind.value} record {target_id!r}")
    if _source_record(deps, tenant, kind, source_id) is None:
        raise MatchDecisionError(f"no source {_singular(kind)} {source_id!r} in the latest run")
    current = deps.decisions.get(tenant, decision_key(kind.value, "any", source_id)) or {}
    rejected = sorted(set(current.get("rejected_targets") or []) | {target_id})
    update: dict[str, Any] = {"rejected_targets": rejected}
    if current.get("target_id") == target_id:
        update.update({"decision": "rejected", "target_id": None})
    return _record_decision(
        deps,
        tenant,
        kind,
        source_id,
        update,
        {"decision": "rejected", "target_id": target_id},
        who,
        launcher,
    )


def _singular(kind: Entity) -> str:
    return "class" if kind is Entity.CLASSES else "user"


def _source_record(deps: Deps, tenant: str, kind: Entity, source_id: str) -> dict[str, Any] | None:
    """The source record ``source_id`` of the latest run (None if it has none)."""
    run_id = latest_run_id(deps, tenant)
    if run_id is None:
        return None
    return next(
        (
            r
            for r in deps.store.iter_jsonl(keys.normalized_key(tenant, run_id, kind))
            if r.get("source_id") == source_id
        ),
        None,
    )


def _check_link(deps: Deps, tenant: str, kind: Entity, source_id: str, target_id: str) -> None:
    """Refuse a link from a source record the latest run does not have, to an app record
    that does not exist, or across kinds of person (a student to a teacher's record)."""
    target = deps.directory.get(tenant, kind.value, target_id)
    if target is None:
        raise MatchDecisionError(f"no app {kind.value} record {target_id!r}")
    source = _source_record(deps, tenant, kind, source_id)
    if source is None:
        raise MatchDecisionError(f"no source {_singular(kind)} {source_id!r} in the latest run")
    if kind is not Entity.USERS:
        return
    wanted, found = person_kind(source.get("role")), person_kind(target.fields.get("role"))
    if wanted is not None and found is not None and wanted != found:
        raise MatchDecisionError(
            f"{source_id} is a {wanted.value} but {target_id} is a {found.value}'s record: "
            "a link never crosses kinds of person"
        )


def _holders(
    deps: Deps, tenant: str, kind: Entity, source_id: str, target_id: str
) -> list[dict[str, Any]]:
    """Who else holds ``target_id``: ``[{source_id, how}]`` with how one of ``decision``
    (an admin's link), ``committed`` (a committed link), ``matched`` (the latest run's
    key or automatic match)."""
    holders: list[dict[str, Any]] = []
    for item in deps.decisions.all(tenant):
        if (
            item.get("entity") == kind.value
            and item.get("target_id") == target_id
            and item.get("decision") in LINK_DECISIONS
            and item.get("source_id") != source_id
        ):
            holders.append({"source_id": item["source_id"], "how": "decision"})
    target = deps.directory.get(tenant, kind.value, target_id)
    if (
        target is not None
        and target.source_system not in {None, APP_SYSTEM}
        and target.source_id not in {None, source_id}
    ):
        holders.append({"source_id": target.source_id, "how": "committed"})
    run_id = latest_run_id(deps, tenant)
    if run_id is not None:
        for row in deps.store.iter_jsonl(keys.match_review_key(tenant, run_id)):
            if (
                row.get("entity") == kind.value
                and row.get("target_id") == target_id
                and row.get("tier") in {"key", "auto"}
                and row.get("source_id") != source_id
            ):
                holders.append({"source_id": row["source_id"], "how": "matched"})
    unique: dict[str, dict[str, Any]] = {}
    for holder in holders:
        unique.setdefault(str(holder["source_id"]), holder)
    return list(unique.values())


def _free_target(
    deps: Deps,
    tenant: str,
    kind: Entity,
    source_id: str,
    target_id: str,
    replace: bool,
    who: str,
) -> list[dict[str, Any]]:
    """Refuse a target another source record holds, unless ``replace``: then the other
    holder is unlinked (an admin's link) or its match rejected (the latest run's), each a
    decision of its own that can be undone. A committed link is never moved from here."""
    holders = _holders(deps, tenant, kind, source_id, target_id)
    if not holders:
        return []
    names = _Names(deps, tenant, latest_run_id(deps, tenant))

    def named(holder: dict[str, Any]) -> str:
        name = names.source(kind.value, holder["source_id"])
        return f"{holder['source_id']}" + (f" ({name})" if name else "")

    committed = [h for h in holders if h["how"] == "committed"]
    if committed:
        raise MatchDecisionError(
            f"{target_id} is linked to {named(committed[0])} by a committed sync: a "
            f"committed link is not moved by hand; link {committed[0]['source_id']} to "
            "another app record first, or archive it"
        )
    if not replace:
        others = ", ".join(
            f"{named(h)} ({'an admin' if h['how'] == 'decision' else 'the latest run'})"
            for h in holders
        )
        raise MatchDecisionError(
            f"{target_id} is already linked to {others}: pass --replace (API: replace) to unlink it"
        )
    unlinked = []
    for holder in holders:
        other_key = decision_key(kind.value, "any", holder["source_id"])
        base: dict[str, Any] = {
            "entity": kind.value,
            "source_id": holder["source_id"],
            "rejected_targets": [],
        }
        if holder["how"] == "decision":
            _append(
                deps,
                tenant,
                other_key,
                base,
                {"decision": "unlinked", "target_id": None},
                {"decision": "unlinked", "target_id": target_id, "for": source_id},
                who,
            )
        else:
            current = deps.decisions.get(tenant, other_key) or {}
            rejected = sorted(set(current.get("rejected_targets") or []) | {target_id})
            _append(
                deps,
                tenant,
                other_key,
                base,
                {"rejected_targets": rejected},
                {"decision": "rejected", "target_id": target_id, "for": source_id},
                who,
            )
        unlinked.append(
            {
                "source_id": holder["source_id"],
                "source_name": names.source(kind.value, holder["source_id"]),
                "target_id": target_id,
                "how": holder["how"],
            }
        )
    return unlinked


def link_manually(
    deps: Deps,
    tenant: str,
    entity: str,
    source_id: str,
    target_id: str,
    who: str,
    *,
    launcher: RunLauncher,
    replace: bool = False,
) -> dict[str, Any]:
    """Link a source record to an app record by hand. The record must exist and be of
    the same kind of person, and no other source record may hold it unless ``replace``
    (which unlinks the other and says so in ``unlinked``)."""
    kind = _entity(entity)
    _check_link(deps, tenant, kind, source_id, target_id)
    unlinked = _free_target(deps, tenant, kind, source_id, target_id, replace, who)
    return _record_decision(
        deps,
        tenant,
        kind,
        source_id,
        {"decision": "manual", "target_id": target_id},
        {"decision": "manual", "target_id": target_id},
        who,
        launcher,
        unlinked,
    )


def mark_adhoc(
    deps: Deps, tenant: str, entity: str, target_id: str, keep: bool, who: str
) -> dict[str, Any]:
    """An app record with no source record: keep it (ad hoc) or archive it. Either way it
    is no longer offered to matching."""
    kind = _entity(entity)
    item = deps.directory.get(tenant, kind.value, target_id)
    if item is None or item.source_system != APP_SYSTEM:
        raise MatchDecisionError(f"{target_id} is not an app record without a source link")
    decision = "adhoc" if keep else "archived"
    deps.directory.set_fields(
        tenant,
        kind.value,
        target_id,
        DirectoryChange(adhoc=keep, status=ItemStatus.ACTIVE if keep else ItemStatus.ARCHIVED),
    )
    sort_key = f"app#{kind.value}#{target_id}"
    record = _append(
        deps,
        tenant,
        sort_key,
        {"entity": kind.value, "target_id": target_id},
        {"decision": decision, "target_id": target_id},
        {"decision": decision, "target_id": target_id},
        who,
    )
    return record


# ---------------------------------------------------------------------- decisions


def list_decisions(deps: Deps, tenant: str) -> list[dict[str, Any]]:
    """Every admin decision, newest first: ``{id, entity, decision, what, source_id,
    source_name, target_id, target_name, by, at, state}`` where state is ``in effect``,
    ``undone`` or ``superseded`` (a later decision about the same record replaced it)."""
    keys.check_tenant(tenant)
    names = _Names(deps, tenant, latest_run_id(deps, tenant))
    out: list[dict[str, Any]] = []
    for item in deps.decisions.all(tenant):
        entity = str(item.get("entity") or "")
        log = _log_of(item)
        for entry in log:
            out.append(
                {
                    "id": entry["id"],
                    "entity": entity,
                    "decision": entry["decision"],
                    "what": DECISION_KINDS.get(entry["decision"], entry["decision"]),
                    "source_id": item.get("source_id"),
                    "source_name": names.source(entity, item.get("source_id")),
                    "target_id": entry.get("target_id"),
                    "target_name": names.target(entity, entry.get("target_id")),
                    "for": entry.get("for"),
                    "by": entry.get("by"),
                    "at": entry.get("at"),
                    "undone_by": entry.get("undone_by"),
                    "undone_at": entry.get("undone_at"),
                    "state": _state_of(item, entry),
                }
            )
    out.sort(key=lambda d: (str(d["at"] or ""), d["id"]), reverse=True)
    return out


def _state_of(item: dict[str, Any], entry: dict[str, Any]) -> str:
    if entry.get("undone_at"):
        return "undone"
    decision, target = entry["decision"], entry.get("target_id")
    if decision == "rejected":
        return "in effect" if target in (item.get("rejected_targets") or []) else "superseded"
    if decision in LINK_DECISIONS | {"adhoc", "archived"}:
        latest = next((e for e in reversed(_log_of(item)) if e["decision"] != "rejected"), None)
        same = item.get("decision") == decision and item.get("target_id") == target
        return "in effect" if same and latest and latest["id"] == entry["id"] else "superseded"
    if decision == "unlinked":
        return "in effect" if item.get("decision") == "unlinked" else "superseded"
    return "in effect"


def undo_decision(
    deps: Deps, tenant: str, decision_id: str, who: str, *, launcher: RunLauncher
) -> dict[str, Any]:
    """Reverse one decision that is still in effect: a link is removed (the record is
    matched again by the next staging), a rejected pair may be suggested again, an app
    record kept or archived goes back to the queue, active. Says what it did in
    ``undone``; the tenant's prepared run is re-staged."""
    keys.check_tenant(tenant)
    for item in deps.decisions.all(tenant):
        log = _log_of(item)
        entry = next((e for e in log if e["id"] == decision_id), None)
        if entry is None:
            continue
        state = _state_of(item, entry)
        if state != "in effect":
            raise MatchDecisionError(f"decision {decision_id} is {state}: nothing to undo")
        return _undo(deps, tenant, item, log, entry, who, launcher)
    raise MatchDecisionError(
        f"no decision {decision_id!r}: list them with `rostersync matches --decisions`"
    )


def _undo(
    deps: Deps,
    tenant: str,
    item: dict[str, Any],
    log: list[dict[str, Any]],
    entry: dict[str, Any],
    who: str,
    launcher: RunLauncher,
) -> dict[str, Any]:
    sort_key = _sort_key_of(item)
    entity = _entity(str(item.get("entity")))
    decision, target = entry["decision"], entry.get("target_id")
    source_id = item.get("source_id")
    if decision in LINK_DECISIONS:
        item.update({"decision": "undone", "target_id": None})
        said = f"{source_id} is no longer linked to {target}"
    elif decision == "rejected":
        item["rejected_targets"] = [t for t in item.get("rejected_targets") or [] if t != target]
        said = f"{source_id} and {target} may be suggested again"
    elif decision == "unlinked":
        assert source_id is not None and target is not None
        if _holders(deps, tenant, entity, str(source_id), str(target)):
            raise MatchDecisionError(
                f"{target} is linked to another record now: undo that link first"
            )
        earlier = next(
            (
                e
                for e in reversed(log)
                if e["decision"] in LINK_DECISIONS and e["target_id"] == target
            ),
            None,
        )
        item.update({"decision": earlier["decision"] if earlier else "manual", "target_id": target})
        said = f"{source_id} is linked to {target} again"
    else:  # adhoc, archived: back to the queue, active
        deps.directory.set_fields(
            tenant,
            entity.value,
            str(target),
            DirectoryChange(adhoc=False, status=ItemStatus.ACTIVE),
        )
        item.update({"decision": "undone"})
        said = f"{target} is back among the unmatched app records, active"
    for logged in log:
        if logged["id"] == entry["id"]:
            logged.update({"undone_by": who, "undone_at": _now()})
    item["log"] = log
    _store_item(deps, tenant, sort_key, item)
    restaged = _restage_prepared(deps, tenant, launcher)
    return {
        "decision_id": entry["id"],
        "entity": entity.value,
        "decision": decision,
        "source_id": source_id,
        "target_id": target,
        "undone": said,
        "restaged_run": restaged,
    }


def _restage_prepared(deps: Deps, tenant: str, launcher: RunLauncher) -> str | None:
    """Start matching and staging the tenant's latest run again if it is prepared,
    keeping the actions an admin unticked."""
    run_id = latest_run_id(deps, tenant)
    if run_id is None or deps.runs.get(tenant, run_id).status is not RunStatus.PREPARED:
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
