"""Liveness end to end through the real command line, on pad-dev's subjects.

For each subject: HQ enrolls the KPM from ONE bona fide photo (`edge hq roster build`),
the kiosk imports the signed roster (`edge roster import`), then `edge verify --image`
is run with that subject's attack photos (a print of the subject: face matching alone
says match) and with their other bona fide photos. Every attack must give `spoof`
(never `match`); bona fide photos should give `match`. Each bona fide photo gets its own
KPM row (same template), so one match does not turn the next into `already_served`.

    python -m tools.pad_e2e [--data ../shared/data/pad-dev] [--per-subject N] [--json]

Each verification is a new `edge` process (model load included): about 2-3 s each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "pad-dev"


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, cwd=REPO
    )


def _must(res: subprocess.CompletedProcess[str], what: str) -> None:
    if res.returncode != 0:
        raise SystemExit(f"pad_e2e: {what} failed (exit {res.returncode}): {res.stderr.strip()}")


def _spread(items: list[Path], n: int) -> list[Path]:
    """n items spread over the list (first, last and evenly between), all if fewer."""
    if n <= 0 or len(items) <= n:
        return items
    step = (len(items) - 1) / max(n - 1, 1)
    return [items[round(i * step)] for i in range(n)]


def run(data: Path, per_subject: int, work: Path) -> dict[str, Any]:
    bona_root, attack_root = data / "bona-fide", data / "attack"
    subjects = sorted(p.name for p in bona_root.iterdir() if (attack_root / p.name).is_dir())
    if not subjects:
        raise SystemExit(f"pad_e2e: no subjects with bona-fide and attack photos in {data}")
    hq = work / "hq.toml"
    hq.write_text(
        f'[broker]\ntls = false\n[database]\nurl = "{work / "hq.db"}"\n'
        f'[keys]\ndir = "{work / "hq-keys"}"\n'
    )
    res = edge("hq", "keys", "init", "--json", "--hq-config", str(hq))
    _must(res, "edge hq keys init")
    keys = json.loads(res.stdout)
    photos = work / "photos"
    rows = ["kpm_id,programme,period,lat,lon,radius_m"]
    period = time.strftime("%Y-%m", time.gmtime())
    plan: list[tuple[str, str, Path]] = []  # (kind, kpm, photo)
    for s in subjects:
        bona = sorted(p for p in (bona_root / s).iterdir() if p.suffix.lower() == ".jpg")
        attacks = sorted(p for p in (attack_root / s).iterdir() if p.suffix.lower() == ".jpg")
        enrol, rest = bona[0], bona[1:]
        kpms = [f"KPM-{s}-A"] + [f"KPM-{s}-B{i}" for i in range(len(_spread(rest, per_subject)))]
        for kpm in kpms:
            (photos / kpm).mkdir(parents=True)
            (photos / kpm / enrol.name).symlink_to(enrol)  # the photo stays in pad-dev
            rows.append(f"{kpm},sembako,{period},,,")
        plan += [("attack", kpms[0], p) for p in _spread(attacks, per_subject)]
        plan += [
            ("bona_fide", k, p) for k, p in zip(kpms[1:], _spread(rest, per_subject), strict=True)
        ]
    csv = work / "kpm.csv"
    csv.write_text("\n".join(rows) + "\n")
    bundle = work / "roster.json"
    _must(
        edge("hq", "roster", "build", "--csv", str(csv), "--photos", str(photos), "--out",
             str(bundle), "--hq-config", str(hq)),
        "edge hq roster build",
    )  # fmt: skip
    cfg = work / "edge.toml"
    cfg.write_text(
        f'[device]\nstate_dir = "{work / "state"}"\n'
        f'[hq]\nsigning_public_key = "{keys["signing_public_key"]}"\n'
        f'sealing_public_key = "{keys["sealing_public_key"]}"\n'
        "[mqtt]\nenabled = false\n[gps]\nenabled = false\n"
    )
    _must(edge("keys", "init", "--config", str(cfg)), "edge keys init")
    _must(edge("roster", "import", str(bundle), "--config", str(cfg)), "edge roster import")
    counts: dict[str, Counter[str]] = {"attack": Counter(), "bona_fide": Counter()}
    exits: dict[str, Counter[int]] = {"attack": Counter(), "bona_fide": Counter()}
    faults: list[str] = []
    for i, (kind, kpm, photo) in enumerate(plan, 1):
        res = edge("verify", "--kpm", kpm, "--officer", "off-1", "--image", str(photo),
                   "--json", "--config", str(cfg))  # fmt: skip
        try:
            decision = str(json.loads(res.stdout)["decision"])
        except (json.JSONDecodeError, KeyError):
            decision = "error"
            faults.append(f"{photo.name}: exit {res.returncode}: {res.stderr.strip()[-200:]}")
        counts[kind][decision] += 1
        exits[kind][res.returncode] += 1
        print(f"\r{i}/{len(plan)} {kind} {decision:<13}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {
        "subjects": subjects,
        "per_subject": per_subject,
        "attack": dict(counts["attack"]),
        "bona_fide": dict(counts["bona_fide"]),
        "attack_exit_codes": {str(k): v for k, v in exits["attack"].items()},
        "attack_matches": counts["attack"]["match"],
        "errors": faults,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--per-subject", type=int, default=5, help="photos of each kind per subject")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (args.data / "bona-fide").is_dir():
        print(f"pad_e2e: {args.data}/bona-fide not found (set --data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pad-e2e-") as tmp:
        out = run(args.data, args.per_subject, Path(tmp))
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"attack photos: {out['attack']}  bona fide photos: {out['bona_fide']}")
    return 1 if out["attack_matches"] or out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
