"""The command starts itself again with glibc's heaps limited, unless a limit is set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc, /proc")

# What the process was started with (/proc/self/environ), not what it set since.
_PROBE = """
from rostersync.entry import few_malloc_arenas
few_malloc_arenas()
started_with = open("/proc/self/environ", "rb").read().split(b"\\0")
print([v.decode() for v in started_with if v.startswith(b"MALLOC_ARENA_MAX=")])
"""


def _started_with(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_command_starts_again_with_two_malloc_heaps() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _started_with(env) == "['MALLOC_ARENA_MAX=2']"


def test_a_limit_the_user_set_is_kept() -> None:
    env = {**os.environ, "MALLOC_ARENA_MAX": "6"}
    assert _started_with(env) == "['MALLOC_ARENA_MAX=6']"
