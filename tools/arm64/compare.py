"""Pure comparison of the arm64 probe with the host's: per model and runtime, and the verdict.

Models: the detector (its raw output tensors, and the face it leads to: box and landmarks
in pixels) and the embedder (the L2-normalised embedding). Both are compared by cosine.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_COSINE = 0.999
# tflite_runtime 2.14 runs the dynamic-range int8 embedder on its own hybrid kernels, whose
# activation quantisation differs between x86 (SSE/AVX) and arm64 (NEON): on the bundled
# photos the embedder alone, same input bytes on both machines, agrees to 0.99871 there
# (LiteRT, through XNNPACK: 0.99958). About what a one-grey-level shift of every pixel does
# to this embedder (0.99922); the match/no-match decisions are checked separately.
MIN_EMBEDDER_COSINE = {"tflite_runtime": 0.998}


def min_cosine_for(model: str, runtime: str) -> float:
    """The agreement bar of one model under one runtime."""
    return MIN_EMBEDDER_COSINE.get(runtime, MIN_COSINE) if model == "embedder" else MIN_COSINE


# the whole chain (detector -> landmarks -> alignment -> int8 embedder) on each machine:
# sub-pixel landmark jitter moves the int8 embedding more than the model's own arithmetic
MIN_CHAIN_COSINE = 0.995


@dataclass(frozen=True)
class ModelAgreement:
    """How closely arm64 reproduced x86 for one model and runtime, over all photos."""

    model: str  # detector | embedder
    runtime: str
    photos: int
    min_cosine: float
    max_px: float | None  # detector only: largest box/landmark difference in pixels
    problems: tuple[str, ...]
    chain_min_cosine: float | None = None  # embedder only: after each machine's own detection

    @property
    def ok(self) -> bool:
        return not self.problems and self.min_cosine >= min_cosine_for(self.model, self.runtime)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": list(self.problems), "ok": self.ok}


def _vec(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), "<f4").astype(np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("-inf")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def compare(host: dict[str, Any], arm: dict[str, Any]) -> list[ModelAgreement]:
    """One ModelAgreement per (model, runtime) that either side ran."""
    out = []
    for rt in sorted(set(host["runtimes"]) | set(arm["runtimes"])):
        h = host["runtimes"].get(rt, {}).get("photos")
        a = arm["runtimes"].get(rt, {}).get("photos")
        if h is None or a is None:
            side = "x86" if h is None else "arm64"
            for model in ("detector", "embedder"):
                out.append(
                    ModelAgreement(
                        model, rt, 0, float("-inf"), None, (f"{rt} did not run on {side}",)
                    )
                )
            continue
        out.extend(_runtime(rt, h, a))
    return out


def _runtime(rt: str, h: dict[str, Any], a: dict[str, Any]) -> list[ModelAgreement]:
    det_cos: list[float] = []
    emb_cos: list[float] = []
    chain_cos: list[float] = []
    px: list[float] = []
    det_prob: list[str] = []
    emb_prob: list[str] = []
    for label in sorted(set(h) | set(a)):
        if label not in h or label not in a:
            det_prob.append(f"{label}: probed on one side only")
            continue
        ph, pa = h[label], a[label]
        det_cos.append(cosine(_vec(ph["detector_raw"]), _vec(pa["detector_raw"])))
        if (ph["box"] is None) != (pa["box"] is None) or ph["faces"] != pa["faces"]:
            det_prob.append(f"{label}: faces found x86 {ph['faces']} vs arm64 {pa['faces']}")
            continue
        if ph["box"] is None:
            continue
        diff = np.abs(np.r_[ph["box"], ph["landmarks"]] - np.r_[pa["box"], pa["landmarks"]])
        px.append(float(diff.max()))
        chain = cosine(_vec(ph["embedding"]), _vec(pa["embedding"]))
        chain_cos.append(chain)
        if "embedding_fixed" in ph and "embedding_fixed" in pa:
            emb_cos.append(cosine(_vec(ph["embedding_fixed"]), _vec(pa["embedding_fixed"])))
        else:  # an older probe: the chain is all there is
            emb_cos.append(chain)
    if not emb_cos:
        emb_prob.append("no photo gave a face on both sides")
    for model, values, probs in (("detector", det_cos, det_prob), ("embedder", emb_cos, emb_prob)):
        bar = min_cosine_for(model, rt)
        low = [v for v in values if v < bar]
        if low:
            probs.append(f"{len(low)} photo(s) below cosine {bar} (lowest {min(low):.6f})")
    low_chain = [v for v in chain_cos if v < MIN_CHAIN_COSINE]
    if low_chain:
        emb_prob.append(
            f"{len(low_chain)} photo(s) whose detect-align-embed chain is below cosine "
            f"{MIN_CHAIN_COSINE} (lowest {min(low_chain):.6f})"
        )
    return [
        ModelAgreement("detector", rt, len(det_cos), min(det_cos, default=float("-inf")),
                       max(px, default=0.0), tuple(det_prob)),
        ModelAgreement("embedder", rt, len(emb_cos), min(emb_cos, default=float("-inf")),
                       None, tuple(emb_prob), min(chain_cos, default=float("-inf"))),
    ]  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """One `edge verify --image` run in the arm64 root."""

    runtime: str
    case: str  # genuine | impostor
    expected: str
    exit_expected: int
    decision: str | None
    exit_code: int
    score: float | None

    @property
    def ok(self) -> bool:
        return self.decision == self.expected and self.exit_code == self.exit_expected

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}
