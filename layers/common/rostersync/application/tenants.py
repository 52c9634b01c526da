"""Tenants and their settings (kept with every change: who, when, which fields)."""

from __future__ import annotations

from datetime import UTC, datetime

from rostersync.pipeline.deps import Deps
from rostersync.pipeline.tenant_settings import load_settings
from rostersync.records import ItemStatus
from rostersync.settings import SettingsError, TenantSettings


def load_tenant_settings(deps: Deps, tenant: str) -> TenantSettings:
    """The tenant's settings (defaults until changed)."""
    return load_settings(deps, tenant)


def _changed_fields(
    before: dict[str, object], after: dict[str, object], prefix: str = ""
) -> list[str]:
    changed: list[str] = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_fields(old, new, f"{prefix}{name}.")
        elif old != new:
            changed.append(prefix + name)
    return changed


def _listing(values: list[str], limit: int = 10) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def check_against_roster(
    deps: Deps, tenant: str, before: TenantSettings, after: TenantSettings
) -> None:
    """Refuse settings that cannot work on the tenant's committed roster (where it has
    one): schools it does not have in ``schools.include`` or ``schools.mapping``, grades
    no class of it teaches in ``class_filters.grades``, class types none of its classes
    has in ``class_filters.class_types`` or ``homerooms_only``. Only values new in ``after`` are
    checked (a school that left the roster does not block other changes)."""
    errors: list[dict[str, str]] = []
    new_schools = [s for s in after.schools.include if s not in before.schools.include]
    new_mapped = [s for s in after.schools.mapping if s not in before.schools.mapping]
    if new_schools or new_mapped:
        orgs = list(deps.directory.iter_entity(tenant, "orgs"))
        if orgs:
            known = {str(o.source_id) for o in orgs}
            schools = sorted(
                f"{o.source_id} ({o.fields.get('name')})"
                for o in orgs
                if o.fields.get("type") == "school"
            )
            for field_name, given in (
                ("schools.include", new_schools),
                ("schools.mapping", new_mapped),
            ):
                unknown = [s for s in given if s not in known]
                if unknown:
                    errors.append(
                        {
                            "field": field_name,
                            "message": f"no school {_listing([repr(u) for u in unknown])} in "
                            "the tenant's roster "
                            f"(its schools: {_listing(schools) or 'none'})",
                        }
                    )
    wanted = set(after.class_filters.class_types) | (
        {"homeroom"} if after.class_filters.homerooms_only else set()
    )
    was = set(before.class_filters.class_types) | (
        {"homeroom"} if before.class_filters.homerooms_only else set()
    )
    if wanted and wanted != was:
        classes = list(deps.directory.iter_entity(tenant, "classes"))
        present = {
            str(c.fields.get("class_type")) for c in classes if c.status is ItemStatus.ACTIVE
        }
        if classes and not wanted & present:
            field_name = (
                "class_filters.homerooms_only"
                if after.class_filters.homerooms_only
                else "class_filters.class_types"
            )
            errors.append(
                {
                    "field": field_name,
                    "message": f"no class of the tenant's roster is of type "
                    f"{' or '.join(sorted(wanted))}; the filter would leave out every class "
                    f"of it (types present: {', '.join(sorted(present - {'None'})) or 'none'})",
                }
            )
    new_grades = [g for g in after.class_filters.grades if g not in before.class_filters.grades]
    if new_grades:
        classes = list(deps.directory.iter_entity(tenant, "classes"))
        if classes:
            taught = sorted({str(g) for c in classes for g in (c.fields.get("grades") or [])})
            unknown = [g for g in new_grades if g not in taught]
            if unknown:
                errors.append(
                    {
                        "field": "class_filters.grades",
                        "message": f"no class of the tenant's roster teaches grade "
                        f"{_listing([repr(u) for u in unknown])}; the filter would leave out "
                        "every class of it "
                        f"(grades taught: {_listing(taught) or 'none'})",
                    }
                )
    if errors:
        raise SettingsError(errors)


def _value_at(data: dict[str, object], dotted: str) -> object:
    value: object = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def settings_changes(
    before: dict[str, object], after: dict[str, object]
) -> dict[str, list[object]]:
    """``{dotted field: [old, new]}`` of what differs between two settings dumps."""
    return {
        name: [_value_at(before, name), _value_at(after, name)]
        for name in _changed_fields(before, after)
    }


def settings_history(deps: Deps, tenant: str) -> list[dict[str, object]]:
    """Every settings change, oldest first, each with ``changes``: ``{field: [old, new]}``
    (the first change's old values are the defaults)."""
    previous: dict[str, object] = TenantSettings().model_dump(mode="json")
    out: list[dict[str, object]] = []
    for record in deps.tenants.settings_history(tenant):
        current = dict(record.get("settings") or {})
        entry = {k: v for k, v in record.items() if k not in {"pk", "sk", "settings"}}
        entry["changes"] = {
            name: [_value_at(previous, name), _value_at(current, name)]
            for name in record.get("changed") or []
        }
        out.append(entry)
        previous = current
    return out


def save_tenant_settings(
    deps: Deps, tenant: str, settings: TenantSettings, *, who: str
) -> list[str]:
    """Store validated settings; record the change; return the changed field names.
    SettingsError if they cannot work on the tenant's roster (``check_against_roster``)."""
    current = load_settings(deps, tenant)
    check_against_roster(deps, tenant, current, settings)
    before = current.model_dump(mode="json")
    after = settings.model_dump(mode="json")
    changed = _changed_fields(before, after)
    if not changed:
        return []  # nothing to keep: the history lists changes only
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    if "schedule" in {name.split(".")[0] for name in changed}:
        # Validate with the scheduler before the settings are stored.
        from rostersync.application.schedules import sync_schedule

        sync_schedule(None, tenant, settings)
    deps.tenants.put_settings(tenant, after, who=who, at=at, changed=changed)
    return changed


def tenant_ids(deps: Deps) -> list[str]:
    """Every tenant of the stack, sorted."""
    return sorted(deps.inbox_records.tenant_ids())


def open_tenant(deps: Deps, tenant: str, *, create: bool = False) -> bool:
    """Make sure ``tenant`` exists; True if it was created now.

    An unknown tenant is created on first use when the stack has no tenant yet (a
    newcomer's first command just works) or when ``create`` says so; otherwise it is
    refused with the known tenants listed (a mistyped tenant is never created silently).
    """
    from rostersync.application.sync import ensure_tenant
    from rostersync.errors import UnknownTenant
    from rostersync.storage.keys import check_tenant

    check_tenant(tenant)
    if deps.tenants.get_meta(tenant) is not None:
        return False
    known = tenant_ids(deps)
    if known and not create:
        raise UnknownTenant(
            f"unknown tenant {tenant!r}; the tenants are {', '.join(known)} "
            "(give --create-tenant to create a new one)"
        )
    return ensure_tenant(deps, tenant, create=True)


def tenant_summaries(deps: Deps) -> list[dict[str, object]]:
    """Every tenant with when it was created, its connected source and its last run."""
    out: list[dict[str, object]] = []
    for tenant in tenant_ids(deps):
        meta = deps.tenants.get_meta(tenant) or {}
        source = deps.tenants.get_source(tenant) or {}
        last = deps.runs.list(tenant, 1)
        out.append(
            {
                "tenant": tenant,
                "created_at": meta.get("created_at"),
                "source": source.get("kind") or "oneroster_csv",
                "last_run": last[0].run_id if last else None,
                "last_status": last[0].status.value if last else None,
            }
        )
    return out


def remove_tenant(deps: Deps, tenant: str) -> dict[str, int]:
    """Remove everything of ``tenant`` from the embedded store: its table items, objects,
    events and secrets (the command line removes its SFTP users and report copies).
    Raises UnknownTenant for a tenant that does not exist."""
    from rostersync.application.connect import secret_fields
    from rostersync.errors import UnknownTenant
    from rostersync.sources.registry import source_kinds
    from rostersync.storage.keys import check_tenant
    from rostersync.storage.local import open_local_store
    from rostersync.storage.local.purge import purge_tenant
    from rostersync.storage.secrets import SecretStore

    check_tenant(tenant)
    if deps.tenants.get_meta(tenant) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    if deps.settings.local_store_dir is None:
        raise UnknownTenant("tenants are removed here only from a local state")
    # Secrets first, while the connection records still name them.
    names = {f.name for kind in source_kinds() for f in secret_fields(kind)}
    for connection in [deps.tenants.get_source(tenant) or {}, *deps.tenants.source_history(tenant)]:
        names |= {str(n) for n in (connection.get("secrets") or {}).values()}
    secrets = 0
    if isinstance(deps.secrets, SecretStore):
        for name in sorted(names):
            secrets += bool(deps.secrets.delete_secret(tenant, name))
    purged = purge_tenant(open_local_store(deps.settings.local_store_dir), tenant)
    return {
        "items": purged.items,
        "objects": purged.objects,
        "events": purged.events,
        "secrets": secrets,
    }
