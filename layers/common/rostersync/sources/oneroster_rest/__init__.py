"""OneRoster 1.1 and 1.2 REST (rostering): ClassLink Roster Server (direct, or through
ClassLink's OAuth2 proxy at ``/{appId}/ims/oneroster/v1p1``), PowerSchool, Infinite
Campus, Aeries and other SIS servers.

The spec names the server (``base_url``: scheme, host and the binding's base path), the
version, how to authenticate and how hard to page. The tenant's secret store holds one
secret, ``secret_name`` (``oneroster_client_secret`` by default): the OAuth client
secret for ``oauth2`` and ``oauth1-*``, or the bearer key itself for ``bearer``.

A full sync lists ``/orgs``, ``/academicSessions``, ``/courses``, ``/classes``,
``/users``, ``/enrollments`` and ``/demographics`` and is complete for what the server
shares (``/demographics`` refused with 403/404 is left out, not failed). A quick sync
lists what changed since the last committed run started
(``filter=dateLastModified>'...'``, less ``delta_overlap_minutes``); records marked
``tobedeleted`` are the deletions. No cursor, another version, a cursor older than
``quick_max_age_days`` or a server refusing the filter runs a full sync instead.

Records go through the OneRoster CSV binding's row rules (``rows``): one set of rules
for both bindings, one ``source_system`` (``oneroster``), so a district moving from CSV
drops to the API keeps its identities.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from oauthlib import oauth1
from pydantic import Field, field_validator, model_validator

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
from rostersync.sources.oneroster_rest.auth import (
    ClientCredentials,
    OAuth1Auth,
    OAuth2Auth,
    TokenCache,
    secret_digest,
)
from rostersync.sources.oneroster_rest.fetch import (
    ModifiedCursor,
    OneRosterFetch,
    QuickUnavailable,
    filter_since,
)
from rostersync.sources.oneroster_rest.read import OneRosterRestRead

__all__ = ["OneRosterRestRead", "OneRosterRestSource", "OneRosterRestSpec"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

Collection = Literal[
    "orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics"
]
AuthMethod = Literal["oauth2", "oauth1-hmac-sha256", "oauth1-hmac-sha1", "bearer"]


def _checked_url(value: str, what: str) -> str:
    url = httpx.URL(value)
    if url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK):
        if url.query or url.fragment:
            raise ValueError(f"{what} takes no query")
        return value.rstrip("/")
    raise ValueError(f"{what} must be https (plain http only to this machine)")


class OneRosterRestSpec(SourceSpec):
    """A tenant's OneRoster REST server."""

    kind: Literal["oneroster_rest"] = "oneroster_rest"
    #: Scheme, host and the binding's base path: ``https://sis.example.org/ims/oneroster/
    #: v1p1``, or ClassLink's ``https://oneroster-proxy.classlink.io/{appId}/ims/oneroster/v1p1``.
    base_url: str
    version: Literal["1.1", "1.2"] = "1.1"
    auth: AuthMethod = "oauth2"
    #: The OAuth client id (consumer key for OAuth 1.0a); not a secret.
    client_id: str | None = None
    #: The tenant's secret holding the client secret (or, for ``bearer``, the key).
    secret_name: str = "oneroster_client_secret"
    #: OAuth 2.0 token endpoint (``oauth2`` only).
    token_url: str | None = None
    scopes: tuple[str, ...] = ()
    #: Send the client id and secret in the token request's form instead of HTTP Basic.
    credentials_in_body: bool = False
    #: Records per page: PowerSchool's default page is small, so ask 1,000.
    page_size: int = Field(default=1_000, ge=1, le=50_000)
    #: Listings fetched at once (Infinite Campus asks for 5 at most, none at peak).
    max_concurrency: int = Field(default=4, ge=1, le=8)
    requests_per_minute: int | None = Field(default=None, ge=1)
    collections: tuple[Collection, ...] = (
        "orgs",
        "academicSessions",
        "courses",
        "classes",
        "users",
        "enrollments",
        "demographics",
    )
    #: A quick run asks for changes since the last run's start less this much.
    delta_overlap_minutes: int = Field(default=5, ge=0, le=1_440)
    #: A quick run whose cursor is older than this runs full (deletions may be gone).
    quick_max_age_days: int = Field(default=30, ge=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return _checked_url(value, "base_url")

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None else _checked_url(value, "token_url")

    @model_validator(mode="after")
    def _auth_needs(self) -> OneRosterRestSpec:
        if self.auth != "bearer" and not self.client_id:
            raise ValueError(f"auth {self.auth} needs a client_id")
        if self.auth == "oauth2" and not self.token_url:
            raise ValueError("auth oauth2 needs a token_url")
        if "users" not in self.collections and "enrollments" in self.collections:
            raise ValueError("enrollments need users")
        return self

    def describe(self) -> str:
        return f"oneroster_rest {httpx.URL(self.base_url).host}"


_SIGNATURES = {
    "oauth1-hmac-sha256": oauth1.SIGNATURE_HMAC_SHA256,
    "oauth1-hmac-sha1": oauth1.SIGNATURE_HMAC_SHA1,
}


class OneRosterRestSource(HttpSource):
    """OneRoster REST as a rostersync source. Access tokens are cached in this object's
    memory (one per process in Lambda), per tenant and credentials, until they expire."""

    #: The secrets connecting stores for it (``rostersync connect oneroster-rest
    #: --secret-file NAME=FILE``, ``PUT /tenants/{t}/source``).
    secret_fields: ClassVar[tuple[SecretField, ...]] = (
        SecretField("client_secret", "secret_name"),
    )
    kind: ClassVar[str] = "oneroster_rest"
    spec_model: ClassVar[type[SourceSpec]] = OneRosterRestSpec

    def __init__(self, **parts: Any) -> None:
        super().__init__(**parts)
        self.tokens = TokenCache()

    def _auth(self, spec: OneRosterRestSpec, tenant: str, secret: str) -> httpx.Auth:
        if spec.auth == "bearer":
            return BearerAuth(secret)
        assert spec.client_id is not None
        if spec.auth in _SIGNATURES:
            return OAuth1Auth(
                spec.client_id, secret, _SIGNATURES[spec.auth], wall_clock=self.wall_clock
            )
        assert spec.token_url is not None
        key = (tenant, spec.token_url, spec.client_id, " ".join(spec.scopes), secret_digest(secret))
        return OAuth2Auth(
            ClientCredentials(
                spec.token_url,
                spec.client_id,
                secret,
                spec.scopes,
                cache=self.tokens,
                cache_key=key,
                credentials_in_body=spec.credentials_in_body,
                wall_clock=self.wall_clock,
                transport=self.transport,
                sleep=self.sleep,
            )
        )

    def _client(self, spec: OneRosterRestSpec, auth: httpx.Auth) -> HttpClient:
        return self.http_client(
            spec.base_url,
            auth,
            name="oneroster",
            requests_per_minute=spec.requests_per_minute,
            max_concurrency=spec.max_concurrency,
        )

    def fetch(self, spec: SourceSpec, ctx: FetchContext) -> FetchResult:
        if not isinstance(spec, OneRosterRestSpec):
            raise SourceConfigError("not a OneRoster REST spec")
        secret = ctx.secrets.get_secret(ctx.tenant, spec.secret_name)
        if not secret:
            raise SourceCredentialsMissing(
                f"no OneRoster secret stored for tenant {ctx.tenant} (secret {spec.secret_name!r})"
            )
        auth = self._auth(spec, ctx.tenant, secret)
        del secret  # the authenticator holds it for this fetch only
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        cursor = ModifiedCursor.of(ctx.cursor)
        with self._client(spec, auth) as client:
            note = None
            if ctx.mode == "quick":
                reason = _quick_refusal(spec, cursor, now)
                if reason is None and cursor is not None and cursor.since is not None:
                    try:
                        return self._fetch(client, spec, ctx, cursor, now, cursor.since)
                    except QuickUnavailable as refused:
                        reason = str(refused)
                note = f"{reason}: ran a full sync"
                logger().info("quick sync runs full", extra={"reason": reason})
            result = self._fetch(client, spec, ctx, cursor, now, None)
            if ctx.mode == "quick":
                result.mode = "full"
                result.note = note
            return result

    def _fetch(
        self,
        client: HttpClient,
        spec: OneRosterRestSpec,
        ctx: FetchContext,
        cursor: ModifiedCursor | None,
        now: datetime,
        since: datetime | None,
    ) -> FetchResult:
        writer = RawPageWriter(ctx.raw)
        delta = None
        if since is not None:
            delta = filter_since(since - timedelta(minutes=spec.delta_overlap_minutes))
        fetch = OneRosterFetch(client, writer, spec.page_size, spec.max_concurrency, delta)
        previous = cursor.counts if cursor is not None else {}
        counts = fetch.collections(tuple(spec.collections), previous)
        writer.write_index(
            mode="full" if delta is None else "delta",
            source="oneroster_rest",
            version=spec.version,
            collections=list(spec.collections),
        )
        if delta is None:
            kept = {n: previous.get(n, 0) if c == 0 else c for n, c in counts.items()}
        else:
            kept = dict(previous)
        next_cursor = ModifiedCursor(since=now, version=spec.version, counts=kept)
        pages = sum(len(s["pages"]) for s in writer.streams.values())
        return FetchResult(counts={**counts, "pages": pages}, cursor=next_cursor.dump())

    @contextmanager
    def read(self, spec: SourceSpec, raw: RawArea, sink: IssueSink) -> Iterator[OneRosterRestRead]:
        with OneRosterRestRead(raw, sink) as opened:
            yield opened


def _quick_refusal(
    spec: OneRosterRestSpec, cursor: ModifiedCursor | None, now: datetime
) -> str | None:
    """Why the saved cursor cannot start a quick fetch, or None."""
    if cursor is None or cursor.since is None:
        return "no dateLastModified cursor yet"
    if cursor.version is not None and cursor.version != spec.version:
        return f"the last sync read OneRoster {cursor.version}"
    if now - cursor.since > timedelta(days=spec.quick_max_age_days):
        return f"the last sync is older than {spec.quick_max_age_days} days"
    return None
