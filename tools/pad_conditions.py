"""Run `edge liveness eval` on the original PAD set and on each degraded copy, one at a time.

    python -m tools.pad_conditions --original /work/shared/data/pad-dev --sets /tmp/pad-degraded \
        --label baseline [--config edge.toml] [--out docs/liveness] [--conditions ...]
    python -m tools.pad_conditions --table docs/liveness/conditions-baseline.json

--sets is tools.degrade_pad's DEST. Writes <out>/conditions-<label>.json: {condition: the
eval's JSON report} (figures only, no images), and prints a markdown table with the goal
(APCER <= 1%, BPCER <= 5%, FTA <= 10% per presentation) met or missed per condition.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.degrade_pad import CONDITIONS

GOAL = {"apcer": 0.01, "bpcer": 0.05, "fta": 0.10}


def run_eval(root: Path, config: Path | None) -> dict[str, Any]:
    edge = Path(sys.executable).with_name("edge")
    cmd = [str(edge), "liveness", "eval"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += ["--bona-fide", str(root / "bona-fide"), "--attack", str(root / "attack"), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rep: dict[str, Any] = json.loads(out.stdout)
    return rep


def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def goal(rep: dict[str, Any]) -> str:
    p = rep["presentation"]
    missed = [
        f"{k.upper()} " + ("n/a" if pct(p[k]) == "n/a" else f"{100 * p[k]:.2f}%")
        for k, limit in GOAL.items()
        if p[k] is None or math.isnan(p[k]) or p[k] > limit
    ]
    return "met" if not missed else "missed: " + ", ".join(missed)


HEADER = (
    "| condition | APCER | BPCER | FTA | FTA bona fide / attack | frame APCER | frame BPCER"
    " | frame FTA | goal |\n|---|---|---|---|---|---|---|---|---|"
)


def row(name: str, rep: dict[str, Any]) -> str:
    p, f = rep["presentation"], rep["frame"]
    # errors over the presentations that were judged (failures to acquire are apart)
    judged_a = round(p["attack"] * (1 - p["fta_attack"]))
    judged_b = round(p["bona_fide"] * (1 - p["fta_bona_fide"]))
    return (
        f"| {name} | {pct(p['apcer'])} ({p['apcer_errors']}/{judged_a})"
        f" | {pct(p['bpcer'])} ({p['bpcer_errors']}/{judged_b})"
        f" | {pct(p['fta'])} | {pct(p['fta_bona_fide'])} / {pct(p['fta_attack'])}"
        f" | {pct(f['apcer'])} | {pct(f['bpcer'])} | {pct(f['fta'])} | {goal(rep)} |"
    )


def table(reports: dict[str, Any]) -> str:
    """The markdown table, original first, then the conditions in tools.degrade_pad's order."""
    order = [n for n in ("original", *CONDITIONS) if n in reports]
    return "\n".join([HEADER, *(row(n, reports[n]) for n in order)])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, default=None, help="only print the table of this JSON")
    ap.add_argument("--original", type=Path)
    ap.add_argument("--sets", type=Path)
    ap.add_argument("--label")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/liveness"))
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    args = ap.parse_args(argv)
    if args.table is not None:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.original is None or args.sets is None or not args.label:
        ap.error("--original, --sets and --label are needed to run the evaluations")
    roots = {"original": args.original}
    for c in (c.strip() for c in args.conditions.split(",") if c.strip()):
        roots[c] = args.sets / c
    reports: dict[str, Any] = {}
    for name, root in roots.items():
        print(f"pad_conditions: {args.label}: {name}", file=sys.stderr)
        reports[name] = run_eval(root, args.config)
        # paths under /tmp mean nothing to a reader of the docs
        reports[name]["bona_fide_dir"] = f"{name}/bona-fide"
        reports[name]["attack_dir"] = f"{name}/attack"
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"conditions-{args.label}.json"
    target.write_text(json.dumps(reports, indent=2) + "\n")
    print(f"{args.label} (threshold {reports['original']['threshold']}):\n\n{table(reports)}")
    print(f"\nwritten: {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
