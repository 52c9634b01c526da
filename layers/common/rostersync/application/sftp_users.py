"""A tenant's SFTP users: list, add, rotate, remove (the console's SFTP users).

On the local runtime the users live in the state directory (``rostersync.local.sftp``);
on AWS, Transfer Family users are managed with the stack (infra/), and the API has no
``SftpUsers`` to call (its routes answer 501).

A user name is unique across tenants (as Transfer Family's are), but a tenant only ever
sees, rotates or removes its own users: another tenant's user is "not found" to it, and
adding a name another tenant holds is refused without saying which tenant has it.

A password is never chosen by the caller here: one is generated (``secrets``), returned
once to the caller who asked for it, and kept only as a hash.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rostersync.errors import RostersyncError
from rostersync.storage import keys

__all__ = [
    "GENERATED_PASSWORD_BYTES",
    "LocalSftpUsers",
    "SftpLogin",
    "SftpUserConflict",
    "SftpUserInvalid",
    "SftpUserMissing",
    "SftpUserSet",
    "SftpUsers",
]

#: A generated password: 24 random bytes, URL-safe base64 (32 characters).
GENERATED_PASSWORD_BYTES = 24


class SftpUserInvalid(RostersyncError, ValueError):
    """A user name or public key that cannot be used, or nothing to log in with."""


class SftpUserConflict(RostersyncError):
    """The user name is taken (by this tenant or another)."""


class SftpUserMissing(RostersyncError):
    """No SFTP user of that name for this tenant."""


@dataclass(frozen=True)
class SftpLogin:
    """One SFTP user as shown: how it may log in, never a secret."""

    username: str
    tenant: str
    has_password: bool
    public_keys: int


@dataclass(frozen=True)
class SftpUserSet:
    """A user added or rotated, and the generated password (shown this once) if any."""

    user: SftpLogin
    password: str | None


class SftpUsers(Protocol):
    """Where a runtime keeps its SFTP users."""

    def list(self, tenant: str) -> list[SftpLogin]: ...

    def add(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet: ...

    def rotate(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet: ...

    def remove(self, tenant: str, username: str) -> None: ...


def _password(generate: bool) -> str | None:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES) if generate else None


class LocalSftpUsers:
    """The local SFTP drop box's users, in ``<state>/sftp-users.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def _all(self) -> dict[str, SftpLogin]:
        from rostersync.local.sftp import sftp_users

        return {
            u.username: SftpLogin(u.username, u.tenant, u.has_password, u.public_keys)
            for u in sftp_users(self.state_dir)
        }

    def list(self, tenant: str) -> list[SftpLogin]:
        keys.check_tenant(tenant)
        return [user for user in self._all().values() if user.tenant == tenant]

    def _set(
        self,
        tenant: str,
        username: str,
        public_key: str | None,
        generate_password: bool,
        *,
        rotate: bool,
    ) -> SftpUserSet:
        from rostersync.local.sftp import SftpUserError, sftp_user_add

        keys.check_tenant(tenant)
        public_key = (public_key or "").strip() or None
        if not public_key and not generate_password:
            raise SftpUserInvalid("give a public key, ask for a generated password, or both")
        existing = self._all().get(username)
        if rotate and (existing is None or existing.tenant != tenant):
            raise SftpUserMissing(f"no SFTP user {username} for tenant {tenant}")
        if not rotate and existing is not None:
            raise SftpUserConflict(
                f"the SFTP user name {username} is taken; rotate it, or choose another name"
            )
        password = _password(generate_password)
        try:
            added = sftp_user_add(
                self.state_dir,
                tenant,
                username,
                password=password,
                public_key=public_key,
                rotate=rotate,
            )
        except SftpUserError as exc:
            message = str(exc)
            if "another tenant" in message or "already exists" in message:
                raise SftpUserConflict(
                    f"the SFTP user name {username} is taken; choose another name"
                ) from None
            raise SftpUserInvalid(message) from None
        login = SftpLogin(added.username, added.tenant, added.has_password, added.public_keys)
        return SftpUserSet(user=login, password=password)

    def add(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet:
        return self._set(tenant, username, public_key, generate_password, rotate=False)

    def rotate(
        self, tenant: str, username: str, *, public_key: str | None, generate_password: bool
    ) -> SftpUserSet:
        return self._set(tenant, username, public_key, generate_password, rotate=True)

    def remove(self, tenant: str, username: str) -> None:
        from rostersync.local.sftp import sftp_user_remove

        keys.check_tenant(tenant)
        existing = self._all().get(username)
        if existing is None or existing.tenant != tenant:
            raise SftpUserMissing(f"no SFTP user {username} for tenant {tenant}")
        sftp_user_remove(self.state_dir, username)
