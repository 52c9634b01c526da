"""The tenant's connected source: connect it (admin), read it with secrets masked."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from rostersync.api.errors import COMMON_FAILURES, documented
from rostersync.api.models import SourceConnect, SourceView
from rostersync.api.scope import RequestScope, TenantPath
from rostersync.application.connect import ConnectedSource, connect_source, connected_source

SOURCE_PATH = "/tenants/<tenant>/source"


def _view(connected: ConnectedSource) -> SourceView:
    return SourceView.model_validate(connected.shown())


def register_source_routes(app: APIGatewayRestResolver, scope: RequestScope) -> None:
    """Add ``GET`` and ``PUT /tenants/{tenant}/source`` to ``app``."""
    deps = scope.services.deps

    @app.get(
        SOURCE_PATH,
        summary="The tenant's connected source (secrets masked)",
        tags=["source"],
        responses=documented(200, "The connected source", *COMMON_FAILURES),
    )
    def get_source(tenant: TenantPath) -> SourceView:
        return _view(connected_source(deps, scope.tenant(tenant)))

    @app.put(
        SOURCE_PATH,
        summary="Connect the tenant to a source (admin)",
        description=(
            "The kind (clever, oneroster_csv, ...), its settings and its secrets. Secrets "
            "are write-only: stored in the tenant's secret store, never returned; a secret "
            "left out must be stored already. oneroster_csv (no settings) syncs the inbox's "
            "bundles. With check (the default) the secrets are tried with one cheap call."
        ),
        tags=["source"],
        responses=documented(
            200, "The connected source, and the check's outcome", *COMMON_FAILURES
        ),
    )
    def put_source(tenant: TenantPath, body: SourceConnect) -> SourceView:
        tenant = scope.tenant(tenant)
        return _view(
            connect_source(
                deps,
                tenant,
                body.kind,
                body.settings,
                body.secrets,
                who=scope.principal.who,
                check=body.check,
            )
        )
