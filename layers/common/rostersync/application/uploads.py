"""A bundle handed over through the admin API (the console's upload): checked to be a
OneRoster zip, stored under ``uploads/{tenant}/`` with its secret columns emptied (the
same way as the command line's), ready for *Sync now* with its source key."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from rostersync.application.inbox import ROSTER_FILES
from rostersync.application.sync import upload_bundle
from rostersync.errors import FatalError
from rostersync.pipeline.deps import Deps
from rostersync.storage import keys


class BadUpload(FatalError):
    """The uploaded body is not a OneRoster bundle."""


def receive_bundle(
    deps: Deps, tenant: str, body: bytes, filename: str | None = None
) -> dict[str, Any]:
    """Store an uploaded zip for a run to sync: ``{source_key, files, bytes}``."""
    keys.check_tenant(tenant)
    shown = filename or "the upload"
    if not body:
        raise BadUpload("the upload is empty: send the bundle's zip as the request body")
    with tempfile.TemporaryDirectory(prefix="rostersync-upload-") as tmp:
        path = Path(tmp) / "bundle.zip"
        path.write_bytes(body)
        try:
            with zipfile.ZipFile(path) as archive:
                names = [
                    info.filename.rsplit("/", 1)[-1]
                    for info in archive.infolist()
                    if not info.is_dir()
                ]
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadUpload(f"{shown} is not a zip file: send the bundle as one .zip") from exc
        roster = sorted(n for n in names if n.lower() in ROSTER_FILES)
        if not roster:
            raise BadUpload(
                f"{shown} holds no OneRoster file (manifest.csv, users.csv, ...): "
                f"it has {', '.join(sorted(names)[:5]) or 'no files'}"
            )
        key = upload_bundle(deps, tenant, keys.new_run_id(), path)
    return {"source_key": key, "files": roster, "bytes": len(body), "filename": filename}
