"""Where each KPM lives (province, district, sub-district), imported from the KPM list.

A roster's `place` is a point or polygon for the geofence, not an administrative name, so
the 1:N search's in-region blocks come from the KPM list's own columns instead: the same
CSV `edge hq roster build` reads, with `province`, `district`, `subdistrict` added (other
columns are ignored, so one file serves both).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass

from bansos_contract.ids import TEXT_ID as _ID
from edge.errors import BadInput
from edge_hq.db import Database

_NAME_MAX = 128
LEVELS = ("province", "district", "subdistrict")


@dataclass(frozen=True)
class Region:
    province: str
    district: str
    subdistrict: str

    def key(self, level: str) -> str:
        """The block name at `level`; names are qualified by their parents (two districts
        in different provinces may share a name). Empty when the list does not say."""
        if level == "district":
            return f"{self.province}/{self.district}" if self.district else ""
        if level == "subdistrict":
            if not (self.district and self.subdistrict):
                return ""
            return f"{self.province}/{self.district}/{self.subdistrict}"
        raise ValueError(f"unknown region level {level!r}")


def parse_regions_csv(text: str, source: str = "<csv>") -> dict[str, Region]:
    """kpm_id -> Region from a KPM list with a `district` column (province, subdistrict
    optional); BadInput names the line and column that is wrong."""
    reader = csv.DictReader(io.StringIO(text))
    header = set(reader.fieldnames or [])
    missing = {"kpm_id", "district"} - header
    if missing:
        raise BadInput(f"{source}: line 1: header: missing {', '.join(sorted(missing))}")
    out: dict[str, Region] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            raise BadInput(f"{source}: line {line}: more cells than header columns")
        kpm_id = str(row.get("kpm_id") or "").strip()
        if not _ID.match(kpm_id):
            raise BadInput(f"{source}: line {line}: kpm_id: expected an id, got {kpm_id!r}")
        names = [str(row.get(k) or "").strip() for k in LEVELS]
        for col, name in zip(LEVELS, names, strict=True):
            if len(name) > _NAME_MAX or "/" in name or any(ord(c) < 32 for c in name):
                raise BadInput(
                    f"{source}: line {line}: {col}: expected a name without '/' or control "
                    f"characters, at most {_NAME_MAX} long"
                )
        if not names[1]:
            raise BadInput(f"{source}: line {line}: district: empty")
        region = Region(*names)
        if out.get(kpm_id, region) != region:  # one KPM, several programmes: same place
            raise BadInput(f"{source}: line {line}: kpm_id: {kpm_id} listed in two regions")
        out[kpm_id] = region
    if not out:
        raise BadInput(f"{source}: no KPM rows")
    return out


def store_regions(db: Database, regions: dict[str, Region]) -> int:
    """Insert or replace each KPM's region in one transaction; returns the count."""
    now = time.time()
    with db.tx():
        for kpm_id in sorted(regions):
            r = regions[kpm_id]
            db.execute(
                """INSERT INTO kpm_regions (kpm_id, province, district, subdistrict, updated_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (kpm_id) DO UPDATE SET province = excluded.province,
                       district = excluded.district, subdistrict = excluded.subdistrict,
                       updated_at = excluded.updated_at""",
                (kpm_id, r.province, r.district, r.subdistrict, now),
            )
    return len(regions)


def load_regions(db: Database) -> dict[str, Region]:
    return {
        str(k): Region(str(p), str(d), str(s))
        for k, p, d, s in db.iter_rows(
            "SELECT kpm_id, province, district, subdistrict FROM kpm_regions"
        )
    }
