"""``rostersync serve`` end to end: a bundle uploaded with a real SFTP client is synced,
reviewed and committed through the HTTP API; SFTP users stay inside their tenant's inbox."""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from rostersync.api.tokens import issue_token
from rostersync.application.sync import ensure_tenant
from rostersync.application.tenants import save_tenant_settings
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.local.serve import ServeAddresses, serve
from rostersync.local.sftp import HOST_KEY_FILE, USERS_FILE, sftp_user_add
from rostersync.pipeline.deps import build_deps
from rostersync.settings import TenantSettings

LEPO = Path(__file__).resolve().parents[3] / "shared" / "data" / "oneroster" / "lepo-en-1.1"
HOST = "127.0.0.1"
T1_PASSWORD = "correct horse battery staple"
T2_PASSWORD = "another one entirely"
T3_PASSWORD = "a third tenant's own"
T3_KEY = asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServeAddresses]]:
    """Tenants t1 (review before commit) and t2, an SFTP user each, and ``serve`` running
    on free ports in a thread."""
    state = tmp_path_factory.mktemp("serve") / "state"
    with LocalCloud(state):
        deps = build_deps(stack_settings())
        ensure_tenant(deps, "t1", create=True)
        ensure_tenant(deps, "t2", create=True)
        ensure_tenant(deps, "t3", create=True)
        save_tenant_settings(deps, "t1", TenantSettings(auto_commit=False), who="test")
    sftp_user_add(state, "t1", "t1-sis", password=T1_PASSWORD)
    sftp_user_add(state, "t2", "t2-sis", password=T2_PASSWORD)
    sftp_user_add(state, "t3", "t3-sis", password=T3_PASSWORD)
    # As ssh-keygen writes it: with a comment, which no client sends when offering it.
    commented = T3_KEY.export_public_key().decode().strip() + " robot@district-laptop\n"
    sftp_user_add(state, "t3", "t3-robot", public_key=commented)

    ready: list[ServeAddresses] = []
    started = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    def on_ready(addresses: ServeAddresses) -> None:
        ready.append(addresses)
        started.set()

    def run() -> None:
        try:
            serve(state, 0, 0, host=HOST, stop_event=stop, on_ready=on_ready)
        except BaseException as exc:
            failures.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="serve", daemon=True)
    thread.start()
    assert started.wait(60), "serve did not start"
    if failures:
        raise failures[0]
    try:
        yield state, ready[0]
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert not failures, failures


def sftp_session(port: int, username: str, **credentials: Any) -> Any:
    return asyncssh.connect(
        HOST, port, username=username, known_hosts=None, agent_path=None, **credentials
    )


async def upload_bundle(port: int) -> None:
    async with (
        sftp_session(port, "t1-sis", password=T1_PASSWORD, client_keys=None) as conn,
        conn.start_sftp_client() as sftp,
    ):
        await sftp.mkdir("lepo")
        files = sorted(str(p) for p in LEPO.glob("*.csv"))
        await sftp.put(files, "lepo/")
        names = await sftp.listdir("lepo")
    assert set(names) >= {p.name for p in LEPO.glob("*.csv")}


def wait_for_run(http: httpx.Client, status: str, timeout: float = 45.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get("/tenants/t1/runs")
        assert response.status_code == 200, response.text
        runs = response.json()["runs"]
        if runs and runs[0]["status"] == status:
            return dict(runs[0])
        assert not runs or runs[0]["status"] in {"running", "committing"}, runs[0]
        assert time.monotonic() < deadline, f"no {status} run after {timeout} s: {runs}"
        time.sleep(0.25)


def test_an_sftp_upload_is_synced_then_reviewed_and_committed_over_the_api(
    served: tuple[Path, ServeAddresses],
) -> None:
    state, addresses = served
    assert addresses.api_port is not None, "the API is not being served"

    asyncio.run(upload_bundle(addresses.sftp_port))

    token = issue_token(state, "t1", "admin", 600)
    with httpx.Client(
        base_url=f"http://{HOST}:{addresses.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        run = wait_for_run(http, "prepared")
        assert (run["trigger"], run["source_key"]) == ("inbox", "inbox/t1/lepo/")

        actions = http.get(f"/tenants/t1/runs/{run['run_id']}/actions")
        assert actions.status_code == 200, actions.text
        committed = http.post(f"/tenants/t1/runs/{run['run_id']}/commit")
        assert committed.status_code == 202, committed.text
        assert committed.json()["status"] == "committing"
        assert wait_for_run(http, "committed")["run_id"] == run["run_id"]

        users = http.get("/tenants/t1/directory/users", params={"limit": 100})
        assert users.status_code == 200, users.text
        assert len(users.json()["items"]) == 20
        runs = http.get("/tenants/t1/runs").json()["runs"]
        assert len(runs) == 1  # one bundle of seven files: one run


def test_an_sftp_user_stays_inside_its_tenants_inbox(
    served: tuple[Path, ServeAddresses],
) -> None:
    _, addresses = served

    async def scenario() -> None:
        async with (
            sftp_session(addresses.sftp_port, "t2-sis", password=T2_PASSWORD) as conn2,
            conn2.start_sftp_client() as t2,
        ):
            async with t2.open("t2-notes.csv", "wb") as fh:
                await fh.write(b"a,b\n")
            async with (
                sftp_session(addresses.sftp_port, "t1-sis", password=T1_PASSWORD) as conn1,
                conn1.start_sftp_client() as t1,
            ):
                assert await t1.realpath("..") == "/"
                assert await t1.realpath("/../../inbox") == "/inbox"
                assert "t2-notes.csv" not in await t1.listdir("/")
                assert "t2-notes.csv" not in await t1.listdir("/..")
                assert not await t1.exists("../t2/t2-notes.csv")
                assert not await t1.exists("/../t2/t2-notes.csv")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await t1.stat("../../inbox/t2/t2-notes.csv")

                # Writing "above" the root lands inside t1's own inbox, never in t2's.
                async with t1.open("../t2/evil.csv", "wb") as fh:
                    await fh.write(b"x\n")
                assert await t1.exists("/t2/evil.csv")
                with pytest.raises(asyncssh.SFTPError):
                    await t1.symlink("/t2/evil.csv", "link.csv")
            assert "evil.csv" not in await t2.listdir("/")
            assert await t2.listdir("/") == [".", "..", "t2-notes.csv"]

    asyncio.run(scenario())


def test_logins_need_the_right_password_or_a_registered_key(
    served: tuple[Path, ServeAddresses],
) -> None:
    state, addresses = served
    port = addresses.sftp_port
    key = asyncssh.generate_private_key("ssh-ed25519")
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    sftp_user_add(state, "t1", "t1-robot", public_key=key.export_public_key().decode())

    async def scenario() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with sftp_session(port, "t1-sis", password="wrong", client_keys=None):
                pass
        with pytest.raises(asyncssh.PermissionDenied):
            async with sftp_session(port, "nobody", password=T1_PASSWORD, client_keys=None):
                pass
        with pytest.raises(asyncssh.PermissionDenied):
            async with sftp_session(port, "t1-robot", client_keys=[stranger]):
                pass
        async with (
            sftp_session(port, "t1-robot", client_keys=[key]) as conn,
            conn.start_sftp_client() as sftp,
        ):
            assert await sftp.realpath(".") == "/"

    asyncio.run(scenario())

    users = (state / USERS_FILE).read_text()
    assert T1_PASSWORD not in users and "scrypt" in users
    for secret in (state / USERS_FILE, state / HOST_KEY_FILE):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_rejected_upload_is_told_to_the_client_and_moved_to_rejected(
    served: tuple[Path, ServeAddresses],
) -> None:
    """Given a file the inbox cannot take, when uploaded with an SFTP client, then the
    client gets a status message saying why and where it went, and the file has left the
    listing for ``rejected/``, its reason beside it."""
    _, addresses = served

    async def scenario() -> None:
        async with (
            sftp_session(addresses.sftp_port, "t3-sis", password=T3_PASSWORD) as conn,
            conn.start_sftp_client() as sftp,
        ):
            with pytest.raises(asyncssh.SFTPError) as refused:
                async with sftp.open("setup.exe", "wb") as fh:
                    await fh.write(b"MZ")
            message = refused.value.reason
            assert "setup.exe was rejected: not a bundle file (.csv or .zip)" in message
            assert "moved to /rejected/setup.exe" in message
            assert "setup.exe" not in await sftp.listdir("/")
            assert "rejected" in await sftp.listdir("/")
            assert {"setup.exe", "setup.exe.reason.txt"} <= set(await sftp.listdir("rejected"))
            async with sftp.open("rejected/setup.exe.reason.txt", "rb") as fh:
                reason = (await fh.read()).decode()
            assert reason.startswith("setup.exe was not synced: not a bundle file")

            with pytest.raises(asyncssh.SFTPError) as unnamed:
                async with sftp.open("日本.zip", "wb") as fh:
                    await fh.write(b"PK")
            assert "cannot be stored" in unnamed.value.reason
            assert unnamed.value.reason != "Failure"

    asyncio.run(scenario())


def test_a_bundle_named_like_a_copy_is_accepted_over_sftp(
    served: tuple[Path, ServeAddresses], tmp_path: Path
) -> None:
    """Given ``my bundle (1).zip``, when put with OpenSSH's own sftp client, then the
    upload succeeds (no bare "Failure"), the file is listed as ``my_bundle_1.zip`` and
    its run commits."""
    state, addresses = served
    sftp_binary = shutil.which("sftp")
    if sftp_binary is None:
        pytest.fail("OpenSSH's sftp client is not installed")
    bundle = tmp_path / "my bundle (1).zip"
    shutil.copy(LEPO / "oneroster.zip", bundle)
    key = tmp_path / "id_ed25519"
    T3_KEY.write_private_key(str(key))
    key.chmod(0o600)
    batch = tmp_path / "batch"
    batch.write_text(f'put "{bundle}"\nls -1\n')

    done = subprocess.run(
        [
            sftp_binary,
            "-b",
            str(batch),
            "-i",
            str(key),
            "-P",
            str(addresses.sftp_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            f"t3-robot@{HOST}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Failure" not in done.stdout + done.stderr
    assert "my_bundle_1.zip" in done.stdout
    token = issue_token(state, "t3", "viewer", 600)
    with httpx.Client(
        base_url=f"http://{HOST}:{addresses.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        deadline = time.monotonic() + 45
        while True:
            runs = http.get("/tenants/t3/runs").json()["runs"]
            if runs and runs[0]["status"] == "committed":
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.25)
    assert runs[0]["source_key"] == "inbox/t3/my_bundle_1.zip"
