"""No secret kept: every stored copy of a bundle has its secret columns (passwords)
emptied from the moment it is stored.

``upload_bundle`` stores local bundles stripped, each with a marker of the version it
stored; the inbox rewrites what arrives stripped before anything reads it (on AWS the
bucket keeps versions: a lifecycle rule expires the noncurrent versions under ``inbox/``
and ``uploads/`` after a day); fetch strips what it copies under ``raw/``, except an
upload whose version is still its marker's (stripped already: the same bytes).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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

#: A CSV file at least this big is stripped in a process of its own while the caller goes
#: on (a large users.csv takes a second of Python per 250,000 rows).
BACKGROUND_BYTES = 8 << 20


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


def store_all_without_secrets(
    store: ObjectStorePort,
    files: Sequence[tuple[Path, str]],
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """``store_without_secrets`` for each ``(path, key)``. Given ``meanwhile`` (the
    command line starts the runtime that will read them), it runs while the files are
    stored: large CSV files with a secret column are stripped in other processes (the
    work is Python's, one core each), the others are stored by a thread of this process
    (mostly the kernel copying files); every file is stored when this returns. Without
    it (a server: it forks no process), each is stored in turn."""
    if meanwhile is None:
        _store_each(store, files)
        return
    heavy = [i for i, (p, _) in enumerate(files) if _heavy(p)]
    pool = (
        ProcessPoolExecutor(
            max_workers=min(len(heavy), os.cpu_count() or 1),
            # Forked: the child has the code already and only turns bytes into a file.
            mp_context=multiprocessing.get_context("fork"),
        )
        if heavy
        else None
    )
    try:
        with tempfile.TemporaryDirectory(prefix="rostersync-strip-") as tmp:
            folder = Path(tmp)
            pending = {}
            if pool is not None:
                pending = {
                    i: pool.submit(_stripped_csv, files[i][0], folder / f"{i}.csv") for i in heavy
                }
            rest = [file for i, file in enumerate(files) if i not in pending]
            # Leaving the pool waits for the thread: every file is stored (or its error
            # kept) before this goes on, whether ``meanwhile`` returned or raised.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as thread:
                stored = thread.submit(_store_each, store, rest)
                meanwhile()
            stored.result()
            for i, future in pending.items():
                path, key = files[i]
                stripped = future.result()
                store.upload_file(stripped or path, key)
                mark_stored_stripped(store, key)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _store_each(store: ObjectStorePort, files: Sequence[tuple[Path, str]]) -> None:
    for path, key in files:
        store_without_secrets(store, path, key)


def _heavy(path: Path) -> bool:
    """Whether ``path`` is a CSV file large enough, with a secret column, to be stripped
    in another process."""
    if not path.name.lower().endswith(".csv"):
        return False
    try:
        if path.stat().st_size < BACKGROUND_BYTES:
            return False
        with path.open("rb") as fh:
            return has_secret_columns(fh.read(HEADER_BYTES))
    except OSError:
        return False  # stored (or refused) as any other file


def _stripped_csv(path: Path, out: Path) -> Path | None:
    """``out``, holding the CSV file ``path`` with its secret values emptied; None when
    ``path`` holds none (it is stored as it is)."""
    data = path.read_bytes()
    stripped = strip_secret_columns(data)
    if stripped is data:
        return None
    out.write_bytes(stripped)
    return out


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
