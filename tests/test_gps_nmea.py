"""The demo track writer: valid NMEA (checksums as real receivers compute them)."""

from __future__ import annotations

from pathlib import Path

from edge.capture.nmea import checksum, main, render, village_epochs
from tests.conftest import REPO
from tests.support.data import GPS_LOGS


def test_checksums_match_real_receiver_sentences() -> None:
    n = 0
    for line in (GPS_LOGS / "mtk-3329.log").read_text().splitlines():
        if line.startswith("$") and "*" in line:
            body, _, cs = line[1:].partition("*")
            assert checksum(body) == cs.strip().upper()
            n += 1
    assert n > 10


def test_bundled_track_is_what_the_generator_writes() -> None:
    track = REPO / "edge" / "samples" / "track.nmea"
    assert track.read_bytes() == render(village_epochs()).encode("ascii")


def test_track_shape_and_southern_hemisphere(tmp_path: Path) -> None:
    out = tmp_path / "t.nmea"
    assert main([str(out), "--start", "2026-12-01T00:00:00Z", "--seconds", "6"]) == 0
    lines = out.read_text().splitlines()
    rmc = [ln for ln in lines if ln.startswith("$GPRMC")]
    assert len(rmc) == 6 and rmc[0].split(",")[9] == "011226"
    assert rmc[-1].split(",")[2] == "A" and rmc[0].split(",")[2] == "V"  # no fix, then a fix
    gga = [ln for ln in lines if ln.startswith("$GPGGA") and ",S," in ln]
    assert gga and all(",E," in ln for ln in gga)
    assert main([str(out), "--start", "yesterday"]) == 2
