"""Builders for test data: verifications, filled stores and roster bundles.

Real keys and the real record/roster code; only the numbers inside are made up.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nacl.public import PublicKey
from nacl.signing import SigningKey

from edge.keys import device_id_for
from edge.records import Evidence, Verification, build_record, seal_evidence
from edge.roster import EMBEDDING_DIM, encode_template, sign_bundle
from edge.store import Store

MODEL_SHA = hashlib.sha256(b"test embedder").hexdigest()
OTHER_MODEL_SHA = hashlib.sha256(b"another embedder").hexdigest()


def make_verification(
    i: int = 1,
    *,
    decision: str = "match",
    hq_box: PublicKey | None = None,
    rng: random.Random | None = None,
    model: str = MODEL_SHA,
) -> Verification:
    """A plausible verification number `i` (varied fields, optional sealed evidence)."""
    rng = rng or random.Random(i)
    evidence = None
    if hq_box is not None:
        emb = np.asarray([rng.uniform(-1, 1) for _ in range(EMBEDDING_DIM)], dtype="<f4")
        evidence = seal_evidence(
            Evidence(b"\xff\xd8fake-jpeg" + bytes([i % 256]), emb.tobytes()), hq_box
        )
    return Verification(
        kpm_id=f"KPM-{i:06d}",
        programme=("sembako", "pkh")[i % 2],
        period="2026-11",
        officer_id="officer-7",
        decision=decision,
        score=rng.uniform(-1, 1),
        threshold=0.362,
        model=model,
        captured_at=1_790_000_000 + i * 1.5,
        clock="gps",
        geo={
            "lat": -7.0 - rng.random(),
            "lon": 110.0 + rng.random(),
            "eph_m": 4.2,
            "mode": 3,
            "fix_age_s": 0.4,
        },
        geofence="inside",
        frames_used=3,
        reason=None if decision == "match" else "test",
        evidence=evidence,
    )


def fill_store(
    store: Store, key: SigningKey, n: int, hq_box: PublicKey | None = None, start: int = 1
) -> list[dict[str, Any]]:
    """Append n signed, chained records through Store.append (with the signed head, as the
    kiosk writes them); returns them."""
    device_id = device_id_for(key.verify_key)
    out = []
    for i in range(start, start + n):  # KPM-<i>: a KPM is served once per period
        v = make_verification(i, hq_box=hq_box)
        out.append(store.append(record_builder(v, device_id, key), head_key=key))
    return out


def record_builder(
    v: Verification, device_id: str, key: SigningKey
) -> Callable[[int, str], dict[str, Any]]:
    """The callback Store.append wants: (seq, prev_hash) -> signed record."""

    def build(seq: int, prev: str) -> dict[str, Any]:
        return build_record(v, device_id=device_id, seq=seq, prev_hash=prev, key=key)

    return build


def make_state(state_dir: Path, n: int, hq_box: PublicKey | None = None) -> SigningKey:
    """A state dir with a device key (as `edge keys init` writes it) and n records."""
    from edge.keys import init_device_key

    key = init_device_key(state_dir / "device.key")
    store = Store(state_dir / "edge.db")
    try:
        fill_store(store, key, n, hq_box)
    finally:
        store.close()
    return key


def template(seed: int) -> str:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=EMBEDDING_DIM).astype("<f4")
    return encode_template(v / np.linalg.norm(v))


def bundle_body(
    n: int = 3,
    *,
    model: str = MODEL_SHA,
    device_id: str = "*",
    bundle_id: str = "b-2026-11-001",
) -> dict[str, Any]:
    """An unsigned roster bundle body with n entries (point place or none)."""
    entries: list[dict[str, Any]] = []
    for i in range(n):
        entries.append(
            {
                "kpm_id": f"KPM-{i:06d}",
                "programme": "sembako",
                "period": "2026-11",
                "templates": [template(i)],
                "place": None,
            }
        )
    return {
        "v": 1,
        "bundle_id": bundle_id,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_790_000_000)),
        "model": model,
        "device_id": device_id,
        "entries": entries,
    }


def signed_bundle(key: SigningKey, **kw: Any) -> dict[str, Any]:
    return sign_bundle(bundle_body(**kw), key)


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path
