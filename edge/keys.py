"""Device and HQ keys: Ed25519 for signatures, X25519 for sealing evidence to HQ.

The device key is made on the device and never leaves it; its file is mode 0600.
The device id is derived from the public key so that a key and an id cannot drift apart.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nacl.public import PrivateKey, PublicKey
from nacl.signing import SigningKey, VerifyKey

from bansos_contract.canonical import b64, unb64
from edge.errors import BadInput, DeviceMissing

KEY_FILE_MODE = 0o600


def decode_public_key(text: str) -> bytes:
    """A 32-byte public key from base64; ValueError with a readable reason otherwise."""
    raw = unb64(text.strip(), "public key")
    if len(raw) != 32:
        raise ValueError(f"expected a base64 32-byte public key, got {len(raw)} bytes")
    return raw


def device_id_for(verify_key: VerifyKey) -> str:
    """Stable, topic-safe device id: 'kiosk-' and 16 hex of the public key's SHA-256."""
    return "kiosk-" + hashlib.sha256(bytes(verify_key)).hexdigest()[:16]


def _write_secret(path: Path, data: bytes, force: bool) -> None:
    """Write a 0600 key file; with force, via a temp file and rename so a crash never
    leaves the kiosk with a truncated key (neither the old identity nor a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if force else path
    if force:
        target.unlink(missing_ok=True)  # a leftover of an earlier crashed --force
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise BadInput(f"{path}: key file exists; refusing to overwrite (use --force)") from None
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if force:
        os.replace(target, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def init_device_key(path: Path, force: bool = False) -> SigningKey:
    """Make a new device key at `path` (0600); refuses to overwrite unless forced."""
    key = SigningKey.generate()
    _write_secret(path, (b64(bytes(key)) + "\n").encode("ascii"), force)
    return key


def load_signing_key(path: Path) -> SigningKey:
    """Read an Ed25519 private key file written by init_device_key / hq keys init."""
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        raise DeviceMissing(f"{path}: no key file (run `edge keys init`)") from None
    except PermissionError:
        raise DeviceMissing(f"{path}: permission denied reading the key") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise BadInput(f"{path}: not a key file") from None
    try:
        seed = unb64(text, "key")
    except ValueError as exc:
        raise BadInput(f"{path}: {exc}") from None
    if len(seed) != 32:
        raise BadInput(f"{path}: expected a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return SigningKey(seed)


def key_file_problem(path: Path) -> str | None:
    """Why the key file is unsafe (group/other may read it), or None when it is fine."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return f"{path}: missing"
    if mode & 0o077:
        return f"{path}: mode {mode:o}, expected 600"
    return None


def init_box_key(path: Path, force: bool = False) -> PrivateKey:
    """Make an X25519 key (HQ's evidence key) at `path` (0600)."""
    key = PrivateKey.generate()
    _write_secret(path, (b64(bytes(key)) + "\n").encode("ascii"), force)
    return key


def load_box_key(path: Path) -> PrivateKey:
    try:
        raw = unb64(path.read_text("ascii").strip(), "key")
    except FileNotFoundError:
        raise DeviceMissing(f"{path}: no key file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: {exc}") from None
    if len(raw) != 32:
        raise BadInput(f"{path}: expected a 32-byte X25519 key")
    return PrivateKey(raw)


def verify_key_from_b64(text: str) -> VerifyKey:
    return VerifyKey(decode_public_key(text))


def box_public_from_b64(text: str) -> PublicKey:
    return PublicKey(decode_public_key(text))
