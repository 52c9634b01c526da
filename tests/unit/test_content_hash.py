"""A record's content and its hash: committed snapshots hold hashes computed the first way,
so the hash of a record must never change with how it is computed."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

from rostersync.changes import content_of, field_changes
from rostersync.models import META_FIELDS
from rostersync.pipeline.snapshot import content_hash


def reference_content(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in META_FIELDS}


def reference_hash(record: dict[str, Any]) -> str:
    """The formula the committed hashes were computed with."""
    encoded = orjson.dumps(reference_content(record), option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(encoded, digest_size=12).hexdigest()


VALUES: list[Any] = [
    None,
    "",
    "Ann",
    "Zoë Ñúñez 漢字 😀",
    " spaced ",
    "tab\tand\nline",
    '"quoted"',
    "\\backslash",
    0,
    -7,
    2**53 + 1,
    3.5,
    True,
    False,
    [],
    ["a", "b"],
    [{"type": "SIS", "identifier": "1"}, {"identifier": "2", "type": "State"}],
    {},
    {"ext_b": "2", "ext_a": "1", "metadata.é": None},
    {"nested": {"z": [1, None, {"y": "x", "b": []}], "a": 1}},
]

NAMES = ["given_name", "family_name", "grades", "user_ids", "extensions", "role", "é", "a", "z"]


def random_record(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {}
    fields = NAMES + sorted(META_FIELDS)
    rng.shuffle(fields)
    for name in fields[: rng.randint(0, len(fields))]:
        record[name] = rng.choice(VALUES)
    return record


def test_content_hash_equals_the_reference_formula_on_varied_records() -> None:
    rng = random.Random(3)
    records = [random_record(rng) for _ in range(2000)]
    records += [
        {},
        {"source_system": "oneroster", "source_id": "u1", "status": "active"},
        {"date_last_modified": None, "given_name": "Ann"},
        {name: value for name, value in zip(NAMES, VALUES, strict=False)},
    ]
    for record in records:
        assert content_hash(record) == reference_hash(record), record


def test_content_hash_ignores_metadata_and_follows_content() -> None:
    record = {"source_system": "s", "source_id": "u1", "status": "active", "given_name": "Ann"}
    moved = {**record, "source_id": "u2", "status": "tobedeleted", "date_last_modified": "x"}
    assert content_hash(moved) == content_hash(record)
    assert content_hash({**record, "given_name": "Anne"}) != content_hash(record)
    # Key order is not content.
    assert content_hash(dict(reversed(list(record.items())))) == content_hash(record)


def test_content_of_keeps_the_record_order_and_leaves_the_record_alone() -> None:
    rng = random.Random(4)
    for _ in range(500):
        record = random_record(rng)
        before = dict(record)
        content = content_of(record)
        assert list(content.items()) == list(reference_content(record).items())
        assert record == before and list(record) == list(before)
        assert content is not record


def test_field_changes_name_only_content_fields() -> None:
    before = {"source_id": "u1", "status": "active", "given_name": "Ann", "grades": ["01"]}
    after = {"source_id": "u1", "status": "tobedeleted", "given_name": "Ann", "grades": ["02"]}
    assert field_changes(before, after) == {"grades": [["01"], ["02"]]}
