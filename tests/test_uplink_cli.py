"""`edge outbox status [--json]` as a real subprocess over a real store.

Runtime: about 3 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nacl.signing import SigningKey

from edge.store import Store
from edge.uplink.outbox import Outbox
from tests.conftest import REPO, WriteConfig
from tests.roster_fixtures import fill_store

# The lead registers outbox_group in edge.cli; run it through the same main() either way.
_MAIN = (
    "import sys; from edge.cli import cli, main; from edge.cli.outbox_cmd import outbox_group;"
    " 'outbox' in cli.commands or cli.add_command(outbox_group); sys.exit(main(sys.argv[1:]))"
)


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_outbox_status_json(tmp_path: Path, write_config: WriteConfig) -> None:
    cfg = write_config(outbox={"max_rows": 5})
    store = Store(tmp_path / "state" / "edge.db")
    ids = [r["id"] for r in fill_store(store, SigningKey.generate(), 5)]
    ob = Outbox(store, 5, 1 << 30)
    ob.mark_sent(ids[:3])
    ob.mark_acked(ids[:1])
    store.close()
    r = edge("outbox", "status", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["pending"], doc["sent"], doc["acked"], doc["depth"]) == (2, 2, 1, 4)
    assert doc["full"] is False and doc["limits"]["max_rows"] == 5
    assert doc["last_sync_at"].endswith("Z") and doc["oldest_pending_age_s"] >= 0
    text = edge("outbox", "status", "--config", str(cfg))
    assert text.returncode == 0 and "pending 2  sent 2  acked 1" in text.stdout


def test_outbox_status_full_and_missing_db(tmp_path: Path, write_config: WriteConfig) -> None:
    cfg = write_config(outbox={"max_rows": 2})
    r = edge("outbox", "status", "--config", str(cfg), "--json")
    assert r.returncode == 2 and "no database" in r.stderr and "Traceback" not in r.stderr
    store = Store(tmp_path / "state" / "edge.db")
    fill_store(store, SigningKey.generate(), 2)
    store.close()
    r = edge("outbox", "status", "--config", str(cfg))
    assert r.returncode == 0 and "REFUSING new verifications" in r.stdout
    assert "connect to sync" in r.stdout
