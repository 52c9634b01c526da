"""Shared fixtures: where the public test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundles import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (CI puts it there)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
