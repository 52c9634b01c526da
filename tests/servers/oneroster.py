"""A local OneRoster 1.1 / 1.2 REST server for tests, after the two OpenAPI documents in
``shared/data/oneroster-rest``: real HTTP on 127.0.0.1 (port 0) under a base path of the
test's choosing (ClassLink's ``/{appId}/ims/oneroster/v1p1``, 1EdTech's
``/ims/oneroster/rostering/v1p2``), the collections' envelopes (``{"users": [...]}``),
``limit``/``offset`` with ``X-Total-Count`` (1.2 adds ``Link`` first/prev/next/last),
``filter`` on ``dateLastModified`` and ``status``, and ``imsx_StatusInfo`` errors.

Auth is one of: OAuth 2.0 client credentials (a token endpoint issuing bearer tokens the
API then checks), OAuth 1.0a signatures checked with ``oauthlib``'s own endpoint (the
library the client signs with), or a fixed bearer key (ClassLink's proxy). Failures can
be ordered (``fail``), a listing can shift under paging (``shift``), and
``oneroster_sample`` gives a small district in either version's shapes.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from oauthlib import oauth1
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

COLLECTIONS = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "enrollments",
    "demographics",
)
_FILTER = re.compile(r"^\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*'([^']*)'\s*$")


@dataclass
class Failure:
    """An answer to give instead of the real one, ``times`` times, to collections
    starting with ``path`` (None: any); ``after`` matching requests are answered first."""

    status: int
    times: int = 1
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0


@dataclass
class Shift:
    """Once ``after_pages`` pages of ``collection`` have been served, put ``record`` at
    the front of the listing (moved there if listed already): the records before its old
    place move one place back."""

    collection: str
    record: dict[str, Any]
    after_pages: int = 1


def _status_info(code_minor: str, description: str) -> dict[str, Any]:
    return {
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [
                {
                    "imsx_codeMinorFieldName": "TargetEndSystem",
                    "imsx_codeMinorFieldValue": code_minor,
                }
            ]
        },
    }


class _Validator(RequestValidator):  # type: ignore[misc]
    """oauthlib's signature checks for one consumer key and secret."""

    def __init__(self, key: str, secret: str) -> None:
        super().__init__()
        self.key = key
        self.secret = secret
        self.nonces: set[tuple[str, str]] = set()

    enforce_ssl = False
    allowed_signature_methods = (oauth1.SIGNATURE_HMAC_SHA1, oauth1.SIGNATURE_HMAC_SHA256)

    @property
    def dummy_client(self) -> str:
        return "dummy-client"

    def check_client_key(self, client_key: str) -> bool:
        return bool(client_key)

    def check_nonce(self, nonce: str) -> bool:
        return bool(nonce)

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return bool(client_key == self.key)

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.secret if client_key == self.key else "dummy-secret"

    def validate_timestamp_and_nonce(
        self, client_key: str, timestamp: str, nonce: str, request: Any, **kwargs: Any
    ) -> bool:
        if (timestamp, nonce) in self.nonces:
            return False
        self.nonces.add((timestamp, nonce))
        return True


class OneRosterServer:
    """Serves ``data`` (collection → objects in listing order) on 127.0.0.1."""

    def __init__(
        self,
        data: dict[str, list[dict[str, Any]]],
        *,
        version: str = "1.1",
        base_path: str = "/ims/oneroster/v1p1",
        auth: str = "oauth2",
        client_id: str = "client-1",
        client_secret: str = "secret-1",
        token_lifetime: int = 3600,
        token_path: str = "/oauth/token",
        links: bool | None = None,
        total_count: bool = True,
        max_limit: int | None = None,
        filters: bool = True,
    ) -> None:
        self.data = {name: [copy.deepcopy(o) for o in data.get(name, [])] for name in COLLECTIONS}
        self.version = version
        self.base_path = base_path.rstrip("/")
        self.auth = auth
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.token_path = token_path
        self.links = version == "1.2" if links is None else links
        self.total_count = total_count
        self.max_limit = max_limit
        self.filters = filters
        self.failures: list[Failure] = []
        self.shifts: list[Shift] = []
        self.tokens: set[str] = set()
        self.token_requests = 0
        #: OAuth 1.0a signatures refused.
        self.refused_signatures = 0
        #: (path, query) of every API request, in order.
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.RLock()
        self._validator = _Validator(client_id, client_secret)
        self._endpoint = SignatureOnlyEndpoint(self._validator)
        self._served_pages: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None

    # -------------------------------------------------------------- control

    @property
    def origin(self) -> str:
        assert self._server is not None, "the server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path

    @property
    def token_url(self) -> str:
        return self.origin + self.token_path

    def fail(self, status: int, **kwargs: Any) -> Failure:
        failure = Failure(status, **kwargs)
        self.failures.append(failure)
        return failure

    def shift(self, collection: str, record: dict[str, Any], after_pages: int = 1) -> None:
        self.shifts.append(Shift(collection, copy.deepcopy(record), after_pages))

    def put(self, collection: str, obj: dict[str, Any]) -> None:
        """Create or replace a record (at the end of the listing if new)."""
        with self.lock:
            items = self.data[collection]
            for i, item in enumerate(items):
                if item["sourcedId"] == obj["sourcedId"]:
                    items[i] = copy.deepcopy(obj)
                    return
            items.append(copy.deepcopy(obj))

    def remove(self, collection: str, sourced_id: str) -> dict[str, Any]:
        """Take a record out (as a server that deletes without a tombstone does)."""
        with self.lock:
            items = self.data[collection]
            index = next(i for i, o in enumerate(items) if o["sourcedId"] == sourced_id)
            return items.pop(index)

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def api_paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def __enter__(self) -> OneRosterServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -------------------------------------------------------------- auth

    def issue_token(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.token_requests += 1
            client_id, secret = form.get("client_id"), form.get("client_secret")
            basic = headers.get("authorization", "")
            if basic.startswith("Basic "):
                decoded = base64.b64decode(basic[6:]).decode()
                client_id, _, secret = decoded.partition(":")
            if form.get("grant_type") != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}
            if client_id != self.client_id or secret != self.client_secret:
                return 401, {"error": "invalid_client"}
            token = f"token-{self.token_requests:04d}-{time.monotonic_ns()}"
            self.tokens.add(token)
            return 200, {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": form.get("scope", ""),
            }

    def _authorized(self, method: str, url: str, headers: dict[str, str]) -> bool:
        header = headers.get("authorization", "")
        if self.auth == "oauth2":
            return header.startswith("Bearer ") and header[7:] in self.tokens
        if self.auth == "bearer":
            return header == f"Bearer {self.client_secret}"
        with self.lock:
            valid, _ = self._endpoint.validate_request(
                url, http_method=method, headers={"Authorization": header}
            )
            if not valid:
                self.refused_signatures += 1
            return bool(valid)

    # -------------------------------------------------------------- answering

    def _failure_for(self, collection: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.times > 0 and (
                    failure.path is None or collection.startswith(failure.path)
                ):
                    if failure.after > 0:
                        failure.after -= 1
                        continue
                    failure.times -= 1
                    return failure
        return None

    def answer(
        self, method: str, url: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if not path.startswith(self.base_path + "/"):
            return 404, {}, _status_info("unknownobject", "no such path")
        collection = path[len(self.base_path) + 1 :]
        with self.lock:
            self.requests.append((collection, query))
        if not self._authorized(method, url, headers):
            return 401, {}, _status_info("unauthorisedrequest", "not authorized")
        failure = self._failure_for(collection)
        if failure is not None:
            info = "server_busy" if failure.status == 429 else "forbidden"
            return failure.status, failure.headers, _status_info(info, "failure")
        if collection not in COLLECTIONS:
            return 404, {}, _status_info("unknownobject", "no such collection")
        return self._listing(collection, query, path)

    def _listing(
        self, collection: str, query: dict[str, str], path: str
    ) -> tuple[int, dict[str, str], Any]:
        try:
            limit = int(query.get("limit", 100))
            offset = int(query.get("offset", 0))
        except ValueError:
            return 400, {}, _status_info("invalid_data", "limit and offset are numbers")
        if self.max_limit is not None:
            limit = min(limit, self.max_limit)
        with self.lock:
            items = self.data[collection]
            if "filter" in query:
                match = _FILTER.match(query["filter"]) if self.filters else None
                if match is None or match[1] not in ("dateLastModified", "status"):
                    return 400, {}, _status_info("invalid_filter_field", "bad filter")
                items = [o for o in items if _compare(o.get(match[1]), match[2], match[3])]
            page = copy.deepcopy(items[offset : offset + limit])
            total = len(items)
            self._served_pages[collection] = self._served_pages.get(collection, 0) + 1
            for shift in list(self.shifts):
                if (
                    shift.collection == collection
                    and self._served_pages[collection] >= shift.after_pages
                ):
                    listed = self.data[collection]
                    listed[:] = [o for o in listed if o["sourcedId"] != shift.record["sourcedId"]]
                    listed.insert(0, shift.record)
                    self.shifts.remove(shift)
        headers: dict[str, str] = {}
        if self.total_count:
            headers["X-Total-Count"] = str(total)
        if self.links:
            headers["Link"] = self._links(path, query, offset, limit, total)
        return 200, headers, {collection: page}

    def _links(self, path: str, query: dict[str, str], offset: int, limit: int, total: int) -> str:
        def link(at: int, rel: str) -> str:
            params = {**query, "offset": str(at), "limit": str(limit)}
            return f'<{self.origin}{path}?{urlencode(params)}>; rel="{rel}"'

        last = max(0, ((total - 1) // limit) * limit) if total else 0
        found = [link(0, "first"), link(last, "last")]
        if offset + limit < total:
            found.append(link(offset + limit, "next"))
        if offset > 0:
            found.append(link(max(0, offset - limit), "prev"))
        return ", ".join(found)


def _compare(value: Any, op: str, wanted: str) -> bool:
    text = "" if value is None else str(value)
    if op == "=":
        return text == wanted
    if op == "!=":
        return text != wanted
    # ISO-8601 UTC stamps of one format compare as text.
    left, right = text.replace("+00:00", "Z"), wanted
    return {
        ">": left > right,
        ">=": left >= right,
        "<": left < right,
        "<=": left <= right,
    }[op]


def _handler_for(server: OneRosterServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
            content = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def do_GET(self) -> None:
            url = f"http://{self.headers.get('Host')}{self.path}"
            self._send(*server.answer("GET", url, self._headers()))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if urlsplit(self.path).path != server.token_path:
                self._send(404, {}, {"error": "not found"})
                return
            form = {k: v[-1] for k, v in parse_qs(raw).items()}
            status, body = server.issue_token(self._headers(), form)
            self._send(status, {}, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# ---------------------------------------------------------------------- sample data

STAMP = "2025-09-01T08:00:00Z"


def _ref(kind: str, sourced_id: str, base: str = "") -> dict[str, str]:
    return {"href": f"{base}/{kind}s/{sourced_id}", "sourcedId": sourced_id, "type": kind}


def oneroster_sample(version: str = "1.1", students: int = 24) -> dict[str, list[dict[str, Any]]]:
    """A district with two schools, a year of two terms, two courses, three classes,
    three teachers, ``students`` students (two of them with a parent) and their
    demographics, in OneRoster ``version``'s JSON shapes."""
    v12 = version == "1.2"

    def flag(value: bool) -> Any:
        return ("true" if value else "false") if v12 else value

    def base(sourced_id: str) -> dict[str, Any]:
        return {"sourcedId": sourced_id, "status": "active", "dateLastModified": STAMP}

    orgs = [
        {**base("dist1"), "name": "Lakeside District", "type": "district", "identifier": "D-1"},
        {
            **base("sch1"),
            "name": "Lakeside High",
            "type": "school",
            "identifier": "S-1",
            "parent": _ref("org", "dist1"),
            "metadata": {"ext_region": "north"},
        },
        {
            **base("sch2"),
            "name": "Lakeside Middle",
            "type": "school",
            "identifier": "S-2",
            "parent": _ref("org", "dist1"),
        },
    ]
    sessions = [
        {
            **base("y2026"),
            "title": "2025-2026",
            "type": "schoolYear",
            "startDate": "2025-08-15",
            "endDate": "2026-06-15",
            "schoolYear": "2026",
        },
        {
            **base("t1"),
            "title": "Fall",
            "type": "term",
            "startDate": "2025-08-15",
            "endDate": "2025-12-20",
            "parent": _ref("academicSession", "y2026"),
            "schoolYear": "2026",
        },
        {
            **base("t2"),
            "title": "Spring",
            "type": "term",
            "startDate": "2026-01-05",
            "endDate": "2026-06-15",
            "parent": _ref("academicSession", "y2026"),
            "schoolYear": "2026",
        },
    ]
    courses = [
        {
            **base("crs-math"),
            "title": "Algebra I",
            "courseCode": "MATH1",
            "grades": ["09"],
            "subjects": ["Mathematics"],
            "schoolYear": _ref("academicSession", "y2026"),
            "org": _ref("org", "sch1"),
        },
        {
            **base("crs-eng"),
            "title": "English 7",
            "courseCode": "ENG7",
            "grades": ["07"],
            "org": _ref("org", "sch2"),
        },
    ]
    classes = [
        {
            **base("cls-m1"),
            "title": "Algebra I - P1",
            "classCode": "M1-P1",
            "classType": "scheduled",
            "location": "Room 101",
            "grades": ["09"],
            "course": _ref("course", "crs-math"),
            "school": _ref("org", "sch1"),
            "terms": [_ref("academicSession", "t1")],
            "periods": ["1"],
        },
        {
            **base("cls-m2"),
            "title": "Algebra I - P2",
            "classCode": "M1-P2",
            "classType": "scheduled",
            "course": _ref("course", "crs-math"),
            "school": _ref("org", "sch1"),
            "terms": [_ref("academicSession", "t1"), _ref("academicSession", "t2")],
            "periods": ["2"],
        },
        {
            **base("cls-e1"),
            "title": "English 7 - Homeroom",
            "classType": "homeroom",
            "course": _ref("course", "crs-eng"),
            "school": _ref("org", "sch2"),
            "terms": [_ref("academicSession", "t2")],
        },
    ]

    def user(
        sourced_id: str,
        given: str,
        family: str,
        role: str,
        school: str,
        *,
        grade: str | None = None,
        agents: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {
            **base(sourced_id),
            "username": f"{given.lower()}.{family.lower()}",
            "userIds": [{"type": "sis", "identifier": f"SIS-{sourced_id}"}],
            "enabledUser": flag(True),
            "givenName": given,
            "familyName": family,
            "identifier": f"ID-{sourced_id}",
            "email": f"{given.lower()}.{family.lower()}@lakeside.example",
            "agents": [_ref("user", a) for a in agents],
            "grades": [grade] if grade else [],
            "password": "hunter2-never-kept",
        }
        if v12:
            obj["roles"] = [
                {"roleType": "primary", "role": role, "org": _ref("org", school)},
            ]
            if role == "teacher":
                obj["roles"].append(
                    {"roleType": "secondary", "role": "teacher", "org": _ref("org", "dist1")}
                )
            obj["primaryOrg"] = _ref("org", school)
            obj["userMasterIdentifier"] = f"UMI-{sourced_id}"
            if role == "student":
                obj["preferredFirstName"] = given[:3]
        else:
            obj["role"] = role
            obj["orgs"] = [_ref("org", school)] + (
                [_ref("org", "dist1")] if role == "teacher" else []
            )
        return obj

    first_names = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
    users = [
        user("tch1", "Maria", "Lopez", "teacher", "sch1"),
        user("tch2", "Sam", "Okafor", "teacher", "sch1"),
        user("tch3", "Ruth", "Stein", "teacher", "sch2"),
    ]
    student_ids = []
    for n in range(students):
        sid = f"stu{n:03d}"
        student_ids.append(sid)
        school = "sch1" if n % 3 else "sch2"
        agents = ("par1",) if n == 0 else ("par2",) if n == 1 else ()
        users.append(
            user(
                sid,
                first_names[n % len(first_names)],
                f"Family{n:02d}",
                "student",
                school,
                grade="09" if school == "sch1" else "07",
                agents=agents,
            )
        )
    users.append(user("par1", "Petra", "Family00", "parent", "sch2", agents=("stu000",)))
    users.append(user("par2", "Paul", "Family01", "guardian", "sch1", agents=("stu001",)))

    enrollments = []

    def enroll(klass: str, school: str, user_id: str, role: str, primary: bool | None) -> None:
        obj: dict[str, Any] = {
            **base(f"enr-{klass}-{user_id}"),
            "class": _ref("class", klass),
            "school": _ref("org", school),
            "user": _ref("user", user_id),
            "role": role,
        }
        if primary is not None:
            obj["primary"] = flag(primary)
        if role == "student":
            obj["beginDate"] = "2025-08-15"
        enrollments.append(obj)

    enroll("cls-m1", "sch1", "tch1", "teacher", True)
    enroll("cls-m1", "sch1", "tch2", "teacher", False)
    enroll("cls-m2", "sch1", "tch2", "teacher", True)
    enroll("cls-e1", "sch2", "tch3", "teacher", True)
    for n, sid in enumerate(student_ids):
        if n % 3:
            enroll("cls-m1" if n % 2 else "cls-m2", "sch1", sid, "student", None)
        else:
            enroll("cls-e1", "sch2", sid, "student", None)

    demographics = []
    for n, sid in enumerate(student_ids[: max(1, students // 2)]):
        demographics.append(
            {
                **base(sid),
                "birthDate": f"{2010 + n % 3}-0{1 + n % 9}-1{n % 10}",
                "sex": "female" if n % 2 else "male",
                "asian": flag(n % 4 == 0),
                "white": flag(n % 4 == 1),
                "hispanicOrLatinoEthnicity": flag(n % 5 == 0),
                "cityOfBirth": "Springfield",
            }
        )
    return {
        "orgs": orgs,
        "academicSessions": sessions,
        "courses": courses,
        "classes": classes,
        "users": users,
        "enrollments": enrollments,
        "demographics": demographics,
    }
