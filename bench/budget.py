"""Where one verification's time goes, frame capture to committed record, in-process.

A real `Daemon` (replay camera, real models with PAD, SQLite store, Ed25519 signing) runs
`Verifier.verify` as the API would; each stage's callable is wrapped with a timer for the
run, so the stages add up to the whole and "other" is what no stage covers (eligibility,
roster lookup, geotag, decision rule). Used by bench/daemon.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edge import verification
from edge.daemon import Daemon
from edge.infer import pipeline as pipeline_mod
from edge.verification import Request

STAGES = (
    "capture",
    "detect",
    "align",
    "quality",
    "pad_gates",
    "pad",
    "embed",
    "evidence",
    "sign_commit",
)


class Timers:
    """Seconds spent in each stage during one verification."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STAGES, 0.0)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[stage] += time.perf_counter() - t

        return timed


@contextmanager
def instrumented(daemon: Daemon, timers: Timers) -> Iterator[None]:
    """Wrap the daemon's stage callables (instance attributes and module functions)."""
    verifier = daemon.verifier
    assert verifier is not None and daemon.parts is not None
    pipe = daemon.parts.pipeline
    patches: list[tuple[Any, str, Any]] = [
        (verifier, "burst", "capture"),
        (pipe.detector, "detect", "detect"),
        (pipe.embedder, "embed", "embed"),
        (pipeline_mod, "align_face", "align"),
        (pipeline_mod, "measure", "quality"),
        (pipeline_mod, "measure_pad", "pad_gates"),
        (verification, "seal_evidence", "evidence"),
        (verification, "crop_jpeg", "evidence"),
        (verifier.store, "append", "sign_commit"),
    ]
    if pipe.liveness is not None:
        patches.append((pipe.liveness, "score", "pad"))
    # (object, name, its own attribute before patching or None for a class's method)
    saved = [(obj, name, vars(obj).get(name)) for obj, name, _ in patches]
    try:
        for obj, name, stage in patches:
            setattr(obj, name, timers.wrap(stage, getattr(obj, name)))
        yield
    finally:
        for obj, name, own in reversed(saved):
            if own is None:
                delattr(obj, name)  # the class's method shows through again
            else:
                setattr(obj, name, own)


def stage_budget(daemon: Daemon, kpm_ids: list[str]) -> dict[str, Any]:
    """Median ms of each stage and of the whole, over one verification per KPM."""
    verifier = daemon.verifier
    assert verifier is not None
    per: dict[str, list[float]] = {k: [] for k in (*STAGES, "other", "total")}
    decisions = []
    for kpm in kpm_ids:
        timers = Timers()
        with instrumented(daemon, timers):
            t = time.perf_counter()
            answer = verifier.verify(Request(kpm_id=kpm, officer_id="bench"))
            total = time.perf_counter() - t
        decisions.append(answer["decision"])
        for k, v in timers.spent.items():
            per[k].append(v)
        per["other"].append(total - sum(timers.spent.values()))
        per["total"].append(total)
    return {
        "ms": {k: round(1e3 * statistics.median(v), 2) for k, v in per.items()},
        "decisions": sorted(set(decisions)),
    }
