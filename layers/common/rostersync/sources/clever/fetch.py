"""Fetching from Clever's Data API v3.0 and Events API into the run's raw area.

A full fetch first takes the newest event's id (``GET /v3.0/events?ending_before=last
&limit=1``), then lists every collection the token shares; events made during the
listing are replayed by the next quick run (applying an event twice does no harm). A
quick fetch lists the events after the cursor, and re-reads the contacts of every
student an event touched (so guardian links stay right both ways).

The cursor kept with a commit: ``{"event_id", "checked_at", "events", "counts"}``
(``counts`` per collection, so that a listing that comes back empty where the last had
records is not read as "everyone left").
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rostersync.observability import logger, submit_with_log_keys
from rostersync.sources.clever.mapping import contact_students, is_student
from rostersync.sources.clever.read import API, unwrap
from rostersync.sources.http import (
    HttpClient,
    LinksNextPaginator,
    PageRequest,
    RawPageWriter,
    RestStream,
    SourceAuthError,
    SourceNotFound,
    SourceRequestError,
    fetch_stream,
    items_at,
)

#: What a full fetch lists, in this order (the district first: it is one small page).
COLLECTIONS = ("districts", "schools", "terms", "courses", "sections", "users")
#: Events are kept 30 days; a cursor not confirmed for longer may have lost some.
MAX_CURSOR_AGE = timedelta(days=29)


class QuickUnavailable(Exception):
    """A quick fetch cannot be trusted to see every change: run a full one instead."""


@dataclass(frozen=True)
class EventsCursor:
    event_id: str | None
    checked_at: datetime | None
    events: bool
    counts: dict[str, int]

    @classmethod
    def of(cls, saved: Mapping[str, Any] | None) -> EventsCursor | None:
        if not saved:
            return None
        checked = saved.get("checked_at")
        try:
            checked_at = datetime.fromisoformat(str(checked)) if checked else None
        except ValueError:
            checked_at = None
        counts = saved.get("counts") or {}
        return cls(
            event_id=str(saved["event_id"]) if saved.get("event_id") else None,
            checked_at=checked_at,
            events=bool(saved.get("events")),
            counts={str(k): int(v) for k, v in counts.items() if isinstance(v, int)},
        )

    def dump(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "events": self.events,
            "counts": dict(self.counts),
        }


def quick_refusal(cursor: EventsCursor | None, now: datetime) -> str | None:
    """Why the saved cursor cannot start a quick fetch, or None."""
    if cursor is None:
        return "no events cursor yet"
    if not cursor.events:
        return "Clever's events were not available at the last sync"
    if cursor.checked_at is None or now - cursor.checked_at > MAX_CURSOR_AGE:
        return "the events cursor is older than 29 days"
    return None


def _events_of(body: Any) -> list[Any]:
    return items_at(body, ("data",), f"{API}/events")


def _one_object(body: Any) -> list[Any]:
    unwrap(body)
    return [body["data"]]


class CleverFetch:
    """One fetch of one tenant's Clever data."""

    def __init__(
        self, client: HttpClient, writer: RawPageWriter, page_limit: int, concurrency: int
    ) -> None:
        self.client = client
        self.writer = writer
        self.page_limit = page_limit
        self.concurrency = concurrency
        #: The events a quick fetch listed, oldest first (a quick run's are few).
        self.events: list[Any] = []

    def _paginator(self, limit: bool = True) -> LinksNextPaginator:
        return LinksNextPaginator(limit=self.page_limit if limit else None)

    # ------------------------------------------------------------------ full

    def newest_event(self) -> tuple[str | None, bool]:
        """The newest event's id (None if there is none), and whether events answer."""
        request = PageRequest.of(f"{API}/events", {"ending_before": "last", "limit": 1})
        try:
            page = self.client.get_page(request, _events_of)
        except SourceNotFound:
            return None, False
        except (SourceAuthError, SourceRequestError) as exc:
            if exc.status == 401:
                raise
            return None, False  # events not enabled for this app: full runs only
        self.writer.add("events-latest", page)
        if not page.items:
            return None, True
        newest = page.items[-1]
        event = newest.get("data") if isinstance(newest, Mapping) else None
        event_id = (event or {}).get("id")
        return (str(event_id) if event_id else None), True

    def full(self, previous: Mapping[str, int]) -> dict[str, int]:
        """List every collection; flag one that is empty where the last sync had records.
        Returns the item count per collection."""
        streams = [
            (RestStream(name, f"{API}/{name}"), self._paginator(limit=name != "districts"))
            for name in COLLECTIONS
        ]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [
                submit_with_log_keys(
                    pool, fetch_stream, self.client, stream, paginator, self.writer
                )
                for stream, paginator in streams
            ]
            counts = {
                stream.name: f.result() for (stream, _), f in zip(streams, futures, strict=True)
            }
        for name, count in counts.items():
            before = previous.get(name, 0)
            if count == 0 and before > 0:
                self.writer.note(
                    name,
                    untrusted=f"Clever listed no {name} where the last sync had {before}",
                )
                logger().warning(
                    "empty listing where the last sync had records",
                    extra={"collection": name, "before": before},
                )
        return counts

    # ------------------------------------------------------------------ quick

    def events_after(self, event_id: str | None) -> tuple[str | None, int]:
        """List the events after ``event_id`` (all kept events if None); the newest id
        seen (``event_id`` if none) and the number of events."""
        if event_id is not None:
            request = PageRequest(f"{API}/events/{event_id}")
            try:
                self.writer.add("events-cursor", self.client.get_page(request, _one_object))
            except (SourceNotFound, SourceRequestError) as exc:
                raise QuickUnavailable("the events cursor is gone from Clever's history") from exc
        stream = RestStream(
            "events", f"{API}/events", {"starting_after": event_id} if event_id else {}
        )
        newest, count = event_id, 0
        self.writer.start("events")
        pages = self.client.pages(stream.request(), self._paginator(), stream.items)
        try:
            for page in pages:
                self.writer.add("events", page)
                self.events.extend(page.items)
                for item in page.items:
                    count += 1
                    event = item.get("data") if isinstance(item, Mapping) else None
                    if isinstance(event, Mapping) and event.get("id"):
                        newest = str(event["id"])
        except (SourceNotFound, SourceRequestError) as exc:
            if count:
                raise
            raise QuickUnavailable("Clever refused the events cursor") from exc
        return newest, count

    def touched_students(self) -> tuple[list[str], set[str]]:
        """Students whose guardian links an event may have changed, and those of them an
        event carries (the others are re-read whole)."""
        touched: list[str] = []
        carried: set[str] = set()
        latest_action: dict[str, str] = {}
        for item in self.events:
            event = item.get("data") if isinstance(item, Mapping) else None
            if not isinstance(event, Mapping):
                continue
            kind = str(event.get("type") or "")
            payload = event.get("data")
            if not kind.startswith("users.") or not isinstance(payload, Mapping):
                continue
            obj = payload.get("object")
            if not isinstance(obj, Mapping) or not obj.get("id"):
                continue
            object_id = str(obj["id"])
            if is_student(obj):
                latest_action[object_id] = kind
                carried.add(object_id)
                touched.append(object_id)
            touched.extend(contact_students(obj))
            before = payload.get("previous_attributes")
            if isinstance(before, Mapping) and isinstance(before.get("roles"), Mapping):
                touched.extend(contact_students(before))
        deleted = {sid for sid, kind in latest_action.items() if kind == "users.deleted"}
        unique = [s for s in dict.fromkeys(touched) if s not in deleted]
        return unique, carried

    def refetch_students(self, students: list[str], carried: set[str]) -> int:
        """Re-read each student's contacts (and the student, if no event carries it)."""
        requests = 0
        for number, student in enumerate(students, start=1):
            contacts = f"refetch-{number:05d}-contacts"
            self.writer.note(contacts, refetch="contacts", student=student)
            stream = RestStream(contacts, f"{API}/users/{student}/mycontacts")
            try:
                fetch_stream(self.client, stream, self._paginator(), self.writer)
            except SourceNotFound:
                self.writer.note(contacts, missing=True)  # unshared since: its event says so
            requests += 1
            if student in carried:
                continue
            user = f"refetch-{number:05d}-user"
            self.writer.note(user, refetch="user", student=student)
            try:
                page = self.client.get_page(PageRequest(f"{API}/users/{student}"), _one_object)
                self.writer.add(user, page)
            except SourceNotFound:
                self.writer.note(user, missing=True)
            requests += 1
        return requests
