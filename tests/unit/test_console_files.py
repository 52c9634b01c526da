"""Which files the console serves under /console/, and nothing else."""

from __future__ import annotations

import pytest

from rostersync.console import console_file, is_console_path


def test_the_console_folder_answers_with_its_pages_by_type():
    index = console_file("/console/")
    script = console_file("/console/js/main.js?v=1")
    styles = console_file("/console/console.css")

    assert index is not None and index.content_type.startswith("text/html")
    assert b'<script type="module" src="js/main.js">' in index.body
    assert script is not None and script.content_type.startswith("text/javascript")
    assert styles is not None and styles.content_type.startswith("text/css")


def test_the_bare_prefix_redirects_to_the_folder():
    found = console_file("/console")

    assert found is not None and found.location == "/console/"


@pytest.mark.parametrize(
    "target",
    [
        "/console/../api/app.py",
        "/console/%2e%2e/cli.py",
        "/console/__init__.py",
        "/console/js/../../__init__.py",
        "/console/missing.js",
        "/console/js/",
        "/console/js\\main.js",
        "/console/index.html%00.js",
    ],
)
def test_nothing_outside_the_pages_is_served(target):
    assert console_file(target) is None


def test_only_the_console_prefix_is_the_consoles():
    assert is_console_path("/console/") and is_console_path("/console?x=1")
    assert not is_console_path("/consoles") and not is_console_path("/tenants/console")
