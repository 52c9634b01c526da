"""Fetching one school from Wonde's API v1.0 into the run's raw area.

The school (``/v1.0/schools/{id}``) is read first: its ``region.domain`` must be the
host asked (Wonde answers the wrong region with no data, which must not look like a
school that emptied). Then ``students``, ``employees``, ``classes`` and ``contacts`` are
listed with their ``include=`` relations, following ``meta.pagination.next`` while
``more`` is true. A listing that repeats a record (data shifting under page numbers) is
listed once more; both passes are read as one, the last copy winning. A quick fetch adds
``updated_after`` to each listing and lists ``/deletions`` since the same moment.

The cursor kept with a commit: ``{"since", "counts"}`` (``since`` in UTC, Wonde's
``YYYY-MM-DD HH:MM:SS``).
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
    SourceConfigError,
    SourceResponseError,
    items_at,
)

API = "/v1.0"
#: Listing → the relations it includes.
LISTINGS: dict[str, str] = {
    "students": "education_details,contact_details,contacts",
    "employees": "employment_details,contact_details,classes",
    "classes": "students,employees,subject",
    "contacts": "students,contact_details",
}
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_KEPT = ("include", "per_page", "updated_after")


def wonde_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class UpdatedCursor:
    since: datetime | None
    counts: dict[str, int]

    @classmethod
    def of(cls, saved: Mapping[str, Any] | None) -> UpdatedCursor | None:
        if not saved:
            return None
        try:
            since = datetime.fromisoformat(str(saved["since"])) if saved.get("since") else None
        except ValueError:
            since = None
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        counts = saved.get("counts") or {}
        return cls(since, {str(k): int(v) for k, v in counts.items() if isinstance(v, int)})

    def dump(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None, "counts": self.counts}


@dataclass(frozen=True)
class WondePaginator:
    """``meta.pagination.next`` while ``meta.pagination.more`` is true."""

    per_page: int

    def first(self, request: PageRequest) -> PageRequest:
        return request.with_params(per_page=self.per_page)

    def next(
        self, request: PageRequest, response: httpx.Response, body: Any, items: int
    ) -> PageRequest | None:
        meta = body.get("meta") if isinstance(body, Mapping) else None
        pagination = meta.get("pagination") if isinstance(meta, Mapping) else None
        if not isinstance(pagination, Mapping) or not pagination.get("more"):
            return None
        following = pagination.get("next")
        if not isinstance(following, str) or not following:
            raise SourceResponseError(f"wonde: {request.url}: more pages but no next link")
        found = PageRequest(following).split()
        missing = {
            k: v for k in _KEPT if (v := request.param(k)) is not None and found.param(k) is None
        }
        return found.with_params(**missing) if missing else found


def _data_list(path: str) -> Any:
    def items_of(body: Any) -> list[Any]:
        return items_at(body, ("data",), path)

    return items_of


def _one(body: Any) -> list[Any]:
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(data, Mapping):
        raise SourceResponseError("wonde: the school's response has no data object")
    return [data]


class WondeFetch:
    """One fetch of one school."""

    def __init__(
        self,
        client: HttpClient,
        writer: RawPageWriter,
        school_id: str,
        per_page: int,
        concurrency: int,
        updated_after: str | None,
        *,
        contacts: bool = True,
    ) -> None:
        self.contacts = contacts
        self.client = client
        self.writer = writer
        self.school_id = school_id
        self.per_page = per_page
        self.concurrency = concurrency
        self.updated_after = updated_after

    @property
    def school_path(self) -> str:
        return f"{API}/schools/{self.school_id}"

    def school(self, base_host: str | None) -> None:
        """The school, checked to be served from this region."""
        page = self.client.get_page(PageRequest(self.school_path), _one)
        self.writer.add("school", page)
        region = page.items[0].get("region")
        domain = region.get("domain") if isinstance(region, Mapping) else None
        if domain and base_host and base_host not in _LOOPBACK and domain != base_host:
            raise SourceConfigError(
                f"Wonde serves school {self.school_id} from {domain}, not {base_host}: "
                "set the spec's base_url to that region"
            )

    def listings(self, names: tuple[str, ...], previous: Mapping[str, int]) -> dict[str, int]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {name: submit_with_log_keys(pool, self.listing, name) for name in names}
            counts = {name: f.result() for name, f in futures.items()}
        if self.updated_after is None:
            for name, count in counts.items():
                before = previous.get(name, 0)
                if count == 0 and before > 0:
                    self.writer.note(
                        name, untrusted=f"Wonde listed no {name} where the last sync had {before}"
                    )
                    logger().warning(
                        "empty listing where the last sync had records",
                        extra={"collection": name, "before": before},
                    )
        return counts

    def listing(self, name: str) -> int:
        """List ``name`` (once more if a record came twice); its distinct records. Contacts
        the token's scopes do not cover (403) leave the people's absences untrusted."""
        self.writer.start(name)
        try:
            repeated, distinct = self._list(name)
        except SourceAuthError as exc:
            if name != "contacts" or exc.status != 403:
                raise
            self.writer.note(
                name,
                unavailable="HTTP 403",
                untrusted="Wonde did not share the school's contacts (HTTP 403)",
            )
            return 0
        if repeated:
            logger().warning(
                "listing shifted while paged: listed again",
                extra={"collection": name, "repeated": repeated},
            )
            repeated, distinct = self._list(name)
            self.writer.note(name, passes=2)
            if repeated:
                self.writer.note(name, untrusted=f"/{name} changed while it was paged, twice")
        return distinct

    def _list(self, name: str) -> tuple[int, int]:
        include = LISTINGS[name]
        if not self.contacts:
            include = ",".join(p for p in include.split(",") if p != "contacts")
        params: dict[str, str | int] = {"include": include}
        if self.updated_after is not None:
            params["updated_after"] = self.updated_after
        path = f"{self.school_path}/{name}"
        seen: set[str] = set()
        repeated = 0
        request = PageRequest.of(path, params)
        for page in self.client.pages(request, WondePaginator(self.per_page), _data_list(path)):
            self.writer.add(name, page)
            for item in page.items:
                item_id = item.get("id") if isinstance(item, Mapping) else None
                if not isinstance(item_id, str):
                    continue
                if item_id in seen:
                    repeated += 1
                seen.add(item_id)
        return repeated, len(seen)

    def deletions(self) -> int:
        assert self.updated_after is not None
        path = f"{self.school_path}/deletions"
        request = PageRequest.of(path, {"updated_after": self.updated_after})
        self.writer.start("deletions")
        count = 0
        for page in self.client.pages(request, WondePaginator(self.per_page), _data_list(path)):
            self.writer.add("deletions", page)
            count += len(page.items)
        return count
