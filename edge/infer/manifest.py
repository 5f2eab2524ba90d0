"""The models manifest (models.json): file names and sha256 of the bundled models.

Cheap to read (no TFLite load), so HQ and roster code can learn the embedder's sha256,
which every record carries as `model` and every roster bundle must match.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.infer.errors import ModelError

BUNDLED_DIR = Path(__file__).resolve().parent / "models"
MANIFEST_NAME = "models.json"


@dataclass(frozen=True)
class ModelEntry:
    """One model file: where it is, what its bytes must hash to, its tensor shapes."""

    role: str
    path: Path
    sha256: str
    quantisation: str
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    variants: dict[str, Path] = field(default_factory=dict)
    variant_sha256: dict[str, str] = field(default_factory=dict)
    # a variant's own input shapes where it lists them (the detector's square file)
    variant_inputs: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # role-specific settings (a PAD model's crop scale, input size, "real" class index)
    extra: dict[str, Any] = field(default_factory=dict)
    # runtime -> variant whose file that runtime loads instead of the main one (e.g. the
    # LiteRT embedder written by a current converter, which tflite-runtime 2.14 cannot load)
    runtime_files: dict[str, str] = field(default_factory=dict)

    def file_for(self, runtime: str) -> tuple[Path, str]:
        """The file (and its sha256) this runtime loads for this role."""
        variant = self.runtime_files.get(runtime)
        if variant is None:
            return self.path, self.sha256
        return self.variants[variant], self.variant_sha256[variant]


@dataclass(frozen=True)
class Manifest:
    """The detector, embedder and presentation-attack models of one models folder."""

    directory: Path
    detector: ModelEntry
    embedder: ModelEntry
    pad: tuple[ModelEntry, ...] = ()
    # platform.machine() (or "default") -> runtimes, fastest first, for `auto`
    runtime_order: dict[str, list[str]] = field(default_factory=dict)

    def runtimes_for(self, machine: str | None = None) -> tuple[str, ...]:
        """The order `auto` tries runtimes in on this machine (empty: the built-in order)."""
        key = machine or platform.machine()
        return tuple(self.runtime_order.get(key) or self.runtime_order.get("default") or ())

    # every embedder by its name (`face.embedder`): "sface" is the `embedder` role,
    # each `embedder_NAME` role adds NAME (edge/infer/embedder.py reads their settings)
    embedders: dict[str, ModelEntry] = field(default_factory=dict)

    def all_entries(self) -> tuple[ModelEntry, ...]:
        others = tuple(e for e in self.embedders.values() if e is not self.embedder)
        return (self.detector, self.embedder, *others, *self.pad)

    def embedder_named(self, name: str) -> ModelEntry:
        """The embedder `face.embedder` names; ModelError lists the ones this folder has."""
        entry = self.embedders.get(name)
        if entry is None:
            have = ", ".join(sorted(self.embedders)) or "none"
            raise ModelError(
                f"{self.directory / MANIFEST_NAME}: no embedder named {name!r} (has: {have})"
            )
        return entry


def resolve_dir(models_dir: str | Path) -> Path:
    """ "" means the models bundled with the package."""
    return BUNDLED_DIR if str(models_dir) == "" else Path(models_dir)


def _entry(directory: Path, role: str, raw: Any, where: Path) -> ModelEntry:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: models.{role}: missing or not an object")
    try:
        file_name = str(raw["file"])
        sha = str(raw["sha256"]).lower()
    except KeyError as exc:
        raise ModelError(f"{where}: models.{role}: missing key {exc.args[0]!r}") from None
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{where}: models.{role}.sha256: not a sha256 hex digest")
    if Path(file_name).name != file_name:
        raise ModelError(f"{where}: models.{role}.file: must be a plain file name")
    variants = raw.get("variants") or {}
    runtime_files = raw.get("runtime_files") or {}
    if not isinstance(runtime_files, dict) or any(
        not isinstance(v, str) or v not in variants for v in runtime_files.values()
    ):
        raise ModelError(f"{where}: models.{role}.runtime_files: must name listed variants")
    return ModelEntry(
        role=role,
        path=directory / file_name,
        sha256=sha,
        quantisation=str(raw.get("quantisation", "")),
        inputs={k: list(v) for k, v in (raw.get("inputs") or {}).items()},
        outputs={k: list(v) for k, v in (raw.get("outputs") or {}).items()},
        variants={k: directory / str(v["file"]) for k, v in variants.items()},
        variant_sha256={k: str(v["sha256"]).lower() for k, v in variants.items()},
        variant_inputs={
            k: {n: list(s) for n, s in v["inputs"].items()}
            for k, v in variants.items()
            if isinstance(v.get("inputs"), dict)
        },
        extra={k: raw[k] for k in _EXTRA_KEYS if k in raw},
        runtime_files={str(k): str(v) for k, v in runtime_files.items()},
    )


_EXTRA_KEYS = (
    "scale",
    "input_size",
    "channel_order",
    "real_index",
    # embedders: name, pixel normalisation (px - mean) / std, output size, runtimes it is
    # for, and HQ's 1:N suspect threshold (its FMR 1e-4 point on faces-dev)
    "name",
    "input_mean",
    "input_std",
    "dim",
    "runtimes",
    "suspect_threshold",
)
PAD_ROLES = ("pad_v2", "pad_v1se")
EMBEDDER_PREFIX = "embedder_"
DEFAULT_EMBEDDER_NAME = "sface"  # the `embedder` role's name when its entry has none


def _embedder_entry(directory: Path, role: str, raw: Any, where: Path) -> ModelEntry:
    """An embedder entry: also checks the settings edge/infer/embedder.py relies on."""
    entry = _entry(directory, role, raw, where)
    x = entry.extra
    if x.get("channel_order", "RGB") not in ("RGB", "BGR"):
        raise ModelError(f"{where}: models.{role}.channel_order: expected RGB or BGR")
    for key, default in (("input_mean", 0.0), ("input_std", 1.0)):
        value = x.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"{where}: models.{role}.{key}: expected a number")
    if not float(x.get("input_std", 1.0)) > 0:
        raise ModelError(f"{where}: models.{role}.input_std: expected a positive number")
    dim = x.get("dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 8):
        raise ModelError(f"{where}: models.{role}.dim: expected an integer of at least 8")
    runtimes = x.get("runtimes")
    if runtimes is not None and not (
        isinstance(runtimes, list) and runtimes and all(isinstance(r, str) for r in runtimes)
    ):
        raise ModelError(f"{where}: models.{role}.runtimes: expected a list of runtime names")
    suspect = x.get("suspect_threshold")
    if suspect is not None and not (
        isinstance(suspect, int | float) and not isinstance(suspect, bool) and -1 <= suspect <= 1
    ):
        raise ModelError(f"{where}: models.{role}.suspect_threshold: expected -1..1")
    return entry


def _embedders(directory: Path, models: dict[str, Any], where: Path) -> dict[str, ModelEntry]:
    out: dict[str, ModelEntry] = {}
    for role, raw in models.items():
        if role != "embedder" and not role.startswith(EMBEDDER_PREFIX):
            continue
        entry = _embedder_entry(directory, role, raw, where)
        default = DEFAULT_EMBEDDER_NAME if role == "embedder" else role[len(EMBEDDER_PREFIX) :]
        name = str(entry.extra.get("name", default))
        if name in out:
            raise ModelError(f"{where}: models.{role}.name: {name!r} is used twice")
        out[name] = entry
    return out


def _pad_entry(directory: Path, role: str, raw: Any, where: Path) -> ModelEntry:
    """A PAD model entry: also needs its crop scale, input size and "real" class index."""
    entry = _entry(directory, role, raw, where)
    scale = entry.extra.get("scale")
    size = entry.extra.get("input_size")
    real = entry.extra.get("real_index")
    if not isinstance(scale, int | float) or not 1.0 <= float(scale) <= 10.0:
        raise ModelError(f"{where}: models.{role}.scale: expected a number from 1 to 10")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and 16 <= v <= 512 for v in size)
    ):
        raise ModelError(f"{where}: models.{role}.input_size: expected [height, width]")
    if real not in (0, 1, 2):
        raise ModelError(f"{where}: models.{role}.real_index: expected 0, 1 or 2")
    if entry.extra.get("channel_order", "BGR") != "BGR":
        raise ModelError(f"{where}: models.{role}.channel_order: only BGR is supported")
    return entry


def load_manifest(models_dir: str | Path = "") -> Manifest:
    """Read DIR/models.json; ModelError says which file and key is wrong."""
    directory = resolve_dir(models_dir)
    where = directory / MANIFEST_NAME
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{where}: models manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: unreadable models manifest: {exc}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{where}: no 'models' object")
    order = data.get("runtime_order") or {}
    if not isinstance(order, dict) or not all(
        isinstance(v, list) and all(isinstance(r, str) for r in v) for v in order.values()
    ):
        raise ModelError(f"{where}: runtime_order: expected {{machine: [runtime, ...]}}")
    detector = _entry(directory, "detector", models.get("detector"), where)
    if detector.extra.get("channel_order", "BGR") not in ("BGR", "RGB"):
        raise ModelError(f"{where}: models.detector.channel_order: expected BGR or RGB")
    embedders = _embedders(directory, models, where)
    main = next((e for e in embedders.values() if e.role == "embedder"), None)
    return Manifest(
        directory=directory,
        detector=detector,
        embedder=main or _entry(directory, "embedder", models.get("embedder"), where),
        pad=tuple(
            _pad_entry(directory, role, models[role], where) for role in PAD_ROLES if role in models
        ),
        runtime_order={str(k): list(v) for k, v in order.items()},
        embedders=embedders,
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checked(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, only if they hash to what the manifest says (else ModelError)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: model file missing") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from None
    got = sha256_bytes(data)
    if got != expected_sha256:
        raise ModelError(
            f"{path}: sha256 {got[:16]}... does not match the manifest's "
            f"{expected_sha256[:16]}...: the model file was altered or replaced"
        )
    return data


def sha256_file(path: Path, expected_sha256: str) -> int:
    """The file's size, only if it hashes to what the manifest says (else ModelError);
    read in pieces, so no copy of a large model is held."""
    try:
        with path.open("rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise ModelError(f"{path}: model file missing") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from None
    if got != expected_sha256:
        raise ModelError(
            f"{path}: sha256 {got[:16]}... does not match the manifest's "
            f"{expected_sha256[:16]}...: the model file was altered or replaced"
        )
    return size


def verify_files(manifest: Manifest) -> None:
    """Check the sha256 of every model file (ModelError on a mismatch)."""
    for entry in manifest.all_entries():
        read_checked(entry.path, entry.sha256)
