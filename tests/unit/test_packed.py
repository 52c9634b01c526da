"""Small binary objects (``rostersync.packed``): what is packed comes back exactly, and
a body that is not one comes back as nothing."""

from __future__ import annotations

from array import array

from rostersync.packed import pack, unpack


def test_fields_and_arrays_come_back_as_packed():
    starts, flags, state = array("Q", [0, 17, 2**40]), array("H", [0, 3]), array("B", b"xyz")
    body = pack({"version": "v1", "size": 9}, starts, flags, state)

    unpacked = unpack(body, ("Q", "H", "B"))

    assert unpacked is not None
    fields, parts = unpacked
    assert fields == {"version": "v1", "size": 9}
    assert parts == [starts, flags, state]
    assert unpack(pack({}), ()) == ({}, [])


def test_a_body_that_is_not_one_gives_nothing():
    body = pack({"a": 1}, array("Q", [1, 2]), array("I", [3]))
    assert unpack(body, ("Q", "I")) is not None
    assert unpack(body, ("Q",)) is None, "fewer parts than packed"
    assert unpack(body, ("Q", "H")) is None, "another type"
    assert unpack(body[:-1], ("Q", "I")) is None, "cut short"
    assert unpack(body + b"\0", ("Q", "I")) is None, "bytes left over"
    assert unpack(b"not json\n", ("Q",)) is None
    assert unpack(b'{"fields": {}, "parts": [["Q", -1]]}\n', ("Q",)) is None
    assert unpack(b'{"fields": [], "parts": []}\n', ()) is None
    assert unpack(b"", ()) is None
