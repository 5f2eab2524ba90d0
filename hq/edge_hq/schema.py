"""HQ's named migrations, one text per step written once for SQLite and PostgreSQL.

`{id}`, `{blob}`, `{real}` and `{bigint}` are the only dialect differences; the
`_migrations` table records which names ran, so either backend upgrades the same way.
"""

from __future__ import annotations

TYPES = {
    "sqlite": {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "blob": "BLOB",
        "real": "REAL",
        "bigint": "INTEGER",
    },
    "postgres": {
        "id": "BIGSERIAL PRIMARY KEY",
        "blob": "BYTEA",
        "real": "DOUBLE PRECISION",
        "bigint": "BIGINT",
    },
}

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "001_devices",
        [
            """CREATE TABLE devices (
                device_id TEXT PRIMARY KEY,
                public_key TEXT NOT NULL UNIQUE,
                label TEXT NOT NULL DEFAULT '',
                added_at {real} NOT NULL
            )""",
        ],
    ),
    (
        "002_records",
        [
            """CREATE TABLE records (
                id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL REFERENCES devices(device_id),
                seq {bigint} NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                kpm_id TEXT NOT NULL,
                programme TEXT NOT NULL,
                period TEXT NOT NULL,
                decision TEXT NOT NULL,
                score {real},
                geofence TEXT NOT NULL,
                captured_at TEXT NOT NULL,
                received_at {real} NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX records_device_seq ON records (device_id, seq)",
            "CREATE INDEX records_period ON records (period, programme, decision)",
        ],
    ),
    (
        "003_quarantine",
        [
            """CREATE TABLE quarantine (
                payload_hash TEXT PRIMARY KEY,
                topic TEXT NOT NULL,
                device_id TEXT NOT NULL,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL,
                payload {blob} NOT NULL,
                first_at {real} NOT NULL,
                last_at {real} NOT NULL,
                seen {bigint} NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX quarantine_device ON quarantine (device_id, reason)",
        ],
    ),
    (
        "004_chain_issues",
        [
            """CREATE TABLE chain_issues (
                id {id},
                at {real} NOT NULL,
                device_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                seq {bigint} NOT NULL,
                record_id TEXT NOT NULL,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX chain_issues_device ON chain_issues (device_id, seq)",
        ],
    ),
    (
        "005_audit",
        [
            """CREATE TABLE audit (
                id {id},
                at {real} NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                record_id TEXT,
                detail TEXT NOT NULL DEFAULT ''
            )""",
        ],
    ),
    (
        "006_device_heads",
        [
            # the newest signed head each kiosk published in its status (hq/edge_hq/heads.py)
            """CREATE TABLE device_heads (
                device_id TEXT PRIMARY KEY REFERENCES devices(device_id),
                seq {bigint} NOT NULL,
                hash TEXT NOT NULL,
                signed_at TEXT NOT NULL,
                received_at {real} NOT NULL,
                body TEXT NOT NULL
            )""",
        ],
    ),
    (
        # Quarantine keeps a bounded prefix of a rejected payload, its size and sha256
        # (a kiosk could otherwise fill HQ's database with megabytes per message).
        "007_quarantine_bounded",
        [
            "ALTER TABLE quarantine ADD COLUMN payload_size {bigint}",
            "ALTER TABLE quarantine ADD COLUMN payload_sha256 TEXT",
        ],
    ),
    (
        # Where each KPM lives (from the KPM list): the 1:N search blocks by district or
        # sub-district, because proxy collection happens where the proxy lives.
        "008_kpm_regions",
        [
            """CREATE TABLE kpm_regions (
                kpm_id TEXT PRIMARY KEY,
                province TEXT NOT NULL DEFAULT '',
                district TEXT NOT NULL DEFAULT '',
                subdistrict TEXT NOT NULL DEFAULT '',
                updated_at {real} NOT NULL
            )""",
        ],
    ),
]


def render(sql: str, dialect: str) -> str:
    return sql.format(**TYPES[dialect])
