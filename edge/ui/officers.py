"""Officers, PINs, sessions and lockout: the pure sign-in logic behind the kiosk screen.

No HTTP and no clock of its own (callers pass `now`), so every rule is unit-tested
directly. PINs are kept only as scrypt hashes; nothing here logs a PIN.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bansos_contract.ids import TEXT_ID as ID_RE
from edge.errors import BadInput

# \Z, not $: "$" also matches before a final newline ("KPM-0001\n" would pass)
PIN_RE = re.compile(r"^[0-9]{4,8}\Z")

SCRYPT_N, SCRYPT_R, SCRYPT_P = 16384, 8, 1
MAX_TRACKED = 1000  # officer ids with wrong-PIN counts kept in memory


class OfficersFileError(BadInput):
    """The officers file is missing or wrong; the message names file, entry and key."""


def hash_pin(pin: str, *, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    """`scrypt$N$r$p$<salt b64>$<hash b64>` for a 4-8 digit PIN."""
    if not PIN_RE.fullmatch(pin):
        raise BadInput("PIN: expected 4 to 8 digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        pin.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32
    )
    return "$".join(["scrypt", str(n), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_pin_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """Split a pin_hash; ValueError says what is wrong."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("expected scrypt$N$r$p$<salt base64>$<hash base64>")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = (
            base64.b64decode(parts[4], validate=True),
            base64.b64decode(parts[5], validate=True),
        )
    except ValueError:
        raise ValueError("expected integers N, r, p and base64 salt and hash") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or n > 1 << 20:
        raise ValueError("N must be a power of two up to 2^20, r 1..32, p 1..16")
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt (>= 8 bytes) or hash (>= 16 bytes) too short")
    return n, r, p, salt, digest


def verify_pin(pin: str, pin_hash: str) -> bool:
    """Constant-time check of a PIN against its hash; a malformed PIN is simply wrong.

    A malformed PIN is hashed all the same (as "0000"), so the time taken says nothing.
    """
    well_formed = bool(PIN_RE.fullmatch(pin))
    n, r, p, salt, digest = parse_pin_hash(pin_hash)
    got = hashlib.scrypt(
        (pin if well_formed else "0000").encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 << 20,
        dklen=len(digest),
    )
    return hmac.compare_digest(got, digest) and well_formed


# Hashed in place of a real officer's hash for an unknown id, so that a wrong PIN takes as
# long for an id that does not exist as for one that does (ids must not leak by timing).
_DUMMY_HASH = hash_pin("0000", salt=b"bansos-edge-dummy-officer")


@dataclass(frozen=True)
class Officer:
    id: str
    name: str
    pin_hash: str
    badge: str | None = None


def parse_officers(data: Mapping[str, Any], source: str) -> dict[str, Officer]:
    """Validate a parsed officers TOML; OfficersFileError names file, entry and key."""
    extra = set(data) - {"officer"}
    if extra:
        raise OfficersFileError(f"{source}: unknown key {sorted(extra)[0]!r}; expected [[officer]]")
    raw = data.get("officer")
    if not isinstance(raw, list) or not raw:
        raise OfficersFileError(f"{source}: no [[officer]] entries")
    out: dict[str, Officer] = {}
    badges: set[str] = set()
    for i, entry in enumerate(raw, 1):
        where = f"{source}: officer #{i}"
        if not isinstance(entry, dict):
            raise OfficersFileError(f"{where}: expected a table")
        unknown = set(entry) - {"id", "name", "pin_hash", "badge"}
        if unknown:
            raise OfficersFileError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        oid = entry.get("id")
        if not isinstance(oid, str) or not ID_RE.fullmatch(oid):
            raise OfficersFileError(f"{where}: id: expected 1-64 letters, digits or ._:/-")
        where = f"{source}: officer {oid!r}"
        if oid in out:
            raise OfficersFileError(f"{where}: id: listed twice")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise OfficersFileError(f"{where}: name: expected 1-100 characters")
        pin_hash = entry.get("pin_hash")
        if not isinstance(pin_hash, str):
            raise OfficersFileError(
                f"{where}: pin_hash: expected a string from `edge officer hash-pin`"
            )
        try:
            parse_pin_hash(pin_hash)
        except ValueError as exc:
            raise OfficersFileError(f"{where}: pin_hash: {exc}") from None
        badge = entry.get("badge")
        if badge is not None and (not isinstance(badge, str) or not 4 <= len(badge) <= 200):
            raise OfficersFileError(f"{where}: badge: expected 4-200 characters")
        if badge is not None:
            if badge in badges:
                raise OfficersFileError(f"{where}: badge: used by another officer")
            badges.add(badge)
        out[oid] = Officer(oid, name.strip(), pin_hash, badge)
    return out


def load_officers(path: str | Path) -> dict[str, Officer]:
    """Read and validate the officers file."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise OfficersFileError(f"{p}: file not found (ui.officers_file)") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise OfficersFileError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise OfficersFileError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OfficersFileError(f"{p}: not valid TOML: {exc}") from None
    return parse_officers(data, str(p))


@dataclass
class Session:
    token: str
    officer: Officer
    last_seen: float


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: a session, or a refusal with its HTTP-like code."""

    session: Session | None
    code: int  # 200, 401 wrong, 423 locked
    error: str | None = None
    attempts_left: int | None = None
    locked_for_s: float | None = None
    event: str | None = None  # what to log in the audit events ("officer_locked", ...)


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class OfficerBook:
    """Sign-in, lockout and idle expiry over one officers list."""

    officers: Mapping[str, Officer]
    lockout_after: int = 3
    lockout_s: float = 300.0
    idle_s: float = 600.0
    sessions: dict[str, Session] = field(default_factory=dict)
    failures: dict[str, _Failures] = field(default_factory=dict)

    def sign_in_pin(self, officer_id: str, pin: str, now: float) -> SignIn:
        officer = self.officers.get(officer_id)
        if len(self.failures) > MAX_TRACKED:  # typed ids are unbounded: forget stale ones
            self.failures = {
                k: f for k, f in self.failures.items() if f.locked_until > now or k in self.officers
            }
        fails = self.failures.setdefault(officer_id, _Failures())
        if fails.locked_until > now:
            left = round(fails.locked_until - now)
            return SignIn(None, 423, "officer locked", locked_for_s=left)
        # the same scrypt work whether or not the id is known: no timing tells them apart
        ok = verify_pin(pin, officer.pin_hash if officer is not None else self._dummy_hash())
        ok = ok and officer is not None
        if not ok or officer is None:
            fails.count += 1
            if fails.count >= self.lockout_after:
                fails.count, fails.locked_until = 0, now + self.lockout_s
                return SignIn(
                    None, 423, "officer locked", locked_for_s=self.lockout_s, event="officer_locked"
                )
            left = self.lockout_after - fails.count
            return SignIn(None, 401, "wrong officer id or PIN", attempts_left=left)
        self.failures.pop(officer_id, None)
        return SignIn(self._open(officer, now), 200)

    def _dummy_hash(self) -> str:
        """A hash with the cost parameters of this list's officers (scrypt N is per hash)."""
        for officer in self.officers.values():
            try:
                n = parse_pin_hash(officer.pin_hash)[0]
            except ValueError:
                continue
            if n != SCRYPT_N:
                return hash_pin("0000", salt=b"bansos-edge-dummy-officer", n=n)
            break
        return _DUMMY_HASH

    def sign_in_badge(self, badge: str, now: float) -> SignIn:
        for officer in self.officers.values():
            if officer.badge is not None and hmac.compare_digest(officer.badge, badge):
                fails = self.failures.get(officer.id)
                if fails is not None and fails.locked_until > now:
                    left = round(fails.locked_until - now)
                    return SignIn(None, 423, "officer locked", locked_for_s=left)
                return SignIn(self._open(officer, now), 200)
        return SignIn(None, 401, "badge not known on this kiosk")

    def _open(self, officer: Officer, now: float) -> Session:
        session = Session(secrets.token_urlsafe(24), officer, now)
        self.sessions[session.token] = session
        return session

    def session(self, token: str | None, now: float, touch: bool = True) -> Session | None:
        """The live session for a token, or None when unknown or idle too long.

        `touch` renews it; the page's own polling (preview, guidance) does not, so a kiosk
        left on the camera screen still signs the officer out.
        """
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        if now - s.last_seen > self.idle_s:
            del self.sessions[token]
            return None
        if touch:
            s.last_seen = now
        return s

    def sign_out(self, token: str | None) -> bool:
        return token is not None and self.sessions.pop(token, None) is not None
