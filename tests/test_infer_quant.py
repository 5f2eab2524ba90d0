"""The shipped (quantised) embedder against its float32 original on dev faces."""

from __future__ import annotations

import numpy as np

from edge.infer.manifest import load_manifest
from tests.face_fixtures import face, identities, pipeline


def test_quantised_embeddings_stay_close_to_float32():
    assert "fp32" in load_manifest("").embedder.variants
    q, f = pipeline("litert"), pipeline("litert", "fp32")
    assert q.embedder_sha256 != f.embedder_sha256
    names = identities(2)[::6][:40]  # 40 identities spread over the set, 80 faces
    cos = []
    for name in names:
        for i in (0, 1):
            frame = face(name, i)
            a, b = q.analyse(frame, gates=False), f.analyse(frame, gates=False)
            if a.embedding is None or b.embedding is None:
                continue
            cos.append(float(a.embedding @ b.embedding))
    assert len(cos) >= 70
    assert float(np.mean(cos)) >= 0.995, np.mean(cos)
    assert float(np.min(cos)) >= 0.98, np.min(cos)
