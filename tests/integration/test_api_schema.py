"""Property-based tests of the admin API from its own OpenAPI document (schemathesis).

The local server serves the document; the schemathesis CLI reads it, generates valid and
invalid requests for every operation and checks that none is answered with a 5xx
(``not_a_server_error``). Requests carry an admin token of one tenant and that tenant in
the path (other tenants are refused before any route runs, which would leave the routes
untested); ``run`` is a prepared run of that tenant, so the review routes run their real
code on generated bodies. Bounded to a few examples per operation (about 200 requests),
to stay under a minute; run the CLI by hand with more for a deeper search.

The CLI rather than schemathesis' pytest plugin: the plugin's lazy schema (needed to
read the document from a server a fixture starts) does not work with pytest 9.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rostersync.application.runs import begin_run
from rostersync.local.launcher import LocalCloudLauncher
from tests.integration.test_api import Api, NoLaunch, api, wait_for_status  # noqa: F401

pytest.importorskip("schemathesis")

TENANT = "fuzz-t"
EXAMPLES_PER_OPERATION = 10
#: A guard, not a budget (``--max-time`` would repeat fuzzing until it is spent).
TIME_LIMIT_SECONDS = 120


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_no_request_is_answered_with_a_server_error(api: Api, tmp_path: Path) -> None:  # noqa: F811
    api.tenant(TENANT)
    started = begin_run(
        api.deps,
        api.locks(),
        LocalCloudLauncher(api.cloud),
        TENANT,
        api.upload(TENANT),
        trigger="api",
        review=True,
    )
    prepared = wait_for_status(api, TENANT, started.run_id)
    assert prepared["run"]["status"] == "prepared", prepared["run"]
    # Another run that stays running: generated sync-now requests get 409, not new runs.
    begin_run(api.deps, api.locks(), NoLaunch(), TENANT, api.upload(TENANT), trigger="api")

    token = api.token(TENANT, "admin", ttl=3600)["Authorization"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"headers = {{ Authorization = {_toml_string(token)} }}\n"
        "[parameters]\n"
        f'"path.tenant" = {_toml_string(TENANT)}\n'
        f'"path.run" = {_toml_string(started.run_id)}\n'
        "[generation]\n"
        'mode = "all"\n'
        f"max-examples = {EXAMPLES_PER_OPERATION}\n"
        "deterministic = true\n"
        'database = "none"\n'
        "[phases.stateful]\n"
        "enabled = false\n"
    )
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{api.server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--workers",
        "1",
        # The coverage phase's boundary cases (~900 requests) would take over a minute;
        # fuzzing in mode "all" still sends invalid data to every operation.
        "--phases",
        "examples,fuzzing",
        "--request-timeout",
        "20",
    ]

    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIME_LIMIT_SECONDS, cwd=tmp_path
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
