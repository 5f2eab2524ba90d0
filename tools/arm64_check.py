"""Prove the kiosk software on arm64: install it into an emulated Debian bookworm arm64 root
the way a Raspberry Pi kiosk would, run the CLI there, and check its face answers match x86.

    python -m tools.arm64_check [--photos N] [--json] [--cache-dir DIR]

Needs root, debootstrap, qemu-user-static with the aarch64 binfmt handler (F flag), and the
network to Debian's mirror and PyPI on a cold cache. Cached under $BANSOS_ARM64_CACHE
(default /var/cache/bansos-edge-arm64): the debootstrapped root and the aarch64 wheels.
Exit 0 when every check passed, 1 when an answer differs (cosine < 0.999 or a wrong
decision), 2 when the check could not run (setup missing, a dependency without an aarch64
build, an install or command failing in the root).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nacl.encoding import Base64Encoder
from nacl.public import PrivateKey
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `edge`, `tests`, `tools` importable
    sys.path.insert(0, str(REPO))

from edge.config import FaceConfig  # noqa: E402
from edge.infer.pipeline import FacePipeline, enroll_template  # noqa: E402
from edge.records import canonical_json  # noqa: E402
from edge_hq.roster_build import KpmRow, build_bundle  # noqa: E402
from tools.arm64 import kiosk, rootfs, wheels  # noqa: E402
from tools.arm64.compare import MIN_COSINE, MIN_EMBEDDER_COSINE, Decision, compare  # noqa: E402
from tools.arm64.rootfs import CheckError  # noqa: E402

RUNTIMES = ("tflite_runtime", "litert")
DEFAULT_CPU = "cortex-a72"  # a Raspberry Pi 4's core; qemu's default "max" has features no Pi has
DEFAULT_CACHE = Path("/var/cache/bansos-edge-arm64")
FACES = REPO.parent / "shared" / "data" / "faces-dev"
SAMPLES = REPO / "edge" / "samples" / "faces"
GENUINE = "Adam_Sandler"  # two photos of one person: template from the first, probe the second
IMPOSTOR_TEMPLATE = "grace_hopper.jpg"  # a KPM enrolled as someone else; the same probe photo


def pick_photos(faces: Path, n: int, person: str = GENUINE) -> dict[str, Path]:
    """label -> photo: the genuine pair (`person`), the two samples, then other people's
    first photos."""
    genuine = sorted((faces / person).glob("*.jpg"))
    if len(genuine) < 2:
        raise CheckError(f"{faces / person}: need two photos of one person (faces-dev missing?)")
    chosen = {f"genuine__{p.name}": p for p in genuine[:2]}
    chosen.update({f"sample__{p.name}": p for p in sorted(SAMPLES.glob("*.jpg"))})
    others = sorted(d for d in faces.iterdir() if d.is_dir() and d.name != person)
    step = max(1, len(others) // max(1, n))
    for d in others[::step]:
        if len(chosen) >= n:
            break
        first = sorted(d.glob("*.jpg"))[:1]
        chosen.update({f"{d.name}__{p.name}": p for p in first})
    return dict(list(chosen.items())[: max(n, 4)])


def make_roster(photos: dict[str, Path]) -> tuple[bytes, str, str, list[tuple[str, str, str, str]]]:
    """HQ's side on the host: keys, a signed bundle with a genuine and an impostor KPM."""
    hq = SigningKey.generate()
    box = PrivateKey.generate()
    pipe = FacePipeline.from_config(FaceConfig(threads=2))
    g0, g1 = (lb for lb in photos if lb.startswith("genuine__"))
    templates = {
        "KPM-GENUINE": enroll_template(pipe, [photos[g0]]),
        "KPM-IMPOSTOR": enroll_template(pipe, [SAMPLES / IMPOSTOR_TEMPLATE]),
    }
    period = time.strftime("%Y-%m", time.gmtime())
    rows = [KpmRow(k, "sembako", period, None, i + 2) for i, k in enumerate(templates)]
    bundle = build_bundle(rows, templates, pipe.embedder_sha256, hq, now=time.time())
    cases = [
        ("genuine", "KPM-GENUINE", f"photos/{g1}", "match"),
        ("impostor", "KPM-IMPOSTOR", f"photos/{g1}", "no_match"),
    ]
    signing = hq.verify_key.encode(Base64Encoder).decode()
    sealing = box.public_key.encode(Base64Encoder).decode()
    return canonical_json(bundle), signing, sealing, cases


def host_probe(runtimes: tuple[str, ...], photos: dict[str, Path]) -> dict[str, Any]:
    import subprocess

    args = [f"{lb}={p}" for lb, p in photos.items()]
    cmd = [sys.executable, str(REPO / "tools" / "arm64" / "probe.py"), ",".join(runtimes), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    if proc.returncode != 0:
        raise CheckError(f"host probe failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Every step in order; raises CheckError when a step cannot be done."""
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    runtimes = tuple(args.runtimes.split(","))
    cache = Path(args.cache_dir)
    rootfs.binfmt_ready()
    photos = pick_photos(Path(args.faces_dir), args.photos, args.genuine)
    with tempfile.TemporaryDirectory(prefix="arm64-run-", dir=_scratch(cache)) as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        wheel = wheels.build_project_wheel(REPO, work / "dist")
        reqs = wheels.requirements(wheel) + list(args.extra_requirement)
        house, took = wheels.wheelhouse(cache, reqs, [Path(p) for p in args.find_links])
        timings["wheel+download"] = time.monotonic() - t0
        base, made = rootfs.cached_root(cache)
        timings["debootstrap"] = made or 0.0
        root = rootfs.clone(base, work / "root")
        roster, signing, sealing, cases = make_roster(photos)
        files = {f"photos/{lb}": p for lb, p in photos.items()}
        files["probe.py"] = REPO / "tools" / "arm64" / "probe.py"
        files["edge.example.toml"] = REPO / "examples" / "edge.toml"
        for name, text in [("roster.json", roster.decode())] + [
            (f"edge-{rt}.toml", kiosk.kiosk_config(rt, signing, sealing)) for rt in runtimes
        ]:
            (work / name).write_text(text, encoding="utf-8")
            files[name] = work / name
        kiosk.stage(root, wheel, house, files)
        with rootfs.Chroot(root, args.cpu) as ch:
            t = time.monotonic()
            packages = kiosk.install(ch, wheel, wheels.EXTRAS)
            timings["install (arm64)"] = time.monotonic() - t
            t = time.monotonic()
            smoke = kiosk.cli_smoke(ch)
            decisions: list[Decision] = []
            for rt in runtimes:
                decisions += kiosk.verify_cases(ch, rt, cases)
            timings["cli+verify (arm64)"] = time.monotonic() - t
            t = time.monotonic()
            arm = kiosk.probe(ch, runtimes, list(photos))
            timings["probe (arm64)"] = time.monotonic() - t
        host = host_probe(runtimes, photos)
        if args.keep:
            (work / "probe-arm64.json").write_text(json.dumps(arm), encoding="utf-8")
            (work / "probe-x86.json").write_text(json.dumps(host), encoding="utf-8")
        agreements = compare(host, arm)
    timings["total"] = time.monotonic() - t0
    ok = all(d.ok for d in decisions) and all(a.ok for a in agreements) and bool(agreements)
    return {
        "ok": ok,
        "min_cosine": MIN_COSINE,
        "min_embedder_cosine": MIN_EMBEDDER_COSINE,
        "root": {
            "suite": "bookworm",
            "arch": "arm64",
            "qemu_cpu": args.cpu,
            "cached": made is None,
            "path": str(base),
        },
        "wheelhouse": {"path": str(house), "cached": took is None},
        "requirements": reqs,
        "packages": packages,
        "cli": smoke,
        "decisions": [d.as_dict() for d in decisions],
        "models": [a.as_dict() for a in agreements],
        "photos": list(photos),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def _scratch(cache: Path) -> Path:
    """Run copies live next to the cache (same filesystem: cp --reflink can share blocks)."""
    d = cache / "runs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def render(report: dict[str, Any]) -> str:
    """The human table: packages, decisions, agreement per model and runtime."""
    lines = [f"arm64 root: Debian {report['root']['suite']} {report['root']['arch']} "
             f"on qemu {report['root']['qemu_cpu']} "
             f"({'cached' if report['root']['cached'] else 'made now'}); wheels "
             f"{'cached' if report['wheelhouse']['cached'] else 'downloaded now'}",
             "", "packages installed in the arm64 root:"]  # fmt: skip
    lines += [f"  {p}" for p in report["packages"]]
    lines += ["", "commands in the arm64 root:"]
    lines += [f"  {k}: {v}" for k, v in report["cli"].items()]
    lines += ["", "edge verify --image in the arm64 root:",
              f"  {'runtime':<15} {'case':<9} {'expected':<9} {'got':<9} {'exit':>4} {'score':>8}  ok"]  # fmt: skip
    for d in report["decisions"]:
        score = "-" if d["score"] is None else f"{d['score']:.4f}"
        lines.append(f"  {d['runtime']:<15} {d['case']:<9} {d['expected']:<9} {d['decision']!s:<9} "
                     f"{d['exit_code']:>4} {score:>8}  {'yes' if d['ok'] else 'NO'}")  # fmt: skip
    lines += ["", f"arm64 vs x86, {len(report['photos'])} photos (need cosine >= {report['min_cosine']}):",
              f"  {'model':<9} {'runtime':<15} {'photos':>6} {'min cosine':>12} {'max px diff':>12}  ok"]  # fmt: skip
    for m in report["models"]:
        px = "-" if m["max_px"] is None else f"{m['max_px']:.2e}"
        lines.append(f"  {m['model']:<9} {m['runtime']:<15} {m['photos']:>6} {m['min_cosine']:>12.7f} "
                     f"{px:>12}  {'yes' if m['ok'] else 'NO'}")  # fmt: skip
        lines += [f"      {p}" for p in m["problems"]]
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in report["seconds"].items())
    lines += ["", f"time: {secs}", "", "arm64 check: " + ("PASSED" if report["ok"] else "FAILED")]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="arm64_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", default=os.environ.get("BANSOS_ARM64_CACHE", str(DEFAULT_CACHE)))
    ap.add_argument("--photos", type=int, default=6, help="photos to embed on both sides (>= 4)")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated")
    ap.add_argument("--faces-dir", default=str(FACES))
    ap.add_argument(
        "--genuine", default=GENUINE, help="the folder under --faces-dir with the genuine pair"
    )
    ap.add_argument("--extra-requirement", action="append", default=[],
                    help="also install this requirement (to test the check itself)")  # fmt: skip
    ap.add_argument(
        "--find-links", action="append", default=[], help="extra wheel folder for pip download"
    )
    ap.add_argument("--cpu", default=os.environ.get("BANSOS_ARM64_CPU", DEFAULT_CPU),
                    choices=sorted(rootfs.PI_CPUS),
                    help="qemu CPU model (QEMU_CPU): cortex-a72 = Pi 4, cortex-a76 = Pi 5")  # fmt: skip
    ap.add_argument("--keep", metavar="DIR", help="build in DIR and keep the root and probe JSON")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    bad = [r for r in args.runtimes.split(",") if r not in RUNTIMES]
    if bad or args.photos < 4:
        ap.error(f"--runtimes from {RUNTIMES}, --photos >= 4 (got {args.runtimes}, {args.photos})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run_check(args)
    except CheckError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"arm64 check: cannot complete: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
