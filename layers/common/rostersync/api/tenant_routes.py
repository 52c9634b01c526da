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
    SettingsSaved,
    SettingsView,
    TenantCreate,
    TenantView,
)
from rostersync.api.scope import EntityPath, IdempotencyKey, Middleware, RequestScope, TenantPath
from rostersync.application.directory import InvalidEdit, UnknownRecord, record_app_edit
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import load_tenant_settings, save_tenant_settings
from rostersync.errors import UnknownTenant
from rostersync.settings import SettingsError, validate_settings

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
        "/tenants/<tenant>/directory/<entity>",
        summary="The committed roster of one entity, paged (in app id order)",
        tags=["directory"],
        responses=documented(200, "A page of directory records", *COMMON_FAILURES),
    )
    def get_directory(
        tenant: TenantPath,
        entity: EntityPath,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> DirectoryPage:
        tenant = scope.tenant(tenant)
        items: list[dict[str, Any]] = []
        more = False
        # The query pages lazily: reading stops one item past the page.
        for index, item in enumerate(deps.directory.iter_entity(tenant, entity.value)):
            if index < offset:
                continue
            if len(items) == limit:
                more = True
                break
            item.pop("pk", None)
            item.pop("sk", None)
            items.append(item)
        return DirectoryPage(
            entity=entity,
            offset=offset,
            limit=limit,
            next_offset=offset + limit if more else None,
            items=items,
        )

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
        target_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$")],
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
