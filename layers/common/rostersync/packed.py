"""Small binary objects: a JSON head, then arrays of numbers one after the other.

What a step keeps for the next one beside a big file (where each line ends, which lines
can be taken again) is an array of a number per line: written as it is, not as text.
The head holds the writer's own fields and each array's type and size, so a reader
takes back exactly what was written, or nothing from a body that is not one.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import orjson


def pack(fields: dict[str, Any], *parts: array[int]) -> bytes:
    """``fields`` and ``parts`` as one body."""
    head = {"fields": fields, "parts": [[part.typecode, len(part)] for part in parts]}
    return orjson.dumps(head) + b"\n" + b"".join(part.tobytes() for part in parts)


def unpack(body: bytes, kinds: Sequence[str]) -> tuple[dict[str, Any], list[array[int]]] | None:
    """The fields and the parts of a ``pack`` body whose parts have the type codes
    ``kinds``, or None if the body is not such a one."""
    head, _, rest = body.partition(b"\n")
    try:
        decoded = orjson.loads(head)
        fields, shapes = decoded["fields"], decoded["parts"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(fields, dict) or not isinstance(shapes, list) or len(shapes) != len(kinds):
        return None
    parts: list[array[int]] = []
    at = 0
    for kind, shape in zip(kinds, shapes, strict=True):
        if not isinstance(shape, list) or len(shape) != 2 or shape[0] != kind:
            return None
        count = shape[1]
        if not isinstance(count, int) or count < 0:
            return None
        part = array(kind)
        chunk = rest[at : at + count * part.itemsize]
        if len(chunk) != count * part.itemsize:
            return None
        part.frombytes(chunk)
        parts.append(part)
        at += len(chunk)
    return (fields, parts) if at == len(rest) else None
