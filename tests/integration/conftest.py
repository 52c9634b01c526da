from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.cli import main
from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
from rostersync.observability import logger
from rostersync.pipeline.deps import Deps, build_deps


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[Any, Deps]]:
    """The local stack as users run it: template.yaml's functions and state machine under
    moto with in-process handlers, over the embedded store (SQLite, files, event log)."""
    with LocalCloud(tmp_path / "state") as local:
        yield local, build_deps(stack_settings())


@pytest.fixture
def aws_cloud() -> Iterator[tuple[Any, Deps]]:
    """The same stack over the AWS adapters (S3, DynamoDB, EventBridge under moto), for
    tests of those adapters' behaviour."""
    with LocalCloud(None, storage="moto") as local:
        yield local, build_deps(stack_settings())


class LogRecords(logging.Handler):
    """Every log record, with its extra fields, as JSON lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + json.dumps(record.__dict__, default=str))


@pytest.fixture
def logs() -> Iterator[LogRecords]:
    """The log records of rostersync, httpx and httpcore (at every level) and the root's."""
    logger()  # made first: making it replaces the handlers of its logging logger
    handler = LogRecords()
    names = ["rostersync", "httpx", "httpcore", ""]
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).addHandler(handler)
        if name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    for name in names:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(saved[name])


class Cli:
    """``rostersync`` in one state folder; each call returns (exit code, stdout, stderr)."""

    def __init__(self, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.state = state
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--state", str(self.state)])
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.out + captured.err
        return code, captured.out, captured.err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "state", capsys)
