"""Errors of the face pipeline, mapped to the CLI's exit codes by edge.errors."""

from __future__ import annotations

from edge.errors import BadInput


class ModelError(BadInput):
    """A model file or the manifest is missing, altered or unreadable (exit 2)."""
