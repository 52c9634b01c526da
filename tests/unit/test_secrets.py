"""Tenants' secrets: the local 0600 file store on disk, Secrets Manager under moto."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from rostersync.config import StackSettings
from rostersync.errors import InvalidKey, StorageUnavailable
from rostersync.storage.secrets import (
    LocalSecretStore,
    SecretsManagerStore,
    SecretStoreError,
    build_secret_store,
)


def test_local_store_keeps_secrets_per_tenant_in_a_0600_file(tmp_path: Path):
    path = tmp_path / "state" / "secrets.json"
    store = LocalSecretStore(path)
    assert store.get_secret("t1", "clever_token") is None
    store.put_secret("t1", "clever_token", "tok-1")
    store.put_secret("t2", "clever_token", "tok-2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalSecretStore(path).get_secret("t1", "clever_token") == "tok-1"
    assert store.get_secret("t2", "clever_token") == "tok-2"
    store.put_secret("t1", "clever_token", "tok-1b")
    assert store.get_secret("t1", "clever_token") == "tok-1b"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.delete_secret("t1", "clever_token") is True
    assert store.delete_secret("t1", "clever_token") is False
    assert store.get_secret("t1", "clever_token") is None
    # No temporary file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"]


def test_local_store_refuses_a_file_others_can_read(tmp_path: Path):
    path = tmp_path / "secrets.json"
    store = LocalSecretStore(path)
    store.put_secret("t1", "clever_token", "tok")
    os.chmod(path, 0o644)
    with pytest.raises(SecretStoreError) as raised:
        store.get_secret("t1", "clever_token")
    assert "tok" not in str(raised.value).replace(str(tmp_path), "")


def test_local_store_validates_tenant_and_name(tmp_path: Path):
    store = LocalSecretStore(tmp_path / "secrets.json")
    with pytest.raises(InvalidKey):
        store.put_secret("../x", "clever_token", "tok")
    with pytest.raises(SecretStoreError):
        store.put_secret("t1", "Bad/Name", "tok")
    with pytest.raises(SecretStoreError):
        store.put_secret("t1", "clever_token", "")


@pytest.fixture
def secretsmanager(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_secrets_manager_store_names_secrets_by_tenant(secretsmanager):
    store = SecretsManagerStore(secretsmanager)
    assert store.get_secret("t1", "clever_token") is None
    store.put_secret("t1", "clever_token", "tok-1")
    store.put_secret("t1", "clever_token", "tok-2")  # a second put replaces the value
    assert store.get_secret("t1", "clever_token") == "tok-2"
    described = secretsmanager.describe_secret(SecretId="rostersync/t1/clever_token")
    assert {"Key": "rostersync:tenant", "Value": "t1"} in described["Tags"]
    assert store.get_secret("t2", "clever_token") is None
    assert store.delete_secret("t1", "clever_token") is True
    assert store.get_secret("t1", "clever_token") is None
    assert store.delete_secret("t1", "clever_token") is False
    store.put_secret("t1", "clever_token", "tok-3")  # the name is free again at once
    assert store.get_secret("t1", "clever_token") == "tok-3"


class _Refusing:
    def __init__(self, code: str) -> None:
        self.code = code

    def get_secret_value(self, **kwargs):
        raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "GetSecretValue")


def test_secrets_manager_errors_map_to_rostersync_errors():
    with pytest.raises(StorageUnavailable):
        SecretsManagerStore(_Refusing("ThrottlingException")).get_secret("t1", "clever_token")
    with pytest.raises(SecretStoreError):
        SecretsManagerStore(_Refusing("AccessDeniedException")).get_secret("t1", "clever_token")


STACK = {
    "BUCKET_NAME": "b",
    "RUNS_TABLE": "r",
    "LINKS_TABLE": "l",
    "DIRECTORY_TABLE": "d",
    "TENANTS_TABLE": "t",
    "EVENT_BUS_NAME": "e",
}


def test_settings_pick_the_store(tmp_path: Path, secretsmanager):
    local = build_secret_store(
        StackSettings.from_env({**STACK, "LOCAL_SECRETS_FILE": str(tmp_path / "s.json")})
    )
    assert isinstance(local, LocalSecretStore)
    assert isinstance(build_secret_store(StackSettings.from_env(STACK)), SecretsManagerStore)
