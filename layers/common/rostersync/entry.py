"""The ``rostersync`` command's entry point: the process's memory settings, then the CLI.

glibc's malloc gives each thread that allocates a heap of its own (up to eight per core)
and keeps what a thread frees in its heap. The commit's chunks and the local
Distributed Maps run in threads: a 100k-student first sync's peak RSS ranged from 1.4 to
2.2 GB with the same input and code, and was 1.29 GB in each run with two heaps. glibc
reads the limit (``MALLOC_ARENA_MAX``) when a process starts, so the command starts
itself again, once, with it set (a limit the user set is kept). Lambda's functions get
the same limit from template.yaml.
"""

from __future__ import annotations

import os
import sys

#: Heaps glibc's malloc keeps, as the functions on Lambda do (template.yaml).
MALLOC_ARENAS = "2"


def few_malloc_arenas() -> None:
    """Start this process again with ``MALLOC_ARENA_MAX`` set, unless it is set (then
    return). Where the process cannot be started again, carry on as it is."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return
    os.environ["MALLOC_ARENA_MAX"] = MALLOC_ARENAS
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:
        return


def main() -> int:
    few_malloc_arenas()
    from rostersync.cli import main as run

    return run()
