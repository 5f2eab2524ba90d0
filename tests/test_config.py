"""Config: the example parses and lists every field; malformed files give exit 2 naming file and key."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import Config, ConfigError, load_config, parse_config
from edge.errors import BadInput
from tests.conftest import REPO, WriteConfig, run_edge

EXAMPLE = REPO / "examples" / "edge.toml"
# keys whose example value is not the default (documented as such in the file)
EXAMPLE_OVERRIDES = {"mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"}


def _sections() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


def test_example_parses_and_lists_every_field() -> None:
    cfg = load_config(EXAMPLE)
    data = tomllib.loads(EXAMPLE.read_text("utf-8"))
    assert set(data) == set(_sections())
    for name, cls in _sections().items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(data[name]) == fields, f"[{name}] lists {sorted(data[name])}"
        default = cls()
        for key in fields:
            value = getattr(getattr(cfg, name), key)
            if f"{name}.{key}" not in EXAMPLE_OVERRIDES:
                assert value == getattr(default, key), f"{name}.{key} is not the default"
    # every key line has a comment right above it (or belongs to a commented pair)
    lines = EXAMPLE.read_text("utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[i - 1]
            assert above.startswith("#") or re.match(r"^[a-z_]+ = ", above), line
    res = run_edge("config", "check", "--no-files", "--config", str(EXAMPLE))
    assert res.returncode == 0 and "OK" in res.stdout


def test_written_config_checks_and_shows(write_config: WriteConfig) -> None:
    cfg = write_config(
        face={"threshold": 0.4, "threshold_2_templates": 0.41, "threshold_3_templates": 0.42}
    )
    res = run_edge("config", "check", "--config", str(cfg), "--json")
    assert res.returncode == 0 and '"ok": true' in res.stdout
    res = run_edge("config", "show", "--config", str(cfg))
    assert res.returncode == 0 and "threshold = 0.4" in res.stdout
    # `config show` prints TOML that loads back to the same config
    again = cfg.parent / "again.toml"
    again.write_text(res.stdout)
    a, b = load_config(cfg), load_config(again)
    assert dataclasses.replace(a, source="") == dataclasses.replace(b, source="")


# (TOML text, key the message must name, words it must contain)
BAD: list[tuple[str, str, str]] = [
    ('[device]\nstate_dir = "/x"\nbogus = 1\n', "device.bogus", "unknown key"),
    ("[nonsense]\na = 1\n", "[nonsense]", "unknown section"),
    ("device = 3\n", "[device]", "expected a table"),
    ('[face]\nthreads = "two"\n', "face.threads", "expected an integer"),
    ("[face]\nthreads = 2.5\n", "face.threads", "expected an integer"),
    ("[face]\nthreshold = true\n", "face.threshold", "expected a number"),
    ('[gps]\nenabled = "yes"\n', "gps.enabled", "expected true or false"),
    ("[api]\nlisten = 8470\n", "api.listen", "expected a string"),
    ("[face]\nthreads = 0\n", "face.threads", "at least 1"),
    ("[gps]\nport = 70000\n", "gps.port", "at most 65535"),
    ("[face]\nthreshold = nan\n", "face.threshold", "finite"),
    ("[face]\nthreshold = inf\n", "face.threshold", "finite"),
    ('[face]\nruntime = "onnx"\n', "face.runtime", "expected one of"),
    ('[camera]\nbackend = "usb"\n', "camera.backend", "expected one of"),
    ("[face]\nmin_brightness = 200.0\nmax_brightness = 100.0\n", "face.min_brightness", "less"),
    ("[face]\nburst_frames = 2\nmin_good_frames = 3\n", "face.min_good_frames", "burst_frames"),
    ("[face]\nthreshold = 0.5\n", "face.threshold_2_templates", "false match"),
    ("[face]\nthreshold_3_templates = 0.37\n", "face.threshold_2_templates", "<="),
    ("[gps]\nreconnect_min_s = 9.0\nreconnect_max_s = 1.0\n", "gps.reconnect_min_s", "at most"),
    ('[mqtt]\nenabled = true\ntls = true\nca_file = ""\n', "mqtt.ca_file", "file path"),
    ('[device]\nstate_dir = ""\n', "device.state_dir", "directory"),
    ('[api]\nlisten = "localhost"\n', "api.listen", "HOST:PORT"),
    ('[api]\nlisten = "unix:"\n', "api.listen", "unix:/path"),
    ('[hq]\nsigning_public_key = "not base64!"\n', "hq.signing_public_key", "base64"),
    ('[hq]\nsealing_public_key = "AAAA"\n', "hq.sealing_public_key", "32-byte"),
    ('[hq]\nsigning_public_key = "' + "A" * 43 + '="\n', "", ""),  # valid: 32 zero bytes
    ("[face\nthreads = 2\n", "", "not valid TOML"),
    ("[face]\nthreads = = 2\n", "", "not valid TOML"),
    ("[face]\nthreads = 2\nthreads = 3\n", "", "not valid TOML"),
]


def _mqtt_off(text: str) -> str:
    return text if "[mqtt]" in text else text + "\n[mqtt]\nenabled = false\n"


@pytest.mark.parametrize(("text", "key", "words"), BAD)
def test_bad_config_exit_2_names_file_and_key(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_mqtt_off(text), encoding="utf-8")
    res = run_edge("config", "check", "--config", str(path))
    if not words:  # the control case: a well-formed file passes
        assert res.returncode == 0, res.stderr
        return
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr
    assert key in res.stderr and words in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unreadable_files_exit_2(tmp_path: Path) -> None:
    cases: dict[str, tuple[Path, str]] = {}
    latin = tmp_path / "latin1.toml"
    latin.write_bytes('[device]\nlabel = "Kantor Pos Jalan Caf\xe9"\n'.encode("latin-1"))
    cases["not utf-8"] = (latin, "not UTF-8")
    cases["missing"] = (tmp_path / "nope.toml", "file not found")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x00\x01\x02\xff\xfe")
    cases["binary"] = (binary, "not UTF-8")
    for what, (path, words) in cases.items():
        res = run_edge("config", "check", "--config", str(path))
        assert res.returncode == 2, what
        assert str(path) in res.stderr and words in res.stderr, (what, res.stderr)
        assert "Traceback" not in res.stderr


def test_config_env_variable(write_config: WriteConfig, tmp_path: Path) -> None:
    cfg = write_config()
    res = run_edge("config", "check", env={"BANSOS_EDGE_CONFIG": str(cfg)})
    assert res.returncode == 0 and str(cfg) in res.stdout
    res = run_edge("config", "check", env={"BANSOS_EDGE_CONFIG": str(tmp_path / "x.toml")})
    assert res.returncode == 2 and "x.toml" in res.stderr


def test_config_is_frozen() -> None:
    cfg = load_config(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.face.threshold = 0.9  # type: ignore[misc]


# -- hypothesis: any TOML-shaped dict either parses or raises ConfigError ---------------

_scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_value = st.one_of(
    _scalar,
    st.lists(_scalar, max_size=3),
    st.dictionaries(st.text(max_size=5), _scalar, max_size=2),
)


def _section_strategy() -> st.SearchStrategy[dict[str, Any]]:
    per_section = {}
    for name, cls in _sections().items():
        keys = [f.name for f in dataclasses.fields(cls)]
        per_section[name] = st.dictionaries(
            st.one_of(st.sampled_from(keys), st.text(max_size=8)), _value, max_size=4
        )
    known = st.fixed_dictionaries({}, optional=per_section)
    return st.one_of(
        known,
        st.dictionaries(st.text(max_size=8), _value, max_size=3),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_section_strategy())
def test_parse_config_raises_only_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml")
        assert isinstance(exc, BadInput)
        return
    assert isinstance(cfg, Config)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_sections())), st.data())
def test_each_field_accepts_its_default_and_refuses_wrong_types(section: str, data: Any) -> None:
    cls = _sections()[section]
    hints = typing.get_type_hints(cls)
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(cls)]))
    typ = hints[field]
    wrong = {bool: "yes", int: "1", float: "1.0", str: 1}[typ]
    base = {"mqtt": {"enabled": False}} if section != "mqtt" else {}
    sect = {**base.get(section, {}), field: wrong}
    with pytest.raises(ConfigError) as info:
        parse_config({**base, section: sect}, "f.toml")
    assert f"{section}.{field}" in str(info.value)
