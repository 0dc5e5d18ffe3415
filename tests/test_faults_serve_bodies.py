"""Fault suite: spex serve's body decoder gives exactly what json.loads gives (long literals are
only decoded apart), and refuses what it refuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.serve.bodies import LONG_LITERAL, BodyError, decode_json

LONG = "é" * LONG_LITERAL


@pytest.mark.parametrize(
    "body",
    [
        {"text": LONG, "sampling_params": {"stop": ["\n\n"], "max_new_tokens": 3}},
        {"text": [LONG, "a\\b" + LONG, 'q"uote' + LONG], LONG: 1},
        {"text": "tab\there" + LONG},
        [LONG, {"k": LONG + '\\"'}],
    ],
)
def test_long_literals_decode_exactly_as_json_loads(body: object) -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    assert decode_json(data) == json.loads(data)


@settings(max_examples=10, deadline=None)
@given(st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c, max_size=3)))
def test_any_body_with_a_long_literal_decodes_as_json_loads(value: object) -> None:
    data = json.dumps({"pad": LONG, "value": value}).encode()
    assert decode_json(data) == json.loads(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'{"text": "' + b"x" * LONG_LITERAL + b"\xff" + b'"}', "not UTF-8"),
        (b'{"text": "' + b"x" * LONG_LITERAL, "not JSON"),
        (b'{"text": "' + b"x" * LONG_LITERAL + b'" "b"}', "not JSON"),
        (b"[" * 100_000 + b'"' + b"x" * LONG_LITERAL + b'"' + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_big_bodies_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(BodyError, match=words):
        decode_json(data)
