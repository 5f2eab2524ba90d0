"""Roster bundles: the KPMs a device may serve, signed by HQ and bound to one embedder.

Pure: parse strictly (each error names the key), sign, verify. A bundle that is
unsigned, signed by another key, or made for another embedder is refused.

Optional keys, so that bundles signed before they existed still verify:
`valid_from`/`valid_until` (UTC, both or neither: the window in which the kiosk may
serve the bundle's entries; HQ's builder always writes them) and, per entry,
`template_sources` (one per template: "registry" or "capture:<record id>", saying
which templates came from a civil-registry photo and which from an earlier verified
capture; absent means all "registry").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bansos_contract.canonical import b64, canonical_json, unb64
from bansos_contract.ids import HEX64 as _HEX64
from bansos_contract.ids import TEXT_ID as _ID
from bansos_contract.utc import parse as parse_utc
from edge.errors import BadInput
from edge.period import period_problem
from edge.records import PROGRAMMES

BUNDLE_VERSION = 1
EMBEDDING_DIM = 128  # SFace; EdgeFace-XS gives 512 (the bundle's `model` says which)
EMBEDDING_DIMS = (128, 512)
_DIMS = " or ".join(str(d) for d in EMBEDDING_DIMS)
MAX_TEMPLATES = 8
REGISTRY = "registry"
CAPTURE_PREFIX = "capture:"


class RosterRefused(BadInput):
    """The bundle is well formed but must not be imported (signature, model)."""


@dataclass(frozen=True)
class RosterEntry:
    kpm_id: str
    programme: str
    period: str
    templates: tuple[bytes, ...]  # float32 little-endian, EMBEDDING_DIM each
    place: dict[str, Any] | None
    template_sources: tuple[str, ...] = ()  # empty: all "registry"
    valid_from: float | None = None  # the bundle's window, Unix seconds (None: no window)
    valid_until: float | None = None
    bundle_id: str | None = None

    def sources(self) -> tuple[str, ...]:
        return self.template_sources or (REGISTRY,) * len(self.templates)

    def window_state(self, now: float) -> str:
        """'valid', 'not_yet_valid' or 'expired' at Unix time `now` (no window: 'valid')."""
        if self.valid_from is not None and now < self.valid_from:
            return "not_yet_valid"
        if self.valid_until is not None and now >= self.valid_until:
            return "expired"
        return "valid"

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
    valid_from: float | None = None
    valid_until: float | None = None


def encode_template(vector: np.ndarray) -> str:
    arr = np.asarray(vector, dtype="<f4").reshape(-1)
    if arr.size not in EMBEDDING_DIMS or not np.all(np.isfinite(arr)):
        raise ValueError(f"template must be {_DIMS} finite numbers")
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
    bundle_id, issued_at, model, device_id = _header(source, obj)
    valid_from, valid_until = _window(source, obj)
    raw_entries = obj.get("entries")
    if not isinstance(raw_entries, list):
        raise _fail(source, "entries", "expected a list")
    entries: list[RosterEntry] = []
    dims: list[int] = []  # every template of a bundle comes from one embedder: the first's size
    seen: set[tuple[str, str, str]] = set()
    for i, e in enumerate(raw_entries):
        entry = _entry(source, e, i, dims)
        key = (entry.kpm_id, entry.programme, entry.period)
        if key in seen:
            raise _fail(
                source,
                f"entries[{i}].kpm_id",
                f"duplicate entry for {entry.kpm_id}/{entry.programme}/{entry.period}",
            )
        seen.add(key)
        place = _place(source, e.get("place"), f"entries[{i}].place")
        entries.append(
            replace(
                entry,
                place=place,
                valid_from=valid_from,
                valid_until=valid_until,
                bundle_id=bundle_id,
            )
        )
    return Bundle(
        bundle_id, issued_at, model, device_id, tuple(entries), obj, valid_from, valid_until
    )


def _header(source: str, obj: Any) -> tuple[str, str, str, str]:
    """The bundle's own keys: version, id, issue time, embedder, device (or '*')."""
    if not isinstance(obj, dict):
        raise _fail(source, "(top level)", "expected a JSON object")
    allowed = {"v", "bundle_id", "issued_at", "model", "device_id", "entries", "sig"}
    allowed |= {"valid_from", "valid_until"}
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
    return bundle_id, issued_at, model, device_id


def _entry(source: str, e: Any, i: int, dims: list[int]) -> RosterEntry:
    """One entry's KPM, programme, period, templates and sources; the caller adds the place
    (checked after the duplicate rule) and the bundle's id and window."""
    where = f"entries[{i}]."
    if not isinstance(e, dict):
        raise _fail(source, f"entries[{i}]", "expected an object")
    extra = set(e) - {"kpm_id", "programme", "period", "templates", "place", "template_sources"}
    if extra:
        raise _fail(source, where + sorted(extra)[0], "unknown key")
    kpm_id = _text(source, e, "kpm_id", where, _ID)
    period = _text(source, e, "period", where, _ID)
    if period_problem(period) is not None:
        raise _fail(source, where + "period", str(period_problem(period)))
    programme = e.get("programme")
    if programme not in PROGRAMMES:
        raise _fail(source, where + "programme", f"expected one of {', '.join(PROGRAMMES)}")
    templates = e.get("templates")
    if not isinstance(templates, list) or not 1 <= len(templates) <= MAX_TEMPLATES:
        raise _fail(source, where + "templates", f"expected 1..{MAX_TEMPLATES} templates")
    blobs = tuple(
        _template(source, t, f"{where}templates[{j}]", dims) for j, t in enumerate(templates)
    )
    sources = _sources(source, e, where, len(blobs))
    return RosterEntry(kpm_id, str(programme), period, blobs, None, sources)


def _template(source: str, t: Any, where: str, dims: list[int]) -> bytes:
    """One base64 float32 template; the bundle's first fixes the size (`dims` holds it)."""
    try:
        raw = unb64(t, "template") if isinstance(t, str) else b""
    except ValueError:
        raw = b""
    arr = np.frombuffer(raw, dtype="<f4") if len(raw) % 4 == 0 else np.zeros(0)
    if arr.size not in EMBEDDING_DIMS or not np.all(np.isfinite(arr)):
        raise _fail(source, where, f"expected base64 of {_DIMS} float32 values")
    if not dims:
        dims.append(int(arr.size))
    elif arr.size != dims[0]:
        raise _fail(
            source,
            where,
            f"expected {dims[0]} float32 values like the bundle's first template"
            " (one embedder per bundle)",
        )
    return raw


def _window(source: str, obj: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Both `valid_from` and `valid_until`, or neither (a bundle from before windows)."""
    has = [k for k in ("valid_from", "valid_until") if k in obj]
    if not has:
        return None, None
    if len(has) == 1:
        other = "valid_until" if has[0] == "valid_from" else "valid_from"
        raise _fail(source, other, "missing: give both valid_from and valid_until or neither")
    out = []
    for k in ("valid_from", "valid_until"):
        try:
            out.append(parse_utc(obj[k]))
        except ValueError as exc:
            raise _fail(source, k, str(exc)) from None
    if out[1] <= out[0]:
        raise _fail(source, "valid_until", "must be later than valid_from")
    return out[0], out[1]


def _sources(source: str, e: Mapping[str, Any], where: str, n: int) -> tuple[str, ...]:
    """Per-template origin: "registry" or "capture:<record id>", one per template."""
    if "template_sources" not in e:
        return ()
    raw = e["template_sources"]
    if not isinstance(raw, list) or len(raw) != n:
        raise _fail(
            source, where + "template_sources", f"expected a list of {n} (one per template)"
        )
    seen: set[str] = set()
    for j, s in enumerate(raw):
        ok = isinstance(s, str) and (
            s == REGISTRY
            or (s.startswith(CAPTURE_PREFIX) and bool(_ID.match(s[len(CAPTURE_PREFIX) :])))
        )
        if not ok or (s != REGISTRY and s in seen):
            raise _fail(
                source,
                f"{where}template_sources[{j}]",
                f"expected 'registry' or a distinct 'capture:<record id>', got {s!r}",
            )
        seen.add(s)
    if REGISTRY not in raw:
        raise _fail(source, where + "template_sources", "needs at least one 'registry' template")
    return tuple(raw)


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


def _embedder_label(sha256: str) -> str:
    """ "NAME (sha256 prefix)" for an embedder of the bundled manifest, else the prefix."""
    from edge.infer.errors import ModelError
    from edge.infer.manifest import load_manifest

    try:
        names = {e.sha256: n for n, e in load_manifest().embedders.items()}
    except ModelError:
        names = {}
    name = names.get(sha256)
    return f"{name} ({sha256[:12]})" if name else sha256[:12]


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
        ours = _embedder_label(expected_model)
        raise RosterRefused(
            f"{source}: model: bundle made for embedder {_embedder_label(bundle.model)}, "
            f"this kiosk runs {ours}: HQ must rebuild the roster for it "
            f"(edge hq roster build --embedder {ours.split(' ')[0]})"
        )
    if device_id is not None and bundle.device_id not in ("*", device_id):
        raise RosterRefused(
            f"{source}: device_id: bundle is for {bundle.device_id}, not {device_id}"
        )
    return bundle
