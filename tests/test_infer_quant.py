"""The shipped (quantised) embedder against its float32 original.

On the bundled photos in every run; over 80 faces of the dev set in the `data` group.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.infer.images import load_image
from edge.infer.manifest import load_manifest
from tests.support.faces import all_photos, dev_faces, face, identities, pipeline


def _cosines(frames: list[np.ndarray]) -> list[float]:
    """Quantised vs float32 embedding of each frame where both found a face."""
    assert "fp32" in load_manifest("").embedder.variants
    q, f = pipeline("litert"), pipeline("litert", "fp32")
    assert q.embedder_sha256 != f.embedder_sha256
    cos = []
    for frame in frames:
        a, b = q.analyse(frame, gates=False), f.analyse(frame, gates=False)
        if a.embedding is None or b.embedding is None:
            continue
        cos.append(float(a.embedding @ b.embedding))
    return cos


def test_quantised_embeddings_stay_close_to_float32_on_the_bundled_photos():
    cos = _cosines([load_image(p) for p in all_photos()])
    assert len(cos) == 20
    assert float(np.mean(cos)) >= 0.995, np.mean(cos)
    assert float(np.min(cos)) >= 0.98, np.min(cos)


@pytest.mark.data
def test_quantised_embeddings_stay_close_to_float32_over_the_dev_set():
    dev = dev_faces()
    names = identities(2, dev)[::6][:40]  # 40 identities spread over the set, 80 faces
    cos = _cosines([face(name, i, dev) for name in names for i in (0, 1)])
    assert len(cos) >= 70
    assert float(np.mean(cos)) >= 0.995, np.mean(cos)
    assert float(np.min(cos)) >= 0.98, np.min(cos)
