"""The kiosk screen's pure logic without HTTP: PIN hashes, lockout, sessions, the officers
file, guidance codes, QR decode, translations and the static file lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.api import STATIC_DIR, static_file
from edge.config import ConfigError, parse_config
from edge.errors import BadInput
from edge.infer.quality import Quality, QualityLimits, gate
from edge.records import DECISIONS
from edge.ui.guidance import GUIDANCE, guidance_code
from edge.ui.officers import (
    MAX_TRACKED,
    Officer,
    OfficerBook,
    OfficersFileError,
    hash_pin,
    load_officers,
    parse_officers,
    verify_pin,
)
from edge.ui.scan import decode_codes, first_code
from tests.conftest import run_edge
from tests.ui_world import qr_frame

FAST_N = 1024  # scrypt cost for tests of the book's rules; the shipped N is tested once


def test_pin_hash_round_trip_and_format() -> None:
    h = hash_pin("482913")
    assert h.startswith("scrypt$16384$8$1$") and "482913" not in h
    assert verify_pin("482913", h)
    assert not verify_pin("482914", h)
    assert not verify_pin("48291", h)
    assert hash_pin("482913") != h  # salted
    for bad in ("123", "123456789", "12a4", ""):
        with pytest.raises(BadInput, match="4 to 8 digits"):
            hash_pin(bad)


def _book(**kw: float) -> OfficerBook:
    officers = {
        "officer-007": Officer(
            "officer-007", "Siti Rahma", hash_pin("1234", n=FAST_N), "BADGE-7F3A9C"
        ),
        "officer-008": Officer("officer-008", "Budi", hash_pin("5678", n=FAST_N)),
    }
    return OfficerBook(officers, **kw)  # type: ignore[arg-type]


def test_lockout_after_wrong_pins_then_release() -> None:
    book = _book(lockout_after=3, lockout_s=300, idle_s=600)
    first = book.sign_in_pin("officer-007", "0000", 1000.0)
    assert (first.code, first.attempts_left) == (401, 2)
    assert book.sign_in_pin("officer-007", "0000", 1001.0).attempts_left == 1
    locked = book.sign_in_pin("officer-007", "0000", 1002.0)
    assert locked.code == 423 and locked.event == "officer_locked"
    # the right PIN does not help while locked; other officers are not affected
    assert book.sign_in_pin("officer-007", "1234", 1100.0).code == 423
    assert book.sign_in_badge("BADGE-7F3A9C", 1100.0).code == 423
    assert book.sign_in_pin("officer-008", "5678", 1100.0).code == 200
    ok = book.sign_in_pin("officer-007", "1234", 1303.0)
    assert ok.code == 200 and ok.session is not None


def test_unknown_officer_counts_like_a_wrong_pin() -> None:
    book = _book(lockout_after=2)
    assert book.sign_in_pin("nobody", "1234", 0.0).code == 401
    assert book.sign_in_pin("nobody", "1234", 1.0).code == 423


@pytest.mark.slow
def test_typed_ids_do_not_grow_memory_without_bound() -> None:
    book = _book(lockout_after=2, lockout_s=1000)
    book.sign_in_pin("officer-008", "0000", 0.0)
    assert book.sign_in_pin("officer-008", "0000", 0.0).code == 423
    for i in range(MAX_TRACKED + 5):
        book.sign_in_pin(f"guess-{i}", "0000", 100.0)
    assert len(book.failures) <= MAX_TRACKED + 2
    assert "officer-008" in book.failures  # a real officer's record is kept


def test_success_resets_the_count() -> None:
    book = _book(lockout_after=3)
    book.sign_in_pin("officer-007", "0000", 0.0)
    book.sign_in_pin("officer-007", "0000", 1.0)
    assert book.sign_in_pin("officer-007", "1234", 2.0).code == 200
    assert book.sign_in_pin("officer-007", "0000", 3.0).attempts_left == 2


def test_session_idle_expiry_and_sign_out() -> None:
    book = _book(idle_s=600)
    s = book.sign_in_badge("BADGE-7F3A9C", 0.0).session
    assert s is not None and s.officer.id == "officer-007"
    assert book.session(s.token, 500.0) is s  # touching renews
    assert book.session(s.token, 1099.0) is s
    assert book.session(s.token, 1600.0, touch=False) is s  # polling does not renew
    assert book.session(s.token, 1700.0) is None  # idle 601 s
    s2 = book.sign_in_pin("officer-008", "5678", 0.0).session
    assert s2 is not None and book.sign_out(s2.token)
    assert book.session(s2.token, 1.0) is None
    assert book.session(None, 1.0) is None and book.session("made-up", 1.0) is None
    assert book.sign_in_badge("BADGE-NOPE", 0.0).code == 401


def test_officers_file_errors_name_file_entry_and_key(tmp_path: Path) -> None:
    good = hash_pin("1234", n=FAST_N)
    path = tmp_path / "officers.toml"
    path.write_text(f'[[officer]]\nid = "officer-007"\nname = "Siti"\npin_hash = "{good}"\n')
    assert list(load_officers(path)) == ["officer-007"]
    cases = {
        'id = "o1"\nname = "A"\npin_hash = "plain1234"': "officer 'o1': pin_hash",
        'id = "o 1"\nname = "A"\npin_hash = "x"': "officer #1: id",
        f'id = "o1"\npin_hash = "{good}"': "officer 'o1': name",
        f'id = "o1"\nname = "A"\npin_hash = "{good}"\npin = "1234"': "unknown key 'pin'",
    }
    for body, expected in cases.items():
        with pytest.raises(OfficersFileError, match=expected):
            parse_officers(__import__("tomllib").loads("[[officer]]\n" + body), "f.toml")
    with pytest.raises(OfficersFileError, match="file not found"):
        load_officers(tmp_path / "missing.toml")
    path.write_text("[[officer]\n")
    with pytest.raises(OfficersFileError, match="not valid TOML"):
        load_officers(path)


def test_officer_cli_hash_pin_and_check(tmp_path: Path) -> None:
    made = run_edge("officer", "hash-pin", input="2468\n")
    assert made.returncode == 0, made.stderr
    pin_hash = made.stdout.strip()
    assert verify_pin("2468", pin_hash)
    path = tmp_path / "officers.toml"
    path.write_text(
        f'[[officer]]\nid = "officer-007"\nname = "Siti Rahma"\npin_hash = "{pin_hash}"\n'
        'badge = "BADGE-7F3A9C"\n'
    )
    ok = run_edge("officer", "check", str(path))
    assert ok.returncode == 0 and "1 officer(s), 1 with a badge" in ok.stdout
    path.write_text('[[officer]]\nid = "officer-007"\nname = "Siti"\npin_hash = "nope"\n')
    bad = run_edge("officer", "check", str(path))
    assert bad.returncode == 2
    assert str(path) in bad.stderr and "officer-007" in bad.stderr and "pin_hash" in bad.stderr
    assert "Traceback" not in bad.stderr
    short = run_edge("officer", "hash-pin", input="12\n")
    assert short.returncode == 2 and "4 to 8 digits" in short.stderr


def test_guidance_follows_the_quality_gates() -> None:
    limits = QualityLimits()
    base = dict(face_px=120.0, sharpness=80.0, pose=0.1, yaw=0.1, roll=0.0, brightness=120.0)
    cases = {
        "move_closer": {"face_px": 30.0},
        "look_at_camera": {"pose": 0.9},
        "too_dark": {"brightness": 10.0},
        "too_bright": {"brightness": 250.0},
        "hold_still": {"sharpness": 2.0},
    }
    for code, change in cases.items():
        reason = gate(Quality(**{**base, **change}), limits)
        assert guidance_code("poor_quality", reason) == code, reason
    assert gate(Quality(**base), limits) is None
    assert guidance_code("ok", None) == "ok"
    assert guidance_code("no_face", "no face found") == "no_face"
    assert set(cases) | {"ok", "no_face"} == set(GUIDANCE)


def test_qr_decoded_locally_from_a_frame() -> None:
    assert decode_codes(qr_frame("KPM-0001")) == ["KPM-0001"]
    blank = np.full((480, 640, 3), 200, np.uint8)
    assert decode_codes(blank) == []
    assert first_code([blank, qr_frame("BADGE-7F3A9C")]) == "BADGE-7F3A9C"
    assert first_code([blank]) is None


def test_translations_complete_in_both_languages() -> None:
    texts = json.loads((STATIC_DIR / "i18n.json").read_text(encoding="utf-8"))
    assert set(texts) == {"id", "en"}
    assert set(texts["id"]) == set(texts["en"])
    assert all(v.strip() for lang in texts.values() for v in lang.values())
    page = (STATIC_DIR / "index.html").read_text() + (STATIC_DIR / "app.js").read_text()
    import re

    used = set(re.findall(r'data-i18n="([a-z_0-9]+)"', page))
    used |= set(re.findall(r't\("([a-z_0-9]+)"\)', page))
    used |= {f"g_{g}" for g in GUIDANCE}
    used |= {f"d_{d}" for d in DECISIONS}
    assert not used - set(texts["en"]), used - set(texts["en"])
    # everything ships in the package: no external URL anywhere in the page
    for f in STATIC_DIR.iterdir():
        assert "http://" not in f.read_text() and "https://" not in f.read_text(), f


def test_static_files_stay_in_the_package() -> None:
    found = static_file("/ui/")
    assert found is not None and found[1].startswith("text/html")
    assert static_file("/ui/app.js") is not None
    for bad in ("/ui/../api.py", "/ui/%2e%2e/api.py", "/ui/../../pyproject.toml", "/ui/nope.js"):
        assert static_file(bad) is None, bad


def test_ui_config_section_validated() -> None:
    cfg = parse_config({"mqtt": {"enabled": False}, "ui": {"max_attempts": 2, "language": "en"}})
    assert (cfg.ui.max_attempts, cfg.ui.language, cfg.ui.lockout_s) == (2, "en", 300.0)
    with pytest.raises(ConfigError, match=r"ui\.language"):
        parse_config({"ui": {"language": "fr"}})
    with pytest.raises(ConfigError, match=r"ui\.max_attempts"):
        parse_config({"ui": {"max_attempts": 0}})


def test_doctor_reports_the_officers_file(tmp_path: Path) -> None:
    from edge.doctor import check_officers

    path = tmp_path / "officers.toml"
    cfg = parse_config({"mqtt": {"enabled": False}, "ui": {"officers_file": str(path)}})
    with pytest.raises(OfficersFileError, match="file not found"):
        check_officers(cfg)
    path.write_text(
        f'[[officer]]\nid = "o1"\nname = "A"\npin_hash = "{hash_pin("1234", n=FAST_N)}"\n'
    )
    assert check_officers(cfg) == (True, f"{path}: 1 officer(s)")


@pytest.mark.slow
def test_wheel_ships_the_screen(tmp_path: Path) -> None:
    """The kiosk installs from the wheel: every static file must be in it, and zxing-cpp."""
    import zipfile

    from tools.arm64 import wheels

    wheel = wheels.build_project_wheel(Path(__file__).resolve().parents[1], tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in STATIC_DIR.iterdir():
        assert f"edge/ui/static/{f.name}" in names, f.name
    assert any(r.startswith("zxing-cpp") for r in wheels.requirements(wheel))


def test_every_refusal_and_failed_check_is_worded_in_both_languages() -> None:
    """The screen words refusals by reason_code and failed checks by decision, never with
    the daemon's English: a new code in edge/eligibility.py without a translation fails."""
    import re

    from edge import eligibility
    from edge.verification import FAILED_DECISIONS

    texts = json.loads((STATIC_DIR / "i18n.json").read_text(encoding="utf-8"))
    app = (STATIC_DIR / "app.js").read_text()
    # every code the module defines, not only the tuple: a code left out of REASONS too
    codes = {
        v
        for k, v in vars(eligibility).items()
        if k.isupper() and isinstance(v, str) and re.fullmatch(r"[a-z ]+", v)
    }
    assert set(eligibility.REASONS) | {eligibility.ALREADY_SERVED} <= codes
    assert 'replace(/ /g, "_")' in app  # reasonKey(): "rc_" + code with "_" for " "
    for lang, words in texts.items():
        for code in codes:
            key = "rc_" + code.replace(" ", "_")
            assert words.get(key, "").strip(), f"{lang}: no {key} for reason code {code!r}"
        for decision in (*FAILED_DECISIONS, "not_eligible", "already_served"):
            assert words.get(f"d_{decision}", "").strip(), f"{lang}: no d_{decision}"
        for decision in FAILED_DECISIONS:
            assert words.get(f"r_{decision}", "").strip(), f"{lang}: no r_{decision}"
        assert words["r_poor_quality_liveness"].strip()
    # the Indonesian texts carry no daemon English (a copy-paste from the API's reason)
    daemon = re.compile(r"not on the list|roster|bundle|valid until|presentation|liveness|score")
    for key, text in texts["id"].items():
        assert not daemon.search(re.sub(r"\{\w+\}", "", text)), (key, text)
    # placeholders are the same in both languages
    for key in texts["id"]:
        fields = [set(re.findall(r"\{(\w+)\}", texts[lang][key])) for lang in ("id", "en")]
        assert fields[0] == fields[1], key
    # the page never reads the daemon's English `reason` or `error` text
    assert not re.findall(r"\.(?:reason|error)\b(?!_)", app.replace("result-reason", ""))
