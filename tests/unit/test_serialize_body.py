"""The API's response bodies, encoded by orjson, read as Powertools' own encoder's."""

from __future__ import annotations

import json
from decimal import Decimal

from aws_lambda_powertools.shared.json_encoder import Encoder
from pydantic import BaseModel

from rostersync.api.app import serialize_body


class Page(BaseModel):
    entity: str
    items: list[dict[str, object]]


def _powertools(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), cls=Encoder)


def test_bodies_read_as_powertools_encodes_them():
    values = [
        {"name": "Zoë Ōtsuka 大翔", "grades": ["05"], "score": 0.25, "none": None},
        {"count": Decimal("12"), "ratio": Decimal("0.5"), 3: "a key that is a number"},
        Page(entity="users", items=[{"given_name": "Łukasz", "n": 1}]),
        [True, False, {"nested": [1, 2, {"deep": "ok"}]}],
    ]
    for value in values:
        assert json.loads(serialize_body(value)) == json.loads(_powertools(value))


def test_what_orjson_refuses_goes_to_powertools_encoder():
    huge = {"id": 2**70}
    assert serialize_body(huge) == _powertools(huge)
