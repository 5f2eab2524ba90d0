"""Active liveness challenge: turn the head left and right, in a random order, in time.

Decided from YuNet's five landmarks, which are enough for a head turn: the nose tip
sits in front of the eye line, so turning the head moves it sideways by up to half the
eye distance (yaw ~0.35-0.5 at 30-45 degrees), while a flat print that is moved,
rotated, tilted or bent keeps its nose on the paper and its yaw near where it started
(see tests/test_liveness_challenge.py for what was measured). A blink is not visible in
five points (no eyelids), so "blink" is not offered: it would need a face-mesh model.

Conventions: `yaw` is `quality.pose_from_landmarks`'s (nose offset along the eye line,
in eye distances, positive towards the image's right). The camera is not mirrored, so a
person turning to THEIR left moves the nose to the image's right: step "left" asks for
yaw >= +turn, "right" for yaw <= -turn.

Pure logic here (tracker); `run_challenge` drives it with callables for the clock, the
frame grabber and the detector, so it imports no camera code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

STEPS = ("left", "right")


def plan_challenge(kind: str, rng: random.Random | None = None) -> tuple[str, ...]:
    """The steps to ask for, in a random order (a replayed video cannot know it)."""
    if kind == "off":
        return ()
    if kind != "turn":
        raise ValueError(f"challenge {kind!r}: expected off or turn")
    steps = list(STEPS)
    (rng or random.SystemRandom()).shuffle(steps)
    return tuple(steps)


@dataclass(frozen=True)
class ChallengeLimits:
    """How far is a turn, how frontal is "facing the camera", how long it may take."""

    turn_yaw: float = 0.30
    front_yaw: float = 0.12
    hold_frames: int = 2  # consecutive frames beyond turn_yaw
    time_limit_s: float = 10.0
    max_lost_frames: int = 5  # frames in a row without the face: the track is broken
    max_jump: float = 0.6  # face centre moving more than this x box size between frames


@dataclass(frozen=True)
class PoseSample:
    """One frame of the track: yaw and the face box centre/size, or None (no face)."""

    t: float
    yaw: float | None
    cx: float = 0.0
    cy: float = 0.0
    size: float = 0.0


@dataclass
class ChallengeTracker:
    """Feeds pose samples; passes once every step was done in order within the time."""

    steps: tuple[str, ...]
    limits: ChallengeLimits = field(default_factory=ChallengeLimits)
    index: int = 0
    started: float | None = None
    failed: str | None = None
    max_abs_yaw: float = 0.0
    _frontal: bool = False
    _held: int = 0
    _lost: int = 0
    _last: PoseSample | None = None

    @property
    def passed(self) -> bool:
        return self.failed is None and self.index >= len(self.steps)

    @property
    def done(self) -> bool:
        return self.passed or self.failed is not None

    @property
    def current(self) -> str | None:
        return None if self.done else self.steps[self.index]

    def feed(self, s: PoseSample) -> None:
        if self.done:
            return
        if self.started is None:
            self.started = s.t
        lim = self.limits
        if s.t - self.started > lim.time_limit_s:
            self.failed = f"no head turn {self.steps[self.index]} within {lim.time_limit_s:.0f} s"
            return
        if s.yaw is None:
            self._lost += 1
            self._held = 0
            if self._lost > lim.max_lost_frames:
                self.failed = "face lost during the challenge"
            return
        self._lost = 0
        if self._last is not None and self._last.yaw is not None:
            jump = max(abs(s.cx - self._last.cx), abs(s.cy - self._last.cy))
            if jump > lim.max_jump * max(self._last.size, 1.0):
                self.failed = "face jumped during the challenge (a different face?)"
                return
        self._last = s
        self.max_abs_yaw = max(self.max_abs_yaw, abs(s.yaw))
        if abs(s.yaw) <= lim.front_yaw:
            self._frontal = True
        sign = 1.0 if self.steps[self.index] == "left" else -1.0
        if self._frontal and sign * s.yaw >= lim.turn_yaw:
            self._held += 1
            if self._held >= lim.hold_frames:
                self.index += 1
                self._held = 0
                self._frontal = False  # the next step starts from facing the camera
        else:
            self._held = 0

    def summary(self) -> dict[str, object]:
        """What the record carries: steps asked, passed or not, and why not."""
        return {
            "kind": "turn",
            "steps": list(self.steps),
            "passed": self.passed,
            "reason": self.failed,
        }


Pose = tuple[float, float, float, float]  # yaw, box centre x, centre y, box size


def run_challenge(
    steps: Sequence[str],
    pose: Callable[[], Pose | None],
    *,
    limits: ChallengeLimits | None = None,
    on_step: Callable[[str | None, int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ChallengeTracker:
    """Sample poses until every step is done, the time runs out or the track breaks.

    `pose()` grabs a frame and measures the subject (None: no face); `on_step(step,
    index, seconds_left)` tells the screen what to ask for (None when finished).
    """
    tracker = ChallengeTracker(tuple(steps), limits or ChallengeLimits())
    start = clock()
    announced = -1
    while not tracker.done:
        if on_step is not None and tracker.index != announced:
            announced = tracker.index
            left = tracker.limits.time_limit_s - (clock() - start)
            on_step(tracker.current, tracker.index, left)
        measured = pose()
        t = clock()
        if measured is None:
            tracker.feed(PoseSample(t, None))
        else:
            yaw, cx, cy, size = measured
            tracker.feed(PoseSample(t, yaw, cx, cy, size))
    if on_step is not None:
        on_step(None, tracker.index, 0.0)
    return tracker
