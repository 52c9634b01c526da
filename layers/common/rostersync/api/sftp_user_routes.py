"""The tenant's SFTP users: list (any role), add, rotate and remove (admin).

The local runtime keeps them in its state directory; on AWS, Transfer Family users are
managed with the stack (infra/) and these routes answer 501.
"""

from __future__ import annotations

from typing import Annotated, Final

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field

from rostersync.api.errors import COMMON_FAILURES, ApiError, documented
from rostersync.api.models import _Body
from rostersync.api.scope import RequestScope, TenantPath
from rostersync.application.sftp_users import (
    SftpLogin,
    SftpUserConflict,
    SftpUserInvalid,
    SftpUserMissing,
    SftpUsers,
    SftpUserSet,
)

SFTP_USERS_PATH: Final = "/tenants/<tenant>/sftp-users"
USERNAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MANAGED_ELSEWHERE: Final = (
    "On AWS, SFTP users are Transfer Family users managed with the stack (infra/): "
    "this route answers 501 there."
)

UsernamePath = Annotated[
    str, Path(pattern=USERNAME_PATTERN, description="An SFTP user name", max_length=64)
]
PublicKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16384,
        pattern=r"^[^\x00]*$",
        description="An OpenSSH public key (ssh-ed25519 AAAA..., a comment is dropped)",
    ),
]


class SftpUserView(BaseModel):
    """An SFTP user: how it may log in (never a password, hash or key)."""

    username: str
    has_password: bool
    public_keys: int


class SftpUserList(BaseModel):
    tenant: str
    users: list[SftpUserView]


class SftpUserCreate(_Body):
    """A new SFTP user: its name, and a public key, a generated password, or both."""

    username: Annotated[str, Field(pattern=USERNAME_PATTERN, max_length=64)]
    public_key: PublicKey | None = None
    #: Generate a password and return it in the answer, once.
    generate_password: bool = False


class SftpUserRotate(_Body):
    """A new generated password (replacing the old one) and/or another public key."""

    public_key: PublicKey | None = None
    generate_password: bool = False


class SftpUserAnswer(BaseModel):
    """The user added or rotated; the generated password, shown this once (else null)."""

    tenant: str
    user: SftpUserView
    password: str | None = None


class SftpUserRemoved(BaseModel):
    tenant: str
    username: str
    removed: bool = True


def _view(login: SftpLogin) -> SftpUserView:
    return SftpUserView(
        username=login.username, has_password=login.has_password, public_keys=login.public_keys
    )


def _answer(tenant: str, done: SftpUserSet) -> SftpUserAnswer:
    return SftpUserAnswer(tenant=tenant, user=_view(done.user), password=done.password)


def register_sftp_user_routes(app: APIGatewayRestResolver, scope: RequestScope) -> None:
    """Add the ``/tenants/{tenant}/sftp-users`` routes to ``app``. POSTs take no
    Idempotency-Key: a stored answer would keep a generated password."""

    def users() -> SftpUsers:
        store = scope.services.sftp_users
        if store is None:
            raise ApiError(501, "SFTP users are managed by Transfer Family on this stack")
        return store

    @app.get(
        SFTP_USERS_PATH,
        summary="The tenant's SFTP users (no secrets)",
        description=MANAGED_ELSEWHERE,
        tags=["sftp"],
        responses=documented(200, "The users, by name", *COMMON_FAILURES, 501),
    )
    def list_sftp_users(tenant: TenantPath) -> SftpUserList:
        tenant = scope.tenant(tenant)
        return SftpUserList(tenant=tenant, users=[_view(u) for u in users().list(tenant)])

    @app.post(
        SFTP_USERS_PATH,
        status_code=201,
        summary="Add an SFTP user (admin): a public key, a generated password, or both",
        description=(
            "A generated password is returned in this answer only, and kept as a hash. "
            "User names are unique across tenants. " + MANAGED_ELSEWHERE
        ),
        tags=["sftp"],
        responses=documented(201, "The user, added", *COMMON_FAILURES, 409, 501),
    )
    def add_sftp_user(tenant: TenantPath, body: SftpUserCreate) -> SftpUserAnswer:
        tenant = scope.tenant(tenant)
        store = users()
        try:
            done = store.add(
                tenant,
                body.username,
                public_key=body.public_key,
                generate_password=body.generate_password,
            )
        except SftpUserInvalid as exc:
            raise ApiError(400, str(exc)) from None
        except SftpUserConflict as exc:
            raise ApiError(409, str(exc)) from None
        return _answer(tenant, done)

    @app.post(
        f"{SFTP_USERS_PATH}/<username>/rotate",
        summary="Rotate an SFTP user's password and/or add a public key (admin)",
        description=(
            "generate_password replaces the password with a new one, returned in this "
            "answer only; public_key adds a key beside the user's others. " + MANAGED_ELSEWHERE
        ),
        tags=["sftp"],
        responses=documented(200, "The user, rotated", *COMMON_FAILURES, 501),
    )
    def rotate_sftp_user(
        tenant: TenantPath, username: UsernamePath, body: SftpUserRotate
    ) -> SftpUserAnswer:
        tenant = scope.tenant(tenant)
        store = users()
        try:
            done = store.rotate(
                tenant,
                username,
                public_key=body.public_key,
                generate_password=body.generate_password,
            )
        except SftpUserInvalid as exc:
            raise ApiError(400, str(exc)) from None
        except SftpUserMissing as exc:
            raise ApiError(404, str(exc)) from None
        return _answer(tenant, done)

    @app.delete(
        f"{SFTP_USERS_PATH}/<username>",
        summary="Remove an SFTP user (admin)",
        description=MANAGED_ELSEWHERE,
        tags=["sftp"],
        responses=documented(200, "The user, removed", *COMMON_FAILURES, 501),
    )
    def remove_sftp_user(tenant: TenantPath, username: UsernamePath) -> SftpUserRemoved:
        tenant = scope.tenant(tenant)
        store = users()
        try:
            store.remove(tenant, username)
        except SftpUserMissing as exc:
            raise ApiError(404, str(exc)) from None
        return SftpUserRemoved(tenant=tenant, username=username)
