"""Fetching one school from the Assembly Platform API into the run's raw area.

``/school/status`` comes first (when the platform last took data from the MIS, and
whether that worked), then ``/school``, ``/students``, ``/staff_members``,
``/teaching_groups`` and ``/registration_groups``, paged by ``page``/``per_page`` with
the list envelope's ``next_page``. A group listed without its ``student_ids`` has its
members read from ``/{groups}/{id}/students``. A listing that repeats a record is listed
once more (both passes read as one, the last copy winning).

A quick fetch sends ``If-Modified-Since`` (the last committed run's start, less an
overlap): a listing answering 304 has nothing new; ``/students/left`` gives the students
who left since. The cursor: ``{"since", "counts"}``.

The school's access token is the bearer; where the tenant's secret store also holds a
refresh token (and the app's client secret), a 401 refreshes it once. The refreshed
access token is kept in memory for the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import orjson

from rostersync.observability import logger, submit_with_log_keys
from rostersync.sources.http import (
    HttpClient,
    PageRequest,
    RawPageWriter,
    SourceAuthError,
    SourceRequestError,
    SourceResponseError,
    SourceUnavailable,
    items_at,
)

LISTINGS: dict[str, dict[str, str]] = {
    "students": {"demographics": "true", "emails": "true"},
    "staff_members": {"emails": "true"},
    "teaching_groups": {},
    "registration_groups": {},
}
GROUPS = ("teaching_groups", "registration_groups")


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


@dataclass(frozen=True)
class ModifiedCursor:
    since: datetime | None
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
        return cls(since, {str(k): int(v) for k, v in counts.items() if isinstance(v, int)})

    def dump(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None, "counts": self.counts}


class TokenStore:
    """Access tokens got by refreshing, per tenant and refresh token, in memory."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], now: float) -> str | None:
        with self._lock:
            found = self._tokens.get(key)
            return found[0] if found and found[1] > now else None

    def put(self, key: tuple[str, str], token: str, expires_at: float) -> None:
        with self._lock:
            self._tokens[key] = (token, expires_at)


@dataclass
class Refresher:
    """The refresh-token grant against Assembly's OAuth host."""

    token_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    store: TokenStore
    key: tuple[str, str]
    wall_clock: Callable[[], float] = time.time
    transport: httpx.BaseTransport | None = None

    def __repr__(self) -> str:
        return "Refresher(<redacted>)"

    def refresh(self) -> str:
        path = httpx.URL(self.token_url).path
        try:
            with httpx.Client(transport=self.transport, timeout=30.0) as http:
                response = http.post(
                    self.token_url,
                    data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
                    auth=httpx.BasicAuth(self.client_id, self.client_secret),
                    headers={"Accept": "application/json"},
                )
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"assembly: POST {path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise SourceUnavailable(f"assembly: POST {path}: HTTP {response.status_code}")
        if response.status_code != 200:
            error = SourceAuthError(
                f"assembly: POST {path}: HTTP {response.status_code} (refresh refused)"
            )
            error.status = response.status_code
            raise error
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SourceResponseError(f"assembly: POST {path}: not JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise SourceResponseError(f"assembly: POST {path}: no access_token")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self.store.put(self.key, token, self.wall_clock() + max(0.0, seconds - 60.0))
        return token


class AssemblyAuth(httpx.Auth):
    """The school's bearer token (refreshed once on a 401 where a refresher is given),
    and ``If-Modified-Since`` on listings of a quick fetch."""

    def __init__(
        self, token: str, refresher: Refresher | None, if_modified_since: str | None
    ) -> None:
        self._token = token
        self.refresher = refresher
        self.if_modified_since = if_modified_since
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "AssemblyAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.if_modified_since and not request.url.path.endswith("/school/status"):
            request.headers["If-Modified-Since"] = self.if_modified_since
        used = self._token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code != 401 or self.refresher is None:
            return
        with self._lock:
            if self._token == used:
                self._token = self.refresher.refresh()
                logger().info("assembly access token refreshed")
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


@dataclass(frozen=True)
class ListPaginator:
    """``page``/``per_page`` following the list envelope's ``next_page``."""

    per_page: int

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(page=1, per_page=self.per_page)

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        following = body.get("next_page") if isinstance(body, Mapping) else None
        if items == 0 or following in (None, "", False):
            return None
        return request.with_params(page=str(following))


def _data(path: str) -> Callable[[Any], list[Any]]:
    def items_of(body: Any) -> list[Any]:
        return items_at(body, ("data",), path)

    return items_of


def _object(body: Any) -> list[Any]:
    if not isinstance(body, Mapping) or not body:
        raise SourceResponseError("assembly: not an object")
    data = body.get("data", body)
    return [data]


class AssemblyFetch:
    """One fetch of one school."""

    def __init__(
        self,
        client: HttpClient,
        writer: RawPageWriter,
        per_page: int,
        concurrency: int,
        quick: bool,
    ) -> None:
        self.client = client
        self.writer = writer
        self.per_page = per_page
        self.concurrency = concurrency
        self.quick = quick
        #: Group listing → ids of groups that came without ``student_ids``.
        self.without_members: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def status(self) -> Mapping[str, Any]:
        page = self.client.get_page(PageRequest("/school/status"), _object)
        self.writer.add("school-status", page)
        found = page.items[0]
        return found if isinstance(found, Mapping) else {}

    def school(self) -> Mapping[str, Any] | None:
        """The school (None when a quick fetch is told it has not changed)."""
        try:
            page = self.client.get_page(PageRequest("/school"), _object)
        except SourceRequestError as exc:
            if exc.status == 304:
                self.writer.note("school", not_modified=True)
                return None
            raise
        self.writer.add("school", page)
        found = page.items[0]
        return found if isinstance(found, Mapping) else None

    def listings(self, names: tuple[str, ...], previous: Mapping[str, int]) -> dict[str, int]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {name: submit_with_log_keys(pool, self.listing, name) for name in names}
            counts = {name: f.result() for name, f in futures.items()}
        if not self.quick:
            for name, count in counts.items():
                before = previous.get(name, 0)
                if count == 0 and before > 0:
                    self.writer.note(
                        name,
                        untrusted=f"Assembly listed no {name} where the last sync had {before}",
                    )
        for group in GROUPS:
            if group in counts:
                self._members(group)
        return counts

    def listing(self, name: str) -> int:
        self.writer.start(name)
        repeated, distinct = self._list(name, f"/{name}", LISTINGS.get(name, {}))
        if repeated:
            logger().warning(
                "listing shifted while paged: listed again",
                extra={"collection": name, "repeated": repeated},
            )
            repeated, distinct = self._list(name, f"/{name}", LISTINGS.get(name, {}))
            self.writer.note(name, passes=2)
            if repeated:
                self.writer.note(name, untrusted=f"/{name} changed while it was paged, twice")
        return distinct

    def _list(self, stream: str, path: str, params: Mapping[str, str]) -> tuple[int, int]:
        seen: set[str] = set()
        repeated = 0
        request = PageRequest.of(path, dict(params))
        try:
            for page in self.client.pages(request, ListPaginator(self.per_page), _data(path)):
                self.writer.add(stream, page)
                for item in page.items:
                    item_id = item.get("id") if isinstance(item, Mapping) else None
                    if item_id is None:
                        continue
                    if stream in GROUPS and "student_ids" not in item:
                        with self._lock:
                            self.without_members.setdefault(stream, []).append(str(item_id))
                    if str(item_id) in seen:
                        repeated += 1
                    seen.add(str(item_id))
        except SourceRequestError as exc:
            if exc.status != 304:
                raise
            self.writer.note(stream, not_modified=True)
        return repeated, len(seen)

    def _members(self, group: str) -> None:
        """Members of the groups listed without ``student_ids``."""
        missing = list(dict.fromkeys(self.without_members.get(group, [])))
        for number, group_id in enumerate(missing, start=1):
            stream = f"{group.replace('_', '-')}-members-{number:05d}"
            self.writer.start(stream)
            self.writer.note(stream, members_of=group, group=group_id)
            self._list(stream, f"/{group}/{group_id}/students", {})

    def left(self) -> int:
        self.writer.start("students-left")
        _, count = self._list("students-left", "/students/left", {})
        return count
