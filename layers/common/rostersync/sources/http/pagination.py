"""Paginators: given a page just received, the request for the next one (or None).

One strategy per way APIs page their listings: a ``next`` link in the body (Clever), a
``Link: <...>; rel="next"`` header, offset/limit with ``X-Total-Count`` (OneRoster REST),
page/per_page, and a next URL or cursor inside the body (``meta.pagination.next``,
Wonde). Paginators are stateless: the client hands each one the request it sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class PageRequest:
    """One page's request: a path (relative to the client's base URL) or an absolute URL
    on the same origin, and its query parameters in order."""

    url: str
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, url: str, params: Mapping[str, str | int] | None = None) -> PageRequest:
        return cls(url, tuple((k, str(v)) for k, v in (params or {}).items()))

    def with_params(self, **values: str | int) -> PageRequest:
        """This request with ``values`` set (replacing parameters of the same name)."""
        kept = tuple((k, v) for k, v in self.params if k not in values)
        return PageRequest(self.url, kept + tuple((k, str(v)) for k, v in values.items()))

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def split(self) -> PageRequest:
        """The same request with any query string of ``url`` moved into ``params``."""
        url = httpx.URL(self.url)
        if not url.query:
            return self
        bare = str(url.copy_with(query=None))
        if not url.is_absolute_url:
            bare = url.raw_path.decode("ascii").split("?", 1)[0]
        return PageRequest(bare, tuple(url.params.multi_items()) + self.params)

    def describe(self) -> str:
        """Path and query as the index and the logs show them (ids, never credentials)."""
        query = str(httpx.QueryParams(list(self.params)))
        return f"{self.url}?{query}" if query else self.url


class Paginator(Protocol):
    """Picks the next page's request from the page just received."""

    def first(self, request: PageRequest) -> PageRequest:
        """The first page's request (adds the page size, the first offset, ...)."""
        ...

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        """The next page's request, or None when this page was the last."""
        ...


def _dig(body: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(part)
    return body


def _next_from_url(request: PageRequest, url: str, keep: Mapping[str, str]) -> PageRequest:
    """A next link as a request, keeping parameters (the page size) it leaves out."""
    following = PageRequest(url).split()
    missing = {k: v for k, v in keep.items() if following.param(k) is None}
    return following.with_params(**missing) if missing else following


@dataclass(frozen=True)
class LinksNextPaginator:
    """``{"links": [{"rel": "next", "uri": "/v3.0/users?starting_after=..."}]}`` (Clever).

    The page size is sent on every request: Clever's next links carry only the cursor.
    An empty page ends the listing whatever its links say."""

    limit: int | None = None
    limit_param: str = "limit"
    links_path: tuple[str, ...] = ("links",)

    def first(self, request: PageRequest) -> PageRequest:
        if self.limit is None:
            return request
        return request.with_params(**{self.limit_param: self.limit})

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        if items == 0:
            return None
        links = _dig(body, self.links_path)
        if not isinstance(links, list):
            return None
        for link in links:
            if isinstance(link, Mapping) and link.get("rel") == "next" and link.get("uri"):
                keep = {} if self.limit is None else {self.limit_param: str(self.limit)}
                return _next_from_url(request, str(link["uri"]), keep)
        return None


@dataclass(frozen=True)
class HeaderLinkPaginator:
    """An RFC 8288 ``Link: <url>; rel="next"`` response header."""

    limit: int | None = None
    limit_param: str = "limit"

    def first(self, request: PageRequest) -> PageRequest:
        if self.limit is None:
            return request
        return request.with_params(**{self.limit_param: self.limit})

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        link = response.links.get("next", {}).get("url")
        if items == 0 or not link:
            return None
        keep = {} if self.limit is None else {self.limit_param: str(self.limit)}
        return _next_from_url(request, link, keep)


@dataclass(frozen=True)
class OffsetPaginator:
    """``offset``/``limit`` (OneRoster REST). Ends when the offset reaches the total the
    ``X-Total-Count`` header gives, or, without one, at a short or empty page."""

    limit: int
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_header: str | None = "X-Total-Count"

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(**{self.offset_param: 0, self.limit_param: self.limit})

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        if items == 0:
            return None
        offset = int(request.param(self.offset_param) or 0) + items
        total = response.headers.get(self.total_header) if self.total_header else None
        if total is not None and total.strip().isdigit():
            if offset >= int(total):
                return None
        elif items < self.limit:
            return None
        return request.with_params(**{self.offset_param: offset})


@dataclass(frozen=True)
class PageNumberPaginator:
    """``page``/``per_page``: ends at a short or empty page."""

    per_page: int
    page_param: str = "page"
    per_page_param: str = "per_page"
    first_page: int = 1

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(
            **{self.page_param: self.first_page, self.per_page_param: self.per_page}
        )

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        if items < self.per_page:
            return None
        page = int(request.param(self.page_param) or self.first_page) + 1
        return request.with_params(**{self.page_param: page})


@dataclass(frozen=True)
class BodyNextPaginator:
    """A next URL, or a cursor, inside the body (Wonde: ``meta.pagination.next``).

    With ``cursor_param`` the value is a cursor sent as that parameter; without it, the
    value is the next page's URL. A null or empty value ends the listing."""

    path: tuple[str, ...] = ("meta", "pagination", "next")
    cursor_param: str | None = None
    page_params: Mapping[str, str] = field(default_factory=dict)

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(**dict(self.page_params)) if self.page_params else request

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        value = _dig(body, self.path)
        if value is None or value == "" or value is False:
            return None
        if self.cursor_param is not None:
            return request.with_params(**{self.cursor_param: str(value)})
        return _next_from_url(request, str(value), dict(self.page_params))
