"""The admin console: static pages (HTML, CSS, JavaScript modules) calling the admin API.

The pages are served as they are, with no build step. ``console_file(path)`` maps a
request path under ``/console/`` to one of the files beside this module; the local HTTP
server serves them at ``/console/`` next to the API (same origin, so the pages need no
CORS). Only files with a known type are served, and nothing outside this folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from rostersync.console.publish import CONTENT_TYPES

PREFIX: Final = "/console"
ROOT: Final = Path(__file__).resolve().parent
#: The pages load only their own files and call only their own origin.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class ConsoleFile:
    """A file to answer with, or a redirect (``location``) to the console's own folder."""

    body: bytes = b""
    content_type: str = ""
    location: str | None = None


def is_console_path(target: str) -> bool:
    """Whether a request target (path and query) is the console's."""
    path = urlsplit(target).path
    return path == PREFIX or path.startswith(PREFIX + "/")


def console_file(target: str) -> ConsoleFile | None:
    """The file a request target under ``/console/`` names (None: there is none)."""
    path = unquote(urlsplit(target).path)
    if path == PREFIX:
        return ConsoleFile(location=PREFIX + "/")
    relative = path[len(PREFIX) + 1 :] or "index.html"
    if "\x00" in relative or "\\" in relative:
        return None
    candidate = (ROOT / relative).resolve()
    content_type = CONTENT_TYPES.get(candidate.suffix)
    if content_type is None or not candidate.is_relative_to(ROOT) or not candidate.is_file():
        return None
    return ConsoleFile(body=candidate.read_bytes(), content_type=content_type)
