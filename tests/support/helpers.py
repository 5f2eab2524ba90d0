"""Small helpers shared by the tests: free ports, waiting for a condition, TOML files."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now on `host` (picked by the kernel).

    Whoever binds it next (mosquitto, gpsd, PostgreSQL, an API) does so a moment later.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[..., Any], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `cond()` until it is true; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    if cond():  # one last look: the deadline may have passed while we slept
        return
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def toml_value(value: Any) -> str:
    """One TOML value: booleans, numbers, strings (escaped), lists of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def write_toml(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write `{section: {key: value}}` as a TOML file of flat tables; returns `path`."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
