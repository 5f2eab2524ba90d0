"""The link emulator itself: delay, bandwidth cap, blackout, reset, schedule. About 15 s."""

from __future__ import annotations

import itertools
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.link_emulator import G2, G3, PROFILES, LinkEmulator, Phase, rotated
from tests.support.helpers import wait_for


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain TCP echo server on a free loopback port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket = c) -> None:
                try:
                    while d := c.recv(65536):
                        c.sendall(d)
                except OSError:
                    pass
                c.close()

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield int(srv.getsockname()[1])
    srv.close()


def recv_n(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        out += d
    return out


@pytest.mark.slow
def test_2g_delay_and_bandwidth_cap(echo_port: int) -> None:
    emu = LinkEmulator(echo_port, PROFILES["2g"]).start()
    try:
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
        rtts = []
        for _ in range(5):
            t = time.monotonic()
            s.sendall(b"x")
            recv_n(s, 1)
            rtts.append(time.monotonic() - t)
        assert 0.45 <= statistics.median(rtts) <= 0.9, rtts  # ~600 ms round trip
        n = 25_000
        t = time.monotonic()
        threading.Thread(target=s.sendall, args=(b"y" * n,), daemon=True).start()
        recv_n(s, n)
        took = time.monotonic() - t
        # 25 kB at 100 kbit/s is 2.0 s on the wire (each way, overlapped) + ~0.6 s round trip.
        assert 2.0 <= took <= 4.5, took
        assert emu.stats.up_bytes == emu.stats.down_bytes == 5 + n
        s.close()
    finally:
        emu.close()


def test_blackout_holds_bytes_and_reset_drops_connections(echo_port: int) -> None:
    phases = [Phase(1.0, G3), Phase(2.0, None), Phase(1000.0, G3, reset=True)]
    emu = LinkEmulator(echo_port, phases).start()
    try:
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
        s.sendall(b"a")
        assert recv_n(s, 1) == b"a"
        wait_for(lambda: emu.down, 5, "the blackout")
        t_b = emu.stats.transitions[-1][0]
        s.sendall(b"b")  # the socket stays open; the byte waits for the link
        s.settimeout(1.0)
        with pytest.raises(TimeoutError):
            s.recv(1)
        s.settimeout(30)
        # The blackout ends with a reset: what was held never arrives, the connection is gone.
        with pytest.raises((ConnectionResetError, ConnectionError)):
            recv_n(s, 1)
        assert time.monotonic() - t_b >= 1.9
        assert emu.stats.resets == 1
        windows = emu.down_windows()
        assert len(windows) == 2 and windows[0][1] - windows[0][0] == pytest.approx(2.0, abs=0.3)
        # A new connection after the reset works at 3G speed.
        s2 = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
        t = time.monotonic()
        s2.sendall(b"c")
        assert recv_n(s2, 1) == b"c"
        assert 0.12 <= time.monotonic() - t <= 0.6
        s2.close()
    finally:
        emu.close()


def test_blackout_then_link_delivers_held_bytes(echo_port: int) -> None:
    emu = LinkEmulator(echo_port, [Phase(0.5, G2), Phase(1.5, None), Phase(1000.0, G2)]).start()
    try:
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=30)
        wait_for(lambda: emu.down, 5, "the blackout")
        end = emu.stats.transitions[-1][0] + 1.5
        s.sendall(b"held")
        assert recv_n(s, 4) == b"held"
        assert time.monotonic() >= end  # nothing crossed during the blackout
        s.close()
    finally:
        emu.close()


def test_profiles_schedule_and_scale() -> None:
    assert [p.name for p in PROFILES["village-flaky"]] == ["3g", "blackout"]
    assert sum(p.seconds for p in PROFILES["village-flaky"]) == 120.0
    van = PROFILES["van-moving"]
    assert {p.name for p in van} >= {"3g", "2g", "blackout", "reset+3g"}
    r = rotated(PROFILES["village-flaky"], 80.0)
    assert [(p.name, p.seconds) for p in r] == [("3g", 10.0), ("blackout", 30.0), ("3g", 80.0)]
    emu = LinkEmulator(1, PROFILES["village-flaky"], scale=0.01).start()  # 0.9 s / 0.3 s
    try:
        wait_for(lambda: len(emu.stats.transitions) >= 5, 10, "two cycles")
        tr = emu.stats.transitions[:5]
        assert [n for _t, n in tr] == ["3g", "blackout", "3g", "blackout", "3g"]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(tr)]
        assert gaps == pytest.approx([0.9, 0.3, 0.9, 0.3], abs=0.15)
    finally:
        emu.close()
