"""Tenants' secrets (API tokens): AWS Secrets Manager, or one 0600 JSON file locally.

Both stores implement ``SecretReader.get_secret(tenant, name)`` plus ``put_secret`` and
``delete_secret``. A secret's value is never logged, never put in an error message and
never written anywhere else. On AWS a secret is named ``rostersync/{tenant}/{name}``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from botocore.exceptions import BotoCoreError, ClientError

from rostersync.config import StackSettings
from rostersync.errors import FatalError, StorageUnavailable
from rostersync.storage.clients import secretsmanager_client
from rostersync.storage.keys import check_tenant

try:  # POSIX only; elsewhere concurrent writers of one file are not serialized.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = [
    "LocalSecretStore",
    "SecretStore",
    "SecretStoreError",
    "SecretsManagerStore",
    "build_secret_store",
    "check_secret_name",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "InternalServiceError", "RequestTimeout", "ServiceUnavailable"}
)


class SecretStoreError(FatalError):
    """The secret store refused a request (access denied, a malformed or unsafe store)."""


@runtime_checkable
class SecretStore(Protocol):
    """A store of tenants' secrets."""

    def get_secret(self, tenant: str, name: str) -> str | None: ...

    def put_secret(self, tenant: str, name: str, value: str) -> None: ...

    def delete_secret(self, tenant: str, name: str) -> bool: ...


def check_secret_name(name: str) -> str:
    """Return ``name`` if it is a valid secret name (``clever_token``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SecretStoreError(f"invalid secret name {name!r}: use 1-64 of a-z, 0-9, _ . -")
    return name


def _check_value(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise SecretStoreError("a secret must be a non-empty string")
    return value


class LocalSecretStore:
    """Secrets in one JSON file (``{tenant: {name: value}}``), mode 0600.

    The file is replaced atomically: a new file is created 0600 beside it, written, then
    renamed over it, so a reader never sees a half-written or wider-open file. A file
    others can read is refused, as ssh refuses a private key others can read.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def get_secret(self, tenant: str, name: str) -> str | None:
        check_tenant(tenant)
        check_secret_name(name)
        value = self._load().get(tenant, {}).get(name)
        return value if isinstance(value, str) else None

    def put_secret(self, tenant: str, name: str, value: str) -> None:
        check_tenant(tenant)
        check_secret_name(name)
        _check_value(value)
        with self._locked():
            data = self._load()
            data.setdefault(tenant, {})[name] = value
            self._save(data)

    def delete_secret(self, tenant: str, name: str) -> bool:
        check_tenant(tenant)
        check_secret_name(name)
        with self._locked():
            data = self._load()
            secrets = data.get(tenant, {})
            if name not in secrets:
                return False
            del secrets[name]
            if not secrets:
                data.pop(tenant, None)
            self._save(data)
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as body:
            mode = os.fstat(body.fileno()).st_mode
            if stat.S_IMODE(mode) & 0o077:
                raise SecretStoreError(
                    f"{self.path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
                )
            try:
                data = json.loads(body.read() or b"{}")
            except json.JSONDecodeError as exc:
                raise SecretStoreError(f"{self.path} is not a JSON object of secrets") from exc
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise SecretStoreError(f"{self.path} is not a JSON object of secrets")
        return data

    def _save(self, data: Mapping[str, Mapping[str, str]]) -> None:
        # mkstemp creates the file 0600 (O_EXCL), so no moment exists where it is wider.
        fd, temporary = tempfile.mkstemp(prefix=".secrets-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, sort_keys=True, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _translate(exc: Exception, what: str) -> Exception:
    """A botocore error as rostersync's own (the message names the secret, never a value)."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _TRANSIENT_CODES or code.startswith("5"):
            return StorageUnavailable(f"{what}: {code}")
        return SecretStoreError(f"{what}: {code}")
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    return exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class SecretsManagerStore:
    """Secrets in AWS Secrets Manager, one secret per tenant and name:
    ``{prefix}/{tenant}/{name}``."""

    def __init__(self, client: SecretsManagerClient, prefix: str = "rostersync") -> None:
        self.client = client
        self.prefix = prefix.strip("/")

    def secret_id(self, tenant: str, name: str) -> str:
        return f"{self.prefix}/{check_tenant(tenant)}/{check_secret_name(name)}"

    def get_secret(self, tenant: str, name: str) -> str | None:
        secret_id = self.secret_id(tenant, name)
        try:
            response = self.client.get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise _translate(exc, f"read secret {secret_id}") from None
        except BotoCoreError as exc:
            raise _translate(exc, f"read secret {secret_id}") from None
        value = response.get("SecretString")
        return value if isinstance(value, str) and value else None

    def put_secret(self, tenant: str, name: str, value: str) -> None:
        secret_id = self.secret_id(tenant, name)
        _check_value(value)
        try:
            try:
                self.client.create_secret(
                    Name=secret_id,
                    SecretString=value,
                    Tags=[{"Key": "rostersync:tenant", "Value": tenant}],
                )
            except ClientError as exc:
                if _code(exc) != "ResourceExistsException":
                    raise
                self.client.put_secret_value(SecretId=secret_id, SecretString=value)
        except (ClientError, BotoCoreError) as exc:
            # ``from None``: botocore's exception carries the request, which holds the value.
            raise _translate(exc, f"write secret {secret_id}") from None

    def delete_secret(self, tenant: str, name: str) -> bool:
        secret_id = self.secret_id(tenant, name)
        try:
            # A forced delete of a secret that does not exist succeeds: look first.
            self.client.describe_secret(SecretId=secret_id)
            # No recovery window: a token removed is gone, and the name can be reused.
            self.client.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise _translate(exc, f"delete secret {secret_id}") from None
        except BotoCoreError as exc:
            raise _translate(exc, f"delete secret {secret_id}") from None
        return True


def build_secret_store(settings: StackSettings) -> SecretStore:
    """The secret store the stack's settings name: a local file when
    ``LOCAL_SECRETS_FILE`` is set (the local runtime, tests), Secrets Manager otherwise."""
    if settings.local_secrets_file is not None:
        return LocalSecretStore(settings.local_secrets_file)
    return SecretsManagerStore(secretsmanager_client(), settings.secrets_prefix)
