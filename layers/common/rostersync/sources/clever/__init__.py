"""Clever: the Data API v3.0 (full syncs) and the Events API (quick syncs).

The tenant's district-app bearer token is read from the secret store (``secret_name``,
``clever_token`` by default) for the fetch only. A full sync lists districts, schools,
terms, courses, sections and users with ``limit`` up to 10,000 and ``links`` rel next,
and is complete for what the token shares. A quick sync applies the events after the
cursor the last commit kept; no cursor, a cursor older than 29 days or one Clever
refuses runs a full sync instead (``FetchResult.mode == "full"`` with a note).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from rostersync.observability import logger
from rostersync.sources.base import (
    ConnectionCheck,
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    SecretField,
    SecretReader,
    SourceSpec,
)
from rostersync.sources.clever.fetch import (
    COLLECTIONS,
    CleverFetch,
    EventsCursor,
    QuickUnavailable,
    quick_refusal,
)
from rostersync.sources.clever.read import CleverRead
from rostersync.sources.http import (
    BearerAuth,
    HttpClient,
    PageRequest,
    RateLimiter,
    RawPageWriter,
    SourceAuthError,
    SourceConfigError,
    SourceCredentialsMissing,
    SourceError,
    items_at,
)
from rostersync.sources.http.retry import RetryPolicy
from rostersync.sources.http.source import HttpSource

__all__ = ["CleverRead", "CleverSource", "CleverSpec"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class CleverSpec(SourceSpec):
    """A tenant's Clever district, reached with the token in its secret store."""

    kind: Literal["clever"] = "clever"
    base_url: str = "https://api.clever.com"
    #: The name of the tenant's secret holding the district-app bearer token.
    secret_name: str = "clever_token"
    #: Items per page (Clever allows up to 10,000).
    page_limit: int = Field(default=10_000, ge=1, le=10_000)
    #: Clever allows 1,200 requests a minute per token.
    requests_per_minute: int = Field(default=1_200, ge=1, le=1_200)
    #: Listings fetched at once.
    max_concurrency: int = Field(default=4, ge=1, le=8)
    #: A quick run touching more students' guardian links than this runs full instead.
    quick_refetch_limit: int = Field(default=500, ge=0)

    @field_validator("base_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK):
            if url.path not in ("", "/") or url.query:
                raise ValueError("base_url is a scheme and host only (the client adds /v3.0)")
            return value.rstrip("/")
        raise ValueError("base_url must be https (plain http only to this machine)")

    def describe(self) -> str:
        return f"clever {httpx.URL(self.base_url).host}"


class CleverSource(HttpSource):
    """Clever as a rostersync source. Sleeping, clocks and jitter are parameters so that
    tests run instantly; ``transport`` lets a test answer in process."""

    kind: ClassVar[str] = "clever"
    spec_model: ClassVar[type[SourceSpec]] = CleverSpec
    secret_fields: ClassVar[tuple[SecretField, ...]] = (SecretField("token", "secret_name"),)

    def _client(self, spec: CleverSpec, token: str, retry: RetryPolicy | None = None) -> HttpClient:
        return HttpClient(
            spec.base_url,
            auth=BearerAuth(token),
            name="clever",
            retry=retry or self.retry,
            rate_limit=RateLimiter(
                spec.requests_per_minute, 60.0, clock=self.monotonic, sleep=self.sleep
            ),
            max_concurrency=spec.max_concurrency,
            sleep=self.sleep,
            wall_clock=self.wall_clock,
            jitter=self.jitter,
            transport=self.transport,
        )

    def check_connection(
        self, spec: SourceSpec, tenant: str, secrets: SecretReader
    ) -> ConnectionCheck:
        """List the districts the token shares (one small page)."""
        if not isinstance(spec, CleverSpec):
            raise SourceConfigError("not a Clever spec")
        token = secrets.get_secret(tenant, spec.secret_name)
        if not token:
            return ConnectionCheck(False, f"no Clever token stored (secret {spec.secret_name!r})")
        # One attempt: an admin waits for the answer.
        client = self._client(spec, token, RetryPolicy(attempts=1))
        del token
        request = PageRequest.of("/v3.0/districts", {"limit": 1})
        try:
            with client:
                page = client.get_page(request, lambda body: items_at(body, ("data",), "districts"))
        except SourceAuthError as exc:
            return ConnectionCheck(False, f"Clever refused the token (HTTP {exc.status})")
        except SourceError as exc:
            status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
            return ConnectionCheck(False, f"Clever did not answer the check ({status})")
        except httpx.HTTPError as exc:
            return ConnectionCheck(False, f"Clever could not be reached ({type(exc).__name__})")
        shared = len(page.items)
        return ConnectionCheck(
            True, f"Clever accepted the token ({shared} district{'s' * (shared != 1)} shared)"
        )

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        if not isinstance(spec, CleverSpec):
            raise SourceConfigError("not a Clever spec")
        token = ctx.secrets.get_secret(ctx.tenant, spec.secret_name)
        if not token:
            raise SourceCredentialsMissing(
                f"no Clever token stored for tenant {ctx.tenant} (secret {spec.secret_name!r})"
            )
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        cursor = EventsCursor.of(ctx.cursor)
        log = logger()
        with self._client(spec, token) as client:
            del token  # the client's authenticator holds it for this fetch only
            note = None
            if ctx.mode == "quick":
                reason = quick_refusal(cursor, now)
                if reason is None and cursor is not None:
                    try:
                        return self._quick(client, spec, ctx, cursor, now)
                    except QuickUnavailable as refused:
                        reason = str(refused)
                note = f"{reason}: ran a full sync"
                log.info("quick sync runs full", extra={"reason": reason})
            result = self._full(client, spec, ctx, cursor, now)
            if ctx.mode == "quick":
                result.mode = "full"
                result.note = note
            return result

    def _full(
        self,
        client: HttpClient,
        spec: CleverSpec,
        ctx: FetchContext,
        cursor: EventsCursor | None,
        now: datetime,
    ) -> FetchResult:
        writer = RawPageWriter(ctx.raw)
        fetch = CleverFetch(client, writer, spec.page_limit, spec.max_concurrency)
        # The newest event before listing anything: events made during the listing are
        # replayed by the next quick run.
        event_id, events = fetch.newest_event()
        previous = cursor.counts if cursor is not None else {}
        counts = fetch.full(previous)
        writer.write_index(mode="full", source="clever", collections=list(COLLECTIONS))
        kept = {
            name: previous.get(name, 0) if count == 0 else count for name, count in counts.items()
        }
        next_cursor = EventsCursor(event_id=event_id, checked_at=now, events=events, counts=kept)
        pages = sum(len(s["pages"]) for s in writer.streams.values())
        return FetchResult(counts={**counts, "pages": pages}, cursor=next_cursor.dump())

    def _quick(
        self,
        client: HttpClient,
        spec: CleverSpec,
        ctx: FetchContext,
        cursor: EventsCursor,
        now: datetime,
    ) -> FetchResult:
        writer = RawPageWriter(ctx.raw)
        fetch = CleverFetch(client, writer, spec.page_limit, spec.max_concurrency)
        newest, events = fetch.events_after(cursor.event_id)
        students, carried = fetch.touched_students()
        if len(students) > spec.quick_refetch_limit:
            raise QuickUnavailable(
                f"events touch {len(students)} students' guardian links "
                f"(more than {spec.quick_refetch_limit})"
            )
        refetched = fetch.refetch_students(students, carried)
        writer.write_index(mode="delta", source="clever", events=events)
        next_cursor = EventsCursor(
            event_id=newest, checked_at=now, events=True, counts=cursor.counts
        )
        pages = sum(len(s["pages"]) for s in writer.streams.values())
        return FetchResult(
            counts={
                "events": events,
                "students_reread": len(students),
                "requests": refetched,
                "pages": pages,
            },
            cursor=next_cursor.dump(),
        )

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[CleverRead]:
        yield CleverRead(raw, sink)
