"""HQ config: the example loads; every refusal names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from edge_hq.config import load_hq_config, parse_hq_config

from edge.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_example_loads() -> None:
    cfg = load_hq_config(REPO / "examples" / "hq.toml")
    assert cfg.broker.share_group == "hq" and cfg.broker.tls
    assert cfg.database.url.endswith("hq.db")
    assert cfg.ingest.batch_max == 200


def test_defaults_without_tls() -> None:
    cfg = parse_hq_config({"broker": {"tls": False}})
    assert cfg.broker.port == 8883 and cfg.broker.client_id == "hq.ingest"


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"broker": {"port": 0, "tls": False}}, "broker.port", "at least 1"),
        ({"broker": {"tls": True}}, "broker.ca_file", "file path"),
        ({"broker": {"tls": False, "share_group": "a/b"}}, "broker.share_group", "letters"),
        ({"broker": {"tls": False, "roster_cert_file": "x"}}, "broker.roster_key_file", "together"),
        (
            {"broker": {"tls": False}, "database": {"url": "mysql://x"}},
            "database.url",
            "postgresql",
        ),
        ({"broker": {"tls": False}, "database": {"url": ""}}, "database.url", "SQLite path"),
        ({"broker": {"tls": False}, "ingest": {"batch_max": 0}}, "ingest.batch_max", "at least 1"),
        ({"broker": {"tls": False, "colour": 1}}, "broker.colour", "unknown key"),
        ({"broker": {"tls": "yes"}}, "broker.tls", "true or false"),
        ({"brokers": {}}, "[brokers]", "unknown section"),
    ],
)
def test_refusals_name_the_key(data: dict, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hq_config(data, "hq.toml")
    assert info.value.key == key and expected in info.value.expected
    assert str(info.value).startswith(f"hq.toml: {key}: ")


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "hq.toml"
    bad.write_text("[broker\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_hq_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_hq_config(tmp_path / "missing.toml")
