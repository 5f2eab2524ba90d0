"""The daemon's housekeeping chores (purge moved here from the uplink) on a real store."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from edge.housekeeping import Chore, Housekeeping, purge_acked
from edge.store import Store
from tests.roster_fixtures import fill_store


def test_chores_run_at_start_then_on_their_interval_and_survive_errors(tmp_path: Path) -> None:
    runs: list[str] = []
    interval = [10.0]

    def broken() -> None:
        runs.append("broken")
        raise OSError("disk gone")

    hk = Housekeeping(
        [
            Chore("a", lambda: interval[0], lambda: runs.append("a")),
            Chore("b", lambda: 5.0, broken, last=100.0),  # not at start: waits its interval
        ]
    )
    hk.run_due(100.0)
    assert runs == ["a"]
    hk.run_due(104.0)
    assert runs == ["a"]
    hk.run_due(105.0)  # b is due and fails: logged, not raised, tried again next interval
    assert runs == ["a", "broken"]
    interval[0] = 1.0  # a reload's new interval applies at the next turn
    hk.run_due(106.0)
    assert runs == ["a", "broken", "a"]
    hk.run_due(110.0)
    assert runs == ["a", "broken", "a", "a", "broken"]


def test_purge_keeps_unacked_and_recent_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.db")
    key = SigningKey.generate()
    records = fill_store(store, key, 3)
    ids = [r["id"] for r in records]
    store.outbox.mark_acked(ids[:2], now=1000.0)
    assert purge_acked(store, retention_days=1.0, now=1000.0 + 3600) == 0
    assert purge_acked(store, retention_days=1.0, now=1000.0 + 86401) == 2
    assert store.record_count() == 1 and store.chain_anchor()[0] == 2
    store.close()
