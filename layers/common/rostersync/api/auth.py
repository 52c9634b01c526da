"""Who may call what: every request acts for one tenant, with one role.

The claims come from ``event.requestContext.authorizer.claims``: on AWS a Cognito user-pool
authorizer puts them there after checking the token; locally the HTTP adapter does, after
checking a token signed by the state directory's key (``rostersync.api.tokens``).

Rules, decided from the method and the path before any route runs (so a request that may
not be made learns nothing, not even whether its body would have validated):

- no claims, or claims without a known role (or without a tenant, for admin and viewer):
  401;
- ``/tenants`` itself (creating a tenant): the platform role only, else 403;
- ``/tenants/{tenant}/...``: the tenant must be the claim's tenant, except for the
  platform role, else 403 (whether that tenant exists or not: existence does not leak);
- a viewer may only read (GET), else 403;
- ``GET /openapi.json`` and ``GET /swagger`` are public.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from rostersync.errors import InvalidKey
from rostersync.storage.keys import check_tenant

ApiRole = Literal["admin", "viewer", "platform"]
ROLES: Final[tuple[str, ...]] = get_args(ApiRole)
PUBLIC_ROUTES: Final = frozenset({("GET", "/openapi.json"), ("GET", "/swagger")})
READ_METHODS: Final = frozenset({"GET", "HEAD"})
TENANT_CLAIM: Final = "custom:tenant"
ROLE_CLAIM: Final = "custom:role"


class AuthError(Exception):
    """A request refused before routing: 401 (who are you?) or 403 (not you)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Principal:
    """The caller: a role within a tenant (the platform role spans every tenant)."""

    role: ApiRole
    tenant: str | None
    #: Recorded as who started, ticked or committed (email, else user name, else subject).
    who: str

    def may_act_on(self, tenant: str) -> bool:
        return self.role == "platform" or tenant == self.tenant

    @property
    def may_write(self) -> bool:
        return self.role != "viewer"


def claims_of(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``requestContext.authorizer.claims``, where API Gateway's Cognito authorizer puts
    the checked token's claims (None if absent)."""
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    return claims if isinstance(claims, Mapping) and claims else None


def principal_from_claims(claims: Mapping[str, Any] | None) -> Principal:
    """The caller the claims describe; AuthError(401) if they describe nobody usable."""
    if not claims:
        raise AuthError(401, "missing or invalid credentials")
    role = claims.get(ROLE_CLAIM)
    if role not in ROLES:
        raise AuthError(401, "the token carries no known role")
    tenant = claims.get(TENANT_CLAIM) or None
    if tenant is not None:
        try:
            check_tenant(str(tenant))
        except InvalidKey as exc:
            raise AuthError(401, "the token's tenant is not a valid tenant id") from exc
    elif role != "platform":
        raise AuthError(401, "the token carries no tenant")
    who = claims.get("email") or claims.get("cognito:username") or claims.get("sub")
    if not who:
        raise AuthError(401, "the token names no user")
    return Principal(role=role, tenant=None if tenant is None else str(tenant), who=str(who))


def is_public(method: str, path: str) -> bool:
    return (method.upper(), path) in PUBLIC_ROUTES


def authorize(method: str, path: str, claims: Mapping[str, Any] | None) -> Principal:
    """The caller, if it may make this request; AuthError(401 or 403) otherwise."""
    principal = principal_from_claims(claims)
    # The path as the router sees it (API Gateway has already decoded it): decoding again
    # here could make the gate and the router read different tenants.
    segments = path.split("/")[1:]
    if segments[:1] == ["tenants"]:
        if len(segments) == 1 or segments[1] == "":
            if principal.role != "platform":
                raise AuthError(403, "only the platform role manages tenants")
        elif not principal.may_act_on(segments[1]):
            raise AuthError(403, "forbidden for this tenant")
    if method.upper() not in READ_METHODS and not principal.may_write:
        raise AuthError(403, "the viewer role may only read")
    return principal
