"""No password kept anywhere: every shared bundle synced with a filled-in password column
(uploaded by a sync, and dropped in the inbox), then the whole state is searched (every
object, every table item, every event, the reports, the captured logs) for the values."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import boto3

from rostersync.application.inbox import handle_object_created
from rostersync.application.launch import RunStartDeps
from rostersync.application.sync import ensure_tenant
from rostersync.local.session import run_sync
from rostersync.storage.tables import LocksRepository
from tests.bundles import ONEROSTER, copy_bundle, read_rows, write_rows

MARK = b"Pw0rd-"


def with_passwords(source: Path, dest: Path) -> Path:
    """A copy of the bundle whose users.csv has a ``password`` column, every value set."""
    copy_bundle(source, dest)
    header, rows = read_rows(dest / "users.csv")
    for n, row in enumerate(rows):
        row["password"] = f"{MARK.decode()}{dest.name}-{n}-x"
    write_rows(dest / "users.csv", [*header, "password"], rows)
    return dest


def as_zip(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zout:
        for path in sorted(folder.glob("*.csv")):
            zout.write(path, path.name)
    return dest


class NoLaunch:
    def launch(self, run_input: dict[str, Any], *, name: str) -> None:
        return None


def blobs_with_members(body: bytes) -> list[bytes]:
    """The object and, for a zip, each member."""
    out = [body]
    if body[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as zin:
                out += [zin.read(name) for name in zin.namelist()]
        except zipfile.BadZipFile:
            pass
    return out


def test_no_password_value_is_kept_anywhere(aws_cloud, tmp_path, capfd):
    cloud = aws_cloud  # every S3 object and DynamoDB item is searched
    local, deps = cloud
    bundles = sorted(p for p in ONEROSTER.iterdir() if (p / "users.csv").is_file())
    assert len(bundles) >= 4
    reports = tmp_path / "reports"
    for n, bundle in enumerate(bundles):
        prepared = with_passwords(bundle, tmp_path / f"b{n}")
        assert MARK in (prepared / "users.csv").read_bytes()
        folder_run, _ = run_sync(local, deps, f"pw-{n}", prepared, reports, create_tenant=True)
        assert folder_run.status in {"committed", "held"}, folder_run.error
        zipped = as_zip(prepared, tmp_path / f"b{n}.zip")
        zip_run, _ = run_sync(local, deps, f"pwz-{n}", zipped, reports, create_tenant=True)
        assert zip_run.status in {"committed", "held"}, zip_run.error
        # The same files dropped in the inbox (loose and zipped).
        ensure_tenant(deps, f"pwi-{n}", create=True)
        locks = LocksRepository(boto3.resource("dynamodb"), local.names.tables["LocksTable"])
        starting = RunStartDeps(deps, locks, NoLaunch())
        for path in sorted(prepared.glob("*.csv")):
            key = f"inbox/pwi-{n}/day1/{path.name}"
            deps.store.put_bytes(key, path.read_bytes())
            handle_object_created(starting, key)
        key = f"inbox/pwi-{n}/day1.zip"
        deps.store.put_bytes(key, zipped.read_bytes())
        handle_object_created(starting, key)

    found: list[str] = []
    for key in deps.store.list_keys(""):
        body = deps.store.get_bytes(key) or b""
        if any(MARK in blob for blob in blobs_with_members(body)):
            found.append(f"object {key}")
    client = boto3.client("dynamodb")
    for table in client.list_tables()["TableNames"]:
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                if MARK in json.dumps(item, default=str).encode():
                    found.append(f"item in {table}")
    for event in local.published_events():
        if MARK in json.dumps(event, default=str).encode():
            found.append(f"event {event['detail-type']}")
    for path in reports.rglob("*"):
        if path.is_file() and MARK in path.read_bytes():
            found.append(f"report {path.name}")
    captured = capfd.readouterr()
    if MARK.decode() in captured.out + captured.err:
        found.append("logs")
    assert found == []
