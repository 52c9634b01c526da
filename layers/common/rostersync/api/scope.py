"""What every route shares: the caller, the tenant it acts on, the typed path parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Header, Path

from rostersync.api.auth import Principal
from rostersync.api.config import ApiServices
from rostersync.api.errors import ApiError
from rostersync.api.models import RUN_ID_PATTERN, TENANT_PATTERN
from rostersync.errors import UnknownTenant
from rostersync.models import Entity
from rostersync.storage import keys

PRINCIPAL_KEY: Final = "principal"
#: A Powertools middleware: ``(resolver, next_middleware) -> Response``.
Middleware = Callable[..., Any]

TenantPath = Annotated[
    str, Path(pattern=TENANT_PATTERN, max_length=63, description="The tenant's id")
]
RunPath = Annotated[
    str, Path(pattern=RUN_ID_PATTERN, description="A run id, as returned by sync now")
]
EntityPath = Annotated[Entity, Path(description="A kind of roster record")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e][\x20-\x7e]*$",
        description=(
            "Makes the POST safe to retry: the same key (per tenant and path) returns the "
            "first answer without doing the work again"
        ),
    ),
]


class RequestScope:
    """The current request's caller and the checks every tenant route makes."""

    def __init__(self, resolver: APIGatewayRestResolver, services: ApiServices) -> None:
        self._resolver = resolver
        self.services = services

    @property
    def principal(self) -> Principal:
        principal = self._resolver.context.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            # The gate in front of the resolver sets it; reaching here without it means
            # the resolver was called directly, which is no way around authentication.
            raise ApiError(401, "missing or invalid credentials")
        return principal

    def tenant(self, tenant: str, *, must_exist: bool = True) -> str:
        """``tenant`` checked: a valid id, the caller's own (checked again here, besides
        the gate, so that no route depends on the gate parsing paths as the router
        does), and existing."""
        keys.check_tenant(tenant)
        if not self.principal.may_act_on(tenant):
            raise ApiError(403, "forbidden for this tenant")
        if must_exist and self.services.deps.tenants.get_meta(tenant) is None:
            raise UnknownTenant(f"unknown tenant {tenant!r}")
        return tenant

    def run(self, run_id: str) -> str:
        return keys.check_run_id(run_id)
