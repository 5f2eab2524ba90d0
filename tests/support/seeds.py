"""Seeds for randomised tests: printed, and fixed with BANSOS_TEST_SEED.

A test that draws at random takes the `seed` fixture instead of seeding from the clock or
os.urandom. One seed per run (random unless BANSOS_TEST_SEED is set) is shown in the
run's header and, when a test that used it fails, in that test's report, so any failure
can be repeated with `BANSOS_TEST_SEED=<seed> pytest <test>`.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

SEED_ENV = "BANSOS_TEST_SEED"


def _run_seed() -> int:
    fixed = os.environ.get(SEED_ENV, "").strip()
    if fixed:
        try:
            return int(fixed, 0)
        except ValueError:
            raise pytest.UsageError(f"{SEED_ENV}={fixed!r}: expected an integer") from None
    return int.from_bytes(os.urandom(4), "big")


RUN_SEED = _run_seed()


def pytest_report_header() -> str:
    return f"random seed: {RUN_SEED} (repeat with {SEED_ENV}={RUN_SEED})"


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This run's seed; printed so that it shows with the test's captured output."""
    print(f"random seed {RUN_SEED}: repeat with {SEED_ENV}={RUN_SEED}")
    request.node.stash[_USED] = True
    return RUN_SEED


_USED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.stash.get(_USED, False):
        report.sections.append(("random seed", f"{SEED_ENV}={RUN_SEED}"))
