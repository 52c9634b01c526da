"""A local Assembly Platform API for tests, in the response shapes its PHP client
documents (``docs/Model/*.md``, summarised in SOURCES.md §3.2): real HTTP on 127.0.0.1
(port 0), the versioned ``Accept`` header (406 without it), the school's bearer token and
the refresh-token grant at ``/oauth/token``, the list envelope (``object: "list"``,
``total_count``, ``total_pages``, ``current_page``, ``next_page``, ``data``) with
``page``/``per_page``, ``If-Modified-Since`` (304 when nothing changed), ``/students/left``
and ``/school/status``.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EPOCH = datetime(2025, 9, 1, tzinfo=UTC)
LISTINGS = ("students", "staff_members", "teaching_groups", "registration_groups")


@dataclass
class Failure:
    status: int
    times: int = 1
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0


def upn_of(number: int) -> str:
    return f"A8012{number:08d}"


class AssemblySchool:
    """One school's data, each record with the moment it last changed."""

    def __init__(self, students: int = 20) -> None:
        self.school = {
            "object": "school",
            "name": "Fenland Academy",
            "slug": "fenland-academy",
            "urn": "136789",
            "mis_provider": "Arbor",
            "la_code": 873,
            "establishment_number": 4001,
            "phase": "Secondary",
        }
        self.status = {
            "object": "school_status",
            "last_changes_at": EPOCH.isoformat(),
            "last_sync_at": EPOCH.isoformat(),
            "last_sync_status": "success",
        }
        self.records: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in LISTINGS}
        self.changed: dict[tuple[str, int], datetime] = {}
        self.left: dict[int, dict[str, Any]] = {}
        names = ["Amara", "Callum", "Freya", "Harvey", "Isla", "Kian", "Leah", "Mason"]
        for n in range(students):
            student_id = 5000 + n
            self.put(
                "students",
                {
                    "object": "student",
                    "id": student_id,
                    "year_code": str(7 + n % 5),
                    "upn": upn_of(n),
                    "former_upn": upn_of(900 + n) if n == 3 else None,
                    "uln": f"{1000000000 + n}",
                    "mis_id": f"M{n:04d}",
                    "pan": f"{200 + n:06d}",
                    "first_name": "Izzy" if n == 4 else names[n % len(names)],
                    "legal_first_name": names[n % len(names)],
                    "middle_name": None,
                    "last_name": f"Fen{n:02d}",
                    "legal_last_name": f"Fen{n:02d}",
                    "dob": f"201{n % 4}-0{1 + n % 9}-15",
                    "start_date": "2021-09-01",
                    "end_date": None,
                    "enrolment_status": "C",
                    "demographics": {"gender": "F" if n % 2 else "M"},
                    "emails": [
                        {"email": f"s{n}@fenland.example", "type": "school", "is_primary": True}
                    ],
                },
                EPOCH,
            )
        for n in range(4):
            self.put(
                "staff_members",
                {
                    "object": "staff_member",
                    "id": 300 + n,
                    "mis_id": f"E{n:03d}",
                    "staff_code": f"T{n}",
                    "first_name": ["Grace", "Owen", "Priya", "Rhys"][n],
                    "legal_first_name": ["Grace", "Owen", "Priya", "Rhys"][n],
                    "last_name": ["Hall", "Reed", "Shah", "Vaughan"][n],
                    "legal_last_name": ["Hall", "Reed", "Shah", "Vaughan"][n],
                    "title": "Ms",
                    "is_teaching_staff": n < 3,
                    "emails": [{"email": f"e{n}@fenland.example", "is_primary": True}],
                },
                EPOCH,
            )
        student_ids = sorted(self.records["students"])
        for n in range(3):
            group: dict[str, Any] = {
                "object": "teaching_group",
                "id": 40 + n,
                "name": f"{7 + n}x/Ma{n + 1}",
                "start_date": "2025-09-01",
                "end_date": "2026-07-20",
                "academic_year_id": 9,
                "supervisor_ids": [300 + n],
                "subject": {"object": "subject", "id": 1, "code": "MA", "name": "Mathematics"},
            }
            if n != 2:  # the third one comes without its members
                group["student_ids"] = student_ids[n * 5 : n * 5 + 6]
            self.put("teaching_groups", group, EPOCH)
        self.group_students = {42: student_ids[10:16]}
        for n in range(2):
            self.put(
                "registration_groups",
                {
                    "object": "registration_group",
                    "id": 40 + n,  # the same numbers as teaching groups: another kind
                    "name": f"7R{n + 1}",
                    "supervisor_ids": [303],
                    "student_ids": student_ids[n * 10 : n * 10 + 10],
                },
                EPOCH,
            )
        self.lock = threading.RLock()

    def put(self, listing: str, obj: dict[str, Any], moment: datetime) -> None:
        self.records[listing][obj["id"]] = copy.deepcopy(obj)
        self.changed[(listing, obj["id"])] = moment

    def leave(self, student_id: int, moment: datetime) -> None:
        """A student leaves: gone from ``/students``, listed in ``/students/left``."""
        obj = self.records["students"].pop(student_id)
        self.left[student_id] = {**obj, "end_date": moment.date().isoformat()}
        self.changed[("left", student_id)] = moment


class AssemblyServer:
    def __init__(
        self,
        school: AssemblySchool | None = None,
        token: str = "assembly-access",
        *,
        refresh_token: str | None = None,
        client_id: str = "app-1",
        client_secret: str = "app-secret",
    ) -> None:
        self.data = school or AssemblySchool()
        self.token = token
        self.refresh_token = refresh_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.refreshes = 0
        self.failures: list[Failure] = []
        self.shifts: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._served: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return self.base_url + "/oauth/token"

    def fail(self, status: int, **kwargs: Any) -> Failure:
        failure = Failure(status, **kwargs)
        self.failures.append(failure)
        return failure

    def shift(self, listing: str, record: dict[str, Any], after_pages: int = 1) -> None:
        self.shifts[listing] = (after_pages, record)

    def __enter__(self) -> AssemblyServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def refresh(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
        basic = headers.get("authorization", "")
        decoded = base64.b64decode(basic[6:]).decode() if basic.startswith("Basic ") else ""
        if decoded != f"{self.client_id}:{self.client_secret}":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != (
            self.refresh_token or object()
        ):
            return 400, {"error": "invalid_grant"}
        self.refreshes += 1
        self.token = f"assembly-access-refreshed-{self.refreshes}"
        return 200, {
            "access_token": self.token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "level": "school",
            "expires_in": 108000,
            "school_id": 123,
            "scopes": ["school", "students"],
        }

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

    def answer(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        self.requests.append((path, query, headers))
        if not headers.get("accept", "").startswith("application/vnd.assembly+json; version="):
            return 406, {}, {"error": "a version must be asked for in the Accept header"}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"object": "error", "message": "Unauthorized"}
        failure = self._failure_for(path)
        if failure is not None:
            return failure.status, failure.headers, {"object": "error", "message": "failure"}
        since_header = headers.get("if-modified-since")
        since = parsedate_to_datetime(since_header) if since_header else None
        with self.data.lock:
            if path == "/school/status":
                return 200, {}, dict(self.data.status)
            if path == "/school":
                return 200, {}, dict(self.data.school)
            if path == "/students/left":
                items = [
                    o
                    for i, o in self.data.left.items()
                    if since is None or self.data.changed[("left", i)] > since
                ]
                return self._list(items, query, since is not None)
            parts = path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "teaching_groups" and parts[2] == "students":
                ids = self.data.group_students.get(int(parts[1]), [])
                students = [self.data.records["students"][i] for i in ids]
                return self._list(copy.deepcopy(students), query, False)
            if len(parts) != 1 or parts[0] not in LISTINGS:
                return 404, {}, {"object": "error", "message": "not found"}
            name = parts[0]
            items = [
                copy.deepcopy(o)
                for i, o in self.data.records[name].items()
                if since is None or self.data.changed[(name, i)] > since
            ]
            if name in self.shifts and self.shifts[name][0] <= self._served.get(name, 0):
                items.insert(0, copy.deepcopy(self.shifts[name][1]))
            self._served[name] = self._served.get(name, 0) + 1
            return self._list(items, query, since is not None)

    def _list(
        self, items: list[dict[str, Any]], query: dict[str, str], conditional: bool
    ) -> tuple[int, dict[str, str], Any]:
        if conditional and not items:
            return 304, {}, None
        per_page = int(query.get("per_page", 100))
        page = int(query.get("page", 1))
        pages = max(1, -(-len(items) // per_page))
        return (
            200,
            {},
            {
                "object": "list",
                "total_count": len(items),
                "total_pages": pages,
                "current_page": page,
                "prev_page": page - 1 if page > 1 else None,
                "next_page": page + 1 if page < pages else None,
                "data": items[(page - 1) * per_page : page * per_page],
            },
        )


def _handler_for(server: AssemblyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            content = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if content:
                self.wfile.write(content)

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._send(*server.answer(url.path, query, self._headers()))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/oauth/token":
                self._send(404, {}, {"error": "not found"})
                return
            status, body = server.refresh(self._headers(), form)
            self._send(status, {}, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
