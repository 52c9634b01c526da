"""No secret kept: every stored copy of a bundle has its secret columns (passwords)
emptied from the moment it is stored.

``upload_bundle`` stores local bundles stripped, each with a marker of the version it
stored; the inbox rewrites what arrives stripped before anything reads it (on AWS the
bucket keeps versions: a lifecycle rule expires the noncurrent versions under ``inbox/``
and ``uploads/`` after a day); fetch strips what it copies under ``raw/``, except an
upload whose version is still its marker's (stripped already: the same bytes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rostersync.errors import BundleError
from rostersync.sources.oneroster_csv.secret_columns import (
    HEADER_BYTES,
    has_secret_columns,
    strip_secret_columns,
    strip_secret_columns_zip,
)
from rostersync.storage.objects import mark_stored_stripped
from rostersync.storage.ports import ObjectStorePort


def store_without_secrets(store: ObjectStorePort, path: Path, key: str) -> None:
    """Upload the local file ``path`` to ``key``, its secret columns emptied; a CSV or
    a readable zip gets its marker (``mark_stored_stripped``), so that the fetch need
    not strip the same bytes again."""
    name = path.name.lower()
    if name.endswith(".csv"):
        with path.open("rb") as fh:
            head = fh.read(HEADER_BYTES)
        if has_secret_columns(head):
            store.put_bytes(key, strip_secret_columns(path.read_bytes()), "text/csv")
        else:
            store.upload_file(path, key)
        mark_stored_stripped(store, key)
        return
    if name.endswith(".zip"):
        with tempfile.TemporaryDirectory(prefix="rostersync-") as tmp:
            stripped = Path(tmp) / "stripped.zip"
            try:
                had_secrets = strip_secret_columns_zip(path, stripped)
            except BundleError:
                # Not a readable zip: stored as it is (unmarked), refused by the fetch.
                store.upload_file(path, key)
                return
            store.upload_file(stripped if had_secrets else path, key)
            mark_stored_stripped(store, key)
            return
    store.upload_file(path, key)


def strip_stored_object(store: ObjectStorePort, key: str) -> bool:
    """Rewrite the object at ``key`` with its secret columns emptied; True if it had a
    secret value (a rewritten object is stripped already: a second call changes
    nothing)."""
    lower = key.lower()
    if lower.endswith(".csv"):
        data = store.get_bytes(key)
        if data is None or not has_secret_columns(data[:HEADER_BYTES]):
            return False
        stripped = strip_secret_columns(data)
        if stripped is data:
            return False
        store.put_bytes(key, stripped, "text/csv")
        return True
    if lower.endswith(".zip"):
        with tempfile.TemporaryDirectory(prefix="rostersync-") as tmp:
            original, rewritten = Path(tmp) / "in.zip", Path(tmp) / "out.zip"
            try:
                store.download_file(key, original)
                if not strip_secret_columns_zip(original, rewritten):
                    return False
            except BundleError:
                return False  # unreadable: the inbox rejects it
            store.upload_file(rewritten, key)
            return True
    return False
