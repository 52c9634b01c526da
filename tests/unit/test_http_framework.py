"""The HTTP source framework: paginators, waits, the rate limit and the client's retries
and error mapping (through ``httpx.MockTransport``: no sockets, no sleeping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from rostersync.errors import FatalError, TransientError
from rostersync.sources.http import (
    BearerAuth,
    BodyNextPaginator,
    HeaderLinkPaginator,
    HttpClient,
    LinksNextPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    RateLimiter,
    RetryPolicy,
    SourceAuthError,
    SourceNotFound,
    SourceRateLimited,
    SourceRequestError,
    SourceResponseError,
    SourceUnavailable,
    items_at,
    server_wait,
)


class FakeClock:
    """A clock that only moves when something sleeps."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _response(body: Any = None, status: int = 200, headers: dict[str, str] | None = None):
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


# ---------------------------------------------------------------------------- paginators


def test_links_next_follows_the_next_link_and_keeps_the_page_size():
    paginator = LinksNextPaginator(limit=2)
    first = paginator.first(PageRequest.of("/v3.0/users"))
    assert first == PageRequest("/v3.0/users", (("limit", "2"),))
    body = {
        "data": [{}, {}],
        "links": [
            {"rel": "self", "uri": "/v3.0/users"},
            {"rel": "next", "uri": "/v3.0/users?starting_after=u2"},
        ],
    }
    following = paginator.next(first, _response(body), body, 2)
    assert following == PageRequest("/v3.0/users", (("starting_after", "u2"), ("limit", "2")))
    last = {"data": [{}], "links": [{"rel": "self", "uri": "/v3.0/users"}]}
    assert paginator.next(following, _response(last), last, 1) is None


def test_links_next_stops_at_an_empty_page_whatever_its_links_say():
    body = {"data": [], "links": [{"rel": "next", "uri": "/v3.0/users?starting_after=u9"}]}
    paginator = LinksNextPaginator(limit=5)
    assert paginator.next(PageRequest("/v3.0/users"), _response(body), body, 0) is None


def test_header_link_paginator_reads_the_link_header():
    paginator = HeaderLinkPaginator(limit=100)
    response = httpx.Response(200, json=[], headers={"Link": '</ims/users?cursor=abc>; rel="next"'})
    following = paginator.next(paginator.first(PageRequest("/ims/users")), response, [], 100)
    assert following == PageRequest("/ims/users", (("cursor", "abc"), ("limit", "100")))
    assert paginator.next(PageRequest("/ims/users"), httpx.Response(200), [], 3) is None


def test_offset_paginator_stops_at_the_total_count():
    paginator = OffsetPaginator(limit=2)
    first = paginator.first(PageRequest("/users"))
    assert first.param("offset") == "0" and first.param("limit") == "2"
    counted = httpx.Response(200, headers={"X-Total-Count": "3"})
    second = paginator.next(first, counted, None, 2)
    assert second is not None and second.param("offset") == "2"
    assert paginator.next(second, counted, None, 1) is None
    # Without a total, a short page is the last.
    uncounted = httpx.Response(200)
    assert paginator.next(first, uncounted, None, 2) is not None
    assert paginator.next(first, uncounted, None, 1) is None


def test_page_number_paginator_stops_at_a_short_page():
    paginator = PageNumberPaginator(per_page=50)
    first = paginator.first(PageRequest("/students"))
    assert first.param("page") == "1" and first.param("per_page") == "50"
    second = paginator.next(first, httpx.Response(200), None, 50)
    assert second is not None and second.param("page") == "2"
    assert paginator.next(second, httpx.Response(200), None, 49) is None


def test_body_next_paginator_as_url_and_as_cursor():
    by_url = BodyNextPaginator(page_params={"per_page": "200"})
    body = {
        "data": [],
        "meta": {"pagination": {"next": "https://api.example/v1.0/students?page=2"}},
    }
    following = by_url.next(PageRequest("/v1.0/students"), httpx.Response(200), body, 0)
    assert following == PageRequest(
        "https://api.example/v1.0/students", (("page", "2"), ("per_page", "200"))
    )
    assert (
        by_url.next(
            PageRequest("/x"), httpx.Response(200), {"meta": {"pagination": {"next": None}}}, 5
        )
        is None
    )
    by_cursor = BodyNextPaginator(path=("next_cursor",), cursor_param="cursor")
    following = by_cursor.next(PageRequest("/x"), httpx.Response(200), {"next_cursor": "c2"}, 5)
    assert following == PageRequest("/x", (("cursor", "c2"),))


def test_items_at_refuses_a_body_without_its_list():
    assert items_at({"data": [1]}, ("data",), "/users") == [1]
    with pytest.raises(SourceResponseError):
        items_at({"links": []}, ("data",), "/users")
    with pytest.raises(SourceResponseError):
        items_at({"data": {"id": 1}}, ("data",), "/users")


# ---------------------------------------------------------------------------- waits


def test_server_wait_reads_retry_after_in_seconds_and_as_a_date():
    now = 1_700_000_000.0
    assert server_wait({"retry-after": "7"}, now) == 7.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert server_wait({"retry-after": date}, now) == pytest.approx(30.0)
    assert server_wait({"x-ratelimit-reset": str(int(now) + 12)}, now) == pytest.approx(12.0)
    assert server_wait({"x-ratelimit-reset": str(int(now) - 5)}, now) == 0.0
    assert server_wait({"x-ratelimit-reset": "3"}, now) == 3.0
    assert server_wait({}, now) is None
    assert server_wait({"retry-after": "soon"}, now) is None


def test_backoff_doubles_with_jitter_up_to_its_cap():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert [policy.backoff(n, 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.backoff(n, 0.999) for n in range(1, 6)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 8.0], abs=0.01
    )


def test_rate_limiter_spaces_calls_over_its_window():
    clock = FakeClock(0.0)
    limiter = RateLimiter(3, 60.0, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        limiter.acquire()
    # 3 at t=0, 3 at t=60, 1 at t=120.
    assert clock.now == 120.0
    limiter.hold_until(clock.now + 5)
    limiter.acquire()
    assert clock.now == 125.0


# ---------------------------------------------------------------------------- client


def _client(handler, clock: FakeClock, **kwargs: Any) -> HttpClient:
    return HttpClient(
        "https://api.example",
        auth=BearerAuth("tok-SECRET"),
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        wall_clock=clock,
        jitter=lambda: 0.0,
        **kwargs,
    )


def test_client_retries_429_after_the_wait_the_server_asks_for():
    clock = FakeClock()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "9"})
        if len(calls) == 2:
            return httpx.Response(429, headers={"X-RateLimit-Reset": str(int(clock.now) + 4)})
        return httpx.Response(200, json={"data": []})

    with _client(handler, clock) as client:
        response = client.get(PageRequest("/v3.0/users"))
    assert response.status_code == 200
    assert clock.slept == [9.0, 4.0]
    assert all(r.headers["Authorization"] == "Bearer tok-SECRET" for r in calls)


def test_client_retries_5xx_and_connection_errors_with_backoff():
    clock = FakeClock()
    outcomes: list[Any] = [503, "connect", 500, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes.pop(0)
        if outcome == "connect":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(outcome, json={"data": []})

    with _client(handler, clock, retry=RetryPolicy(attempts=5, base_delay=2.0)) as client:
        assert client.get(PageRequest("/x")).status_code == 200
    assert clock.slept == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SourceRequestError),
        (401, SourceAuthError),
        (403, SourceAuthError),
        (404, SourceNotFound),
        (413, SourceRequestError),
        (501, SourceRequestError),
    ],
)
def test_client_does_not_retry_client_errors(status, error):
    clock = FakeClock()
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"message": "no"})

    with _client(handler, clock) as client, pytest.raises(error) as raised:
        client.get(PageRequest("/v3.0/users"))
    assert len(calls) == 1 and clock.slept == []
    assert isinstance(raised.value, FatalError)
    assert "tok-SECRET" not in str(raised.value)


def test_client_gives_up_with_a_transient_error():
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502)

    client = _client(handler, clock, retry=RetryPolicy(attempts=3))
    with client, pytest.raises(SourceUnavailable) as raised:
        client.get(PageRequest("/x"))
    assert isinstance(raised.value, TransientError)
    assert len(clock.slept) == 2


def test_client_refuses_a_wait_longer_than_its_patience():
    clock = FakeClock()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"})

    client = _client(handler, clock, retry=RetryPolicy(max_wait=60))
    with client, pytest.raises(SourceRateLimited):
        client.get(PageRequest("/x"))
    assert clock.slept == []


def test_client_pages_until_the_paginator_stops_and_refuses_loops_and_other_hosts():
    clock = FakeClock()
    pages = {
        None: {"data": [1, 2], "links": [{"rel": "next", "uri": "/v3.0/x?starting_after=2"}]},
        "2": {"data": [3], "links": []},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["limit"] == "2"
        return httpx.Response(
            200, content=json.dumps(pages[request.url.params.get("starting_after")])
        )

    with _client(handler, clock) as client:
        got = list(
            client.pages(PageRequest("/v3.0/x"), LinksNextPaginator(limit=2), lambda b: b["data"])
        )
    assert [p.items for p in got] == [[1, 2], [3]]
    assert got[0].content == json.dumps(pages[None]).encode()

    def looping(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"data": [1], "links": [{"rel": "next", "uri": "/v3.0/x?limit=2"}]}
        )

    with _client(looping, clock) as client, pytest.raises(SourceResponseError):
        list(client.pages(PageRequest("/v3.0/x"), LinksNextPaginator(limit=2), lambda b: b["data"]))

    def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"data": [1], "links": [{"rel": "next", "uri": "https://evil.example/x"}]}
        )

    with _client(elsewhere, clock) as client, pytest.raises(SourceResponseError):
        list(client.pages(PageRequest("/v3.0/x"), LinksNextPaginator(), lambda b: b["data"]))


def test_bearer_auth_hides_its_token():
    assert "tok" not in repr(BearerAuth("tok-SECRET"))
    with pytest.raises(ValueError):
        BearerAuth("a\nb")
