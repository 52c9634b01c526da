"""What can go wrong talking to an HTTP source, as rostersync's own exceptions.

Transient ones (the source is down, throttling outlasted our patience) are retried by
the state machine; fatal ones (a refused token, a request the API rejects, a response
that is not what the API documents) fail the run, which then commits nothing. Messages
name the method, the path and the status: never a header, a token or a body.
"""

from __future__ import annotations

from rostersync.errors import FatalError, TransientError


class SourceError(Exception):
    """What every error of an HTTP source has: the HTTP status, when there was one."""

    status: int | None = None


class SourceUnavailable(SourceError, TransientError):
    """The source answered 5xx, timed out or could not be reached, after our retries."""


class SourceRateLimited(SourceError, TransientError):
    """The source kept answering 429 (or asked us to wait longer than we will)."""


class SourceAuthError(SourceError, FatalError):
    """The source refused the credentials (401) or the access (403)."""


class SourceNotFound(SourceError, FatalError):
    """The source has no such resource (404): unshared, deleted, or a wrong path."""


class SourceRequestError(SourceError, FatalError):
    """The source rejected the request (another 4xx, or 501): retrying cannot help."""


class SourceResponseError(SourceError, FatalError):
    """The source's response is not what it documents (not JSON, no ``data``, a paging
    loop): nothing read from it can be trusted."""


class SourceCredentialsMissing(FatalError):
    """The tenant has no credentials stored for this source."""


class SourceConfigError(FatalError):
    """The source's spec cannot be used as given (plain http to a remote host, ...)."""
