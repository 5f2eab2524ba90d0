"""HQ's key pair files: Ed25519 (signs roster bundles) and X25519 (opens sealed evidence).

Both are private files (0600) made once with `edge hq keys init`; the public halves
go into every kiosk's config (`hq.signing_public_key`, `hq.sealing_public_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.keys import b64, init_box_key, init_device_key, load_box_key, load_signing_key

SIGNING_FILE = "hq-signing.key"
BOX_FILE = "hq-box.key"


@dataclass(frozen=True)
class HqPublicKeys:
    """What a kiosk config needs: base64 public halves."""

    signing_public_key: str
    sealing_public_key: str


def public_keys(signing: SigningKey, box: PrivateKey) -> HqPublicKeys:
    return HqPublicKeys(b64(bytes(signing.verify_key)), b64(bytes(box.public_key)))


def init_hq_keys(key_dir: Path, force: bool = False) -> HqPublicKeys:
    """Make both keys in `key_dir` (0600); refuses to overwrite either unless forced."""
    sign_path, box_path = key_dir / SIGNING_FILE, key_dir / BOX_FILE
    if not force:
        for p in (sign_path, box_path):
            if p.exists():
                raise BadInput(f"{p}: key file exists; refusing to overwrite (use --force)")
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    signing = init_device_key(sign_path, force=force)
    box = init_box_key(box_path, force=force)
    return public_keys(signing, box)


def load_hq_signing(key_dir: Path) -> SigningKey:
    return load_signing_key(key_dir / SIGNING_FILE)


def load_hq_box(key_dir: Path) -> PrivateKey:
    return load_box_key(key_dir / BOX_FILE)
