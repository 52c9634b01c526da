"""``serve`` keeps what it loaded at start out of the garbage collector's full passes
(each walked every object of the process while every request waited) and gives it
back when it stops; objects made while serving are collected as before."""

from __future__ import annotations

import gc
import threading

from rostersync.local.serve import ServeAddresses, serve


def test_serve_freezes_what_it_loaded_and_unfreezes_it_on_stop(tmp_path):
    frozen_at_ready: list[int] = []
    collected: list[int] = []
    started, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def on_ready(_: ServeAddresses) -> None:
        frozen_at_ready.append(gc.get_freeze_count())
        # A cycle made while serving is still collected.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        collected.append(gc.collect())
        started.set()

    def run() -> None:
        try:
            serve(tmp_path / "state", 0, 0, stop_event=stop, on_ready=on_ready)
        except BaseException as exc:
            failures.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="serve", daemon=True)
    thread.start()
    assert started.wait(60), "serve did not start"
    stop.set()
    thread.join(60)
    assert not failures, failures
    assert frozen_at_ready and frozen_at_ready[0] > 10_000, frozen_at_ready
    assert collected and collected[0] >= 1
    assert gc.get_freeze_count() == 0
