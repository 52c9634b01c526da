"""A tick or untick of a few ids on AWS: the change file in S3 searched in one read and
written anew with only the hits' lines changed, the bytes between read a second time."""

from __future__ import annotations

from typing import Any

import boto3
import orjson
from moto import mock_aws

from rostersync.application import review
from rostersync.pipeline.change_lines import ChangeLines, noted_lines
from rostersync.storage.objects import ObjectStore

KEY, LINES_KEY = "runs/t1/r1/changes/users.jsonl", "runs/t1/r1/changes/users.lines"


def _action(n: int) -> dict[str, Any]:
    return {
        "id": f"users-add-{n:016x}",
        "entity": "users",
        "action": "add",
        "tier": "unmatched",
        "included": True,
        "record": {"given_name": "x" * (n % 17)},
    }


def _untick(action: dict[str, Any]) -> bool:
    if not action["included"]:
        return False
    action["included"], action["reason"] = False, "excluded by ann"
    return True


def test_a_few_ids_are_found_and_rewritten_in_an_s3_change_file(monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(review, "_SEARCH_BLOCK", 4096)  # many blocks, lines across them
    actions = [_action(n) for n in range(3000)]
    lines = [orjson.dumps(a) + b"\n" for a in actions]
    lines[10] = b"not a line stage writes\n"  # copied, never read as an action
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="roster")
        store = ObjectStore(client, "roster")
        store.put_bytes(KEY, b"".join(lines))
        noted = ChangeLines()
        for line, action in zip(lines, actions, strict=True):
            noted.add(line, action)
        store.put_bytes(LINES_KEY, noted.encode(store.version(KEY) or ""))

        wanted = {actions[0]["id"], actions[1500]["id"], actions[-1]["id"]}
        shifts = review._rewrite_found(store, KEY, LINES_KEY, wanted, _untick)
        body = store.get_bytes(KEY) or b""
        after = noted_lines(store, KEY, LINES_KEY)

        # An id not on a line of its own is left to the line-by-line read.
        assert review._rewrite_found(store, KEY, LINES_KEY, {"users-add-f"}, _untick) is None

    assert shifts is not None and shifts["add"] == -3
    expected = [
        orjson.dumps({**a, "included": False, "reason": "excluded by ann"}) + b"\n"
        if a["id"] in wanted
        else line
        for a, line in zip(actions, lines, strict=True)
    ]
    assert body == b"".join(expected)
    afresh = ChangeLines()
    for line, action in zip(expected, actions, strict=True):
        afresh.add(line, orjson.loads(line) if line.startswith(b"{") else action)
    assert after == afresh
