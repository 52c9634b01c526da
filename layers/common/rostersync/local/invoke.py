"""One Lambda invocation in a process of its own, as Lambda runs it.

The local runtime runs handlers in its own process by default (threads for a Map
state's items). With ``LOCAL_INVOKE=process`` it starts this module for each invocation
instead: the request (the function's code folder, handler, context fields and the
event) comes on stdin as JSON, and one JSON line goes to stdout: the response body,
whether it is a function error, and the peak memory of this process, which is then that
one invocation's (as Lambda's "Max Memory Used"). The environment is the runtime's,
inherited: the embedded store's folder, the tables' names, the settings, and the
runtime's folder for temporary files (``LOCAL_SCRATCH_DIR``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from rostersync.local.moto_seams import InProcessFunctions
from rostersync.local.template import FunctionSpec
from rostersync.observability import peak_mb


def main() -> int:
    request = json.loads(sys.stdin.read())
    spec = dict(request["function"])
    spec["code_dir"] = Path(spec["code_dir"])
    function = FunctionSpec(environment={}, **spec)
    if os.environ.get("LOCAL_SCRATCH_DIR"):
        tempfile.tempdir = os.environ["LOCAL_SCRATCH_DIR"]
    answer = sys.stdout
    # What the handler prints (its logs among it) goes to stderr: stdout is the answer's.
    with contextlib.redirect_stdout(sys.stderr):
        body, errored = InProcessFunctions([function]).invoke(function.name, request["event"])
    answer.write(json.dumps({"body": body, "errored": errored, "peak_mb": peak_mb()}) + "\n")
    answer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
