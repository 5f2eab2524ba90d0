"""`edge gps [--once] [--timeout S] [--json]`: what gpsd says now, and which clock records use.

Exit codes: 0 a fix was printed, 1 no (fresh) fix within the timeout, 3 gpsd unreachable
or GPS disabled in the config.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from edge.capture.clock import choose_clock, ntp_synchronized
from edge.capture.fix import Fix
from edge.capture.gps import GpsReader
from edge.capture.gpsd_client import GpsdClient
from edge.cli.common import config_option, emit_json, get_config, json_option
from edge.config import GpsConfig
from edge.errors import EXIT_NEGATIVE, DeviceMissing

TIME_GRACE_S = 2.0


def describe_fix(fix: Fix | None, cfg: GpsConfig, state: str) -> dict[str, Any]:
    """The JSON document `edge gps --json` prints."""
    choice = choose_clock(
        fix.gps_time_now() if fix is not None and not fix.stale else None,
        time.time(),
        ntp_synchronized(),
        cfg.clock_tolerance_s,
    )
    return {
        "gpsd": f"{cfg.host}:{cfg.port}",
        "state": state,
        "fix": fix.to_dict() if fix is not None else None,
        "clock": {"source": choice.source, "offset_s": choice.offset_s, "note": choice.note},
    }


def human(doc: dict[str, Any]) -> str:
    fix = doc["fix"]
    clock = f"clock {doc['clock']['source']} ({doc['clock']['note']})"
    if fix is None:
        return f"{doc['state']}: no position from gpsd at {doc['gpsd']}; {clock}"
    eph = "?" if fix["eph_m"] is None else f"{fix['eph_m']:.1f}"
    flags = "".join([" STALE" if fix["stale"] else "", " 2D-only" if fix["two_d"] else ""])
    return (
        f"fix {fix['mode']}D {fix['lat']:.6f}, {fix['lon']:.6f} +/-{eph} m, "
        f"{fix['sats_used'] if fix['sats_used'] is not None else '?'} sats, "
        f"time {fix['time'] or 'not yet'}, age {fix['fix_age_s']:.1f} s{flags}; {clock}"
    )


@click.command("gps")
@config_option
@click.option("--once", is_flag=True, help="Print the first fresh fix and exit.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1, 86400),
    default=None,
    help="Seconds to wait for a fix (--once: default 10) or to keep printing (default: until Ctrl-C).",
)
@json_option
def gps_cmd(once: bool, timeout_s: float | None, as_json: bool) -> None:
    """Print the current GPS fix from gpsd (position, error, mode, time, clock source)."""
    cfg = get_config().gps
    if not cfg.enabled:
        raise DeviceMissing(f"{get_config().source}: gps.enabled is false: GPS is switched off")
    probe = GpsdClient(cfg.host, cfg.port)
    probe.connect()  # GpsdUnavailable (exit 3) with where and why
    probe.close()
    with GpsReader(cfg) as reader:
        if once:
            limit = timeout_s if timeout_s is not None else 10.0
            deadline = time.monotonic() + limit
            fix = reader.wait_for_fix(limit)
            if fix is not None and fix.gps_time is None:
                # GGA comes before RMC: give the epoch's time a moment to arrive
                left = min(TIME_GRACE_S, deadline - time.monotonic())
                fix = reader.wait_for_fix(max(0.0, left), with_time=True) or reader.current()
            doc = describe_fix(fix, cfg, reader.state())
            if as_json:
                emit_json(doc)
            else:
                click.echo(human(doc))
            if fix is None:
                sys.exit(EXIT_NEGATIVE)  # (click's Exit is swallowed in non-standalone mode)
            return
        _stream(reader, cfg, timeout_s, as_json)


def _stream(reader: GpsReader, cfg: GpsConfig, timeout_s: float | None, as_json: bool) -> None:
    """One line per new fix or state change, until the timeout or Ctrl-C."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_seen: float | None = None
    last_state = ""
    while deadline is None or time.monotonic() < deadline:
        fix = reader.current()
        state = reader.state()
        new_fix = fix is not None and fix.received_monotonic != last_seen
        if new_fix or state != last_state:
            doc = describe_fix(fix, cfg, state)
            line = json.dumps(doc, sort_keys=True) if as_json else human(doc)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            last_seen = fix.received_monotonic if fix is not None else None
            last_state = state
        time.sleep(0.2)
