"""A userspace TCP relay that behaves like a weak mobile link, driven by a schedule.

This kernel has no netem, so the kiosk's MQTT client talks to the broker through this relay
(kiosk -> 127.0.0.1:emu.port -> broker). Per direction it serialises bytes at the link's
bandwidth (a virtual wire clock: n bytes take n*8/bps seconds, one after another), then
holds them for the one-way delay plus jitter (order kept, as TCP presents it). The schedule
is a cycle of phases: a link (delay, jitter, bandwidth up and down), a blackout (bytes stop
in both directions, sockets stay open, as when a van leaves coverage; what was "in the air"
arrives when the link returns) or a reset (every open connection is aborted, as when the
modem changes cell and IP). Backpressure is the kernel's: the relay reads the next chunk
only after the previous one went onto the wire, so the sender's socket buffer fills up.

Lives in tests/ (not product code); bench/ imports it, as it already imports tests helpers.
`scale` compresses phase durations (never delays or bandwidths) so tests can run a profile's
shape in less time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

MSS = 1400  # bytes per "packet" on the emulated wire


@dataclass(frozen=True)
class LinkSpec:
    """One link condition; kbit/s are per direction (up = kiosk -> broker)."""

    name: str
    one_way_ms: float
    jitter_ms: float
    up_kbps: float
    down_kbps: float


@dataclass(frozen=True)
class Phase:
    """`seconds` of `link` (None = blackout); `reset` aborts every connection at its start."""

    seconds: float
    link: LinkSpec | None
    reset: bool = False

    @property
    def name(self) -> str:
        base = self.link.name if self.link is not None else "blackout"
        return f"reset+{base}" if self.reset else base


# Figures they stand for: GPRS/EDGE in a weak cell, ~600 ms round trip, ~100 kbit/s.
G2 = LinkSpec("2g", one_way_ms=300.0, jitter_ms=50.0, up_kbps=100.0, down_kbps=100.0)
# UMTS/HSPA at the cell edge: ~200 ms round trip, ~1 Mbit/s.
G3 = LinkSpec("3g", one_way_ms=100.0, jitter_ms=20.0, up_kbps=1000.0, down_kbps=1000.0)

FOREVER = 10.0**9

PROFILES: dict[str, list[Phase]] = {
    # A kiosk on a steady 2G cell: ~600 ms RTT, 100 kbit/s each way.
    "2g": [Phase(FOREVER, G2)],
    # A kiosk on a steady 3G cell: ~200 ms RTT, 1 Mbit/s each way.
    "3g": [Phase(FOREVER, G3)],
    # A village post on 3G that loses signal for 30 s every 2 minutes.
    "village-flaky": [Phase(90.0, G3), Phase(30.0, None)],
    # A van driving between villages (3 min cycle): 3G in town, 2G on the road, dead spots,
    # and a cell/IP change that drops every connection.
    "van-moving": [
        Phase(45.0, G3),
        Phase(30.0, G2),
        Phase(20.0, None),
        Phase(20.0, G2),
        Phase(40.0, G3, reset=True),
        Phase(10.0, None),
        Phase(15.0, G2),
    ],
}


def rotated(phases: list[Phase], offset_s: float) -> list[Phase]:
    """The same cycle started `offset_s` into it (e.g. just before a blackout)."""
    total = sum(p.seconds for p in phases)
    t = offset_s % total if total > 0 else 0.0
    for i, ph in enumerate(phases):
        if t < ph.seconds:
            if t == 0:
                return [*phases[i:], *phases[:i]]
            # start mid-phase (no reset there); the phase's first part closes the cycle
            head = Phase(ph.seconds - t, ph.link)
            return [head, *phases[i + 1 :], *phases[:i], Phase(t, ph.link, ph.reset)]
        t -= ph.seconds
    return list(phases)


@dataclass
class Stats:
    """Bytes that crossed the emulated link, per direction, and connections seen."""

    up_bytes: int = 0
    down_bytes: int = 0
    connections: int = 0
    resets: int = 0
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, phase)


class LinkEmulator:
    """Start with `LinkEmulator(target_port, phases).start()`; connect to `.port`; `close()`."""

    def __init__(
        self,
        target_port: int,
        phases: list[Phase],
        *,
        scale: float = 1.0,
        target_host: str = "127.0.0.1",
        seed: int = 1,
    ) -> None:
        if not phases:
            raise ValueError("a schedule needs at least one phase")
        self.target = (target_host, target_port)
        self.phases = phases
        self.scale = scale
        self.rng = random.Random(seed)
        self.port = 0
        self.stats = Stats()
        self.phase: Phase = phases[0]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-emulator", daemon=True)
        self._up: asyncio.Event | None = None
        # each relayed connection: its two writers -> the task relaying it
        self._conns: dict[tuple[asyncio.StreamWriter, asyncio.StreamWriter], asyncio.Task[None]]
        self._conns = {}

    # -- public (any thread) -------------------------------------------------------
    def start(self) -> LinkEmulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("link emulator did not start")
        return self

    def close(self) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        if self._loop.is_running():
            self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)

    def set_phases(self, phases: list[Phase]) -> None:
        """Replace the schedule now (starts at its first phase)."""
        asyncio.run_coroutine_threadsafe(self._restart_schedule(phases), self._loop).result(5)

    @property
    def down(self) -> bool:
        return self.phase.link is None

    def down_windows(self) -> list[tuple[float, float]]:
        """(start, end) monotonic times of blackouts and resets so far (end may be now)."""
        out: list[tuple[float, float]] = []
        tr = list(self.stats.transitions)
        for i, (t, name) in enumerate(tr):
            end = tr[i + 1][0] if i + 1 < len(tr) else time.monotonic()
            if name.endswith("blackout"):
                out.append((t, end))
            elif name.startswith("reset+"):
                out.append((t, t))
        return out

    # -- event loop --------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._up = asyncio.Event()
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        self._schedule_task = self._loop.create_task(self._schedule(self.phases))
        self._ready.set()
        with contextlib.suppress(RuntimeError):
            self._loop.run_forever()
        server.close()

    async def _restart_schedule(self, phases: list[Phase]) -> None:
        self._schedule_task.cancel()
        self.phases = phases
        self._schedule_task = self._loop.create_task(self._schedule(phases))

    async def _schedule(self, phases: list[Phase]) -> None:
        assert self._up is not None
        while True:
            for ph in phases:
                self.phase = ph
                self.stats.transitions.append((time.monotonic(), ph.name))
                if ph.reset:
                    self._reset_all()
                if ph.link is None:
                    self._up.clear()
                else:
                    self._up.set()
                await asyncio.sleep(ph.seconds * self.scale)

    def _reset_all(self) -> None:
        self.stats.resets += len(self._conns)
        for (a, b), task in list(self._conns.items()):
            for w in (a, b):
                sock = w.get_extra_info("socket")
                if sock is not None:  # linger 0: the peer sees a RST, not a polite FIN
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                w.transport.abort()
            task.cancel()
        self._conns.clear()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            cw.transport.abort()
            return
        self.stats.connections += 1
        pair = (cw, uw)
        task = asyncio.current_task()
        assert task is not None
        self._conns[pair] = task  # type: ignore[assignment]
        try:
            await asyncio.gather(self._direction(cr, uw, True), self._direction(ur, cw, False))
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # reset, closed or cancelled: this connection is over, nothing to report
        finally:
            self._conns.pop(pair, None)
            for w in pair:
                w.transport.abort()

    async def _direction(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, up: bool) -> None:
        """Serialise at the cap, then delay; `air` holds (arrival time, bytes or b"" for EOF)."""
        air: collections.deque[tuple[float, bytes]] = collections.deque()
        arrived = asyncio.Event()
        deliverer = asyncio.ensure_future(self._deliver(air, arrived, w))
        wire_free = 0.0
        last_arrival = 0.0
        try:
            while True:
                data = await r.read(16384)
                pieces = [data[i : i + MSS] for i in range(0, len(data), MSS)] or [b""]
                for piece in pieces:
                    link = await self._link_up()
                    now = time.monotonic()
                    bps = (link.up_kbps if up else link.down_kbps) * 1000.0
                    wire_free = max(wire_free, now) + len(piece) * 8.0 / bps
                    if wire_free > now:
                        await asyncio.sleep(wire_free - now)
                    link = await self._link_up()
                    jitter = self.rng.uniform(-link.jitter_ms, link.jitter_ms)
                    at = max(last_arrival, time.monotonic() + (link.one_way_ms + jitter) / 1000.0)
                    last_arrival = at
                    air.append((at, piece))
                    arrived.set()
                    if up:
                        self.stats.up_bytes += len(piece)
                    else:
                        self.stats.down_bytes += len(piece)
                if not data:
                    break
            await deliverer
        finally:
            deliverer.cancel()

    async def _link_up(self) -> LinkSpec:
        """The current link, waiting out a blackout (re-checked: it may start again first)."""
        assert self._up is not None
        while True:
            await self._up.wait()
            link = self.phase.link
            if link is not None:
                return link

    async def _deliver(
        self,
        air: collections.deque[tuple[float, bytes]],
        arrived: asyncio.Event,
        w: asyncio.StreamWriter,
    ) -> None:
        while True:
            while not air:
                arrived.clear()
                await arrived.wait()
            at, piece = air[0]
            now = time.monotonic()
            if at > now:
                await asyncio.sleep(at - now)
            await self._link_up()  # what is in the air during a blackout lands when it ends
            air.popleft()
            if not piece:
                w.close()
                return
            w.write(piece)
            await w.drain()
