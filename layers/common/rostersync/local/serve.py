"""``rostersync serve``: the API, the SFTP drop box and the schedules, on this machine.

One local stack (``LocalCloud``) for all three, so an upload, a *Sync now* and a
schedule reach the same bucket, tables and state machine:

* the admin API over HTTP (``rostersync.api.local_http``), when that module is present;
* the SFTP drop box (``rostersync.local.sftp``): a file closed by a client is stored
  under ``inbox/{tenant}/`` and raises the bucket's "Object Created" event, handled by
  ``rostersync.application.inbox.handle_event`` (the InboxFunction's own code);
* the schedules (``rostersync.application.schedules.LocalScheduler``): each tenant's daily time,
  checked once a minute.

It runs until ``stop_event`` is set, Ctrl-C or SIGTERM. Every write is durable when it
returns (the embedded store), so CLI commands may run beside it and a kill loses nothing.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

from rostersync.application.inbox import (
    InboxReport,
    handle_event,
    inbox_objects,
    object_created_event,
)
from rostersync.application.launch import RunStartDeps
from rostersync.application.runs import RunLauncher
from rostersync.application.schedules import LOCAL_INTERVAL_SECONDS, LocalScheduler
from rostersync.config import RunStartSettings, stack_settings
from rostersync.local.launcher import LocalCloudLauncher
from rostersync.local.sftp import SftpDropBox
from rostersync.pipeline.deps import Deps, build_deps, locks_repository

_LOG = logging.getLogger("rostersync.local.serve")
API_MODULE = "rostersync.api.local_http"


@dataclass(frozen=True)
class ServeAddresses:
    """Where the running services listen (ports chosen by the system when 0 was asked)."""

    host: str
    api_port: int | None  # None: the API module is not available
    sftp_port: int


class _HttpServer(Protocol):
    def serve_forever(self) -> None: ...

    def shutdown(self) -> None: ...


def _start_api(
    stack: ExitStack,
    host: str,
    port: int,
    *,
    state_dir: Path,
    deps: Deps,
    launcher: RunLauncher,
) -> int | None:
    """Serve the API on a thread; None if the API module is not installed."""
    try:
        module = importlib.import_module(API_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != API_MODULE:
            raise  # the module is there but something it imports is not
        _LOG.warning(
            "the API is not available (%s missing); serving SFTP and schedules", API_MODULE
        )
        return None
    server: _HttpServer = module.make_server(
        host, port, state_dir=state_dir, deps=deps, launcher=launcher
    )
    thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        close = getattr(server, "server_close", None)
        if callable(close):
            close()
        thread.join(timeout=10)

    stack.callback(stop)
    address = getattr(server, "server_address", None)
    return int(address[1]) if isinstance(address, tuple) else port


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM ends serve like Ctrl-C (running executions finish); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    state_dir: Path,
    api_port: int,
    sftp_port: int,
    *,
    host: str = "127.0.0.1",
    stop_event: threading.Event | None = None,
    on_ready: Callable[[ServeAddresses], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    schedule_interval: float = LOCAL_INTERVAL_SECONDS,
    out: TextIO | None = None,
) -> None:
    """Run the API, the SFTP drop box and the schedules on ``host`` until stopped.

    Port 0 lets the system choose; ``on_ready`` receives the ports once all listen.
    ``clock`` and ``schedule_interval`` are for tests of the schedules.
    """
    from rostersync.local.runtime import LocalCloud  # imports moto: only when serving

    stop = stop_event if stop_event is not None else threading.Event()
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    # asyncssh logs every login and channel at INFO; keep serve's output to what matters.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    with LocalCloud(state_dir) as cloud, ExitStack() as running:
        deps = build_deps(stack_settings())
        launch = RunStartSettings.from_env(cloud.environment)
        # Executions started through the local stack are waited for before it stops.
        launcher = LocalCloudLauncher(cloud)
        starting = RunStartDeps(
            deps=deps,
            locks=locks_repository(launch),
            launcher=launcher,
        )

        api = _start_api(running, host, api_port, state_dir=state_dir, deps=deps, launcher=launcher)

        def on_upload(key: str) -> InboxReport:
            # The event the bucket sends to EventBridge on AWS, to the InboxFunction's code.
            return handle_event(object_created_event(deps.store.bucket, key), starting)

        dropbox = SftpDropBox(state_dir, inbox_objects(deps), on_upload)
        sftp = dropbox.start(host, sftp_port)
        running.callback(dropbox.stop)

        scheduler = LocalScheduler(starting, interval=schedule_interval)
        if clock is not None:
            scheduler.clock = clock
        ticker = threading.Thread(target=scheduler.run, args=(stop,), name="schedules", daemon=True)
        ticker.start()
        running.callback(ticker.join, 10)
        running.callback(stop.set)

        # What is loaded now lives as long as the process: out of the collector's way.
        # Each full collection walked all of it (282k objects: 150-170 ms, every few
        # seconds under load), and every request waiting meanwhile waited for it.
        gc.collect()
        gc.freeze()
        running.callback(gc.unfreeze)
        addresses = ServeAddresses(host, api, sftp)
        if out is not None:
            out.write(
                f"rostersync serving (state {state_dir})\n"
                + (
                    f"  API   http://{host}:{api}/\n"
                    if api is not None
                    else "  API   not available\n"
                )
                + f"  SFTP  sftp://{host}:{sftp}/ (users: rostersync sftp-user add)\n"
                + "  Schedules checked every minute. Ctrl-C stops.\n"
            )
            out.flush()
        if on_ready is not None:
            on_ready(addresses)
        with _stop_on_sigterm(stop), contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                pass
