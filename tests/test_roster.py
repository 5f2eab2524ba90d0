"""Roster bundles: strict parsing, HQ signature, embedder and device binding; CLI import.

Malformed and refused bundles give exit 2 with the file, the key and the reason.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.errors import BadInput
from edge.keys import device_id_for, init_device_key
from edge.roster import (
    RosterRefused,
    load_bundle_bytes,
    parse_bundle,
    sign_bundle,
    verify_bundle,
)
from edge.store import Store
from tests.conftest import HqKeys, WriteConfig, run_edge
from tests.roster_fixtures import (
    MODEL_SHA,
    OTHER_MODEL_SHA,
    bundle_body,
    signed_bundle,
    template,
    write_json,
)

HQ = SigningKey.generate()

# -- pure: parse and verify -------------------------------------------------------------


def test_signed_bundle_verifies() -> None:
    obj = signed_bundle(HQ, n=4)
    b = verify_bundle(obj, HQ.verify_key, MODEL_SHA, device_id="kiosk-0123456789abcdef")
    assert b.bundle_id == "b-2026-11-001" and len(b.entries) == 4
    assert b.entries[2].kpm_id == "KPM-000002"
    arr = b.entries[0].template_arrays()[0]
    assert arr.shape == (128,) and abs(float((arr**2).sum()) - 1.0) < 1e-5


def _refused(obj: Any, **kw: Any) -> str:
    args: dict[str, Any] = {
        "hq_key": HQ.verify_key,
        "expected_model": MODEL_SHA,
        "source": "r.json",
    }
    args.update(kw)
    with pytest.raises(RosterRefused) as info:
        verify_bundle(obj, **args)
    return str(info.value)


def test_refusals_name_the_reason() -> None:
    unsigned = bundle_body()
    assert "unsigned" in _refused(unsigned) and _refused(unsigned).startswith("r.json: sig")
    assert "unsigned" in _refused({**unsigned, "sig": ""})
    other = signed_bundle(SigningKey.generate())
    assert "not signed by the configured HQ key" in _refused(other)
    assert "not signed" in _refused({**signed_bundle(HQ), "sig": "###"})
    wrong_model = signed_bundle(HQ, model=OTHER_MODEL_SHA)
    msg = _refused(wrong_model)
    assert msg.startswith("r.json: model:") and OTHER_MODEL_SHA[:12] in msg
    for_other = signed_bundle(HQ, device_id="kiosk-aaaaaaaaaaaaaaaa")
    msg = _refused(for_other, device_id="kiosk-bbbbbbbbbbbbbbbb")
    assert msg.startswith("r.json: device_id:") and "kiosk-aaaaaaaaaaaaaaaa" in msg
    # the targeted device itself accepts it
    verify_bundle(for_other, HQ.verify_key, MODEL_SHA, device_id="kiosk-aaaaaaaaaaaaaaaa")


def test_any_change_after_signing_is_refused() -> None:
    good = signed_bundle(HQ, n=2)
    changes: list[Callable[[dict[str, Any]], None]] = [
        lambda o: o["entries"][0].update(kpm_id="KPM-999999"),
        lambda o: o["entries"][1].update(period="2026-12"),
        lambda o: o["entries"][0].update(templates=[template(99)]),
        lambda o: o.update(issued_at="2030-01-01T00:00:00Z"),
        lambda o: o["entries"].pop(),
        lambda o: o.update(device_id="kiosk-0000000000000000"),
    ]
    for change in changes:
        obj = copy.deepcopy(good)
        change(obj)
        assert "not signed" in _refused(obj)


MALFORMED: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
    (lambda o: [o], "(top level)"),
    (lambda o: {**o, "extra": 1}, "extra"),
    (lambda o: {**o, "v": 2}, "v"),
    (lambda o: {**o, "bundle_id": ""}, "bundle_id"),
    (lambda o: {**o, "issued_at": 5}, "issued_at"),
    (lambda o: {**o, "model": "xyz"}, "model"),
    (lambda o: {**o, "device_id": "no spaces allowed"}, "device_id"),
    (lambda o: {**o, "entries": {}}, "entries"),
    (lambda o: {**o, "entries": [1]}, "entries[0]"),
    (lambda o: {**o, "entries": [{**o["entries"][0], "x": 1}]}, "entries[0].x"),
    (lambda o: {**o, "entries": [{**o["entries"][0], "kpm_id": 7}]}, "entries[0].kpm_id"),
    (lambda o: {**o, "entries": [{**o["entries"][0], "programme": "x"}]}, "entries[0].programme"),
    (lambda o: {**o, "entries": [{**o["entries"][0], "templates": []}]}, "entries[0].templates"),
    (
        lambda o: {**o, "entries": [{**o["entries"][0], "templates": ["AAAA"]}]},
        "entries[0].templates[0]",
    ),
    (
        lambda o: {**o, "entries": [{**o["entries"][0], "templates": [None]}]},
        "entries[0].templates[0]",
    ),
    (
        lambda o: {
            **o,
            "entries": [
                {
                    **o["entries"][0],
                    "templates": [base64.b64encode(b"\x00\x00\xc0\x7f" * 128).decode()],
                }
            ],
        },
        "entries[0].templates[0]",
    ),  # NaN floats
    (lambda o: {**o, "entries": [o["entries"][0], o["entries"][0]]}, "entries[1].kpm_id"),
]


@pytest.mark.parametrize(("mangle", "key"), MALFORMED)
def test_malformed_bundle_names_key(mangle: Callable[[dict[str, Any]], Any], key: str) -> None:
    obj = mangle(bundle_body(n=1))
    with pytest.raises(BadInput) as info:
        parse_bundle(obj, "r.json")
    assert str(info.value).startswith(f"r.json: {key}:"), str(info.value)
    assert not isinstance(info.value, RosterRefused)


def test_load_bundle_bytes_errors() -> None:
    with pytest.raises(BadInput, match=r"r.json: line 1 column 2: not valid JSON"):
        load_bundle_bytes(b"{oops", "r.json")
    with pytest.raises(BadInput, match="not UTF-8"):
        load_bundle_bytes(b"\xff{}", "r.json")
    with pytest.raises(BadInput, match="top level"):
        load_bundle_bytes(b"[1]", "r.json")


def test_sign_bundle_replaces_old_sig() -> None:
    body = {**bundle_body(), "sig": "stale"}
    signed = sign_bundle(body, HQ)
    assert signed["sig"] != "stale"
    verify_bundle(signed, HQ.verify_key, MODEL_SHA)


PLACES: list[tuple[Any, bool]] = [
    ({"type": "point", "lat": -7.25, "lon": 110.4, "radius_m": 300}, True),
    ({"type": "polygon", "points": [[-7.2, 110.4], [-7.3, 110.4], [-7.3, 110.5]]}, True),
    ({"type": "point", "lat": 95.0, "lon": 110.4, "radius_m": 300}, False),
    ({"type": "point", "lat": -7.25, "lon": 110.4, "radius_m": -1}, False),
    ({"type": "point", "lat": "south", "lon": 110.4, "radius_m": 300}, False),
    ({"type": "polygon", "points": [[-7.2, 110.4], [-7.3, 110.4]]}, False),
    ({"type": "polygon", "points": "nowhere"}, False),
    ({"type": "circle"}, False),
    ("village", False),
]


@pytest.mark.parametrize(("place", "ok"), PLACES)
def test_places_are_checked(place: Any, ok: bool) -> None:
    body = bundle_body(n=1)
    body["entries"][0]["place"] = place
    if ok:
        assert parse_bundle(body, "r.json").entries[0].place == place
        return
    with pytest.raises(BadInput) as info:
        parse_bundle(body, "r.json")
    assert "r.json" in str(info.value) and "entries[0].place" in str(info.value), str(info.value)


# -- hypothesis: arbitrary bundle-shaped objects only ever raise BadInput ---------------

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
)
_json = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_place = st.one_of(
    st.none(),
    _json,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["point", "polygon", "circle", 3]),
            "lat": st.one_of(st.floats(), st.integers(), st.text(max_size=3)),
            "lon": st.one_of(st.floats(), st.integers()),
            "radius_m": st.one_of(st.floats(), st.integers(-5, 5000)),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("polygon"),
            "points": st.lists(
                st.one_of(st.lists(st.floats(-200, 200), max_size=3), _json), max_size=6
            ),
        }
    ),
)
_entry = st.fixed_dictionaries(
    {},
    optional={
        "kpm_id": st.one_of(st.sampled_from(["KPM-1", "KPM-2"]), _json),
        "programme": st.one_of(st.sampled_from(["sembako", "pkh"]), _json),
        "period": st.one_of(st.just("2026-11"), _json),
        "templates": st.one_of(
            st.lists(st.one_of(st.just(template(1)), st.text(max_size=8), _json), max_size=3),
            _json,
        ),
        "place": _place,
        "junk": _json,
    },
)
_placed_entry = st.fixed_dictionaries(
    {
        "kpm_id": st.just("KPM-3"),
        "programme": st.just("pkh"),
        "period": st.just("2026-11"),
        "templates": st.just([template(3)]),
        "place": _place,
    }
)
_bundle = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), _json),
        "bundle_id": st.one_of(st.just("b-1"), _json),
        "issued_at": st.one_of(st.just("2026-11-01T00:00:00Z"), _json),
        "model": st.one_of(st.just(MODEL_SHA), st.just(OTHER_MODEL_SHA), _json),
        "device_id": st.one_of(st.just("*"), st.just("kiosk-aaaaaaaaaaaaaaaa"), _json),
        "entries": st.one_of(
            st.lists(_entry, max_size=3), st.lists(_placed_entry, min_size=1, max_size=1), _json
        ),
        "sig": st.one_of(st.text(max_size=10), _json),
        "other": _json,
    },
)

# well-formed top level, fuzzed entries: so the fuzz reaches the entry and place checks
_good_top = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "bundle_id": st.just("b-1"),
        "issued_at": st.just("2026-11-01T00:00:00Z"),
        "model": st.just(MODEL_SHA),
        "device_id": st.just("*"),
        "entries": st.lists(st.one_of(_entry, _placed_entry), min_size=1, max_size=3),
    }
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_bundle, _good_top, _json), st.booleans())
def test_bundle_input_raises_only_bad_input(obj: Any, sign: bool) -> None:
    if sign and isinstance(obj, dict):
        try:
            obj = sign_bundle(obj, HQ)
        except ValueError:  # HQ cannot sign what has no canonical JSON (inf): leave unsigned
            sign = False
    try:
        parse_bundle(obj, "fuzz.json")
    except BadInput as exc:
        assert str(exc).startswith("fuzz.json: ")
    try:
        bundle = verify_bundle(obj, HQ.verify_key, MODEL_SHA, "kiosk-bbbbbbbbbbbbbbbb", "fuzz.json")
    except BadInput as exc:  # RosterRefused is a BadInput
        assert str(exc).startswith("fuzz.json: ")
    else:
        assert sign and bundle.model == MODEL_SHA


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_bundle_bytes_raise_only_bad_input(data: bytes) -> None:
    try:
        obj = load_bundle_bytes(data, "fuzz.json")
        parse_bundle(obj, "fuzz.json")
    except BadInput as exc:
        assert str(exc).startswith("fuzz.json: ")


# -- the real CLI: `edge roster import` --------------------------------------------------


def _embedder_sha(models_dir: str = "") -> str:
    from edge.infer.manifest import load_manifest

    return load_manifest(models_dir).embedder.sha256


@pytest.fixture
def roster_cfg(write_config: WriteConfig, tmp_path: Path, hq_keys: HqKeys) -> tuple[Path, str]:
    cfg = write_config()
    key = init_device_key(tmp_path / "state" / "device.key")
    return cfg, device_id_for(key.verify_key)


def _import(cfg: Path, file: Path) -> Any:
    res = run_edge("roster", "import", "--config", str(cfg), str(file), "--json")
    assert "Traceback" not in res.stderr
    return res


def test_cli_import_and_show(roster_cfg: tuple[Path, str], hq_keys: HqKeys, tmp_path: Path) -> None:
    cfg, device_id = roster_cfg
    model = _embedder_sha()
    path = write_json(tmp_path / "r.json", signed_bundle(hq_keys.signing, n=5, model=model))
    res = _import(cfg, path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"bundle_id": "b-2026-11-001", "entries": 5}
    res = run_edge("roster", "show", "--config", str(cfg), "--json")
    assert json.loads(res.stdout)["entries"] == 5
    # a bundle targeted at this very device is accepted too
    path = write_json(
        tmp_path / "r2.json",
        signed_bundle(hq_keys.signing, n=1, model=model, device_id=device_id, bundle_id="b-2"),
    )
    assert _import(cfg, path).returncode == 0
    store = Store(tmp_path / "state" / "edge.db")
    assert store.roster_summary()["bundle_id"] == "b-2"
    assert [e["kind"] for e in store.events()] == ["roster_imported", "roster_imported"]
    store.close()


def test_cli_refuses_with_reason(
    roster_cfg: tuple[Path, str], hq_keys: HqKeys, tmp_path: Path
) -> None:
    cfg, _ = roster_cfg
    model = _embedder_sha()
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unsigned": (bundle_body(model=model), "sig: bundle is unsigned"),
        "other key": (
            signed_bundle(SigningKey.generate(), model=model),
            "sig: not signed by the configured HQ key",
        ),
        "other model": (
            signed_bundle(hq_keys.signing, model=OTHER_MODEL_SHA),
            "model: bundle made for embedder",
        ),
        "other device": (
            signed_bundle(hq_keys.signing, model=model, device_id="kiosk-0000000000000000"),
            "device_id: bundle is for kiosk-0000000000000000",
        ),
    }
    for what, (obj, reason) in cases.items():
        path = write_json(tmp_path / "bad.json", obj)
        res = _import(cfg, path)
        assert res.returncode == 2, what
        assert f"{path}: {reason}" in res.stderr, (what, res.stderr)
    store = Store(tmp_path / "state" / "edge.db")
    assert store.roster_summary()["entries"] == 0  # nothing refused was stored
    store.close()


def test_cli_malformed_names_file_and_key(
    roster_cfg: tuple[Path, str], hq_keys: HqKeys, tmp_path: Path
) -> None:
    cfg, _ = roster_cfg
    model = _embedder_sha()
    good = bundle_body(model=model)
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "line 1 column 2: not valid JSON"),
        (b"\xff\xfe{}", "(file): not UTF-8"),
        (b"[]", "(top level): expected a JSON object"),
        (json.dumps({**good, "v": "1"}).encode(), "v: expected 1"),
        (json.dumps({**good, "model": 5}).encode(), "model: expected the embedder"),
        (
            json.dumps({**good, "entries": [{**good["entries"][0], "programme": "blt"}]}).encode(),
            "entries[0].programme: expected one of sembako, pkh",
        ),
        (
            json.dumps(
                {**good, "entries": [{**good["entries"][0], "templates": ["QUJD"]}]}
            ).encode(),
            "entries[0].templates[0]: expected base64 of 128 or 512 float32 values",
        ),
    ]
    for data, words in cases:
        path = tmp_path / "bad.json"
        path.write_bytes(data)
        res = _import(cfg, path)
        assert res.returncode == 2 and f"{path}: {words}" in res.stderr, (words, res.stderr)
    res = _import(cfg, tmp_path / "absent.json")
    assert res.returncode == 2 and "absent.json" in res.stderr
    # no HQ key configured: a config error naming the key
    no_hq = cfg.parent / "nohq.toml"
    no_hq.write_text(cfg.read_text().replace(hq_keys.signing_public, ""))
    path = write_json(tmp_path / "ok.json", signed_bundle(hq_keys.signing, model=model))
    res = _import(no_hq, path)
    assert (
        res.returncode == 2 and "hq.signing_public_key" in res.stderr and str(no_hq) in res.stderr
    )


def test_cli_missing_models_manifest(
    write_config: WriteConfig, hq_keys: HqKeys, tmp_path: Path
) -> None:
    empty = tmp_path / "no-models"
    empty.mkdir()
    cfg = write_config(face={"models_dir": str(empty)})
    path = write_json(tmp_path / "r.json", signed_bundle(hq_keys.signing, model=MODEL_SHA))
    res = _import(cfg, path)
    assert res.returncode == 2 and str(empty / "models.json") in res.stderr, res.stderr
