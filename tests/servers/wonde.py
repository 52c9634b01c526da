"""A local Wonde API v1.0 for tests, serving the recorded responses of Wonde's synthetic
Testing School (``shared/data/wonde``): real HTTP on 127.0.0.1 (port 0), bearer (or
Basic with the token as user name) auth, ``per_page``/``page`` paging with
``meta.pagination`` (``next`` while ``more``), ``include=`` relations wrapped in
``{"data": ...}`` as Wonde wraps them, ``updated_after`` and ``/deletions``.

The recorded pages carry no includes, so the relations are built here in Wonde's shapes
(from its documentation): ``education_details`` with a UPN, contacts with their
``relationship``, a class's students, employees and subject, an employee's classes.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "wonde"
RELATIONSHIPS = ("Mother", "Father", "Grandmother", "Carer")


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def wonde_date(moment: datetime) -> dict[str, Any]:
    return {
        "date": moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.000000"),
        "timezone_type": 3,
        "timezone": "UTC",
    }


def upn_of(number: int) -> str:
    return f"H8012{number:08d}"


@dataclass
class Failure:
    status: int
    times: int = 1
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0


class WondeSchool:
    """The Testing School's people and classes, with the links between them."""

    def __init__(self, students: int = 30, classes: int = 8, employees: int = 12) -> None:
        self.school = _load("school.json")["data"]
        self.students = {s["id"]: s for s in _load("students.json")["data"][:students]}
        self.employees = {e["id"]: e for e in _load("employees.json")["data"][:employees]}
        self.classes = {c["id"]: c for c in _load("classes.json")["data"][:classes]}
        self.subject = {"id": "A1787713350", "code": "MA", "name": "Mathematics"}
        student_ids, employee_ids = list(self.students), list(self.employees)
        #: Class id → (student ids, employee ids).
        self.members: dict[str, tuple[list[str], list[str]]] = {}
        for n, class_id in enumerate(self.classes):
            chosen = [student_ids[(n * 4 + k) % len(student_ids)] for k in range(5)]
            self.members[class_id] = (chosen, [employee_ids[n % len(employee_ids)]])
        self.education: dict[str, dict[str, Any]] = {}
        for n, student_id in enumerate(student_ids):
            details: dict[str, Any] = {
                "upn": upn_of(n),
                "former_upn": None,
                "admission_number": f"{1000 + n:06d}",
                "current_nc_year": str(7 + n % 5),
            }
            if n % 5 == 4:
                details["candidate_number"] = f"{4000 + n}"
            self.education[student_id] = details
        #: Contact id → contact; (student id, contact id) → relationship.
        self.contacts: dict[str, dict[str, Any]] = {}
        self.relationships: dict[tuple[str, str], str] = {}
        for n in range(6):
            contact_id = f"C{9000 + n}"
            self.contacts[contact_id] = {
                "id": contact_id,
                "upi": f"c0ffee{n:026d}",
                "mis_id": f"{700 + n}",
                "initials": "P",
                "title": "Mrs" if n % 2 == 0 else "Mr",
                "surname": self.students[student_ids[n]]["surname"],
                "forename": ["Jane", "John", "Rose", "Tom", "Ann", "Lee"][n],
                "middle_names": None,
                "updated_at": wonde_date(datetime(2023, 9, 1, tzinfo=UTC)),
                "created_at": wonde_date(datetime(2023, 9, 1, tzinfo=UTC)),
            }
            self.relationships[(student_ids[n], contact_id)] = RELATIONSHIPS[n % 4]
        # Siblings: the first contact looks after the seventh student too.
        self.relationships[(student_ids[6], "C9000")] = "Mother"
        self.deletions: list[dict[str, Any]] = []
        self.lock = threading.RLock()

    def listing(self, name: str) -> dict[str, dict[str, Any]]:
        return {
            "students": self.students,
            "employees": self.employees,
            "classes": self.classes,
            "contacts": self.contacts,
        }[name]

    def touch(self, name: str, obj_id: str, moment: datetime, **changes: Any) -> None:
        with self.lock:
            obj = self.listing(name)[obj_id]
            obj.update(changes)
            obj["updated_at"] = wonde_date(moment)

    def delete(self, name: str, obj_id: str, moment: datetime) -> dict[str, Any]:
        """Remove a record, with the deletion Wonde lists for it."""
        with self.lock:
            obj = self.listing(name).pop(obj_id)
            kind = {"students": "student", "employees": "employee", "contacts": "contact"}.get(
                name, "class"
            )
            self.deletions.append(
                {
                    "id": obj_id,
                    "type": kind,
                    "mis_id": obj.get("mis_id"),
                    "deleted_at": wonde_date(moment),
                    "updated_at": wonde_date(moment),
                    "restored_at": None,
                }
            )
            return obj

    # ------------------------------------------------------------------ shapes

    def _contact_details(self, obj: dict[str, Any]) -> dict[str, Any]:
        handle = f"{(obj.get('forename') or 'x').lower()}.{obj.get('surname', 'x').lower()}"
        return {
            "data": {
                "phones": {"phone": "01632 960001", "primary": None, "mobile": None},
                "emails": {"email": f"{handle}@example.org", "primary": None, "work": None},
            }
        }

    def student(self, student_id: str, includes: set[str]) -> dict[str, Any]:
        obj = copy.deepcopy(self.students[student_id])
        if "education_details" in includes:
            obj["education_details"] = {"data": copy.deepcopy(self.education[student_id])}
        if "contact_details" in includes:
            obj["contact_details"] = self._contact_details(obj)
        if "contacts" in includes:
            obj["contacts"] = {
                "data": [
                    {
                        **copy.deepcopy(self.contacts[c]),
                        "relationship": {"relationship": word, "priority": 1, "bill_payer": True},
                    }
                    for (s, c), word in self.relationships.items()
                    if s == student_id and c in self.contacts
                ]
            }
        return obj

    def employee(self, employee_id: str, includes: set[str]) -> dict[str, Any]:
        obj = copy.deepcopy(self.employees[employee_id])
        taught = [c for c, (_, staff) in self.members.items() if employee_id in staff]
        if "employment_details" in includes:
            obj["employment_details"] = {
                "data": {"staff_code": obj.get("initials"), "teaching_staff": bool(taught)}
            }
        if "contact_details" in includes:
            obj["contact_details"] = self._contact_details(obj)
        if "classes" in includes:
            obj["classes"] = {
                "data": [copy.deepcopy(self.classes[c]) for c in taught if c in self.classes]
            }
        return obj

    def klass(self, class_id: str, includes: set[str]) -> dict[str, Any]:
        obj = copy.deepcopy(self.classes[class_id])
        students, staff = self.members.get(class_id, ([], []))
        if "students" in includes:
            obj["students"] = {
                "data": [copy.deepcopy(self.students[s]) for s in students if s in self.students]
            }
        if "employees" in includes:
            obj["employees"] = {
                "data": [copy.deepcopy(self.employees[e]) for e in staff if e in self.employees]
            }
        if "subject" in includes:
            obj["subject"] = {"data": dict(self.subject)}
        return obj

    def contact(self, contact_id: str, includes: set[str]) -> dict[str, Any]:
        obj = copy.deepcopy(self.contacts[contact_id])
        if "contact_details" in includes:
            obj["contact_details"] = self._contact_details(obj)
        if "students" in includes:
            obj["students"] = {
                "data": [
                    {**copy.deepcopy(self.students[s]), "relationship": {"relationship": word}}
                    for (s, c), word in self.relationships.items()
                    if c == contact_id and s in self.students
                ]
            }
        return obj


class WondeServer:
    """Serves one school to requests bearing ``token``."""

    def __init__(self, school: WondeSchool | None = None, token: str = "wonde-token") -> None:
        self.data = school or WondeSchool()
        self.token = token
        self.failures: list[Failure] = []
        #: Listing → (page after which, record put first) for a listing that shifts.
        self.shifts: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._served: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def school_id(self) -> str:
        return str(self.data.school["id"])

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, status: int, **kwargs: Any) -> Failure:
        failure = Failure(status, **kwargs)
        self.failures.append(failure)
        return failure

    def shift(self, listing: str, record: dict[str, Any], after_pages: int = 1) -> None:
        self.shifts[listing] = (after_pages, record)

    def __enter__(self) -> WondeServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _authorized(self, header: str | None) -> bool:
        if header == f"Bearer {self.token}":
            return True
        if header and header.startswith("Basic "):
            return base64.b64decode(header[6:]).decode() == f"{self.token}:"
        return False

    def _failure_for(self, path: str) -> Failure | None:
        with self.data.lock:
            for failure in self.failures:
                if failure.times > 0 and (failure.path is None or failure.path in path):
                    if failure.after > 0:
                        failure.after -= 1
                        continue
                    failure.times -= 1
                    return failure
        return None

    def answer(self, path: str, query: dict[str, str], auth: str | None) -> tuple[int, dict, Any]:
        self.requests.append((path, query))
        if not self._authorized(auth):
            return 401, {}, {"error": "Unauthenticated."}
        failure = self._failure_for(path)
        if failure is not None:
            return failure.status, failure.headers, {"error": "failure"}
        prefix = f"/v1.0/schools/{self.school_id}"
        if path == prefix:
            return 200, {}, {"data": copy.deepcopy(self.data.school), "meta": {"includes": []}}
        if not path.startswith(prefix + "/"):
            return 404, {}, {"error": "not found"}
        name = path[len(prefix) + 1 :]
        includes = {part for part in query.get("include", "").split(",") if part}
        after = query.get("updated_after")
        with self.data.lock:
            if name == "deletions":
                items = [
                    d for d in self.data.deletions if not after or d["updated_at"]["date"] > after
                ]
                return self._page(path, query, copy.deepcopy(items), name)
            builders = {
                "students": self.data.student,
                "employees": self.data.employee,
                "classes": self.data.klass,
                "contacts": self.data.contact,
            }
            if name not in builders:
                return 404, {}, {"error": "not found"}
            listing = self.data.listing(name)
            items = [
                builders[name](obj_id, includes)
                for obj_id in listing
                if not after or listing[obj_id]["updated_at"]["date"] > after
            ]
            if name in self.shifts and self.shifts[name][0] <= self._served.get(name, 0):
                # A record put first after the listing began: the rest move back one.
                items.insert(0, copy.deepcopy(self.shifts[name][1]))
            status, headers, body = self._page(path, query, items, name)
            self._served[name] = self._served.get(name, 0) + 1
            return status, headers, body

    def _page(
        self, path: str, query: dict[str, str], items: list[dict[str, Any]], name: str
    ) -> tuple[int, dict, Any]:
        per_page = int(query.get("per_page", 50))
        page = int(query.get("page", 1))
        chosen = items[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(items)

        def link(number: int) -> str:
            return f"{self.base_url}{path}?{urlencode({**query, 'page': number})}"

        meta = {
            "pagination": {
                "next": link(page + 1) if more else None,
                "previous": link(page - 1) if page > 1 else None,
                "more": more,
                "per_page": per_page,
                "current_page": page,
            }
        }
        return 200, {}, {"data": chosen, "meta": meta}


def _handler_for(server: WondeServer) -> type[BaseHTTPRequestHandler]:
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
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
