"""Roster bundles: the KPMs a device may serve, signed by HQ and bound to one embedder.

Pure: parse strictly (each error names the key), sign, verify. A bundle that is
unsigned, signed by another key, or made for another embedder is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge.errors import BadInput
from edge.keys import b64, unb64
from edge.records import PROGRAMMES, canonical_json

BUNDLE_VERSION = 1
EMBEDDING_DIM = 128
MAX_TEMPLATES = 8
_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RosterRefused(BadInput):
    """The bundle is well formed but must not be imported (signature, model)."""


@dataclass(frozen=True)
class RosterEntry:
    kpm_id: str
    programme: str
    period: str
    templates: tuple[bytes, ...]  # float32 little-endian, EMBEDDING_DIM each
    place: dict[str, Any] | None

    def template_arrays(self) -> list[np.ndarray]:
        return [np.frombuffer(t, dtype="<f4").copy() for t in self.templates]


@dataclass(frozen=True)
class Bundle:
    bundle_id: str
    issued_at: str
    model: str
    device_id: str
    entries: tuple[RosterEntry, ...]
    raw: dict[str, Any]


def encode_template(vector: np.ndarray) -> str:
    arr = np.asarray(vector, dtype="<f4").reshape(-1)
    if arr.size != EMBEDDING_DIM or not np.all(np.isfinite(arr)):
        raise ValueError(f"template must be {EMBEDDING_DIM} finite numbers")
    return b64(arr.tobytes())


def _fail(source: str, key: str, expected: str) -> BadInput:
    return BadInput(f"{source}: {key}: {expected}")


def _text(
    source: str, obj: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]
) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(source, f"{where}{key}", f"expected an id ({pattern.pattern}), got {value!r}")
    return value


def _place(source: str, value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    from edge.geo import parse_place

    try:
        parse_place(value, where=f"{source}: {where}")
    except BadInput:
        raise
    except (TypeError, ValueError) as exc:
        raise _fail(source, where, str(exc)) from None
    return dict(value)


def parse_bundle(obj: Any, source: str = "<bundle>") -> Bundle:
    """Strict structural parse; does not check the signature (see verify_bundle)."""
    if not isinstance(obj, dict):
        raise _fail(source, "(top level)", "expected a JSON object")
    allowed = {"v", "bundle_id", "issued_at", "model", "device_id", "entries", "sig"}
    extra = set(obj) - allowed
    if extra:
        raise _fail(source, sorted(extra)[0], "unknown key")
    if obj.get("v") != BUNDLE_VERSION:
        raise _fail(source, "v", f"expected {BUNDLE_VERSION}, got {obj.get('v')!r}")
    bundle_id = _text(source, obj, "bundle_id", "", _ID)
    issued_at = obj.get("issued_at")
    if not isinstance(issued_at, str) or not issued_at:
        raise _fail(source, "issued_at", "expected a UTC timestamp text")
    model = obj.get("model")
    if not isinstance(model, str) or not _HEX64.match(model):
        raise _fail(source, "model", "expected the embedder's sha256 (64 hex)")
    device_id = obj.get("device_id")
    if not isinstance(device_id, str) or not (device_id == "*" or _ID.match(device_id)):
        raise _fail(source, "device_id", "expected a device id or '*'")
    raw_entries = obj.get("entries")
    if not isinstance(raw_entries, list):
        raise _fail(source, "entries", "expected a list")
    entries = []
    seen: set[tuple[str, str, str]] = set()
    for i, e in enumerate(raw_entries):
        where = f"entries[{i}]."
        if not isinstance(e, dict):
            raise _fail(source, f"entries[{i}]", "expected an object")
        extra = set(e) - {"kpm_id", "programme", "period", "templates", "place"}
        if extra:
            raise _fail(source, where + sorted(extra)[0], "unknown key")
        kpm_id = _text(source, e, "kpm_id", where, _ID)
        period = _text(source, e, "period", where, _ID)
        programme = e.get("programme")
        if programme not in PROGRAMMES:
            raise _fail(source, where + "programme", f"expected one of {', '.join(PROGRAMMES)}")
        templates = e.get("templates")
        if not isinstance(templates, list) or not 1 <= len(templates) <= MAX_TEMPLATES:
            raise _fail(source, where + "templates", f"expected 1..{MAX_TEMPLATES} templates")
        blobs = []
        for j, t in enumerate(templates):
            try:
                raw = unb64(t, "template") if isinstance(t, str) else b""
            except ValueError:
                raw = b""
            arr = np.frombuffer(raw, dtype="<f4") if len(raw) % 4 == 0 else np.zeros(0)
            if arr.size != EMBEDDING_DIM or not np.all(np.isfinite(arr)):
                raise _fail(
                    source,
                    f"{where}templates[{j}]",
                    f"expected base64 of {EMBEDDING_DIM} float32 values",
                )
            blobs.append(raw)
        key = (kpm_id, str(programme), period)
        if key in seen:
            raise _fail(
                source, where + "kpm_id", f"duplicate entry for {kpm_id}/{programme}/{period}"
            )
        seen.add(key)
        place = _place(source, e.get("place"), where + "place")
        entries.append(RosterEntry(kpm_id, str(programme), period, tuple(blobs), place))
    return Bundle(bundle_id, issued_at, model, device_id, tuple(entries), obj)


def load_bundle_bytes(data: bytes, source: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(source, "(file)", "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(
            source, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(obj, dict):
        raise _fail(source, "(top level)", "expected a JSON object")
    return obj


def load_bundle_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: file not found") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory") from None
    return load_bundle_bytes(data, str(path))


def sign_bundle(body: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    return {**unsigned, "sig": b64(key.sign(canonical_json(unsigned)).signature)}


def verify_bundle(
    obj: Any,
    hq_key: VerifyKey,
    expected_model: str,
    device_id: str | None = None,
    source: str = "<bundle>",
) -> Bundle:
    """Parse, then refuse unless HQ signed it for this embedder (and this device, if targeted)."""
    bundle = parse_bundle(obj, source)
    sig = obj.get("sig")
    if not isinstance(sig, str) or not sig:
        raise RosterRefused(f"{source}: sig: bundle is unsigned")
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    try:
        hq_key.verify(canonical_json(unsigned), unb64(sig, "sig"))
    except (BadSignatureError, ValueError):
        raise RosterRefused(f"{source}: sig: not signed by the configured HQ key") from None
    if bundle.model != expected_model:
        raise RosterRefused(
            f"{source}: model: bundle made for embedder {bundle.model[:12]}, "
            f"this kiosk runs {expected_model[:12]}"
        )
    if device_id is not None and bundle.device_id not in ("*", device_id):
        raise RosterRefused(
            f"{source}: device_id: bundle is for {bundle.device_id}, not {device_id}"
        )
    return bundle
