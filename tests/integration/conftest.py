from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rostersync.config import stack_settings
from rostersync.local.runtime import LocalCloud
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
