"""A local Clever Data API v3.0 and Events API for tests, after ``v3.0.yml`` and
``v3.0-events.yml``: real HTTP on 127.0.0.1 (port 0), bearer auth, ``limit``,
``starting_after`` / ``ending_before`` paging with ``links``, an event history, data that
tests change between syncs, and failures to order (429 with ``Retry-After``, 5xx, 401,
a page without its ``data``).

Items are listed in ascending id order, as Clever does. Every change made through
``put`` or ``delete`` adds the event Clever would (``users.updated`` with
``previous_attributes``); ``unshare`` and ``share`` change the data without one.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API = "/v3.0"
COLLECTIONS = ("districts", "schools", "terms", "courses", "sections", "users")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100


@dataclass
class Failure:
    """An answer to give instead of the real one, ``times`` times, to paths starting
    with ``path`` (``None``: any)."""

    status: int
    times: int = 1
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    #: Leave the ``data`` key out of an otherwise normal page.
    drop_data: bool = False
    #: Matching requests to answer normally first (``after=1``: fail the second page).
    after: int = 0


class CleverData:
    """What the token shares, and the event history."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in COLLECTIONS}
        self.events: list[dict[str, Any]] = []
        self._event_number = 0
        self.lock = threading.RLock()

    def load(self, collection: str, *objects: dict[str, Any]) -> None:
        """Share objects without events (the district's data as it was)."""
        with self.lock:
            for obj in objects:
                self.collections[collection][obj["id"]] = copy.deepcopy(obj)

    def _event(self, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None) -> str:
        self._event_number += 1
        event_id = f"e{self._event_number:023d}"
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        self.events.append(
            {
                "id": event_id,
                "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "type": kind,
                "data": data,
            }
        )
        return event_id

    def put(self, collection: str, obj: dict[str, Any]) -> str:
        """Create or update an object, with its event; the event's id."""
        with self.lock:
            old = self.collections[collection].get(obj["id"])
            self.collections[collection][obj["id"]] = copy.deepcopy(obj)
            if old is None:
                return self._event(f"{collection}.created", obj, None)
            previous = {k: v for k, v in old.items() if obj.get(k) != v}
            return self._event(f"{collection}.updated", obj, previous)

    def delete(self, collection: str, object_id: str) -> str:
        with self.lock:
            old = self.collections[collection].pop(object_id)
            return self._event(f"{collection}.deleted", old, None)

    def unshare(self, collection: str, object_id: str) -> dict[str, Any]:
        with self.lock:
            return self.collections[collection].pop(object_id)

    def forget_events(self) -> None:
        """Drop every event from the history (as 30 days without a sync would)."""
        with self.lock:
            self.events.clear()


def _page(items: list[dict[str, Any]], query: dict[str, str], path: str) -> tuple[list, list]:
    """Clever's range paging over items in ascending id order: the page and its links."""
    limit = int(query.get("limit", DEFAULT_LIMIT))
    ids = [item["id"] for item in items]
    after, before = query.get("starting_after"), query.get("ending_before")
    if after is not None:
        chosen = [i for i, item_id in enumerate(ids) if item_id > after][:limit]
    elif before is not None:
        end = len(ids) if before == "last" else sum(1 for item_id in ids if item_id < before)
        chosen = list(range(max(0, end - limit), end))
    else:
        chosen = list(range(min(limit, len(ids))))
    page = [items[i] for i in chosen]
    links = [{"rel": "self", "uri": path + ("?" + urlencode(query) if query else "")}]
    if chosen and chosen[-1] + 1 < len(ids):
        links.append({"rel": "next", "uri": f"{path}?starting_after={ids[chosen[-1]]}"})
    if chosen and chosen[0] > 0:
        links.append({"rel": "prev", "uri": f"{path}?ending_before={ids[chosen[0]]}"})
    return page, links


class CleverServer:
    """Serves ``data`` on 127.0.0.1 to requests bearing ``token``."""

    def __init__(self, data: CleverData | None = None, token: str = "test-token") -> None:
        self.data = data or CleverData()
        self.token = token
        self.failures: list[Failure] = []
        #: (path, query) of every request, in order.
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, status: int, **kwargs: Any) -> Failure:
        failure = Failure(status, **kwargs)
        self.failures.append(failure)
        return failure

    def __enter__(self) -> CleverServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -------------------------------------------------------------- answering

    def _failure_for(self, path: str) -> Failure | None:
        with self.data.lock:
            for failure in self.failures:
                if failure.times > 0 and (failure.path is None or path.startswith(failure.path)):
                    if failure.after > 0:
                        failure.after -= 1
                        continue
                    failure.times -= 1
                    return failure
        return None

    def answer(self, path: str, query: dict[str, str], auth: str | None) -> tuple[int, dict, Any]:
        self.requests.append((path, query))
        if auth != f"Bearer {self.token}":
            return 401, {}, {"message": "invalid token"}
        failure = self._failure_for(path)
        if failure is not None and not failure.drop_data:
            return failure.status, failure.headers, failure.body or {"message": "failure"}
        status, headers, body = self._route(path, query)
        if failure is not None and isinstance(body, dict):
            body.pop("data", None)
        return status, headers, body

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, dict, Any]:
        if not path.startswith(API + "/"):
            return 404, {}, {"message": "not found"}
        if int(query.get("limit", DEFAULT_LIMIT)) > MAX_LIMIT:
            return 413, {}, {"message": "Your limit parameter may be over 10000"}
        parts = path[len(API) + 1 :].split("/")
        with self.data.lock:
            if parts[0] == "events":
                return self._events(parts[1:], query, path)
            objects = self.data.collections.get(parts[0])
            if objects is None:
                return 404, {}, {"message": "not found"}
            if len(parts) == 1:
                items = [objects[k] for k in sorted(objects)]
                if parts[0] == "users" and query.get("role"):
                    items = [u for u in items if query["role"] in (u.get("roles") or {})]
                page, links = _page(items, query, path)
                return 200, {}, {"data": [{"data": item} for item in page], "links": links}
            obj = objects.get(parts[1])
            if obj is None:
                return 404, {}, {"message": "not found"}
            if len(parts) == 2:
                return 200, {}, {"data": obj, "links": [{"rel": "self", "uri": path}]}
            if parts[0] == "users" and parts[2] == "mycontacts":
                users = self.data.collections["users"]
                contacts = [
                    users[k]
                    for k in sorted(users)
                    if any(
                        r.get("student") == parts[1]
                        for r in ((users[k].get("roles") or {}).get("contact") or {}).get(
                            "student_relationships", []
                        )
                    )
                ]
                page, links = _page(contacts, query, path)
                return 200, {}, {"data": [{"data": c} for c in page], "links": links}
        return 404, {}, {"message": "not found"}

    def _events(self, parts: list[str], query: dict[str, str], path: str) -> tuple[int, dict, Any]:
        events = self.data.events
        ids = {e["id"] for e in events}
        if parts:
            event = next((e for e in events if e["id"] == parts[0]), None)
            if event is None:
                return 404, {}, {"message": "not found"}
            return 200, {}, {"data": event}
        after = query.get("starting_after")
        if after is not None and after not in ids:
            return 404, {}, {"message": "event not found"}
        page, links = _page(events, query, path)
        return 200, {}, {"data": [{"data": e} for e in page], "links": links}

    def paths(self) -> Iterator[str]:
        return (path for path, _ in self.requests)


def _handler_for(server: CleverServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, headers, body = server.answer(
                url.path, query, self.headers.get("Authorization")
            )
            content = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read server.requests instead

    return Handler


def mock_transport(server: CleverServer) -> Any:
    """The same answers in process (``httpx.MockTransport``), for unit tests."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params.items())
        status, headers, body = server.answer(
            request.url.path, query, request.headers.get("Authorization")
        )
        return httpx.Response(status, headers=headers, content=json.dumps(body).encode())

    return httpx.MockTransport(handle)


def _student(
    user_id: str, first: str, last: str, school: str, *, dob: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": user_id,
        "district": "d1",
        "email": f"{first.lower()}.{last.lower()}@students.example",
        "name": {"first": first, "middle": None, "last": last},
        "created": "2024-08-01T00:00:00.000Z",
        "last_modified": "2024-08-02T10:00:00.000Z",
        "roles": {
            "student": {
                "sis_id": f"SIS-{user_id}",
                "state_id": f"ST-{user_id}",
                "student_number": f"N-{user_id}",
                "grade": "3",
                "dob": dob,
                "gender": "F",
                "race": "Asian",
                "hispanic_ethnicity": "N",
                "school": school,
                "schools": [school],
                "credentials": {"district_username": f"{first.lower()}{last.lower()}"},
                **extra,
            }
        },
    }


def sample_district() -> CleverData:
    """A small district: two schools, a term, two courses, two sections, three students,
    two teachers, a staff member, a district admin and two contacts."""
    data = CleverData()
    data.load(
        "districts",
        {"id": "d1", "name": "Maple District", "nces_id": "0100001", "state": "success"},
    )
    data.load(
        "schools",
        {
            "id": "sch1",
            "district": "d1",
            "name": "Maple Elementary",
            "sis_id": "100",
            "school_number": "100",
            "last_modified": "2024-08-01T00:00:00.000Z",
        },
        {"id": "sch2", "district": "d1", "name": "Maple Middle", "sis_id": "200"},
    )
    data.load(
        "terms",
        {
            "id": "term1",
            "district": "d1",
            "name": "Fall 2024",
            "start_date": "2024-08-20T00:00:00.000Z",
            "end_date": "2024-12-20T00:00:00.000Z",
        },
    )
    data.load(
        "courses",
        {"id": "crs1", "district": "d1", "name": "Math 3", "number": "M3"},
        {"id": "crs2", "district": "d1", "name": None, "number": "SCI6"},
    )
    data.load(
        "sections",
        {
            "id": "sec1",
            "district": "d1",
            "school": "sch1",
            "course": "crs1",
            "term_id": "term1",
            "name": "Math 3 - Room 4",
            "section_number": "M3-4",
            "subject": "math",
            "grade": "3",
            "period": "2",
            "sis_id": "SEC-1",
            "teacher": "tch1",
            "teachers": ["tch1"],
            "students": ["stu1", "stu2"],
        },
        {
            "id": "sec2",
            "district": "d1",
            "school": "sch2",
            "course": "crs2",
            "term_id": "term1",
            "name": "Homeroom 6A",
            "subject": "homeroom/advisory",
            "grade": "6",
            "teacher": "tch2",
            "teachers": ["tch2", "tch1"],
            "students": ["stu3"],
        },
    )
    data.load(
        "users",
        _student("stu1", "Ada", "Lovelace", "sch1", dob="3/14/2015"),
        _student("stu2", "Ben", "Okafor", "sch1"),
        _student("stu3", "Cleo", "Ng", "sch2", dob="12/01/2012"),
        {
            "id": "tch1",
            "district": "d1",
            "email": "t.one@maple.example",
            "name": {"first": "Tara", "last": "One"},
            "roles": {
                "teacher": {
                    "sis_id": "T-1",
                    "teacher_number": "TN1",
                    "school": "sch1",
                    "schools": ["sch1", "sch2"],
                },
                "staff": {"staff_id": "STF-1", "schools": ["sch1"]},
            },
        },
        {
            "id": "tch2",
            "district": "d1",
            "email": "t.two@maple.example",
            "name": {"first": "Tom", "last": "Two"},
            "roles": {"teacher": {"sis_id": "T-2", "school": "sch2", "schools": ["sch2"]}},
        },
        {
            "id": "stf1",
            "district": "d1",
            "email": "nurse@maple.example",
            "name": {"first": "Nia", "last": "Nurse"},
            "roles": {"staff": {"staff_id": "S-9", "title": "Nurse", "schools": ["sch1"]}},
        },
        {
            "id": "adm1",
            "district": "d1",
            "email": "admin@maple.example",
            "name": {"first": "Dee", "last": "Admin"},
            "roles": {"district_admin": {"title": "IT"}},
        },
        {
            "id": "con1",
            "district": "d1",
            "email": "parent@home.example",
            "name": {"first": None, "last": "Grace Lovelace"},
            "roles": {
                "contact": {
                    "phone": "555-0101",
                    "phone_type": "Cell",
                    "sis_id": "C-1",
                    "student_relationships": [
                        {"student": "stu1", "relationship": "Parent", "type": "Parent/Guardian"},
                        {"student": "stu2", "relationship": "Parent", "type": "Parent/Guardian"},
                    ],
                }
            },
        },
        {
            "id": "con2",
            "district": "d1",
            "email": None,
            "name": {"first": "Gus", "last": "Ng"},
            "roles": {
                "contact": {
                    "student_relationships": [
                        {"student": "stu3", "relationship": "Grandparent", "type": "Emergency"}
                    ]
                }
            },
        },
    )
    return data
