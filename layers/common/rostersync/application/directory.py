"""The committed roster: browsing it (search, one record with its links, classes and
history across runs), and the edits the app makes to it (a teacher fixes a parent's
email).

Contact fields edited in the app are kept by later syncs unless the tenant lets the
sync overwrite them (``overwrite_app_contact_edits``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rostersync.errors import FatalError
from rostersync.models import Entity
from rostersync.pipeline.deps import Deps
from rostersync.records import DirectoryChange, DirectoryItem, ItemStatus, RunRecord, RunStatus
from rostersync.settings import CONTACT_FIELDS
from rostersync.storage import keys


class UnknownRecord(FatalError):
    """No directory record with this app id."""


class InvalidEdit(FatalError):
    """An edit the app may not make (a field that is not a contact detail)."""


def record_app_edit(
    deps: Deps, tenant: str, entity: str, target_id: str, fields: dict[str, Any], who: str
) -> dict[str, Any]:
    """Apply the app's edit of a record's contact details (email, phone, sms) to the
    directory and remember that the app owns those fields: later syncs keep them unless
    the tenant lets the sync overwrite them. Returns the edited record."""
    kind = Entity(entity)
    if not fields:
        raise InvalidEdit("no fields to edit")
    others = sorted(set(fields) - set(CONTACT_FIELDS))
    if kind is not Entity.USERS or others:
        raise InvalidEdit(
            "the app may edit users' contact details only "
            f"({', '.join(CONTACT_FIELDS)})" + (f"; not {', '.join(others)}" if others else "")
        )
    if deps.directory.get(tenant, kind.value, target_id) is None:
        raise UnknownRecord(f"no {kind.value} record {target_id}")
    deps.directory.set_fields(tenant, kind.value, target_id, DirectoryChange(fields=fields))
    at = datetime.now(UTC).isoformat(timespec="seconds")
    deps.app_edits.put(tenant, kind.value, target_id, fields, who, at)
    edited = deps.directory.get(tenant, kind.value, target_id)
    return edited.flat() if edited is not None else {}


# ---------------------------------------------------------------- browsing

#: How many runs, newest first, a record's history looks through.
HISTORY_RUNS = 60
#: Runs whose change set says what they did (or would do) to a record.
RUNS_WITH_CHANGES = frozenset(
    {RunStatus.COMMITTED, RunStatus.PREPARED, RunStatus.HELD, RunStatus.APPROVED}
)


def display_name(record: Mapping[str, Any] | None) -> str | None:
    """A record's name as a person would say it (a person's, a class's, a school's)."""
    if not record:
        return None
    given = record.get("preferred_given_name") or record.get("given_name")
    person = " ".join(str(p) for p in (given, record.get("family_name")) if p)
    return person or record.get("title") or record.get("name") or None


_name = display_name


def _fields(item: DirectoryItem | None) -> Mapping[str, Any]:
    return item.fields if item is not None else {}


def _searchable(item: DirectoryItem) -> str:
    record = item.fields
    parts = [
        _name(record),
        record.get("email"),
        record.get("username"),
        record.get("identifier"),
        record.get("class_code"),
        record.get("course_code"),
        item.source_id,
        item.target_id,
        *(str(u.get("identifier")) for u in record.get("user_ids") or [] if isinstance(u, dict)),
        *(str(v) for v in (record.get("app_identifiers") or {}).values()),
    ]
    return " ".join(str(p) for p in parts if p).casefold()


def _schools_of(record: Mapping[str, Any]) -> list[str]:
    found = list(record.get("org_source_ids") or [])
    for name in ("school_source_id", "org_source_id"):
        if record.get(name) and record[name] not in found:
            found.append(record[name])
    return found


def search_directory(
    deps: Deps,
    tenant: str,
    entity: str,
    *,
    text: str | None = None,
    roles: list[str] | None = None,
    status: str | None = None,
    school: str | None = None,
    source_system: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """A page of one entity's committed records matching every word of ``text`` (name,
    email, ids, codes), one of ``roles``, ``status``, ``school`` (a school's source id) and
    ``source_system`` (``app``: the app's own records no sync has linked); ``total``
    counts every match. Records come in app id order."""
    kind = Entity(entity)
    words = (text or "").casefold().split()
    wanted_roles = {r for r in roles or [] if r}
    items: list[dict[str, Any]] = []
    total = 0
    if not words and not school:
        # Equalities only: the store filters, counts and pages (only the page is read).
        equals: dict[str, list[str]] = {}
        if wanted_roles:
            equals["role"] = sorted(wanted_roles)
        if status:
            equals["status"] = [status]
        if source_system:
            equals["source_system"] = [source_system]
        found, total = deps.directory.select_flat(
            tenant, kind.value, equals, {"status": ItemStatus.ACTIVE.value}, offset, limit
        )
        return _page(kind, offset, limit, total, found)
    for item in deps.directory.iter_entity(tenant, kind.value):
        if wanted_roles and item.fields.get("role") not in wanted_roles:
            continue
        if status and item.status.value != status:
            continue
        if source_system and item.source_system != source_system:
            continue
        if school and school not in _schools_of(item.fields) and item.source_id != school:
            continue
        if words:
            haystack = _searchable(item)
            if not all(word in haystack for word in words):
                continue
        if offset <= total < offset + limit:
            items.append(item.flat())
        total += 1
    return _page(kind, offset, limit, total, items)


def _page(
    kind: Entity, offset: int, limit: int, total: int, items: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "entity": kind.value,
        "offset": offset,
        "limit": limit,
        "total": total,
        "next_offset": offset + limit if total > offset + limit else None,
        "items": items,
    }


def _identifiers(item: DirectoryItem) -> list[dict[str, str]]:
    record = item.fields
    out: list[dict[str, str]] = [{"type": "app id", "value": item.target_id}]
    if item.source_id and item.source_system != "app":
        out.append({"type": f"{item.source_system} id", "value": item.source_id})
    for name in ("identifier", "username", "email", "class_code", "course_code"):
        if record.get(name):
            out.append({"type": name.replace("_", " "), "value": str(record[name])})
    for user_id in record.get("user_ids") or []:
        if isinstance(user_id, dict) and user_id.get("identifier"):
            out.append({"type": str(user_id.get("type")), "value": str(user_id["identifier"])})
    for name, value in (record.get("app_identifiers") or {}).items():
        out.append({"type": f"app {name}", "value": str(value)})
    return out


def record_view(deps: Deps, tenant: str, entity: str, target_id: str) -> dict[str, Any]:
    """One committed record with what it is connected to: its identifiers, its link to
    the source, its schools, its classes (a user's enrollments) or people (a class's),
    its guardians or children, and its history across runs (``record_history``)."""
    kind = Entity(entity)
    item = deps.directory.get(tenant, kind.value, target_id)
    if item is None:
        raise UnknownRecord(f"no {kind.value} record {target_id}")
    source_id = item.source_id
    orgs = {o.source_id: o for o in deps.directory.iter_entity(tenant, Entity.ORGS.value)}
    schools = [
        {
            "source_id": s,
            "target_id": orgs[s].target_id if s in orgs else None,
            "name": _fields(orgs.get(s)).get("name"),
        }
        for s in _schools_of(item.fields)
    ]
    view: dict[str, Any] = {
        "entity": kind.value,
        "name": _name(item.fields),
        "record": item.flat(),
        "identifiers": _identifiers(item),
        "link": (
            None
            if item.source_system in {None, "app"}
            else {
                "source_system": item.source_system,
                "source_id": source_id,
                "target_id": item.target_id,
            }
        ),
        "schools": schools,
        "enrollments": [],
        "related": [],
        "history": record_history(deps, tenant, kind.value, item),
    }
    if kind in {Entity.USERS, Entity.CLASSES} and source_id:
        mine = "user_source_id" if kind is Entity.USERS else "class_source_id"
        other, other_entity = (
            ("class_source_id", Entity.CLASSES)
            if kind is Entity.USERS
            else ("user_source_id", Entity.USERS)
        )
        enrollments = [
            e
            for e in deps.directory.iter_entity(tenant, Entity.ENROLLMENTS.value)
            if e.fields.get(mine) == source_id
        ]
        others = {
            o.source_id: o
            for o in deps.directory.iter_entity(tenant, other_entity.value)
            if o.source_id in {e.fields.get(other) for e in enrollments}
        }

        def counterpart(e: DirectoryItem) -> dict[str, Any]:
            found = others.get(e.fields.get(other))
            return {
                "source_id": e.fields.get(other),
                "target_id": found.target_id if found is not None else None,
                "name": _name(_fields(found)),
                "role": _fields(found).get("role"),
            }

        view["enrollments"] = [
            {
                "target_id": e.target_id,
                "role": e.fields.get("role"),
                "status": e.status.value,
                ("class" if other_entity is Entity.CLASSES else "user"): counterpart(e),
            }
            for e in enrollments
        ]
    if kind is Entity.USERS and source_id:
        agents = set(item.fields.get("agent_source_ids") or [])
        view["related"] = [
            {
                "source_id": u.source_id,
                "target_id": u.target_id,
                "name": _name(u.fields),
                "role": u.fields.get("role"),
                "status": u.status.value,
            }
            for u in deps.directory.iter_entity(tenant, Entity.USERS.value)
            if u.source_id in agents or source_id in (u.fields.get("agent_source_ids") or [])
        ]
    return view


def _why(run: RunRecord, action: dict[str, Any]) -> str:
    """Why a run did this to a record, in words."""
    kind = action.get("action")
    if run.undo_of:
        because = f"undoing run {run.undo_of}"
    elif action.get("cascade_of"):
        because = f"follows from {action['cascade_of']}"
    elif kind == "add" and action.get("tier") not in {None, "unmatched"}:
        how = {"key": "by key", "auto": "automatically", "manual": "by an admin"}
        because = (
            f"the source's record {action.get('source_id')} linked to it "
            f"{how.get(str(action.get('tier')), '(' + str(action.get('tier')) + ')')}"
        )
    elif kind == "add":
        because = "new in the source"
    elif kind == "update":
        because = "changed in the source: " + ", ".join(sorted(action.get("changes") or {}))
    elif kind == "archive":
        because = (
            "absent from the source's full export"
            if run.mode == "full"
            else "the source marked it inactive or deleted"
        )
    elif kind == "reactivate":
        because = "back in the source"
    else:
        because = str(kind)
    if action.get("reason"):
        because += f"; {action['reason']}"
    return because


def record_history(
    deps: Deps, tenant: str, entity: str, item: DirectoryItem
) -> list[dict[str, Any]]:
    """What each run did (or, prepared or held, would do) to the record, newest first:
    ``{run_id, run_status, started_at, trigger, requested_by, committed_by, action,
    included, held, applied, reason, why, changes, tier}``, from the runs' change sets (the
    last ``HISTORY_RUNS`` runs)."""
    kind = Entity(entity)
    target_id, source_id = item.target_id, item.source_id
    out: list[dict[str, Any]] = []
    for run in deps.runs.list(tenant, HISTORY_RUNS):
        if run.status not in RUNS_WITH_CHANGES:
            continue
        shown = run.shown()
        for action in deps.store.iter_jsonl(keys.changes_key(tenant, run.run_id, kind)):
            if action.get("target_id") != target_id and not (
                source_id and action.get("source_id") == source_id
            ):
                continue
            out.append(
                {
                    "run_id": run.run_id,
                    "run_status": run.status.value,
                    "started_at": shown.get("started_at"),
                    "trigger": run.trigger,
                    "requested_by": run.requested_by,
                    "committed_by": run.committed_by,
                    "action": action.get("action"),
                    "included": action.get("included"),
                    "held": action.get("held", False),
                    "applied": action.get("applied", False),
                    "reason": action.get("reason"),
                    "why": _why(run, action),
                    "changes": action.get("changes") or {},
                    "tier": action.get("tier"),
                }
            )
    return out
