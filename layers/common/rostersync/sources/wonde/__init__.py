"""Wonde (UK MIS aggregator: SIMS, Arbor, Bromcom, iSAMS, ...): one school per tenant,
reached with that school's token.

The spec names the school (``school_id``) and Wonde's regional host (``base_url``:
``https://api.wonde.com`` for the UK, ``api-ap-southeast-2``, ``api-af-south-1``,
``api-us-west-2``). The tenant's secret store holds the school's bearer token under
``secret_name`` (``wonde_token`` by default), as the ``schoolApproved`` webhook gives it.

A full sync reads the school, ``students``, ``employees``, ``classes`` and ``contacts``
with their includes; it is complete for what the token's scopes share (``contacts:
false`` leaves contacts out; contacts refused with 403 make the people's absences
untrusted for that run). A quick sync reads
the same listings with ``updated_after`` (the last committed run's start, less
``delta_overlap_minutes``) plus ``/deletions`` since then. No cursor runs full.
A quick sync cannot see a member leaving a class (Wonde has no per-membership deletions):
the next full sync archives such enrollments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from rostersync.observability import logger
from rostersync.sources.base import (
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    SecretField,
    SourceSpec,
)
from rostersync.sources.http import (
    BearerAuth,
    HttpClient,
    RawPageWriter,
    SourceConfigError,
    SourceCredentialsMissing,
)
from rostersync.sources.http.source import HttpSource
from rostersync.sources.wonde.fetch import LISTINGS, UpdatedCursor, WondeFetch, wonde_time
from rostersync.sources.wonde.read import WondeRead

__all__ = ["WondeRead", "WondeSource", "WondeSpec"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class WondeSpec(SourceSpec):
    """One school on Wonde."""

    kind: Literal["wonde"] = "wonde"
    school_id: str = Field(pattern=r"^[A-Za-z0-9]{1,40}$")
    #: Scheme and host of the school's region (``region.domain`` of the school).
    base_url: str = "https://api.wonde.com"
    #: The tenant's secret holding the school's Wonde token.
    secret_name: str = "wonde_token"
    per_page: int = Field(default=200, ge=1, le=1_000)
    #: Listings fetched at once (Wonde documents no rate limit: keep it gentle).
    max_concurrency: int = Field(default=2, ge=1, le=4)
    requests_per_minute: int | None = Field(default=None, ge=1)
    delta_overlap_minutes: int = Field(default=5, ge=0, le=1_440)
    #: Read the school's contacts as guardians (off for an app that has no contacts scope).
    contacts: bool = True

    @field_validator("base_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        url = httpx.URL(value)
        if url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK):
            if url.path not in ("", "/") or url.query:
                raise ValueError("base_url is a scheme and host only (the client adds /v1.0)")
            return value.rstrip("/")
        raise ValueError("base_url must be https (plain http only to this machine)")

    def describe(self) -> str:
        return f"wonde {self.school_id}"


class WondeSource(HttpSource):
    """Wonde as a rostersync source; clocks and sleeping are parameters for tests."""

    #: The secrets connecting stores for it (``rostersync connect wonde
    #: --secret-file NAME=FILE``, ``PUT /tenants/{t}/source``).
    secret_fields: ClassVar[tuple[SecretField, ...]] = (SecretField("token", "secret_name"),)
    kind: ClassVar[str] = "wonde"
    spec_model: ClassVar[type[SourceSpec]] = WondeSpec

    def _client(self, spec: WondeSpec, token: str) -> HttpClient:
        return self.http_client(
            spec.base_url,
            BearerAuth(token),
            name="wonde",
            requests_per_minute=spec.requests_per_minute,
            max_concurrency=spec.max_concurrency,
        )

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        if not isinstance(spec, WondeSpec):
            raise SourceConfigError("not a Wonde spec")
        token = ctx.secrets.get_secret(ctx.tenant, spec.secret_name)
        if not token:
            raise SourceCredentialsMissing(
                f"no Wonde token stored for tenant {ctx.tenant} (secret {spec.secret_name!r})"
            )
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        cursor = UpdatedCursor.of(ctx.cursor)
        since = cursor.since if cursor is not None else None
        quick = ctx.mode == "quick" and since is not None
        updated_after = (
            wonde_time(since - timedelta(minutes=spec.delta_overlap_minutes))
            if quick and since is not None
            else None
        )
        with self._client(spec, token) as client:
            del token
            writer = RawPageWriter(ctx.raw)
            fetch = WondeFetch(
                client,
                writer,
                spec.school_id,
                spec.per_page,
                spec.max_concurrency,
                updated_after,
                contacts=spec.contacts,
            )
            fetch.school(httpx.URL(spec.base_url).host)
            previous = cursor.counts if cursor is not None else {}
            names = tuple(n for n in LISTINGS if spec.contacts or n != "contacts")
            counts = fetch.listings(names, previous)
            if updated_after is not None:
                counts["deletions"] = fetch.deletions()
            writer.write_index(
                mode="delta" if quick else "full", source="wonde", school=spec.school_id
            )
        if quick:
            kept = dict(previous)
        else:
            kept = {n: previous.get(n, 0) if c == 0 else c for n, c in counts.items()}
        pages = sum(len(s["pages"]) for s in writer.streams.values())
        result = FetchResult(
            counts={**counts, "pages": pages},
            cursor=UpdatedCursor(now, kept).dump(),
        )
        if ctx.mode == "quick" and not quick:
            result.mode = "full"
            result.note = "no updated_after cursor yet: ran a full sync"
            logger().info("quick sync runs full", extra={"reason": "no cursor"})
        return result

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[WondeRead]:
        yield WondeRead(raw, sink)
