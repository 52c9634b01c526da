"""A tenant's SFTP users: list, add, rotate, remove (the console's SFTP users).

On the local runtime the users live in the state directory (``rostersync.local.sftp``,
through ``rostersync.api.local_http.LocalSftpUsers``);
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
from typing import Protocol

from rostersync.errors import RostersyncError

__all__ = [
    "GENERATED_PASSWORD_BYTES",
    "SftpLogin",
    "SftpUserConflict",
    "SftpUserInvalid",
    "SftpUserMissing",
    "SftpUserSet",
    "SftpUsers",
    "generated_password",
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


def generated_password() -> str:
    """A new SFTP password: random, URL-safe, 32 characters."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
