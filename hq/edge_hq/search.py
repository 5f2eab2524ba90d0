"""One period's 1:N search: the in-region pass (exact, per district or sub-district block)
and the national pass (FAISS range search), merged into suspect groups.

Which blocks were searched, their sizes, the thresholds and the index parameters go into
the report, so a reviewer knows what "no suspect" covered.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_hq.config import SuspectsConfig
from edge_hq.national import IndexSpec, national_pass
from edge_hq.regions import Region
from edge_hq.suspects import Face, Pairs, Suspect, exact_pairs, group_pairs, normalise

log = logging.getLogger(__name__)
UNPLACED = "(no region)"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class SearchResult:
    suspects: list[Suspect]
    info: dict[str, Any]


def index_spec(cfg: SuspectsConfig) -> IndexSpec:
    return IndexSpec(
        cfg.index, cfg.ivf_nlist, cfg.ivf_nprobe, cfg.hnsw_m, cfg.hnsw_ef_search, cfg.threads
    )


def blocks(faces: Sequence[Face], regions: dict[str, Region], level: str) -> dict[str, np.ndarray]:
    """Row indices per block name; KPMs the list does not place share one block."""
    out: dict[str, list[int]] = {}
    for i, f in enumerate(faces):
        r = regions.get(f.kpm_id)
        key = (r.key(level) if r is not None else "") or UNPLACED
        out.setdefault(key, []).append(i)
    return {k: np.asarray(v, np.int64) for k, v in sorted(out.items())}


def region_pass(
    m: np.ndarray, faces: Sequence[Face], regions: dict[str, Region], cfg: SuspectsConfig
) -> tuple[Pairs, dict[str, Any]]:
    found = []
    parts = blocks(faces, regions, cfg.region_level)
    skipped = []
    for name, rows in parts.items():
        if rows.size > cfg.max_block:  # e.g. no regions imported: that is the national pass
            log.warning(
                "1:N: block %s has %d faces (> max_block): not searched in-region", name, rows.size
            )
            skipped.append(name)
        elif rows.size > 1:
            found.append(exact_pairs(m, cfg.region_threshold, rows))
    pairs = Pairs.concat(found)
    info = {
        "level": cfg.region_level,
        "threshold": cfg.region_threshold,
        "method": "exact (blockwise numpy)",
        "blocks": {k: int(v.size) for k, v in parts.items()},
        "blocks_not_searched": skipped,
        "pairs": int(pairs.i.size),
    }
    return pairs, info


@contextlib.contextmanager
def state_root(cfg: SuspectsConfig, db_url: str) -> Iterator[tuple[Path, bool]]:
    """Where indexes and resume state live: `index_dir`, else beside a SQLite database
    (`<db>.suspects/`); a PostgreSQL HQ without `index_dir` gets a temporary directory
    (the run works but cannot resume: the flag says whether it is kept)."""
    if cfg.index_dir:
        yield Path(cfg.index_dir), True
        return
    if "://" not in db_url or db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        yield path.with_name(path.name + ".suspects"), True
        return
    with tempfile.TemporaryDirectory(prefix="hq-suspects-") as tmp:
        yield Path(tmp), False


def search_period(
    period: str,
    faces: Sequence[Face],
    regions: dict[str, Region],
    cfg: SuspectsConfig,
    root: Path,
    progress: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Both passes as configured over one period's faces."""
    info: dict[str, Any] = {"period": period, "faces": len(faces), "region": None, "national": None}
    if len(faces) < 2:
        return SearchResult([], info)
    m = normalise(np.stack([np.asarray(f.embedding, np.float32).reshape(-1) for f in faces]))
    passes: dict[str, Pairs] = {}
    if cfg.region_level != "none":
        passes["region"], info["region"] = region_pass(m, faces, regions, cfg)
    if cfg.national:
        state_dir = root / _SAFE.sub("_", period)
        res = national_pass(
            [f.record_id for f in faces],
            m,
            cfg.national_threshold,
            index_spec(cfg),
            state_dir,
            cfg.chunk,
            progress,
        )
        passes["national"] = res.pairs
        info["national"] = {**res.info, "pairs": int(res.pairs.i.size)}
    return SearchResult(group_pairs(faces, passes), info)
