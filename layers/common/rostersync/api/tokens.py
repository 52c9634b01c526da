"""Signed bearer tokens for the local API, shaped like Cognito ID tokens.

On AWS a Cognito user pool signs the tokens and API Gateway's authorizer checks them. The
local server has no user pool, so it signs its own: HS256 with a random secret kept in the
state directory (``<state>/api-secret``, mode 0600, made on first use). The claims carry
the same names as the user pool's (``custom:tenant``, ``custom:role``, ``sub``,
``cognito:username``), so the API reads them the same way in both places.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Final

import jwt

from rostersync.api.auth import ROLES
from rostersync.errors import RostersyncError
from rostersync.storage.keys import check_tenant

SECRET_FILE: Final = "api-secret"
ISSUER: Final = "rostersync-local"
AUDIENCE: Final = "rostersync-api"
ALGORITHM: Final = "HS256"
#: A token lives at most this long (a local convenience, not a session store).
MAX_TTL_SECONDS: Final = 30 * 24 * 60 * 60
#: Clock skew tolerated on ``exp``/``iat`` between the issuer and the server.
LEEWAY_SECONDS: Final = 5


class InvalidToken(RostersyncError):
    """A token that is garbled, expired, signed with another key or lacks a claim."""


def secret_path(state_dir: Path) -> Path:
    """Where the signing secret of a state directory lives."""
    return Path(state_dir) / SECRET_FILE


def load_or_create_secret(state_dir: Path) -> bytes:
    """The state directory's signing secret, created (mode 0600) if there is none.

    Created in a temporary file and linked into place, so two processes starting at once
    agree on one secret and neither ever reads a half-written file."""
    path = secret_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".api-secret-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Like ssh with a private key: a secret others can read signs nobody's tokens.
        raise InvalidToken(f"{path} is readable by other users; chmod 600 it")
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise InvalidToken(f"{path} does not hold a usable secret")
    return secret.encode()


def issue_token(
    state_dir: Path,
    tenant: str | None,
    role: str,
    ttl_seconds: int = 3600,
    *,
    subject: str | None = None,
) -> str:
    """A token for ``role`` in ``tenant``, valid for ``ttl_seconds``.

    ``tenant`` may be None only for the platform role (which acts on every tenant).
    ``subject`` names the person (recorded as who started or committed a run); by default
    ``local-<role>@<tenant>``."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if tenant is None:
        if role != "platform":
            raise ValueError("only the platform role may have no tenant")
    else:
        check_tenant(tenant)
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    now = int(time.time())
    name = subject or f"local-{role}@{tenant or 'platform'}"
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": name,
        "cognito:username": name,
        "token_use": "id",
        "custom:role": role,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if tenant is not None:
        claims["custom:tenant"] = tenant
    return jwt.encode(claims, load_or_create_secret(state_dir), algorithm=ALGORITHM)


class TokenVerifier:
    """Checks tokens against one state directory's secret (read once).

    ``create``: make the secret if the directory has none (a server starting for the first
    time); otherwise a missing secret means no token can be valid."""

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        path = secret_path(state_dir)
        if not create and not path.exists():
            raise InvalidToken(f"no {SECRET_FILE} in {state_dir}: no token was issued there")
        self._secret = load_or_create_secret(state_dir) if create else _read_secret(path)

    def verify(self, token: str) -> dict[str, str]:
        """The token's claims as strings (as API Gateway hands a Cognito authorizer's
        claims to the function); InvalidToken if it is not one of ours, or expired."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud", "custom:role"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.InvalidTokenError as exc:
            # The library's message names the failed check, never the token's content.
            raise InvalidToken(f"invalid token: {exc}") from exc
        return {name: str(value) for name, value in claims.items()}


def verify_token(state_dir: Path, token: str) -> dict[str, str]:
    """Verify ``token`` against the state directory's secret; return its claims."""
    return TokenVerifier(state_dir, create=False).verify(token)
