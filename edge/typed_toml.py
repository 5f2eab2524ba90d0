"""Typed, frozen settings from TOML: the builder the kiosk's and HQ's config files share.

A settings class is a frozen dataclass of frozen section dataclasses; a field's metadata
(`rng`, `choices`) carries its bounds, so the loader refuses unknown sections and keys,
wrong types and impossible values with `FILE: section.key: expected ...` (exit 2).
Why one module: HQ used to copy the kiosk's loader and import its private builder.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import BadInput

T = TypeVar("T")


class ConfigError(BadInput):
    """A config file is unreadable or one of its values is refused."""

    def __init__(self, path: str | Path, key: str, expected: str) -> None:
        self.path = str(path)
        self.key = key
        self.expected = expected
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {expected}")


def rng(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """Field metadata: inclusive bounds (None: unbounded)."""
    return {"min": lo, "max": hi}


def choices(*values: str) -> dict[str, Any]:
    """Field metadata: the only values allowed."""
    return {"choices": values}


def coerce(path: str, key: str, value: Any, typ: Any, meta: Any) -> Any:
    """`value` checked against the field's type and metadata (ints widen to float)."""
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {value!r}")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, key, f"expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(path, key, f"expected a finite number, got {value!r}")
    elif typ is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {value!r}")
        if "\x00" in value:
            raise ConfigError(path, key, "expected a string without NUL characters")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise ConfigError(path, key, f"expected at least {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(path, key, f"expected at most {hi}, got {value!r}")
    allowed = meta.get("choices")
    if allowed and value not in allowed:
        raise ConfigError(path, key, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def build_section(path: str, name: str, cls: type[T], raw: Any) -> T:
    """One `[name]` table as an instance of the section dataclass `cls`."""
    if not isinstance(raw, dict):
        raise ConfigError(path, f"[{name}]", "expected a table (section)")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(
                path,
                f"{name}.{key}",
                f"unknown key; [{name}] accepts: {', '.join(sorted(known))}",
            )
    values = {}
    for key, value in raw.items():
        values[key] = coerce(path, f"{name}.{key}", value, hints[key], known[key].metadata)
    return cls(**values)


def build_settings(cls: type[T], data: dict[str, Any], source: str) -> T:
    """A whole settings object from a parsed TOML document (sections absent: defaults).

    `cls` has one field per section and a `source` field naming the file.
    """
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "source"]  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in fields:
            raise ConfigError(
                source, f"[{name}]", f"unknown section; expected one of {', '.join(fields)}"
            )
        sections[name] = build_section(source, name, hints[name], raw)
    return cls(**sections, source=source)  # type: ignore[call-arg]


def read_toml(path: Path, missing_hint: str) -> dict[str, Any]:
    """The parsed TOML file; ConfigError (exit 2) naming the file and what is wrong."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", f"file not found ({missing_hint})") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, expected a TOML file") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
