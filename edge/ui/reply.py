"""What a screen endpoint answers: a status code and a JSON body (or bytes, for the preview)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    code: int
    body: dict[str, Any] | bytes
    content_type: str = "application/json"


def err(code: int, key: str, message: str, **extra: Any) -> Reply:
    """An error the page can translate (`error_key`) and a human can read (`error`)."""
    return Reply(code, {"error": message, "error_key": key, **extra})
