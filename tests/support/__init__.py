"""Shared test support: one home for helpers every test module may use.

- `helpers`: free ports, waiting for a condition (fails the test on timeout), TOML writing.
- `data`: the fixtures the repository ships (`tests/data/`) and the big labelled sets under
  `$BANSOS_DATA` (`shared_data("pad-dev")`), for the `data` group.
- `mqtt`, `gpsd`, `hq`: real mosquitto (with a throw-away CA), gpsd through gpsfake, and
  PostgreSQL; `faces`: photos and face pipelines.
- `daemon`: the real `edge run` under a test's notify socket, and many clients at once.

Their pytest fixtures are registered once, through `pytest_plugins` in tests/conftest.py:
a test module just names them as parameters.
"""
