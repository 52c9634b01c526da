"""What a JSON request body may hold at all, checked before any route parses it.

Validation (pydantic, behind Powertools) answers 422 for a wrong shape, but some bodies
fail before it can: nesting deep enough to exhaust the parser's recursion, an integer of
thousands of digits (Python refuses to convert it), a NUL or another control character
that would end up in a stored setting or a log. The guard refuses them with a 4xx naming
the field, so no body is ever answered with a 5xx.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

#: Deeper than any body a route takes (settings are the deepest, at 3 levels).
MAX_DEPTH: Final = 32
#: Characters of one number: far beyond any count, share or time a route takes.
MAX_NUMBER_CHARS: Final = 40
#: Control characters refused in every string (tab, newline and return are text).
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Control characters refused in settings strings (one-line values).
_CONTROL_IN_SETTINGS: Final = re.compile(r"[\x00-\x1f\x7f]")


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        return _TooLong(text)
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


class _TooLong:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _NotANumber:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _nesting_depth(body: str) -> int:
    """The deepest nesting of objects and arrays, outside strings (no parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def body_problems(body: str, *, settings: bool = False) -> list[dict[str, str]]:
    """Why a JSON body is refused before validation (``[{field, message}]``), or
    nothing. A body that is not JSON at all is left to the route's validation."""
    if _nesting_depth(body) > MAX_DEPTH:
        return [{"field": "body", "message": f"nested deeper than {MAX_DEPTH} levels"}]
    try:
        value = json.loads(
            body,
            parse_int=_number,
            parse_float=_number,
            parse_constant=_NotANumber,
        )
    except (ValueError, RecursionError):
        return []
    problems: list[dict[str, str]] = []
    _walk(value, [], problems, _CONTROL_IN_SETTINGS if settings else _CONTROL)
    return problems[:20]


def _field(path: list[str]) -> str:
    return ".".join(path) or "body"


def _walk(
    value: Any, path: list[str], problems: list[dict[str, str]], control: re.Pattern[str]
) -> None:
    if isinstance(value, _TooLong):
        problems.append(
            {
                "field": _field(path),
                "message": f"a number of {len(value.text)} characters (at most {MAX_NUMBER_CHARS})",
            }
        )
    elif isinstance(value, _NotANumber):
        problems.append({"field": _field(path), "message": f"{value.text} is not a number"})
    elif isinstance(value, str):
        if control.search(value):
            problems.append({"field": _field(path), "message": "control characters refused"})
    elif isinstance(value, dict):
        for key, item in value.items():
            if control.search(key):
                problems.append(
                    {"field": _field(path), "message": "a field name with control characters"}
                )
                continue
            _walk(item, [*path, key], problems, control)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, [*path, str(index)], problems, control)
