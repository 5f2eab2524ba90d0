"""The shared contract (bansos_contract): written once, importable without the kiosk or HQ.

Fails before issue 21: the ID pattern, UTC formatters and topic strings were written in
several modules, and HQ imported the wire format from the kiosk's uplink.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bansos_contract import ids, topics, utc
from edge_hq.heads import status_subscription

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "edge_hq", "edge_tools", "bansos_contract")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))] + [
        p for pkg in ("edge_hq", "edge_tools") for p in sorted((REPO / "hq" / pkg).rglob("*.py"))
    ]


def test_contract_imports_neither_kiosk_nor_hq() -> None:
    code = (
        "import sys, importlib, pkgutil, bansos_contract as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module(f'bansos_contract.{m.name}')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('edge', 'edge_hq', 'edge_tools'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "literal",
    [
        ids.TEXT_ID.pattern,
        ids.RECORD_ID.pattern,
        ids.UUID.pattern,
        ids.HEX64.pattern,
        ids.TOPIC_LEVEL.pattern,
    ],
)
def test_each_id_pattern_is_written_once(literal: str) -> None:
    where = [p for p in _sources() if literal in p.read_text(encoding="utf-8")]
    assert [p.relative_to(REPO).as_posix() for p in where] == ["bansos_contract/ids.py"]


def test_utc_is_formatted_in_one_place() -> None:
    fmt = re.compile(r"strftime\(\"%Y-%m-%dT%H:%M:%S")
    where = [p.relative_to(REPO).as_posix() for p in _sources() if fmt.search(p.read_text())]
    assert where == ["bansos_contract/utc.py"]


def test_hq_topics_are_the_kiosk_topics() -> None:
    mine = topics.Topics.for_device("kiosk", "kiosk-0123456789abcdef")
    device_of = topics.device_of
    assert device_of(mine.records, "kiosk", topics.RECORDS) == "kiosk-0123456789abcdef"
    assert device_of(mine.status, "kiosk", topics.STATUS) == "kiosk-0123456789abcdef"
    assert device_of(mine.status, "kiosk", topics.RECORDS) is None
    assert device_of("other/kiosk-1/records", "kiosk", topics.RECORDS) is None
    assert status_subscription("hq", "kiosk") == "$share/hq/kiosk/+/status"


def test_no_module_builds_topic_strings_by_hand() -> None:
    leaf = re.compile(r"""f["'][^"']*/(records|acks|roster|status)["']""")
    where = [p.relative_to(REPO).as_posix() for p in _sources() if leaf.search(p.read_text())]
    assert where == []


def test_utc_forms_round_trip() -> None:
    t = 1_762_000_000.125
    assert utc.iso_ms(t) == "2025-11-01T12:26:40.125Z"
    assert utc.iso_s(t) == "2025-11-01T12:26:40Z"
    assert utc.parse(utc.iso_ms(t)) == t
    with pytest.raises(ValueError, match="expected UTC time"):
        utc.parse("2025-02-30T00:00:00Z")


def test_hq_reaches_the_kiosk_wire_only_through_the_contract() -> None:
    """HQ used to import edge.uplink.wire and edge.uplink.acks; the uplink is the kiosk's."""
    hq = sorted((REPO / "hq" / "edge_hq").rglob("*.py"))
    assert hq
    assert [p.name for p in hq if re.search(r"\bedge\.uplink\b", p.read_text())] == []
