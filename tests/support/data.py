"""Where test data lives: what the repository ships, and the big labelled sets beside it.

The default run uses only `tests/data/` (see its README for provenance and licences).
The `data` group (`pytest -m data`) needs the labelled sets, found under `$BANSOS_DATA`
(default `../shared/data` beside the checkout; a relative path is taken from the repo root):

    from tests.support.data import shared_data

    @pytest.mark.data
    def test_liveness_on_the_dev_set() -> None:
        pad = shared_data("pad-dev")   # a Path, or the test fails with one line saying
        ...                            # what is missing and where to put it
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.helpers import REPO

DATA_ENV = "BANSOS_DATA"
DEFAULT_DATA = Path("..") / "shared" / "data"

TEST_DATA = REPO / "tests" / "data"
BUNDLED_FACES = TEST_DATA / "faces"  # two public-domain people, ten photos each
GPS_LOGS = TEST_DATA / "gps"  # the GPSD project's receiver logs (BSD-2-Clause)


def data_root() -> Path:
    """`$BANSOS_DATA`, else `../shared/data`; relative paths are taken from the repo root."""
    root = Path(os.environ.get(DATA_ENV) or DEFAULT_DATA).expanduser()
    return root if root.is_absolute() else (REPO / root).resolve()


def missing_message(name: str) -> str:
    root = data_root()
    return (
        f"data set {name!r} not found: {root / name} is missing; put the labelled set "
        f"there, or point {DATA_ENV} at the folder that holds it (now {root})"
    )


def shared_data(name: str) -> Path:
    """The folder of the labelled set `name` (e.g. "faces-dev", "pad-dev") under the data root.

    Fails the calling test with one line (no traceback) when the folder is absent or empty.
    """
    path = data_root() / name
    if not path.is_dir() or not any(path.iterdir()):
        pytest.fail(missing_message(name), pytrace=False)
    return path
