"""Fetching a OneRoster REST server's collections into the run's raw area.

Each collection is listed with ``limit``/``offset``: the next page is the one after the
items received (a server that caps ``limit`` lower than asked still pages right), until
``X-Total-Count`` is reached; a 1.2 ``Link: rel="next"`` header is followed where given;
without either, the listing ends at an empty page or one shorter than those before.

Offset paging under writes shifts: a record can be listed twice and, worse, another one
skipped (then archived as if gone). A listing that shows a record twice, or fewer
distinct records than its ``X-Total-Count``, is listed once more; both passes are kept
and read as one (the last copy of a record wins). If the second pass still does not add
up, the collection's absences are not trusted this run.

The cursor kept with a commit: ``{"since", "version", "counts"}``: ``since`` is when this
fetch started (a quick run asks for ``dateLastModified>`` it, less an overlap), ``counts``
the records per collection (an empty listing where the last had records is untrusted).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from rostersync.observability import logger, submit_with_log_keys
from rostersync.sources.http import (
    HttpClient,
    PageRequest,
    RawPageWriter,
    SourceAuthError,
    SourceNotFound,
    SourceRequestError,
    items_at,
)

#: Collection → the key its listing's items sit under (the same in 1.1 and 1.2).
COLLECTIONS: dict[str, str] = {
    "orgs": "orgs",
    "academicSessions": "academicSessions",
    "courses": "courses",
    "classes": "classes",
    "users": "users",
    "enrollments": "enrollments",
    "demographics": "demographics",
}
#: Collections a server may decline to share (403/404) without failing the sync.
OPTIONAL = frozenset({"demographics"})


def stream_name(collection: str) -> str:
    """The raw pages' stream name (lower case: ``academicsessions-00001.json``)."""
    return collection.lower()


class QuickUnavailable(Exception):
    """A quick fetch cannot be trusted to see every change: run a full one instead."""


@dataclass(frozen=True)
class ModifiedCursor:
    since: datetime | None
    version: str | None
    counts: dict[str, int]

    @classmethod
    def of(cls, saved: Mapping[str, Any] | None) -> ModifiedCursor | None:
        if not saved:
            return None
        try:
            since = datetime.fromisoformat(str(saved["since"])) if saved.get("since") else None
        except ValueError:
            since = None
        counts = saved.get("counts") or {}
        return cls(
            since=since,
            version=str(saved["version"]) if saved.get("version") else None,
            counts={str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
        )

    def dump(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "version": self.version,
            "counts": dict(self.counts),
        }


def filter_since(moment: datetime) -> str:
    """OneRoster's delta filter: ``dateLastModified>'2025-09-01T00:00:00Z'`` (UTC)."""
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"dateLastModified>'{stamp}'"


@dataclass(frozen=True)
class OneRosterPaginator:
    """``offset``/``limit`` after the items received, to ``X-Total-Count``; a ``Link``
    rel next where the server gives one."""

    limit: int

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(offset=0, limit=self.limit)

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        if items == 0:
            return None
        link = response.links.get("next", {}).get("url")
        if link:
            following = PageRequest(link).split()
            if following.param("limit") is None:
                following = following.with_params(limit=self.limit)
            return following
        offset = int(request.param("offset") or 0) + items
        total = _total(response)
        if total is not None:
            return None if offset >= total else request.with_params(offset=offset)
        return request.with_params(offset=offset)


def _total(response: httpx.Response) -> int | None:
    value = response.headers.get("x-total-count", "").strip()
    return int(value) if value.isdigit() else None


@dataclass
class Listing:
    """What listing one collection gave."""

    items: int = 0
    distinct: int = 0
    repeated: int = 0
    total: int | None = None
    passes: int = 0


class OneRosterFetch:
    """One fetch of one tenant's OneRoster collections."""

    def __init__(
        self,
        client: HttpClient,
        writer: RawPageWriter,
        page_size: int,
        concurrency: int,
        delta_filter: str | None,
    ) -> None:
        self.client = client
        self.writer = writer
        self.page_size = page_size
        self.concurrency = concurrency
        self.delta_filter = delta_filter

    def collections(self, names: tuple[str, ...], previous: Mapping[str, int]) -> dict[str, int]:
        """List ``names`` (at most ``concurrency`` at once); records per collection."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {name: submit_with_log_keys(pool, self.collection, name) for name in names}
            counts = {name: future.result() for name, future in futures.items()}
        if self.delta_filter is None:
            for name, count in counts.items():
                before = previous.get(name, 0)
                if count == 0 and before > 0:
                    self.writer.note(
                        stream_name(name),
                        untrusted=f"the server listed no {name} where the last sync had {before}",
                    )
                    logger().warning(
                        "empty listing where the last sync had records",
                        extra={"collection": name, "before": before},
                    )
        return counts

    def collection(self, name: str) -> int:
        """List one collection, once more if it shifted; its distinct records."""
        stream = stream_name(name)
        self.writer.start(stream)
        try:
            first = self._list(name)
        except (SourceNotFound, SourceAuthError, SourceRequestError) as exc:
            if name in OPTIONAL and exc.status in (403, 404):
                self.writer.note(stream, unavailable=f"HTTP {exc.status}")
                return 0
            if self.delta_filter is not None and isinstance(exc, SourceRequestError):
                raise QuickUnavailable(f"the server refused the filter on /{name}") from exc
            raise
        listing = first
        if first.repeated or (first.total is not None and first.distinct < first.total):
            logger().warning(
                "listing shifted while paged: listed again",
                extra={"collection": name, "repeated": first.repeated, "total": first.total},
            )
            second = self._list(name)
            listing = second
            if second.repeated or (second.total is not None and second.distinct < second.total):
                self.writer.note(
                    stream,
                    untrusted=(
                        f"/{name} changed while it was paged, twice ({second.distinct} distinct "
                        f"records of {second.total if second.total is not None else '?'})"
                    ),
                )
            self.writer.note(stream, passes=2)
        return listing.distinct

    def _list(self, name: str) -> Listing:
        stream = stream_name(name)
        key = COLLECTIONS[name]
        params = {"filter": self.delta_filter} if self.delta_filter else {}
        request = PageRequest.of(f"/{name}", params)
        listing = Listing(passes=1)
        seen: set[str] = set()

        def items_of(body: Any) -> list[Any]:
            return items_at(body, (key,), f"/{name}")

        paginator = _Guarded(OneRosterPaginator(self.page_size))
        for page in self.client.pages(request, paginator, items_of):
            self.writer.add(stream, page)
            listing.items += len(page.items)
            for item in page.items:
                sourced_id = item.get("sourcedId") if isinstance(item, Mapping) else None
                if not isinstance(sourced_id, str) or not sourced_id:
                    continue
                if sourced_id in seen:
                    listing.repeated += 1
                else:
                    seen.add(sourced_id)
            total = paginator.last_total
            if total is not None:
                listing.total = total
        listing.distinct = len(seen)
        return listing


class _Guarded:
    """The paginator, remembering the last total and ending a listing without totals or
    links at an empty page or one shorter than the longest before it."""

    def __init__(self, inner: OneRosterPaginator) -> None:
        self.inner = inner
        self.last_total: int | None = None
        self._longest = 0

    def first(self, request: PageRequest) -> PageRequest:
        return self.inner.first(request)

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        total = _total(response)
        if total is not None:
            self.last_total = total
        following = self.inner.next(request, response, body, items)
        if following is None or total is not None or response.links.get("next"):
            return following
        if items < self._longest:
            return None
        self._longest = max(self._longest, items)
        return following
