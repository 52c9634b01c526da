"""The framework HTTP sources share (Clever now; OneRoster REST, Wonde, Assembly next).

Its parts, in the spirit of a singer-sdk ``RESTStream``: an ``HttpClient`` (base URL,
an ``httpx.Auth`` authenticator, a ``RateLimiter``, a concurrency cap, a ``RetryPolicy``),
paginators (``LinksNextPaginator``, ``HeaderLinkPaginator``, ``OffsetPaginator``,
``PageNumberPaginator``, ``BodyNextPaginator``), ``RestStream`` listings fetched with
``fetch_stream`` into the raw area through a ``RawPageWriter``, read back by ``RawPages``,
and named errors that tell transient from fatal.
"""

from rostersync.sources.http.auth import BearerAuth
from rostersync.sources.http.client import HttpClient, Page
from rostersync.sources.http.errors import (
    SourceAuthError,
    SourceConfigError,
    SourceCredentialsMissing,
    SourceError,
    SourceNotFound,
    SourceRateLimited,
    SourceRequestError,
    SourceResponseError,
    SourceUnavailable,
)
from rostersync.sources.http.pagination import (
    BodyNextPaginator,
    HeaderLinkPaginator,
    LinksNextPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    Paginator,
)
from rostersync.sources.http.raw_pages import INDEX_NAME, RawPages, RawPageWriter
from rostersync.sources.http.retry import RateLimiter, RetryPolicy, server_wait
from rostersync.sources.http.stream import RestStream, fetch_stream, items_at

__all__ = [
    "INDEX_NAME",
    "BearerAuth",
    "BodyNextPaginator",
    "HeaderLinkPaginator",
    "HttpClient",
    "LinksNextPaginator",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "Paginator",
    "RateLimiter",
    "RawPageWriter",
    "RawPages",
    "RestStream",
    "RetryPolicy",
    "SourceAuthError",
    "SourceConfigError",
    "SourceCredentialsMissing",
    "SourceError",
    "SourceNotFound",
    "SourceRateLimited",
    "SourceRequestError",
    "SourceResponseError",
    "SourceUnavailable",
    "fetch_stream",
    "items_at",
    "server_wait",
]
