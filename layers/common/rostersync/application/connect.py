"""Connecting a tenant to its source, and what a run without a named input syncs.

A tenant's *connected source* is kept with the tenant (the tenants table, item
``{tenant, "source"}``, each change also kept as ``source#{at}``): its kind, its spec
without any secret, and the names under which its secrets sit in the tenant's secret
store (Secrets Manager ``rostersync/{tenant}/{name}`` on AWS, a 0600 file locally). A
secret goes to the secret store only: it is never stored with the tenant, returned,
logged or put in an error.

A source connects by its spec and the ``SecretField`` list it declares
(``sources.base.Connectable``): Clever's ``token`` (its spec's ``secret_name``); the
OneRoster REST, Wonde and Assembly sources declare theirs the same way. OneRoster CSV
(``oneroster_csv``, the default) has no spec to keep: its runs sync the newest complete
bundle in the tenant's inbox (SFTP drops). Switching kinds deletes the secrets the
previous kind had and the new one does not use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from rostersync.application.inbox import latest_complete_bundle
from rostersync.application.runs import bundle_source
from rostersync.errors import RunStateError, UnknownTenant
from rostersync.pipeline.deps import Deps
from rostersync.settings import SettingsError
from rostersync.sources.base import (
    Connectable,
    ConnectionCheck,
    GuardianFileRef,
    SecretField,
    SourceSpec,
)
from rostersync.sources.registry import UnknownSource, parse_spec, registered_source, source_kinds
from rostersync.storage import keys
from rostersync.storage.secrets import SecretStore, SecretStoreError, check_secret_name

__all__ = [
    "INBOX_KIND",
    "ConnectedSource",
    "NothingToSync",
    "SourceSettingsError",
    "connect_source",
    "connected_api_source",
    "connected_source",
    "sync_source",
]

#: The kind whose runs sync the tenant's inbox bundles (no spec, no secret).
INBOX_KIND = "oneroster_csv"
#: Spec fields a connection never sets (they belong to one run).
RUN_ONLY_FIELDS = frozenset({"kind", "guardians"})


class SourceSettingsError(SettingsError):
    """A connection's kind, settings or secrets do not validate; each field named."""


class NothingToSync(RunStateError):
    """A run without a named input, for a tenant with no API source and no bundle."""


@dataclass(frozen=True)
class ConnectedSource:
    """A tenant's connected source as shown: settings, and secrets as set or missing."""

    tenant: str
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    #: Secret field → ``"set"`` or ``"missing"``; never a value.
    secrets: dict[str, str] = field(default_factory=dict)
    connected_by: str | None = None
    connected_at: str | None = None
    #: What checking the secrets with the source said, when connecting checked them.
    check: ConnectionCheck | None = None

    @property
    def from_inbox(self) -> bool:
        return self.kind == INBOX_KIND

    def shown(self) -> dict[str, Any]:
        """The connection as JSON (``connect show --json``, ``GET /tenants/{t}/source``)."""
        return {
            "tenant": self.tenant,
            "kind": self.kind,
            "settings": self.settings,
            "secrets": self.secrets,
            "connected_by": self.connected_by,
            "connected_at": self.connected_at,
            "check": None
            if self.check is None
            else {"ok": self.check.ok, "message": self.check.message},
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _kind(kind: str) -> str:
    """``oneroster-csv`` and ``oneroster_csv`` alike; an unregistered kind refused."""
    name = kind.strip().lower().replace("-", "_")
    try:
        registered_source(name)
    except UnknownSource:
        raise SourceSettingsError(
            [{"field": "kind", "message": f"unknown kind; one of {', '.join(source_kinds())}"}]
        ) from None
    return name


def secret_fields(kind: str) -> tuple[SecretField, ...]:
    """The secrets a source of ``kind`` reads from the tenant's store."""
    source = registered_source(kind)
    return source.secret_fields if isinstance(source, Connectable) else ()


def _secret_store(deps: Deps) -> SecretStore:
    if not isinstance(deps.secrets, SecretStore):
        raise SecretStoreError("this process's secret store cannot be written")
    return deps.secrets


def _spec(kind: str, settings: dict[str, Any]) -> SourceSpec | None:
    refused = sorted(RUN_ONLY_FIELDS & set(settings) - {"kind"})
    if refused:
        raise SourceSettingsError(
            [{"field": name, "message": "not a setting of a connection"} for name in refused]
        )
    if kind == INBOX_KIND:
        if settings:
            raise SourceSettingsError(
                [
                    {"field": name, "message": "OneRoster CSV bundles come from the inbox"}
                    for name in sorted(settings)
                ]
            )
        return None
    try:
        return registered_source(kind).spec_model.model_validate({**settings, "kind": kind})
    except ValidationError as exc:
        raise SourceSettingsError(
            [
                {
                    "field": ".".join(str(p) for p in err["loc"]) or "settings",
                    "message": err["msg"],
                }
                for err in exc.errors()
            ]
        ) from None


def _settings_of(spec: SourceSpec | None) -> dict[str, Any]:
    if spec is None:
        return {}
    dumped = spec.model_dump(mode="json")
    return {name: value for name, value in dumped.items() if name not in RUN_ONLY_FIELDS}


def connect_source(
    deps: Deps,
    tenant: str,
    kind: str,
    settings: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    *,
    who: str,
    check: bool = True,
) -> ConnectedSource:
    """Connect ``tenant`` to a source of ``kind``: validate the settings, put each secret
    given in the secret store (a secret not given must be there already), keep the spec
    with the tenant, and (``check``) try the secrets with one cheap call."""
    if deps.tenants.get_meta(keys.check_tenant(tenant)) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    kind = _kind(kind)
    spec = _spec(kind, dict(settings or {}))
    fields = secret_fields(kind) if spec is not None else ()
    given = dict(secrets or {})
    known = {f.name for f in fields}
    errors = [
        {"field": f"secrets.{name}", "message": f"not a secret of {kind}"}
        for name in sorted(set(given) - known)
    ]
    errors += [
        {"field": f"secrets.{name}", "message": "must not be empty"}
        for name, value in sorted(given.items())
        if name in known and not (isinstance(value, str) and value.strip())
    ]
    if errors:
        raise SourceSettingsError(errors)
    store = _secret_store(deps)
    names: dict[str, str] = {}
    if spec is not None:
        for secret in fields:
            try:
                names[secret.name] = check_secret_name(secret.secret_name(spec))
            except SecretStoreError:
                raise SourceSettingsError(
                    [{"field": secret.spec_field, "message": "use 1-64 of a-z, 0-9, _ . -"}]
                ) from None
    missing = [
        {"field": f"secrets.{name}", "message": "required (none is stored yet)"}
        for name, stored_as in names.items()
        if name not in given and store.get_secret(tenant, stored_as) is None
    ]
    if missing:
        raise SourceSettingsError(missing)
    for name, stored_as in names.items():
        if name in given:
            store.put_secret(tenant, stored_as, given[name].strip())
    previous = deps.tenants.get_source(tenant) or {}
    for stored_as in set((previous.get("secrets") or {}).values()) - set(names.values()):
        store.delete_secret(tenant, str(stored_as))
    at = _now()
    deps.tenants.put_source(
        tenant,
        {
            "kind": kind,
            "source": None if spec is None else spec.model_dump(mode="json"),
            "secrets": names,
            "connected_by": who,
            "connected_at": at,
        },
        at=at,
    )
    outcome = None
    if check and spec is not None and fields:
        source = registered_source(kind)
        if isinstance(source, Connectable):
            outcome = source.check_connection(spec, tenant, store)
    shown = connected_source(deps, tenant)
    return ConnectedSource(
        tenant=shown.tenant,
        kind=shown.kind,
        settings=shown.settings,
        secrets=shown.secrets,
        connected_by=shown.connected_by,
        connected_at=shown.connected_at,
        check=outcome,
    )


def _connected_spec(deps: Deps, tenant: str) -> tuple[dict[str, Any], SourceSpec | None]:
    item = deps.tenants.get_source(tenant) or {}
    stored = item.get("source")
    return item, (parse_spec(stored) if stored else None)


def connected_source(deps: Deps, tenant: str) -> ConnectedSource:
    """The tenant's connected source (OneRoster CSV from the inbox until connected)."""
    if deps.tenants.get_meta(keys.check_tenant(tenant)) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    item, spec = _connected_spec(deps, tenant)
    kind = str(item.get("kind") or INBOX_KIND)
    shown: dict[str, str] = {}
    if spec is not None:
        for secret in secret_fields(kind):
            value = deps.secrets.get_secret(tenant, secret.secret_name(spec))
            shown[secret.name] = "set" if value else "missing"
            del value
    return ConnectedSource(
        tenant=tenant,
        kind=kind,
        settings=_settings_of(spec),
        secrets=shown,
        connected_by=item.get("connected_by"),
        connected_at=item.get("connected_at"),
    )


def connected_api_source(deps: Deps, tenant: str) -> SourceSpec | None:
    """The tenant's connected API source's spec; None when its runs sync inbox bundles."""
    return _connected_spec(deps, tenant)[1]


def sync_source(
    deps: Deps,
    tenant: str,
    source_key: str | None = None,
    *,
    guardians: GuardianFileRef | None = None,
) -> SourceSpec:
    """What a run of ``tenant`` syncs: the bundle at ``source_key`` when one is named,
    else the tenant's connected API source, else its newest complete inbox bundle
    (NothingToSync if there is none). ``guardians`` adds a guardian file to the run."""
    if deps.tenants.get_meta(keys.check_tenant(tenant)) is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    spec: SourceSpec | None
    if source_key is not None:
        spec = bundle_source(tenant, source_key)
    else:
        _, spec = _connected_spec(deps, tenant)
        if spec is None:
            bundle = latest_complete_bundle(deps, tenant)
            if bundle is None:
                raise NothingToSync(
                    f"tenant {tenant} has no connected API source and no complete bundle in "
                    f"its inbox: connect one (rostersync connect KIND --tenant {tenant}), "
                    f"drop a bundle by SFTP, or sync a file (rostersync sync PATH "
                    f"--tenant {tenant})"
                )
            spec = bundle_source(tenant, bundle)
    if guardians is not None:
        keys.check_source_key(tenant, guardians.key)
        spec = spec.model_copy(update={"guardians": guardians})
    return spec
