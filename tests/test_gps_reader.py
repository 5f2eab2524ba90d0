"""The GPS reader thread against a real gpsd: restarts, unplugged receiver, dead ports.

Runtime: about 40 s (gpsd restarts and one gpsd device timeout).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.capture.gps import GpsReader
from edge.capture.nmea import render, village_epochs
from edge.config import GpsConfig
from tests.support.gpsd import gpsfake_server
from tests.support.helpers import free_port, wait_for

TRACK = Path(__file__).resolve().parents[1] / "edge" / "samples" / "track.nmea"


def fast(port: int) -> GpsConfig:
    return GpsConfig(host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=0.5)


@pytest.mark.slow
def test_gpsd_killed_and_restarted_reader_recovers() -> None:
    with gpsfake_server(TRACK) as fake, GpsReader(fast(fake.port)) as reader:
        first = reader.wait_for_fix(60)
        assert first is not None and -7.72 < first.lat < -7.71 and 110.36 < first.lon < 110.37
        assert reader.state() in ("fix_2d", "fix_3d")
        if first.gps_time is not None:  # GGA may come before the first RMC
            assert reader.status()["clock"]["source"] == "gps"  # track time != system time

        fake.stop()  # gpsd gone
        wait_for(lambda: reader.state() == "disconnected", 15, "the reader to see gpsd gone")
        # in between: unknown, however often we ask; the thread stays alive and retries
        for _ in range(10):
            assert reader.current() is None
            assert reader.status()["fix"] is None
            time.sleep(0.1)
        assert reader.alive
        assert "gpsd" in reader.last_error

        fake.start()  # same port
        again = reader.wait_for_fix(60)
        assert again is not None and again.received_monotonic > first.received_monotonic
        assert reader.connects >= 2 and reader.alive


def test_receiver_unplugged_reports_unknown_while_gpsd_stays(tmp_path: Path) -> None:
    """gpsfake -1 ends the feed and gpsd deactivates the device (as when the receiver is
    unplugged) while our connection stays up: from that report on the position is unknown."""
    log = tmp_path / "short.nmea"
    log.write_text(render(village_epochs(seconds=6)))
    seen: list[tuple[bool, object]] = []
    reader_box: list[GpsReader] = []

    def on_report(r: dict) -> None:
        if r.get("class") == "DEVICE" and r.get("activated") == 0:
            seen.append((reader_box[0].connected, reader_box[0].current()))

    with gpsfake_server(log, once=True, wait=False) as fake:
        reader = GpsReader(fast(fake.port), on_report=on_report)
        reader_box.append(reader)
        with reader:
            assert reader.wait_for_fix(60) is not None
            wait_for(lambda: bool(seen), 60, "gpsd to report the device gone")
            assert seen[0] == (True, None)  # still connected to gpsd, position unknown
            assert reader.alive


def test_no_gpsd_is_unknown_and_keeps_retrying() -> None:
    port = free_port()
    with GpsReader(fast(port)) as reader:
        wait_for(lambda: reader.last_error != "", 10, "a connection error")
        assert reader.current() is None and reader.state() == "disconnected" and reader.alive
        assert "cannot connect" in reader.last_error and str(port) in reader.last_error
        assert reader.backoff_s <= 0.5


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP server that accepts and then says nothing (a hung gpsd)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1], conns
    stop.set()
    t.join(5)
    for c in conns:
        c.close()
    srv.close()


def test_silent_gpsd_is_dropped_and_retried(silent_server: tuple[int, list[socket.socket]]) -> None:
    port, conns = silent_server
    with GpsReader(fast(port), silence_s=1.0) as reader:
        wait_for(lambda: len(conns) >= 2, 20, "the reader to reconnect after silence")
        assert "silent" in reader.last_error
        assert reader.current() is None and reader.alive


def test_garbage_from_gpsd_port_crashes_nothing() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        c, _ = srv.accept()
        c.sendall(b"\xff\x00garbage\n{bad json\n" + b"x" * 300_000 + b"\n[1]\n")
        c.sendall(b'{"class":"TPV","mode":3,"lat":-7.7,"lon":110.3,"eph":3.0}\n')
        time.sleep(3)
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with GpsReader(fast(port)) as reader:
            fix = reader.wait_for_fix(15)
            assert fix is not None and fix.lat == -7.7
            assert reader.alive
    finally:
        t.join(10)
        srv.close()


@pytest.mark.slow
def test_idle_gpsd_without_receiver_keeps_the_connection(tmp_path: Path) -> None:
    """gpsd up, no receiver (no reports at all): the VERSION ping keeps the connection."""
    log = tmp_path / "short.nmea"
    log.write_text(render(village_epochs(seconds=3)))
    with gpsfake_server(log, once=True) as fake:
        # gpsfake -1 ends the feed at once; gpsd removes the device and then sits idle
        # (while it tears the device down it may not answer for about a second)
        reader = GpsReader(fast(fake.port), silence_s=3.0)
        with reader:
            assert reader.wait_connected(10)
            time.sleep(4.0)
            connects = reader.connects
            time.sleep(7.0)  # more than two silence periods with no reports
            assert reader.connects == connects and reader.connected, reader.last_error
            assert reader.current() is None and reader.state() == "no_fix"
