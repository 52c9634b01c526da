"""How a OneRoster REST server is authenticated: OAuth 2.0 client credentials (1EdTech's
Security Framework, PowerSchool, Infinite Campus), OAuth 1.0a request signing with
HMAC-SHA256 or HMAC-SHA1 (ClassLink Roster Server direct access, older 1.1 servers), or a
bearer key used as it is (ClassLink's OAuth2 proxy).

OAuth 1.0a signatures are made by ``oauthlib``, never by hand. A server that refuses a
signature and says (``Date``) that its clock differs from ours by more than a minute gets
the request once more, signed with its time: a skewed clock must not fail a sync.

Access tokens are cached in memory per process (per tenant, token URL, client id, scopes
and secret), until shortly before they expire; a 401 on a cached token fetches a new one
once. Nothing here logs or keeps a secret beyond the objects of one fetch and the cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import orjson
from oauthlib import oauth1

from rostersync.observability import logger
from rostersync.sources.http import SourceAuthError, SourceResponseError, SourceUnavailable

Clock = Callable[[], float]

#: A token is renewed this long before the expiry its server gave.
EXPIRY_MARGIN = 60.0
#: Used when a token response gives no ``expires_in``.
DEFAULT_LIFETIME = 3600.0
#: A server clock further than this from ours is worth re-signing for.
SKEW_TOLERANCE = 60.0


@dataclass(frozen=True)
class CachedToken:
    value: str
    expires_at: float


class TokenCache:
    """Access tokens by (tenant, token URL, client id, scopes, secret digest), in memory."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], now: float) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_at <= now:
                return None
            return token.value

    def put(self, key: tuple[str, ...], token: CachedToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


def secret_digest(secret: str) -> str:
    """A short digest naming a secret in the cache (a rotated secret gets a new token)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class ClientCredentials:
    """Fetches access tokens by the client-credentials grant (RFC 6749 §4.4)."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: tuple[str, ...],
        *,
        cache: TokenCache,
        cache_key: tuple[str, ...],
        credentials_in_body: bool = False,
        wall_clock: Clock = time.time,
        transport: httpx.BaseTransport | None = None,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes
        self.cache = cache
        self.cache_key = cache_key
        self.credentials_in_body = credentials_in_body
        self.wall_clock = wall_clock
        self.transport = transport
        self.attempts = attempts
        self.sleep = sleep
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientCredentials({self.token_url!r}, <redacted>)"

    def token(self, *, refused: str | None = None) -> tuple[str, bool]:
        """A valid access token, and whether it came from the cache. ``refused`` is a
        token the server refused: it is not handed out again (another thread may have
        renewed it already)."""
        with self._lock:
            cached = self.cache.get(self.cache_key, self.wall_clock())
            if cached is not None and cached != refused:
                return cached, True
            token = self._request()
            self.cache.put(self.cache_key, token)
            return token.value, False

    def _request(self) -> CachedToken:
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        auth: httpx.Auth
        if self.credentials_in_body:
            form.update(client_id=self.client_id, client_secret=self._secret)
            auth = _NoAuth()
        else:
            auth = httpx.BasicAuth(self.client_id, self._secret)
        path = httpx.URL(self.token_url).path
        with httpx.Client(transport=self.transport, timeout=30.0) as http:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = http.post(
                        self.token_url,
                        data=form,
                        auth=auth,
                        headers={"Accept": "application/json"},
                    )
                except httpx.TransportError as exc:
                    failure: Exception = SourceUnavailable(
                        f"oneroster: POST {path}: {type(exc).__name__}"
                    )
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        return self._parse(response, path)
                    if status < 500 and status != 429:
                        error = SourceAuthError(
                            f"oneroster: POST {path}: HTTP {status} (the token was refused)"
                        )
                        error.status = status
                        raise error
                    failure = SourceUnavailable(f"oneroster: POST {path}: HTTP {status}")
                if attempt < self.attempts:
                    self.sleep(float(2 ** (attempt - 1)))
            raise failure

    def _parse(self, response: httpx.Response, path: str) -> CachedToken:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SourceResponseError(f"oneroster: POST {path}: not JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise SourceResponseError(f"oneroster: POST {path}: no access_token")
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else DEFAULT_LIFETIME
        expires = self.wall_clock() + max(0.0, seconds - EXPIRY_MARGIN)
        return CachedToken(token, expires)


class _NoAuth(httpx.Auth):
    """No header: the credentials are in the form."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


class OAuth2Auth(httpx.Auth):
    """``Authorization: Bearer`` with a client-credentials token; a 401 on a token from
    the cache fetches a new one and tries once more."""

    def __init__(self, credentials: ClientCredentials) -> None:
        self.credentials = credentials

    def __repr__(self) -> str:
        return "OAuth2Auth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token, cached = self.credentials.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and cached:
            token, _ = self.credentials.token(refused=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


class OAuth1Auth(httpx.Auth):
    """OAuth 1.0a signatures (``oauth_signature_method`` HMAC-SHA256 or HMAC-SHA1) in the
    ``Authorization`` header, over the request exactly as sent (its query included)."""

    def __init__(
        self,
        client_key: str,
        client_secret: str,
        signature_method: str,
        *,
        wall_clock: Clock = time.time,
    ) -> None:
        if signature_method not in (oauth1.SIGNATURE_HMAC_SHA256, oauth1.SIGNATURE_HMAC_SHA1):
            raise ValueError(f"unsupported signature method {signature_method}")
        self.client_key = client_key
        self._secret = client_secret
        self.signature_method = signature_method
        self.wall_clock = wall_clock
        #: Seconds to add to our clock to get the server's (learnt from a refusal).
        self.skew = 0.0

    def __repr__(self) -> str:
        return f"OAuth1Auth({self.signature_method}, <redacted>)"

    def _sign(self, request: httpx.Request, skew: float) -> None:
        client = oauth1.Client(
            self.client_key,
            client_secret=self._secret,
            signature_method=self.signature_method,
            signature_type=oauth1.SIGNATURE_TYPE_AUTH_HEADER,
            timestamp=str(int(self.wall_clock() + skew)),
        )
        _, headers, _ = client.sign(str(request.url), http_method=request.method)
        request.headers["Authorization"] = headers["Authorization"]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self.skew
        self._sign(request, used)
        response = yield request
        if response.status_code != 401:
            return
        server_time = _server_time(response)
        if server_time is None:
            return
        skew = server_time - self.wall_clock()
        if abs(skew - used) <= SKEW_TOLERANCE:
            return  # the clocks agree: the signature itself was refused
        if abs(skew - self.skew) > SKEW_TOLERANCE:
            self.skew = skew
            logger().warning(
                "oauth1 signature refused: re-signed with the server's clock",
                extra={"skew_s": round(skew)},
            )
        self._sign(request, self.skew)
        yield request


def _server_time(response: httpx.Response) -> float | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
