"""Where a bundle's files come from: a folder, a zip, or S3 objects.

Readers only ever see ``BundleFiles``: a list of file names and a way to open one as a
binary stream, so the same reader serves a local folder, a zip and an S3 prefix.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Protocol

from rostersync.errors import BundleError


class BundleFiles(Protocol):
    """The files of one bundle, by base name (``users.csv``)."""

    def names(self) -> list[str]:
        """Base names of the files in the bundle."""
        ...

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A context manager yielding a binary stream of the file."""
        ...


class FolderBundle:
    """A bundle laid out as files in one folder."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise BundleError(f"{folder} is not a folder")
        self.folder = folder

    def names(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file())

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with (self.folder / Path(name).name).open("rb") as fh:
            yield fh


class ZipBundle:
    """A bundle as a zip file; files may sit in one top-level folder inside it."""

    def __init__(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BundleError(f"{path.name} is not a readable zip: {exc}") from exc
        self._members: dict[str, str] = {}
        for info in self._zip.infolist():
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            base = info.filename.rsplit("/", 1)[-1]
            if base and not base.startswith("."):
                self._members.setdefault(base, info.filename)

    def names(self) -> list[str]:
        return sorted(self._members)

    def size(self, name: str) -> int:
        """The file's size, uncompressed."""
        return self._zip.getinfo(self._members[name]).file_size

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with self._zip.open(self._members[name]) as fh:
            yield fh

    def close(self) -> None:
        self._zip.close()


def open_local_bundle(path: Path) -> FolderBundle | ZipBundle:
    """A bundle from a folder or a ``.zip`` file on disk."""
    if path.is_dir():
        return FolderBundle(path)
    if path.is_file():
        return ZipBundle(path)
    raise BundleError(f"{path} is neither a folder nor a zip file")
