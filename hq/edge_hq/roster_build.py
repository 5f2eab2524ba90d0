"""`edge hq roster build`: a KPM list (CSV) + reference photos -> a signed roster bundle.

The CSV parse and the bundle assembly are pure; the embedder is passed in as a
function, so the only TFLite work is computing templates with the kiosk's own model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.period import period_problem
from edge.records import PROGRAMMES, utc_iso
from edge.roster import (
    BUNDLE_VERSION,
    CAPTURE_PREFIX,
    MAX_TEMPLATES,
    REGISTRY,
    encode_template,
    format_utc,
    parse_bundle,
    sign_bundle,
)

_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,64}\Z")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_PHOTOS = 8
DEFAULT_VALID_DAYS = 35.0  # a monthly period plus a few days' grace


@dataclass(frozen=True)
class KpmRow:
    kpm_id: str
    programme: str
    period: str
    place: dict[str, Any] | None
    line: int


def _num(source: str, line: int, col: str, text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{source}: line {line}: {col}: expected a number, got {text!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadInput(f"{source}: line {line}: {col}: expected {lo}..{hi}, got {text!r}")
    return value


def _place(source: str, line: int, row: dict[str, str]) -> dict[str, Any] | None:
    text = (row.get("place") or "").strip()
    lat, lon, radius = ((row.get(k) or "").strip() for k in ("lat", "lon", "radius_m"))
    if text:
        if lat or lon or radius:
            raise BadInput(
                f"{source}: line {line}: place: give either place JSON or lat/lon/radius_m"
            )
        try:
            place = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{source}: line {line}: place: not valid JSON ({exc.msg})") from None
        if not isinstance(place, dict):
            raise BadInput(f"{source}: line {line}: place: expected a JSON object")
        return place
    if not (lat or lon or radius):
        return None
    if not (lat and lon and radius):
        raise BadInput(f"{source}: line {line}: lat/lon/radius_m: give all three or none")
    return {
        "type": "point",
        "lat": _num(source, line, "lat", lat, -90, 90),
        "lon": _num(source, line, "lon", lon, -180, 180),
        "radius_m": _num(source, line, "radius_m", radius, 1, 1_000_000),
    }


def parse_kpm_csv(text: str, source: str = "<csv>") -> list[KpmRow]:
    """Rows of kpm_id, programme, period and a place (JSON column or lat/lon/radius_m)."""
    reader = csv.DictReader(io.StringIO(text))
    need = {"kpm_id", "programme", "period"}
    header = set(reader.fieldnames or [])
    if not need <= header:
        raise BadInput(f"{source}: line 1: header: missing {', '.join(sorted(need - header))}")
    rows: list[KpmRow] = []
    seen: set[tuple[str, str, str]] = set()
    for row in reader:
        line = reader.line_num
        if None in row:
            raise BadInput(f"{source}: line {line}: more cells than header columns")
        kpm_id, programme, period = (
            str(row[k] or "").strip() for k in ("kpm_id", "programme", "period")
        )
        if not _ID.match(kpm_id):
            raise BadInput(f"{source}: line {line}: kpm_id: expected an id, got {kpm_id!r}")
        if period_problem(period) is not None:
            raise BadInput(f"{source}: line {line}: period: {period_problem(period)}")
        if programme not in PROGRAMMES:
            raise BadInput(
                f"{source}: line {line}: programme: expected one of {', '.join(PROGRAMMES)}, "
                f"got {programme!r}"
            )
        key = (kpm_id, programme, period)
        if key in seen:
            raise BadInput(
                f"{source}: line {line}: kpm_id: duplicate {kpm_id}/{programme}/{period}"
            )
        seen.add(key)
        rows.append(KpmRow(kpm_id, programme, period, _place(source, line, row), line))
    if not rows:
        raise BadInput(f"{source}: no KPM rows")
    return rows


def photos_for(photos_dir: Path, kpm_id: str) -> list[Path]:
    """`<dir>/<kpm_id>.jpg` or every image in `<dir>/<kpm_id>/` (at most MAX_PHOTOS)."""
    found: list[Path] = []
    sub = photos_dir / kpm_id
    if sub.is_dir():
        found = sorted(p for p in sub.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    else:
        found = [photos_dir / f"{kpm_id}{s}" for s in PHOTO_SUFFIXES]
        found = [p for p in found if p.is_file()]
    if not found:
        raise BadInput(f"{photos_dir}: no photo for KPM {kpm_id} ({kpm_id}.jpg or {kpm_id}/)")
    return found[:MAX_PHOTOS]


def default_window(now: float, days: float = DEFAULT_VALID_DAYS) -> tuple[float, float]:
    """From the start of the issuing UTC day (kiosk clocks may lag a little) for `days`."""
    start = math.floor(now / 86400) * 86400
    return float(start), float(start + days * 86400)


def new_bundle_id() -> str:
    return f"b-{uuid.uuid4().hex[:20]}"


def build_bundle(
    rows: Sequence[KpmRow],
    templates: dict[str, np.ndarray],
    model: str,
    key: SigningKey,
    device_id: str = "*",
    now: float | None = None,
    bundle_id: str | None = None,
    *,
    window: tuple[float, float] | None = None,
    captures: Mapping[str, Sequence[tuple[str, np.ndarray]]] | None = None,
) -> dict[str, Any]:
    """Assemble, validate with the kiosk's own parser, and sign.

    Every bundle carries its validity window (default: `default_window(now)`). Entries
    whose KPM has `captures` (record id, embedding) get them as extra templates after
    the registry one, with `template_sources` saying which is which.
    """
    ts = time.time() if now is None else now
    lo, hi = window if window is not None else default_window(ts)
    entries = []
    for r in rows:
        extra = list((captures or {}).get(r.kpm_id, ()))[: MAX_TEMPLATES - 1]
        entry: dict[str, Any] = {
            "kpm_id": r.kpm_id,
            "programme": r.programme,
            "period": r.period,
            "templates": [encode_template(templates[r.kpm_id])]
            + [encode_template(e) for _rid, e in extra],
            "place": r.place,
        }
        if extra:
            entry["template_sources"] = [REGISTRY] + [f"{CAPTURE_PREFIX}{rid}" for rid, _e in extra]
        entries.append(entry)
    body = {
        "v": BUNDLE_VERSION,
        "bundle_id": bundle_id or new_bundle_id(),
        "issued_at": utc_iso(ts),
        "valid_from": format_utc(lo),
        "valid_until": format_utc(hi),
        "model": model,
        "device_id": device_id,
        "entries": entries,
    }
    parse_bundle(body, "<built bundle>")  # the kiosk refuses anything this refuses
    return sign_bundle(body, key)


def compute_templates(
    rows: Sequence[KpmRow],
    photos_dir: Path,
    enroll: Callable[[list[Path]], np.ndarray],
) -> dict[str, np.ndarray]:
    """One template per KPM id (shared by that KPM's programme/period rows)."""
    out: dict[str, np.ndarray] = {}
    for r in rows:
        if r.kpm_id not in out:
            out[r.kpm_id] = enroll(photos_for(photos_dir, r.kpm_id))
    return out


def pipeline_enroller(models_dir: str = "") -> tuple[str, Callable[[list[Path]], np.ndarray]]:
    """(embedder sha256, enroll function) from the kiosk's own face pipeline and models."""
    from edge.config import FaceConfig
    from edge.infer.pipeline import FacePipeline, enroll_template

    pipeline = FacePipeline.from_config(FaceConfig(models_dir=models_dir))

    def enroll(paths: list[Path]) -> np.ndarray:
        # BadInput from the pipeline names the photo that gave no good face.
        return np.asarray(enroll_template(pipeline, paths), dtype=np.float32)

    return str(pipeline.embedder_sha256), enroll
