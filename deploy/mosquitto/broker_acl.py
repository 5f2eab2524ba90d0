#!/usr/bin/env python3
"""The broker's topic ACL, one table, rendered as mosquitto's dynamic-security config.

Why not `acl_file`: mosquitto 2.0's ACL file never checks SUBSCRIBE (its check returns
"allowed" for every subscription; "FIXME - implement ACL subscription strings" in
src/security_default.c), so a kiosk could join HQ's shared group
`$share/<group>/kiosk/+/records`; the broker then hands it a share of every kiosk's
records and drops them at delivery (read denied), after PUBACKing the publisher. The
dynamic-security plugin (shipped with mosquitto >= 2.0) checks subscriptions against
`subscribeLiteral`/`subscribePattern` ACLs, with the `$share/<group>/` prefix included.
Its 2.0 ACLs have no `%u` substitution, so every kiosk gets a role of its own with
literal topics: the broker knows each registered kiosk by name, and a certificate whose
CN it does not know may do nothing at all.

Stdlib only: the tests import it, and Ansible runs it on the controller
(`python3 broker_acl.py --registry devices.json --ingest hq.ingest --roster hq.roster`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PREFIX = "kiosk"
KIOSK_ID = re.compile(r"^kiosk-[0-9a-f]{16}$")
HQ_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# The whole policy. "{id}" is the kiosk's certificate CN (= its device id). A subscription
# entry also grants receiving the messages it matches (without the `$share/<g>/` prefix).
# Kiosk subscriptions are literal (exact topic strings); HQ's are patterns.
POLICY: dict[str, dict[str, list[str]]] = {
    "kiosk": {
        "publish": [f"{PREFIX}/{{id}}/records", f"{PREFIX}/{{id}}/status"],
        "subscribe": [f"{PREFIX}/{{id}}/acks", f"{PREFIX}/{{id}}/roster"],
    },
    "ingest": {
        "publish": [f"{PREFIX}/+/acks"],
        "subscribe": [
            f"$share/+/{PREFIX}/+/records",
            f"{PREFIX}/+/records",
            f"$share/+/{PREFIX}/+/status",
            f"{PREFIX}/+/status",
        ],
    },
    "roster": {"publish": [f"{PREFIX}/+/roster"], "subscribe": []},
    "monitor": {"publish": [], "subscribe": [f"{PREFIX}/+/status"]},
}
KINDS = tuple(POLICY)


def _receive_topic(sub: str) -> str:
    """What a subscription delivers: `$share/<group>/t` delivers messages on `t`."""
    if sub.startswith("$share/"):
        return sub.split("/", 2)[2]
    return sub


def _acls(kind: str, device_id: str | None = None) -> list[dict[str, Any]]:
    rules = POLICY[kind]

    def fill(t: str) -> str:
        return t.replace("{id}", device_id) if device_id else t

    sub_type = "subscribeLiteral" if kind == "kiosk" else "subscribePattern"
    out: list[dict[str, Any]] = []
    for t in rules["publish"]:
        out.append({"acltype": "publishClientSend", "topic": fill(t), "priority": 0, "allow": True})
    receive: dict[str, None] = {}
    for t in rules["subscribe"]:
        out.append({"acltype": sub_type, "topic": fill(t), "priority": 0, "allow": True})
        receive[_receive_topic(fill(t))] = None
    for t in receive:
        out.append({"acltype": "publishClientReceive", "topic": t, "priority": 0, "allow": True})
    return out


def kiosk_role(device_id: str) -> dict[str, Any]:
    """The role of one kiosk: its own literal topics."""
    if not KIOSK_ID.match(device_id):
        raise ValueError(f"{device_id!r} is not a kiosk id (kiosk- and 16 hex digits)")
    return {"rolename": f"kiosk:{device_id}", "acls": _acls("kiosk", device_id)}


def render(
    kiosks: Iterable[str],
    identities: Mapping[str, Sequence[str]],
    extra_clients: Sequence[dict[str, Any]] = (),
    extra_roles: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The dynamic-security config: every kiosk and HQ identity, nothing allowed by default.

    `identities` maps a kind other than "kiosk" (ingest, roster, monitor) to certificate CNs.
    """
    roles = [{"rolename": f"hq:{kind}", "acls": _acls(kind)} for kind in KINDS if kind != "kiosk"]
    clients: list[dict[str, Any]] = []
    seen: set[str] = set()
    for kind, names in identities.items():
        if kind not in POLICY or kind == "kiosk":
            raise ValueError(f"unknown HQ identity kind {kind!r} (one of ingest, roster, monitor)")
        for cn in names:
            if not HQ_ID.match(cn) or KIOSK_ID.match(cn):
                raise ValueError(f"{cn!r} cannot be an HQ identity")
            if cn in seen:
                raise ValueError(f"{cn!r} is given twice: one certificate CN, one kind")
            seen.add(cn)
            clients.append({"username": cn, "roles": [{"rolename": f"hq:{kind}"}]})
    for device_id in sorted(set(kiosks)):
        role = kiosk_role(device_id)
        roles.append(role)
        clients.append({"username": device_id, "roles": [{"rolename": role["rolename"]}]})
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients + list(extra_clients),
        "groups": [],
        "roles": roles + list(extra_roles),
    }


def registered_kiosks(registry: Mapping[str, Any]) -> list[str]:
    """Device ids of the controller's registry/devices.json that are not revoked."""
    return sorted(
        d for d, info in registry.items() if not (isinstance(info, dict) and info.get("revoked"))
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=Path, help="devices.json (device id -> {..., revoked})")
    ap.add_argument("--kiosk", action="append", default=[], help="a kiosk id (repeatable)")
    for kind in KINDS[1:]:
        ap.add_argument(f"--{kind}", action="append", default=[], help=f"a {kind} CN")
    args = ap.parse_args(argv)
    kiosks = list(args.kiosk)
    if args.registry is not None and args.registry.exists():
        kiosks += registered_kiosks(json.loads(args.registry.read_text() or "{}"))
    ids = {kind: getattr(args, kind) for kind in KINDS[1:]}
    try:
        doc = render(kiosks, ids)
    except ValueError as exc:
        print(f"broker_acl: {exc}", file=sys.stderr)
        return 2
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
