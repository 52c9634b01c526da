"""API pages in a run's raw area: each page's bytes exactly as received, numbered per
stream (``users-00001.json``), and a small index of what was fetched.

The index (``pages.json``) lists, per stream, its pages in order with the request's path
and query, the status, the item count and the size, plus whatever the source notes about
the stream (complete, untrusted, ...). It never holds a header or a credential.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import orjson

from rostersync.sources.base import RawArea, RawFiles
from rostersync.sources.http.client import Page
from rostersync.sources.http.errors import SourceResponseError

INDEX_NAME = "pages.json"
_STREAM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,150}$")


def page_name(stream: str, number: int) -> str:
    return f"{stream}-{number:05d}.json"


class RawPageWriter:
    """Writes pages into a raw area as they arrive, and the index once all have."""

    def __init__(self, raw: RawArea, index_name: str = INDEX_NAME) -> None:
        self.raw = raw
        self.index_name = index_name
        self.streams: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, page: Page) -> str:
        """Store ``page`` as the next page of ``stream``; its name in the raw area."""
        if not _STREAM.match(stream):
            raise ValueError(f"invalid stream name {stream!r}")
        with self._lock:
            entry = self.streams.setdefault(stream, {"pages": [], "items": 0})
            name = page_name(stream, len(entry["pages"]) + 1)
            entry["pages"].append(
                {
                    "name": name,
                    "request": page.request.describe(),
                    "status": page.status,
                    "items": len(page.items),
                    "bytes": len(page.content),
                }
            )
            entry["items"] += len(page.items)
        self.raw.put_bytes(name, page.content)
        return name

    def start(self, stream: str) -> None:
        """Record ``stream`` as fetched even if it yields no page."""
        with self._lock:
            self.streams.setdefault(stream, {"pages": [], "items": 0})

    def note(self, stream: str, **values: Any) -> None:
        """Set facts about ``stream`` in the index (``untrusted="..."``)."""
        with self._lock:
            self.streams.setdefault(stream, {"pages": [], "items": 0}).update(values)

    def items(self, stream: str) -> int:
        return int(self.streams.get(stream, {}).get("items", 0))

    def write_index(self, **values: Any) -> None:
        """Write the index: the streams and ``values`` (the fetch's mode, ...)."""
        index = {"version": 1, **values, "streams": self.streams}
        self.raw.put_bytes(self.index_name, orjson.dumps(index, option=orjson.OPT_INDENT_2))


class RawPages:
    """Reads back what a ``RawPageWriter`` wrote."""

    def __init__(self, raw: RawFiles, index_name: str = INDEX_NAME) -> None:
        self.raw = raw
        try:
            with raw.open(index_name) as body:
                self.index: dict[str, Any] = orjson.loads(body.read())
        except orjson.JSONDecodeError:
            raise SourceResponseError(f"the raw area's {index_name} is unreadable") from None
        self.streams: dict[str, dict[str, Any]] = dict(self.index.get("streams") or {})

    def has(self, stream: str) -> bool:
        return stream in self.streams

    def meta(self, stream: str) -> dict[str, Any]:
        return dict(self.streams.get(stream) or {})

    def bodies(self, stream: str) -> Iterator[Any]:
        """The stream's page bodies, parsed, in the order they were fetched."""
        for page in self.meta(stream).get("pages", []):
            with self.raw.open(page["name"]) as body:
                yield orjson.loads(body.read())
