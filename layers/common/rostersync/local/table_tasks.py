"""The state machine's own DynamoDB tasks (``arn:aws:states:::dynamodb:*``) against the
embedded store, so that the same ASL marks a run failed in the same table the handlers
read. Only what a definition may reasonably use: ``updateItem`` with ``SET``/``REMOVE``
of top-level attributes, ``putItem``, ``getItem`` and ``deleteItem``; anything else
fails the task with a named error."""

from __future__ import annotations

import re
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from rostersync.storage.local.database import Database, ItemTable
from rostersync.storage.tables import KEY_ATTRIBUTES, from_dynamo, to_dynamo


class UnsupportedTableTask(Exception):
    """A DynamoDB task the local runtime does not run against the embedded store."""


_CLAUSE = re.compile(r"\b(SET|REMOVE)\b", re.IGNORECASE)
_DESERIALIZE = TypeDeserializer().deserialize
_SERIALIZE = TypeSerializer().serialize


def _plain(wire: dict[str, Any]) -> dict[str, Any]:
    return {name: from_dynamo(_DESERIALIZE(value)) for name, value in wire.items()}


def _key(parameters: dict[str, Any]) -> tuple[str, str]:
    key = _plain(parameters.get("Key") or parameters.get("Item") or {})
    if "pk" not in key or "sk" not in key:
        raise UnsupportedTableTask("only tables keyed by pk and sk are kept locally")
    return str(key["pk"]), str(key["sk"])


def _name(token: str, names: dict[str, str]) -> str:
    token = token.strip()
    return names[token] if token.startswith("#") else token


def parse_update(
    expression: str, names: dict[str, str], values: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """``SET a = :v, ... REMOVE b, ...`` → (attributes to set, attributes to remove)."""
    parts = _CLAUSE.split(expression)
    if parts[0].strip():
        raise UnsupportedTableTask(f"cannot read update expression {expression!r}")
    to_set: dict[str, Any] = {}
    to_remove: list[str] = []
    for verb, body in zip(parts[1::2], parts[2::2], strict=True):
        for clause in (c.strip() for c in body.split(",")):
            if verb.upper() == "REMOVE":
                to_remove.append(_name(clause, names))
                continue
            target, _, value = clause.partition("=")
            value = value.strip()
            if not value.startswith(":") or value not in values:
                raise UnsupportedTableTask(f"only SET name = :value is supported: {clause!r}")
            to_set[_name(target, names)] = from_dynamo(_DESERIALIZE(values[value]))
    return to_set, to_remove


def run_table_task(
    database: Database, local_tables: set[str], action: str, parameters: dict[str, Any]
) -> dict[str, Any] | None:
    """Run the task if its table is kept locally; None leaves it to moto."""
    table = parameters.get("TableName")
    if table not in local_tables:
        return None
    items = ItemTable(database, str(table))
    pk, sk = _key(parameters)
    if action == "update_item":
        to_set, to_remove = parse_update(
            str(parameters.get("UpdateExpression", "")),
            dict(parameters.get("ExpressionAttributeNames") or {}),
            dict(parameters.get("ExpressionAttributeValues") or {}),
        )
        if parameters.get("ConditionExpression"):
            raise UnsupportedTableTask("conditional updates are not run locally")

        def apply(current: dict[str, Any] | None) -> dict[str, Any]:
            updated = {**(current or {}), **to_set}
            for name in to_remove:
                updated.pop(name, None)
            return updated

        items.change(pk, sk, apply)
        return {}
    if action == "put_item":
        if parameters.get("ConditionExpression"):
            raise UnsupportedTableTask("conditional puts are not run locally")
        item = _plain(parameters["Item"])
        items.put(pk, sk, {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES})
        return {}
    if action == "get_item":
        found = items.get(pk, sk)
        if found is None:
            return {}
        wire = {name: _SERIALIZE(to_dynamo(value)) for name, value in found.items()}
        return {"Item": {"pk": {"S": pk}, "sk": {"S": sk}, **wire}}
    if action == "delete_item":
        items.delete(pk, sk)
        return {}
    raise UnsupportedTableTask(f"dynamodb:{action} is not run locally")
