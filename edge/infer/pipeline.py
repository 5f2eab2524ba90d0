"""The face pipeline: frame -> detect -> align -> quality gates -> embed -> match decision.

Built from a FaceConfig (or plain parameters), so it stays free of capture and uplink.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import FaceConfig, LivenessConfig
from edge.errors import BadInput
from edge.infer.align import align_face
from edge.infer.detector import FaceDetector
from edge.infer.embedder import FaceEmbedder
from edge.infer.errors import ModelError
from edge.infer.images import check_frame, load_image
from edge.infer.liveness import LivenessRule, decide_liveness
from edge.infer.manifest import Manifest, ModelEntry, load_manifest
from edge.infer.matcher import FrameOutcome, decide_burst, mean_template
from edge.infer.pad import LivenessModel
from edge.infer.pad_gates import PadLimits, PadQuality, measure_pad, pad_gate
from edge.infer.quality import Quality, QualityLimits, gate, measure, pose_from_landmarks
from edge.infer.runtime import TFLiteModel, resolve_runtime
from edge.infer.yunet import Detection, pick_subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceResult:
    """One frame analysed: status ok|no_face|poor_quality, and what was measured."""

    status: str
    reason: str | None = None
    crop: np.ndarray | None = None
    embedding: np.ndarray | None = None
    quality: Quality | None = None
    detection: Detection | None = None
    faces: int = 0
    liveness: float | None = None  # fused "real" probability, on frames past the gates
    # why the liveness check could not judge this frame (pad_gates), None if it did
    liveness_reason: str | None = None
    pad_quality: PadQuality | None = None

    def outcome(self) -> FrameOutcome:
        rank = self.quality.rank if self.quality is not None else float("-inf")
        return FrameOutcome(self.status, self.reason, rank, self.embedding)


@dataclass(frozen=True)
class BurstDecision:
    """A verification over a burst: what the record carries (score, frames) and evidence."""

    decision: str  # match | no_match | spoof | no_face | poor_quality
    score: float | None
    threshold: float
    frames_used: int
    frames_total: int
    reason: str | None = None
    crop: np.ndarray | None = None
    embedding: np.ndarray | None = None
    results: list[FaceResult] = field(default_factory=list, repr=False)
    liveness: LivenessRule | None = None
    liveness_models: tuple[str, ...] = ()

    def liveness_record(self) -> dict[str, Any] | None:
        """The record's `liveness` object, or None when PAD did not run on this burst."""
        if self.liveness is None:
            return None
        return self.liveness.as_record(self.liveness_models)


@dataclass(frozen=True)
class LivenessPolicy:
    """How a burst is judged live (from LivenessConfig)."""

    threshold: float = 0.377
    min_live_frames: int = 2
    min_live_fraction: float = 0.5
    limits: PadLimits = field(default_factory=PadLimits)

    @classmethod
    def from_config(cls, cfg: LivenessConfig) -> LivenessPolicy:
        limits = PadLimits(
            max_clipped=cfg.max_clipped,
            max_noise=cfg.max_noise,
            min_face_px=cfg.min_face_px,
            min_sharpness=cfg.min_sharpness,
        )
        return cls(cfg.threshold, cfg.min_live_frames, cfg.min_live_fraction, limits)


class FacePipeline:
    """Detector + embedder + gates + threshold; thread-unsafe (one interpreter each)."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        limits: QualityLimits,
        threshold: float,
        min_good_frames: int = 1,
        embedder_sha256: str = "",
        more_templates: tuple[float, ...] = (),
        liveness: LivenessModel | None = None,
        liveness_policy: LivenessPolicy | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.limits = limits
        self.threshold = float(threshold)
        # thresholds for 2, 3, ... reference templates; the last holds for any more
        self.more_templates = tuple(float(t) for t in more_templates)
        self.min_good_frames = int(min_good_frames)
        self.embedder_sha256 = embedder_sha256 or embedder.model.sha256
        self.liveness = liveness
        self.liveness_policy = liveness_policy or LivenessPolicy()

    @classmethod
    def from_config(
        cls,
        face_cfg: FaceConfig,
        *,
        embedder_variant: str | None = None,
        liveness_cfg: LivenessConfig | None = None,
    ) -> FacePipeline:
        """Load the models (sha256 checked) with the configured runtime and threads.

        embedder_variant picks another embedder listed in the manifest (e.g. "fp32",
        for the float-vs-quantised comparison); None is the shipped one, in the file the
        manifest gives the runtime (`runtime_files`), known by the main file's sha256
        (the roster's and records' model id: the files are the same weights, cosine
        >= 0.999, MODEL_CARD.md). `auto` resolves once, by the manifest's runtime order,
        and every model uses that runtime. With an enabled liveness_cfg the PAD models
        are loaded too (ModelError if missing).
        """
        manifest = load_manifest(face_cfg.models_dir)
        runtime = resolve_runtime(face_cfg.runtime, manifest.runtimes_for())
        det_path, det_sha = manifest.detector.file_for(runtime)
        det = TFLiteModel(det_path, det_sha, runtime, face_cfg.threads)
        entry = manifest.embedder_named(face_cfg.embedder)
        _check_runtime(entry, runtime)
        if embedder_variant is None:
            path, file_sha = entry.file_for(runtime)
            sha = entry.sha256
        else:
            path, sha = _embedder_file(entry, embedder_variant)
            file_sha = sha
        emb = TFLiteModel(path, file_sha, runtime, face_cfg.threads)
        limits = QualityLimits(
            min_face_px=face_cfg.min_face_px,
            min_sharpness=face_cfg.min_sharpness,
            max_pose=face_cfg.max_pose,
            min_brightness=face_cfg.min_brightness,
            max_brightness=face_cfg.max_brightness,
        )
        log.info("face models loaded with %s (%d threads)", det.runtime, face_cfg.threads)
        liveness = None
        policy = None
        if liveness_cfg is not None and liveness_cfg.enabled:
            liveness = LivenessModel.load(manifest, runtime, 1)
            policy = LivenessPolicy.from_config(liveness_cfg)
        return cls(
            FaceDetector(
                det,
                face_cfg.detector_score,
                manifest.detector.extra.get("channel_order", "BGR"),
                _detector_shapes(manifest, runtime, face_cfg.threads),
            ),
            FaceEmbedder.from_entry(emb, entry.extra),
            limits,
            face_cfg.threshold,
            face_cfg.min_good_frames,
            sha,
            (face_cfg.threshold_2_templates, face_cfg.threshold_3_templates),
            liveness,
            policy,
        )

    def threshold_for(self, n_templates: int) -> float:
        """The operating point for a KPM with this many reference templates."""
        if n_templates <= 1 or not self.more_templates:
            return self.threshold
        return self.more_templates[min(n_templates - 2, len(self.more_templates) - 1)]

    @property
    def runtime(self) -> str:
        return self.detector.model.runtime

    def analyse(self, frame: np.ndarray, *, gates: bool = True, embed: bool = True) -> FaceResult:
        """Detect the subject, align, measure quality, judge liveness and embed (unless a
        gate fails); embed=False skips the embedder (liveness evaluation)."""
        check_frame(frame)
        faces = self.detector.detect(frame)
        subject = pick_subject(faces, (frame.shape[0], frame.shape[1]))
        if subject is None:
            return FaceResult("no_face", "no face found", faces=0)
        crop = align_face(frame, subject.landmarks)
        q = measure(crop, subject.landmarks, subject.size)
        reason = gate(q, self.limits) if gates else None
        if reason is not None:
            return FaceResult("poor_quality", reason, crop, None, q, subject, faces=len(faces))
        live, live_reason, pq = None, None, None
        if self.liveness is not None:
            pq = measure_pad(frame, subject.box, q.sharpness)
            live_reason = pad_gate(pq, self.liveness_policy.limits) if gates else None
            if live_reason is None:
                live = self.liveness.score(frame, subject.box)
        emb = self.embedder.embed(crop) if embed else None
        return FaceResult(
            "ok",
            None,
            crop,
            emb,
            q,
            subject,
            faces=len(faces),
            liveness=live,
            liveness_reason=live_reason,
            pad_quality=pq,
        )

    def pose(self, frame: np.ndarray) -> tuple[float, float, float, float] | None:
        """The subject's yaw and box (centre x, centre y, size), or None: the challenge's
        per-frame measure (detector only, a few ms)."""
        check_frame(frame)
        subject = pick_subject(self.detector.detect(frame), (frame.shape[0], frame.shape[1]))
        if subject is None:
            return None
        yaw, _roll = pose_from_landmarks(subject.landmarks)
        x, y, w, h = subject.box
        return yaw, x + w / 2, y + h / 2, subject.size

    def verify_burst(
        self, frames: Sequence[np.ndarray], references: Sequence[np.ndarray]
    ) -> BurstDecision:
        """Analyse every frame, decide on the best good ones (see matcher.decide_burst)."""
        if len(frames) == 0:
            raise BadInput("burst: no frames")
        results = [self.analyse(f) for f in frames]
        threshold = self.threshold_for(len(references))
        rule = decide_burst(
            [r.outcome() for r in results], references, threshold, self.min_good_frames
        )
        crop = results[rule.used[0]].crop if rule.used else None
        decision, reason = rule.decision, rule.reason
        live_rule = None
        if self.liveness is not None and decision in ("match", "no_match"):
            decision, reason, live_rule = self._judge_liveness(results, decision, reason)
        return BurstDecision(
            decision=decision,
            score=rule.score,
            threshold=threshold,
            frames_used=len(rule.used),
            frames_total=len(frames),
            reason=reason,
            crop=crop,
            embedding=rule.embedding,
            results=results,
            liveness=live_rule,
            liveness_models=self.liveness.sha256s if self.liveness is not None else (),
        )

    def _judge_liveness(
        self, results: Sequence[FaceResult], decision: str, reason: str | None
    ) -> tuple[str, str | None, LivenessRule]:
        """spoof (never match) unless enough judged frames look live; poor_quality if too few."""
        p = self.liveness_policy
        scores = [r.liveness for r in results if r.status == "ok" and r.liveness is not None]
        lv = decide_liveness(scores, p.threshold, p.min_live_frames, p.min_live_fraction)
        if lv.live is None:
            return "poor_quality", not_judged_reason(results, lv), lv
        if not lv.live:
            assert lv.score is not None
            return (
                "spoof",
                f"presentation attack suspected: liveness {lv.score:.3f} below"
                f" {lv.threshold:.3f} ({lv.frames_live} of {lv.frames_judged} frames live,"
                f" need {lv.needed})",
                lv,
            )
        return decision, reason, lv

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "embedder_sha256": self.embedder_sha256,
            "embedder_file": self.embedder.model.path.name,
            "threshold": self.threshold,
            "liveness": None
            if self.liveness is None
            else {
                "models": list(self.liveness.sha256s),
                "threshold": self.liveness_policy.threshold,
            },
        }


def not_judged_reason(results: Sequence[FaceResult], lv: LivenessRule) -> str:
    """Why a burst could not be judged live: the commonest liveness-gate reason, if any."""
    head = f"liveness: {lv.frames_judged} of {len(results)} frames usable, need {lv.needed}"
    reasons = [r.liveness_reason for r in results if r.liveness_reason is not None]
    if not reasons:
        return f"{head}: hold still facing the camera"
    # the commonest gate, by its text before the measured figures
    kinds = Counter(r.split(" (")[0] for r in reasons)
    kind = kinds.most_common(1)[0][0]
    example = next(r for r in reasons if r.startswith(kind))
    return f"{head}; {example}"


def _detector_shapes(
    manifest: Manifest, runtime: str, threads: int
) -> dict[tuple[int, int], Callable[[], TFLiteModel]]:
    """The detector's other input shapes (variants that list their inputs), each loaded
    on first use: a kiosk seeing only 4:3 frames never loads the square one."""
    entry = manifest.detector
    shapes: dict[tuple[int, int], Callable[[], TFLiteModel]] = {}
    for name, inputs in entry.variant_inputs.items():
        shape = next(iter(inputs.values()), [])
        if len(shape) != 4:
            continue
        path, sha = entry.variants[name], entry.variant_sha256[name]
        shapes[(int(shape[1]), int(shape[2]))] = partial(TFLiteModel, path, sha, runtime, threads)
    return shapes


def _check_runtime(entry: ModelEntry, runtime: str) -> None:
    """The manifest says which runtimes an embedder file is for (format and op versions)."""
    allowed = entry.extra.get("runtimes")
    if allowed and runtime not in allowed:
        raise ModelError(
            f"{entry.path.name}: made for {', '.join(allowed)}, not {runtime} "
            "(set face.runtime, or pick another face.embedder)"
        )


def _embedder_file(entry: ModelEntry, variant: str | None) -> tuple[Path, str]:
    if variant is None or variant == entry.quantisation:
        return entry.path, entry.sha256
    if variant not in entry.variants:
        known = ", ".join([entry.quantisation, *entry.variants])
        raise BadInput(f"embedder variant {variant!r} not in the manifest (have: {known})")
    return entry.variants[variant], entry.variant_sha256[variant]


def enroll_template(
    pipeline: FacePipeline, images: Iterable[np.ndarray | str | Path]
) -> np.ndarray:
    """One reference template from civil-registry style photos (HQ builds rosters with it).

    Every photo must give a good face; BadInput names the one that does not.
    """
    embeddings = []
    for i, img in enumerate(images):
        where = str(img) if isinstance(img, (str, Path)) else f"image {i}"
        frame = load_image(img) if isinstance(img, (str, Path)) else img
        result = pipeline.analyse(frame)
        if result.status != "ok" or result.embedding is None:
            raise BadInput(f"{where}: {result.status}: {result.reason}")
        embeddings.append(result.embedding)
    if not embeddings:
        raise BadInput("enroll: no photos given")
    return mean_template(embeddings)
