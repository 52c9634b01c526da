"""A REST stream: one listing of an API (a path, its parameters, where its items sit in
the body, how it pages), fetched page by page into the raw area."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rostersync.sources.http.client import HttpClient
from rostersync.sources.http.errors import SourceResponseError
from rostersync.sources.http.pagination import PageRequest, Paginator
from rostersync.sources.http.raw_pages import RawPageWriter


def items_at(body: Any, path: Sequence[str], what: str) -> list[Any]:
    """The list at ``path`` in ``body``; a body without it is a ``SourceResponseError``
    (an empty page must say so with an empty list, never by leaving the key out)."""
    value = body
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            raise SourceResponseError(f"{what}: the response has no {'.'.join(path)!r}")
        value = value[part]
    if not isinstance(value, list):
        raise SourceResponseError(f"{what}: {'.'.join(path)!r} is not a list")
    return value


@dataclass(frozen=True)
class RestStream:
    """One listing: ``name`` names its pages in the raw area (``users-00001.json``)."""

    name: str
    path: str
    params: Mapping[str, str | int] = field(default_factory=dict)
    records_path: tuple[str, ...] = ("data",)

    def request(self) -> PageRequest:
        return PageRequest.of(self.path, self.params)

    def items(self, body: Any) -> list[Any]:
        return items_at(body, self.records_path, self.path)


def fetch_stream(
    client: HttpClient, stream: RestStream, paginator: Paginator, writer: RawPageWriter
) -> int:
    """Fetch every page of ``stream`` into the raw area; the number of items."""
    writer.start(stream.name)
    for page in client.pages(stream.request(), paginator, stream.items):
        writer.add(stream.name, page)
    return writer.items(stream.name)
