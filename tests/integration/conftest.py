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
    """The local stack (moto, resources from template.yaml) with in-process handlers."""
    with LocalCloud(tmp_path / "state") as local:
        yield local, build_deps(stack_settings())
