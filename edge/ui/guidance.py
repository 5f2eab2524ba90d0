"""Turns the detector and quality gates' verdict on a live frame into one guidance word.

The page shows a translated sentence for each code; the codes follow the reasons of
`edge.infer.quality.gate` so the preview asks for exactly what the verification needs.
"""

from __future__ import annotations

GUIDANCE = (
    "ok",
    "no_face",
    "move_closer",
    "look_at_camera",
    "too_dark",
    "too_bright",
    "hold_still",
)


def guidance_code(status: str, reason: str | None) -> str:
    """Map a FaceResult's status and gate reason to one of GUIDANCE."""
    if status == "ok":
        return "ok"
    if status == "no_face" or not reason:
        return "no_face"
    for needle, code in (
        ("move closer", "move_closer"),
        ("look at the camera", "look_at_camera"),
        ("too dark", "too_dark"),
        ("too bright", "too_bright"),
        ("hold still", "hold_still"),
    ):
        if needle in reason:
            return code
    return "no_face"
