"""actions.csv of a large run through the API: written in the background, then handed out.

With a state directory holding a synced run (``--state DIR --run RUN``, the tenant
``--tenant``, default ``bench``; a day 1 of ``rostersync sync`` on a generated district
is one): serve the admin API on 127.0.0.1 beside the local runtime, ask for the run's
actions.csv as the console does (``?link=true``, every ``--every`` seconds), and print how
long the first answer took, when the file came and how large it is, and how long asking
again takes once it is written. Runs above ``REPORT_INLINE_ACTIONS`` actions are written
by the state machine's Report task; at or below it, in the request.

    .venv/bin/python bench/bench_report.py --state DIR --run RUN
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from pathlib import Path

import httpx

from rostersync.api.local_http import make_server
from rostersync.api.tokens import issue_token
from rostersync.config import stack_settings
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.local.runtime import LocalCloud
from rostersync.pipeline.deps import build_deps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--tenant", default="bench")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between requests")
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    path = f"/tenants/{args.tenant}/runs/{args.run}/actions.csv"
    with LocalCloud(args.state) as cloud:
        server = make_server(
            "127.0.0.1",
            0,
            state_dir=args.state,
            deps=build_deps(stack_settings()),
            launcher=LocalCloudLauncher(cloud),
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        token = issue_token(args.state, args.tenant, "viewer", int(args.timeout) + 60)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                started = time.perf_counter()
                first = http.get(path, headers=headers, params={"link": "true"})
                answered = time.perf_counter() - started
                print(f"first answer      {first.status_code} in {answered * 1000:.0f} ms")
                if first.status_code == 202:
                    print(f"  actions         {first.json()['actions']:,}")
                answer, asked = first, 1
                while answer.status_code == 202:
                    if time.perf_counter() - started > args.timeout:
                        print(f"still being written after {args.timeout:.0f} s")
                        return 1
                    time.sleep(args.every)
                    answer = http.get(path, headers=headers, params={"link": "true"})
                    asked += 1
                came = time.perf_counter() - started
                print(
                    f"file              {answer.status_code}, {len(answer.content):,} bytes,"
                    f" after {came:.1f} s ({asked} requests)"
                )
                again_started = time.perf_counter()
                again = http.get(path, headers=headers, params={"link": "true"})
                print(
                    f"asked again       {again.status_code} in"
                    f" {time.perf_counter() - again_started:.2f} s"
                )
        finally:
            server.shutdown()
            server.server_close()
    print(f"peak RSS          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
