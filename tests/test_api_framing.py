"""The API poller's request framing (edge.api._split_request), exactly: when a buffered
request is complete, which pool serves it, and a head that never ends."""

from __future__ import annotations

import pytest

from edge.api import _HeadTooLarge, _split_request


def test_a_request_is_complete_with_its_body_and_pipelined_bytes_stay() -> None:
    get = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _split_request(bytearray(get[:-2]), 8192, 100) is None
    split = _split_request(bytearray(get + b"GET /v1/h"), 8192, 100)
    assert split is not None and (split[0], bytes(split[1]), split[2]) == (
        get,
        b"GET /v1/h",
        "read",
    )
    post = b"POST /v1/verify HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert _split_request(bytearray(post + b"{}"), 8192, 100) is None  # body still coming
    whole = _split_request(bytearray(post + b'{"a":'), 8192, 100)
    assert whole is not None and whole[2] == "write" and whole[0].endswith(b'{"a":')
    bare = b"GET / HTTP/1.0\n\n"  # bare newlines end a head too
    assert _split_request(bytearray(bare), 8192, 100) == (bare, bytearray(), "read")


def test_an_oversized_body_is_not_waited_for_and_an_endless_head_is_refused() -> None:
    big = b"POST /v1/verify HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
    split = _split_request(bytearray(big), 8192, 65536)
    assert split is not None and split[0] == big  # the handler answers 413 from the head
    with pytest.raises(_HeadTooLarge):
        _split_request(bytearray(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000), 8192, 100)
    assert _split_request(bytearray(b"GET / HTTP/1.1\r\nX: y\r\n"), 8192, 100) is None
