"""`edge hq report --json`: what the stored records say, per device, per period, and suspects.

Device chains are re-walked from storage (gaps are missing seqs, forks broken links),
so the report does not depend on the order in which workers happened to see records.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from nacl.public import PrivateKey

from edge.records import open_evidence
from edge_hq.checks import (
    BAD_SIGNATURE,
    UNKNOWN_DEVICE,
    Link,
    ServedRow,
    double_collections,
    summarise_chain,
)
from edge_hq.config import SuspectsConfig
from edge_hq.db import Database
from edge_hq.heads import heads_by_device, missing_tail
from edge_hq.regions import load_regions
from edge_hq.search import search_period, state_root
from edge_hq.store import audit
from edge_hq.suspects import Face

log = logging.getLogger(__name__)
SERVED = ("match", "manual")


def device_report(db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (device_id,) in db.rows("SELECT device_id FROM devices ORDER BY device_id"):
        out[str(device_id)] = {
            "records": 0, "last_seq": 0, "gaps": [], "missing": 0, "forks": [],
            "unverified_links": [], "compromised": False, "bad_signatures": 0,
            "quarantined": {},
        }  # fmt: skip

    def flush(device: str | None, links: list[Link]) -> None:
        if device is None:
            return
        s = summarise_chain(links)
        d = out.setdefault(device, {"bad_signatures": 0, "quarantined": {}})
        d.update(
            records=s.records,
            last_seq=s.last_seq,
            gaps=[list(g) for g in s.gaps],
            missing=s.missing,
            forks=s.forks,
            # the first seq after each gap: its prev_hash names a record HQ does not hold,
            # so the link cannot be checked until that record arrives (a made-up link
            # shows here, and as a fork once the real predecessor is stored)
            unverified_links=[b + 1 for _a, b in s.gaps],
            # two records at one seq, or a broken link: the device key signed both sides,
            # so it is cloned or a backup was restored; revoke and investigate
            compromised=bool(s.forks),
        )

    current: str | None = None
    links: list[Link] = []
    for dev, seq, rid, prev, h in db.iter_rows(
        "SELECT device_id, seq, id, prev_hash, hash FROM records ORDER BY device_id, seq, id"
    ):
        if dev != current:
            flush(current, links)
            current, links = str(dev), []
        links.append(Link(int(seq), str(rid), str(prev), str(h)))
    flush(current, links)
    for dev, reason, n in db.rows(
        "SELECT device_id, reason, COUNT(*) FROM quarantine GROUP BY device_id, reason"
    ):
        if reason == UNKNOWN_DEVICE:
            continue
        d = out.setdefault(
            str(dev),
            {
                "records": 0,
                "last_seq": 0,
                "gaps": [],
                "missing": 0,
                "forks": [],
                "unverified_links": [],
                "compromised": False,
                "bad_signatures": 0,
                "quarantined": {},
            },
        )
        d["quarantined"][str(reason)] = int(n)
        if reason == BAD_SIGNATURE:
            d["bad_signatures"] = int(n)
    _heads(db, out)
    return out


def _heads(db: Database, out: dict[str, Any]) -> None:
    """Each device's newest signed head HQ has seen, and the tail its records lack."""
    heads = heads_by_device(db)
    for device, d in out.items():
        head = heads.get(device)
        d["head_seen"] = head
        d["missing_tail"] = missing_tail(int(d.get("last_seq") or 0), head)
        d["head_mismatch"] = False
        if head is not None and d["missing_tail"] is None:
            row = db.one(
                "SELECT COUNT(*) FROM records WHERE device_id = ? AND seq = ? AND hash = ?",
                (device, head["seq"], head["hash"]),
            )
            d["head_mismatch"] = head["seq"] > 0 and not (row and int(row[0]))


def period_report(db: Database) -> list[dict[str, Any]]:
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for period, programme, decision, geofence, n in db.rows(
        """SELECT period, programme, decision, geofence, COUNT(*) FROM records
           GROUP BY period, programme, decision, geofence"""
    ):
        key = (str(period), str(programme))
        e = acc.setdefault(
            key,
            {
                "period": key[0],
                "programme": key[1],
                "records": 0,
                "decisions": defaultdict(int),
                "outside_geofence": 0,
            },
        )
        e["records"] += int(n)
        e["decisions"][str(decision)] += int(n)
        if decision in SERVED and geofence == "outside":
            e["outside_geofence"] += int(n)
    for period, programme, body in db.iter_rows(
        "SELECT period, programme, body FROM records WHERE decision = 'not_eligible'"
    ):
        found = acc.get((str(period), str(programme)))
        if found is not None:
            code = str(json.loads(str(body)).get("reason") or "").split(":", 1)[0] or "unknown"
            found.setdefault("not_eligible_reasons", defaultdict(int))[code] += 1
    _liveness_counts(db, acc)
    out = []
    for key in sorted(acc):
        e = acc[key]
        e["not_eligible_reasons"] = dict(sorted(e.get("not_eligible_reasons", {}).items()))
        d = e["decisions"]
        e["spoofs"] = d.get("spoof", 0)
        checked = d.get("match", 0) + d.get("no_match", 0)
        e["matches"] = d.get("match", 0)
        e["no_match_rate"] = round(d.get("no_match", 0) / checked, 6) if checked else None
        e["decisions"] = dict(sorted(d.items()))
        out.append(e)
    return out


def _liveness_counts(db: Database, acc: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Per period: manual handovers that overrode a `spoof`, and matches without PAD.

    A match with `liveness` null came from a kiosk that ran no presentation-attack check
    (an old release, or PAD switched off): HQ should know how many there are.
    """
    for e in acc.values():
        e["manual_after_spoof"] = 0
        e["match_without_liveness"] = 0
    for period, programme, decision, body in db.iter_rows(
        "SELECT period, programme, decision, body FROM records WHERE decision IN ('match', 'manual')"
    ):
        found = acc.get((str(period), str(programme)))
        if found is None:
            continue
        rec = json.loads(str(body))
        if decision == "manual" and str(rec.get("reason") or "").startswith("override after spoof"):
            found["manual_after_spoof"] += 1
        if decision == "match" and rec.get("liveness") is None:
            found["match_without_liveness"] += 1
    _replay_counts(db, acc)


def _replay_counts(db: Database, acc: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Per period: records whose frames came from the replay camera (files, not a person).

    Outside a demo or a test bench that is a kiosk misconfigured, or one replaying photos
    to collect aid: the report names the devices. The signed bytes are canonical JSON, so
    the prefilter on the body's text is exact; the parsed record decides.
    """
    for e in acc.values():
        e["replay_records"] = 0
        e["replay_devices"] = []
    for period, programme, device_id, body in db.iter_rows(
        "SELECT period, programme, device_id, body FROM records WHERE body LIKE ?",
        ('%"camera":"replay"%',),
    ):
        found = acc.get((str(period), str(programme)))
        if found is None or json.loads(str(body)).get("camera") != "replay":
            continue
        found["replay_records"] += 1
        if str(device_id) not in found["replay_devices"]:
            found["replay_devices"].append(str(device_id))


def unknown_devices(db: Database) -> dict[str, int]:
    rows = db.rows(
        "SELECT device_id, COUNT(*) FROM quarantine WHERE reason = ? GROUP BY device_id",
        (UNKNOWN_DEVICE,),
    )
    return {str(d): int(n) for d, n in rows}


def period_faces(db: Database, box_key: PrivateKey, period: str) -> list[Face]:
    """Unseal the embeddings of a period's served records (crops are not kept)."""
    faces = []
    for rid, kpm, dev, body in db.iter_rows(
        "SELECT id, kpm_id, device_id, body FROM records WHERE period = ? AND decision = 'match'",
        (period,),
    ):
        ev = json.loads(str(body)).get("evidence")
        if not ev:
            continue
        try:
            emb = np.frombuffer(open_evidence(ev, box_key).embedding, dtype="<f4")
        except Exception:
            log.warning("record %s: evidence does not open; skipped in 1:N", rid)
            continue
        if emb.size and np.all(np.isfinite(emb)):
            faces.append(Face(str(rid), str(kpm), str(dev), emb))
    return faces


def double_collection_report(db: Database) -> list[dict[str, Any]]:
    """The same KPM served (match or manual) twice or more for one programme and period."""
    rows = db.iter_rows(
        """SELECT r.id, r.device_id, r.seq, r.kpm_id, r.programme, r.period, r.decision,
                  r.captured_at, r.geofence, r.body
           FROM records r JOIN (
               SELECT kpm_id, programme, period FROM records WHERE decision IN (?, ?)
               GROUP BY kpm_id, programme, period HAVING COUNT(*) > 1
           ) d ON d.kpm_id = r.kpm_id AND d.programme = r.programme AND d.period = r.period
           WHERE r.decision IN (?, ?)""",
        (*SERVED, *SERVED),
    )
    return double_collections(
        ServedRow(
            str(rid), str(dev), int(seq), str(kpm), str(prog), str(period), str(decision),
            str(at), str(fence), json.loads(str(body)).get("reason"),
        )
        for rid, dev, seq, kpm, prog, period, decision, at, fence, body in rows
    )  # fmt: skip


def _record_facts(db: Database, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for rid in ids:
        row = db.one(
            "SELECT id, device_id, seq, kpm_id, decision, captured_at, geofence FROM records"
            " WHERE id = ?",
            (rid,),
        )
        if row is not None:
            keys = ("id", "device_id", "seq", "kpm_id", "decision", "captured_at", "geofence")
            out.append(dict(zip(keys, row, strict=True)))
    return out


Progress = Callable[[str, int, int], None]


def suspects_report(
    db: Database,
    box_key: PrivateKey,
    actor: str,
    search: SuspectsConfig,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(suspect groups, what was searched per period: blocks, index, parameters)."""
    periods = [str(p) for (p,) in db.rows("SELECT DISTINCT period FROM records ORDER BY period")]
    audit(
        db,
        actor,
        "report-1:N",
        None,
        {
            "periods": periods,
            "region_level": search.region_level,
            "region_threshold": search.region_threshold,
            "national": search.national,
            "national_threshold": search.national_threshold,
            "index": search.index,
        },
    )
    regions = load_regions(db) if search.region_level != "none" else {}
    out, searched = [], []
    with state_root(search, db.url) as (root, kept):
        for period in periods:
            faces = period_faces(db, box_key, period)

            def step(done: int, total: int, period: str = period) -> None:
                if progress is not None:
                    progress(period, done, total)

            res = search_period(period, faces, regions, search, root, step)
            if res.info["national"] is not None and not kept:
                res.info["national"]["index_file"] = None  # temporary: set suspects.index_dir
            searched.append(res.info)
            out.extend(_suspect_rows(db, period, res.suspects))
    return out, searched


def _suspect_rows(db: Database, period: str, suspects: list[Any]) -> list[dict[str, Any]]:
    out = []
    for s in suspects:
        out.append(
            {
                "period": period,
                "kpm_ids": list(s.kpm_ids),
                "record_ids": list(s.record_ids),
                "device_ids": list(s.device_ids),
                "max_score": s.max_score,
                "found_by": list(s.found_by),
                "records": _record_facts(db, list(s.record_ids)),
            }
        )
    return out


def build_report(
    db: Database,
    box_key: PrivateKey | None,
    actor: str,
    search: SuspectsConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    search = search or SuspectsConfig()
    report: dict[str, Any] = {
        "devices": device_report(db),
        "unknown_devices": unknown_devices(db),
        "periods": period_report(db),
        "double_collection": double_collection_report(db),
        "suspect_search": {
            "region_level": search.region_level,
            "region_threshold": search.region_threshold,
            "national": search.national,
            "national_threshold": search.national_threshold,
            "calibration": "docs/suspects.md (python -m bench.hq_calibrate)",
        },
    }
    report["suspects"] = None
    if box_key is not None:
        found, searched = suspects_report(db, box_key, actor, search, progress)
        report["suspects"] = found
        report["suspect_search"]["periods"] = searched
    return report
