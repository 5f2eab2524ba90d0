"""Exceptions that carry the command line's exit code, so the CLI maps them without guessing."""

from __future__ import annotations

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3


class EdgeError(Exception):
    """Base for errors that the CLI reports as one clear line."""

    exit_code = EXIT_BAD_INPUT


class BadInput(EdgeError):
    """Input (a file, an argument, a payload) is malformed; says what and where."""

    exit_code = EXIT_BAD_INPUT


class DeviceMissing(EdgeError):
    """A device or service the command needs is not there (camera, gpsd, broker)."""

    exit_code = EXIT_MISSING
