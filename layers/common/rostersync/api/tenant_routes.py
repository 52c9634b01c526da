"""Tenants, their settings, and the committed roster (the directory)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query

from rostersync.api.errors import COMMON_FAILURES, ApiError, documented
from rostersync.api.models import (
    ContactEdit,
    DirectoryPage,
    DirectoryRecord,
    InboxRejection,
    InboxRejections,
    RecordView,
    SettingsChange,
    SettingsHistory,
    SettingsSaved,
    SettingsView,
    TenantCreate,
    TenantView,
)
from rostersync.api.scope import EntityPath, IdempotencyKey, Middleware, RequestScope, TenantPath
from rostersync.application.directory import (
    InvalidEdit,
    UnknownRecord,
    record_app_edit,
    record_view,
    search_directory,
)
from rostersync.application.inbox import rejected_keys
from rostersync.application.settings_history import settings_changes
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.errors import UnknownTenant
from rostersync.settings import SettingsError, validate_settings
from rostersync.storage import keys

#: An app id in a path.
TargetPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$", description="An app id")]
#: Search text: printable, one line.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

SETTINGS_BODY_DESCRIPTION = (
    "With mode=merge (the default), a JSON merge patch (RFC 7396) of the settings: the "
    "fields given replace the current ones, objects merge, null resets a field to its "
    "default; a whole settings document is a valid patch. With mode=replace, the whole "
    "document: fields left out take their defaults. A changed schedule is applied to the "
    "tenant's daily sync at once."
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge member by member, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


def register_tenant_routes(
    app: APIGatewayRestResolver,
    scope: RequestScope,
    posts: list[Middleware],
) -> None:
    """Add the tenant, settings and directory routes to ``app``; ``posts`` are the
    middlewares of every POST (idempotency)."""
    deps = scope.services.deps

    @app.post(
        "/tenants",
        status_code=201,
        summary="Create a tenant (platform role)",
        tags=["tenants"],
        middlewares=posts,
        responses=documented(201, "The tenant, created", *COMMON_FAILURES, 409),
    )
    def create_tenant(body: TenantCreate, idempotency_key: IdempotencyKey = None) -> TenantView:
        tenant = scope.tenant(body.tenant, must_exist=False)
        if not ensure_tenant(deps, tenant, create=True):
            raise ApiError(409, f"tenant {tenant!r} already exists")
        return _tenant_view(scope, tenant)

    @app.get(
        "/tenants/<tenant>",
        summary="A tenant",
        tags=["tenants"],
        responses=documented(200, "The tenant", *COMMON_FAILURES),
    )
    def get_tenant(tenant: TenantPath) -> TenantView:
        return _tenant_view(scope, scope.tenant(tenant, must_exist=False))

    @app.get(
        "/tenants/<tenant>/settings",
        summary="The tenant's sync settings",
        tags=["settings"],
        responses=documented(200, "The settings (defaults until changed)", *COMMON_FAILURES),
    )
    def get_settings(tenant: TenantPath) -> SettingsView:
        tenant = scope.tenant(tenant)
        return SettingsView(tenant=tenant, settings=load_tenant_settings(deps, tenant))

    @app.put(
        "/tenants/<tenant>/settings",
        summary="Change the tenant's sync settings",
        description=SETTINGS_BODY_DESCRIPTION,
        tags=["settings"],
        responses=documented(200, "The saved settings and what changed", *COMMON_FAILURES),
    )
    def put_settings(
        tenant: TenantPath,
        settings: Annotated[dict[str, Any], Body(description=SETTINGS_BODY_DESCRIPTION)],
        mode: Annotated[Literal["merge", "replace"], Query()] = "merge",
    ) -> SettingsSaved:
        tenant = scope.tenant(tenant)
        current = load_tenant_settings(deps, tenant)
        if mode == "merge":
            document = merge_patch(current.model_dump(mode="json"), settings)
        else:
            document = settings
        validated = validate_settings(document)
        # Saving applies a changed schedule to the tenant's daily sync first; one the
        # Scheduler refuses (an unknown time zone) is a field error, and is not saved.
        from rostersync.application.schedules import InvalidSchedule

        try:
            changed = save_tenant_settings(deps, tenant, validated, who=scope.principal.who)
        except InvalidSchedule as exc:
            raise SettingsError([{"field": "schedule", "message": str(exc)}]) from exc
        return SettingsSaved(tenant=tenant, settings=validated, changed=changed)

    @app.get(
        "/tenants/<tenant>/settings/history",
        summary="Every change of the tenant's settings: who, when, old → new",
        tags=["settings"],
        responses=documented(200, "The changes, newest first", *COMMON_FAILURES),
    )
    def get_settings_history(tenant: TenantPath) -> SettingsHistory:
        tenant = scope.tenant(tenant)
        return SettingsHistory(
            tenant=tenant,
            history=[SettingsChange.model_validate(c) for c in settings_changes(deps, tenant)],
        )

    @app.get(
        "/tenants/<tenant>/inbox/rejections",
        summary="Files the inbox refused, newest first, with the reason",
        tags=["runs"],
        responses=documented(200, "The rejections", *COMMON_FAILURES),
    )
    def get_rejections(
        tenant: TenantPath, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> InboxRejections:
        tenant = scope.tenant(tenant)
        prefix = keys.inbox_prefix(tenant)
        return InboxRejections(
            rejections=[
                InboxRejection.model_validate({**r, "file": str(r["key"]).removeprefix(prefix)})
                for r in rejected_keys(deps, tenant, limit)
            ]
        )

    @app.get(
        "/tenants/<tenant>/directory/<entity>",
        summary="The committed roster of one entity, paged (in app id order), searchable",
        description=(
            "With q, role, status, school or source_system, only the records matching all "
            "of them (q: every word in the name, email, ids or codes; role: one of a "
            "comma-separated list; school: a school's source id; source_system=app: the "
            "app's own records no sync has linked), and total counts them."
        ),
        tags=["directory"],
        responses=documented(200, "A page of directory records", *COMMON_FAILURES),
    )
    def get_directory(
        tenant: TenantPath,
        entity: EntityPath,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        q: Annotated[str | None, Query(max_length=200, pattern=TEXT_PATTERN)] = None,
        role: Annotated[str | None, Query(max_length=200, pattern=TEXT_PATTERN)] = None,
        status: Annotated[Literal["active", "archived", "tobedeleted"] | None, Query()] = None,
        school: Annotated[str | None, Query(max_length=256, pattern=TEXT_PATTERN)] = None,
        source_system: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN)] = None,
    ) -> DirectoryPage:
        tenant = scope.tenant(tenant)
        if q or role or status or school or source_system:
            found = search_directory(
                deps,
                tenant,
                entity.value,
                text=q,
                roles=(role or "").split(","),
                status=status,
                school=school,
                source_system=source_system,
                offset=offset,
                limit=limit,
            )
            return DirectoryPage.model_validate(found)
        items, more = deps.directory.page(tenant, entity.value, offset, limit)
        return DirectoryPage(
            entity=entity,
            offset=offset,
            limit=limit,
            next_offset=offset + limit if more else None,
            items=[item.flat() for item in items],
        )

    @app.get(
        "/tenants/<tenant>/directory/<entity>/<target_id>",
        summary="One record: identifiers, link, schools, classes or people, history",
        description=(
            "The history lists what each of the last runs did (committed) or would do "
            "(prepared, held) to the record, with the reason and the field-level changes."
        ),
        tags=["directory"],
        responses=documented(200, "The record", *COMMON_FAILURES),
    )
    def get_record(tenant: TenantPath, entity: EntityPath, target_id: TargetPath) -> RecordView:
        tenant = scope.tenant(tenant)
        try:
            view = record_view(deps, tenant, entity.value, target_id)
        except UnknownRecord as exc:
            raise ApiError(404, str(exc)) from exc
        return RecordView.model_validate(view)

    @app.patch(
        "/tenants/<tenant>/directory/users/<target_id>/contact",
        summary="The app changed a user's contact details",
        description=(
            "The app calls this when a teacher or parent edits an email, phone or SMS "
            "number in the app. The directory record changes now, and later syncs keep "
            "the app's values unless the tenant's overwrite_app_contact_edits is on."
        ),
        tags=["directory"],
        middlewares=posts,
        responses=documented(200, "The edited record", *COMMON_FAILURES),
    )
    def patch_contact(
        tenant: TenantPath,
        target_id: TargetPath,
        body: ContactEdit,
        idempotency_key: IdempotencyKey = None,
    ) -> DirectoryRecord:
        tenant = scope.tenant(tenant)
        fields = body.model_dump(exclude_unset=True)
        try:
            record = record_app_edit(deps, tenant, "users", target_id, fields, scope.principal.who)
        except UnknownRecord as exc:
            raise ApiError(404, str(exc)) from exc
        except InvalidEdit as exc:
            raise ApiError(400, str(exc)) from exc
        return DirectoryRecord.model_validate(record)


def _tenant_view(scope: RequestScope, tenant: str) -> TenantView:
    meta = scope.services.deps.tenants.get_meta(tenant)
    if meta is None:
        raise UnknownTenant(f"unknown tenant {tenant!r}")
    return TenantView(tenant=tenant, status=meta.get("status"), created_at=meta.get("created_at"))
