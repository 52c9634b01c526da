"""The console in a real browser: a served API on 127.0.0.1 (state in a temporary folder)
and Debian's Chromium, headless, driven by Playwright.

One stack, one server and one browser per test module; each test works in tenants of its
own and gets a fresh browser context (no shared sessionStorage). Bundles reach a tenant's
inbox the way the SFTP drop box puts them there: as objects under ``inbox/{tenant}/``.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rostersync.api.local_http import LocalApiServer, make_server
from rostersync.api.tokens import issue_token
from rostersync.application.matching import import_app_records
from rostersync.application.sync import ensure_tenant
from rostersync.config import stack_settings
from rostersync.existing_app import ExistingApp, build_existing_app
from rostersync.generator import generate_district
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import Deps, build_deps
from tests.bundles import ONEROSTER

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
#: What Chromium needs on this machine: no sandbox as root, no GPU, and none of its own
#: network traffic (the closed network refuses it). Playwright gives every launch a new
#: empty profile directory.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
LEPO = ONEROSTER / "lepo-en-1.1"
BUSY = {"running", "committing"}


def zipped(folder: Path) -> bytes:
    """A folder's files as one zip, as a district's SIS exports them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix == ".csv":
                archive.write(path, path.name)
    return buffer.getvalue()


@dataclass
class Stack:
    """The served API, the stack behind it, and ways to set tenants up."""

    cloud: LocalCloud
    deps: Deps
    server: LocalApiServer
    state: Path
    http: httpx.Client
    shots: Path

    @property
    def console(self) -> str:
        return f"{self.server.url}/console/"

    def token(self, tenant: str | None, role: str = "admin") -> str:
        return issue_token(self.state, tenant, role, 900)

    def headers(self, tenant: str, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant, role)}"}

    def tenant(self, name: str) -> str:
        ensure_tenant(self.deps, name, create=True)
        return name

    def drop(self, tenant: str, folder: Path, name: str = "oneroster.zip") -> str:
        """Put a bundle in the tenant's inbox, as an SFTP upload would."""
        key = f"inbox/{tenant}/{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}/{name}"
        self.deps.store.put_bytes(key, zipped(folder))
        return key

    def import_app(self, tenant: str, app: ExistingApp) -> None:
        result = import_app_records(self.deps, tenant, app.path.read_text(), "test")
        assert result["issues"] == []

    def sync(self, tenant: str, *, review: bool, source_key: str | None = None) -> dict[str, Any]:
        """Sync now through the API and wait for the run to settle."""
        body: dict[str, Any] = {"review": review}
        if source_key:
            body["source_key"] = source_key
        started = self.http.post(f"/tenants/{tenant}/runs", json=body, headers=self.headers(tenant))
        assert started.status_code == 202, started.text
        return self.wait(tenant, started.json()["run_id"])

    def sign_in(self, page: Any, tenant: str, role: str = "admin") -> None:
        """Open the link ``rostersync token --console URL`` prints, and land on Status."""
        page.goto(f"{self.console}#token={self.token(tenant, role)}")
        page.get_by_role("heading", name="Status", level=1).wait_for()

    def wait(self, tenant: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.http.get(f"/tenants/{tenant}/runs/{run_id}", headers=self.headers(tenant))
            assert shown.status_code == 200, shown.text
            run: dict[str, Any] = shown.json()["run"]
            if run["status"] not in BUSY:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
            time.sleep(0.1)


@pytest.fixture(scope="session")
def district(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExistingApp]:
    """A generated district and the app's own records for it (some with typos)."""
    folder = tmp_path_factory.mktemp("district")
    generate_district(folder / "day1", students=60, seed=7)
    # Enough records with two slips that the matcher, which learns the app's typing
    # habits, still leaves some of them to an admin.
    app = build_existing_app(
        folder / "day1", folder / "app.csv", seed=5, typo_share=0.3, doubtful_share=0.6
    )
    return folder / "day1", app


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not LEPO.is_dir():
        pytest.fail(f"shared test data not found at {LEPO}")
    state = tmp_path_factory.mktemp("console") / "state"
    shots = tmp_path_factory.mktemp("screenshots")
    with LocalCloud(state) as cloud:
        deps = build_deps(stack_settings())
        server = make_server(
            "127.0.0.1", 0, state_dir=state, deps=deps, launcher=LocalCloudLauncher(cloud)
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                yield Stack(cloud, deps, server, state, http, shots)
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with playwright_sync.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageErrors:
    """What went wrong inside the page: uncaught exceptions and console errors."""

    messages: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context at laptop width; fails the test on any script error in the page."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors = PageErrors()
    opened.on("pageerror", lambda exc: errors.messages.append(f"pageerror: {exc}"))
    opened.on(
        "console",
        lambda msg: (
            errors.messages.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    yield opened
    context.close()
    assert errors.messages == []
