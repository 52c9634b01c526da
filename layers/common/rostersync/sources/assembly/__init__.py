"""Assembly Platform (UK: Arbor, SIMS, Bromcom, iSAMS and others through Assembly): one
school per tenant, reached with the school's access token.

Secrets read from the tenant's store: ``access_secret`` (``assembly_access_token``, the
school's bearer token; required) and, for the refresh-token flow where the school's
authorisation gave one, ``refresh_secret`` (``assembly_refresh_token``) with the app's
``client_secret_name`` (``assembly_client_secret``) and the spec's ``client_id``. A 401
then refreshes the access token once; the refreshed token is kept in memory per process
(a refresh token Assembly rotates cannot be written back: the secret reader is read-only).

A full sync reads ``/school/status``, ``/school``, ``/students``, ``/staff_members``,
``/teaching_groups`` (members from ``/teaching_groups/{id}/students`` where a group comes
without ``student_ids``) and ``/registration_groups``; it is complete for what the token
shares. A quick sync sends ``If-Modified-Since`` (the last committed run's start, less
``delta_overlap_minutes``) and reads ``/students/left``; no cursor runs full. As with
Wonde, a member leaving a group is seen by the next full sync only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, field_validator

from rostersync.observability import logger
from rostersync.sources.assembly.fetch import (
    GROUPS,
    LISTINGS,
    AssemblyAuth,
    AssemblyFetch,
    ModifiedCursor,
    Refresher,
    TokenStore,
    http_date,
)
from rostersync.sources.assembly.mapping import school_org_id
from rostersync.sources.assembly.read import AssemblyRead
from rostersync.sources.base import (
    FetchContext,
    FetchResult,
    IssueSink,
    RawArea,
    SecretField,
    SourceSpec,
)
from rostersync.sources.http import (
    HttpClient,
    RawPageWriter,
    SourceConfigError,
    SourceCredentialsMissing,
)
from rostersync.sources.http.records import ItemRejected
from rostersync.sources.http.source import HttpSource

__all__ = ["AssemblyRead", "AssemblySource", "AssemblySpec"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _checked(value: str, what: str, *, path: bool) -> str:
    url = httpx.URL(value)
    if url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK):
        if (not path and url.path not in ("", "/")) or url.query:
            raise ValueError(f"{what} is a scheme and host only")
        return value.rstrip("/")
    raise ValueError(f"{what} must be https (plain http only to this machine)")


class AssemblySpec(SourceSpec):
    """One school on the Assembly Platform."""

    kind: Literal["assembly"] = "assembly"
    base_url: str = "https://api.assembly.education"
    #: Sent as ``Accept: application/vnd.assembly+json; version=...`` (none gives 406).
    api_version: str = Field(default="1.1", pattern=r"^\d+(\.\d+)?$")
    access_secret: str = "assembly_access_token"
    refresh_secret: str = "assembly_refresh_token"
    client_secret_name: str = "assembly_client_secret"
    #: The app's OAuth client id (needed to refresh); not a secret.
    client_id: str | None = None
    token_url: str = "https://platform.assembly.education/oauth/token"
    per_page: int = Field(default=100, ge=1, le=1_000)
    max_concurrency: int = Field(default=2, ge=1, le=4)
    requests_per_minute: int | None = Field(default=None, ge=1)
    delta_overlap_minutes: int = Field(default=5, ge=0, le=1_440)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _checked(value, "base_url", path=False)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return _checked(value, "token_url", path=True)

    def describe(self) -> str:
        return f"assembly {httpx.URL(self.base_url).host}"


class AssemblySource(HttpSource):
    """Assembly as a rostersync source; clocks and sleeping are parameters for tests."""

    #: The secrets connecting stores for it (``rostersync connect assembly
    #: --secret-file NAME=FILE``, ``PUT /tenants/{t}/source``).
    #: The refresh flow's two secrets are optional: stored beside it where a school
    #: granted a refresh token (the secret store's names are ``refresh_secret`` and
    #: ``client_secret_name``).
    secret_fields: ClassVar[tuple[SecretField, ...]] = (
        SecretField("access_token", "access_secret"),
    )
    kind: ClassVar[str] = "assembly"
    spec_model: ClassVar[type[SourceSpec]] = AssemblySpec

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.tokens = TokenStore()

    def _auth(
        self, spec: AssemblySpec, ctx: FetchContext, if_modified_since: str | None
    ) -> AssemblyAuth:
        access = ctx.secrets.get_secret(ctx.tenant, spec.access_secret)
        refresh = ctx.secrets.get_secret(ctx.tenant, spec.refresh_secret)
        client_secret = ctx.secrets.get_secret(ctx.tenant, spec.client_secret_name)
        refresher = None
        if refresh and client_secret and spec.client_id:
            key = (ctx.tenant, hashlib.sha256(refresh.encode()).hexdigest()[:16])
            access = self.tokens.get(key, self.wall_clock()) or access
            refresher = Refresher(
                spec.token_url,
                spec.client_id,
                client_secret,
                refresh,
                self.tokens,
                key,
                wall_clock=self.wall_clock,
                transport=self.transport,
            )
        if not access:
            raise SourceCredentialsMissing(
                f"no Assembly access token stored for tenant {ctx.tenant} "
                f"(secret {spec.access_secret!r})"
            )
        return AssemblyAuth(access, refresher, if_modified_since)

    def _client(self, spec: AssemblySpec, auth: AssemblyAuth) -> HttpClient:
        return self.http_client(
            spec.base_url,
            auth,
            name="assembly",
            requests_per_minute=spec.requests_per_minute,
            max_concurrency=spec.max_concurrency,
            headers={"Accept": f"application/vnd.assembly+json; version={spec.api_version}"},
        )

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        if not isinstance(spec, AssemblySpec):
            raise SourceConfigError("not an Assembly spec")
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        cursor = ModifiedCursor.of(ctx.cursor)
        since = cursor.since if cursor is not None else None
        quick = ctx.mode == "quick" and since is not None
        modified_since = (
            http_date(since - timedelta(minutes=spec.delta_overlap_minutes))
            if quick and since is not None
            else None
        )
        auth = self._auth(spec, ctx, modified_since)
        previous = cursor.counts if cursor is not None else {}
        school = str((ctx.cursor or {}).get("school") or "")
        note = None
        with self._client(spec, auth) as client:
            writer = RawPageWriter(ctx.raw)
            fetch = AssemblyFetch(client, writer, spec.per_page, spec.max_concurrency, quick)
            status = fetch.status()
            if status.get("last_sync_status") == "failure":
                note = "Assembly's last collection from the MIS failed: data may be stale"
            found = fetch.school()
            if found is not None:
                with suppress(ItemRejected):
                    school = school_org_id(found)
            counts = fetch.listings(tuple(LISTINGS), previous)
            if quick:
                counts["students_left"] = fetch.left()
            writer.write_index(
                mode="delta" if quick else "full",
                source="assembly",
                school=school,
                api_version=spec.api_version,
                groups=list(GROUPS),
            )
        kept = (
            dict(previous)
            if quick
            else {n: previous.get(n, 0) if c == 0 else c for n, c in counts.items()}
        )
        pages = sum(len(s["pages"]) for s in writer.streams.values())
        saved = ModifiedCursor(now, kept).dump()
        saved["school"] = school
        result = FetchResult(counts={**counts, "pages": pages}, cursor=saved, note=note)
        if ctx.mode == "quick" and not quick:
            result.mode = "full"
            result.note = "no If-Modified-Since cursor yet: ran a full sync"
            logger().info("quick sync runs full", extra={"reason": "no cursor"})
        return result

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[AssemblyRead]:
        yield AssemblyRead(raw, sink)
