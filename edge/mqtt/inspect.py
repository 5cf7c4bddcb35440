"""``nats-edge mqtt``: the persistent sessions and retained messages on disk (broker running or not).

Read-only: the journal is replayed in memory, never repaired or rewritten here.
"""

from __future__ import annotations

import json
import os
from typing import Any

from edge.mqtt.store import JOURNAL, read_journal


def inspect_state(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, JOURNAL)
    state, good, torn = read_journal(path)
    sessions = [{
        "client_id": s.client_id,
        "subscriptions": {f.decode(errors="replace"): q for f, q in s.subs.items()},
        "queued": len(s.messages),
        "queued_bytes": sum(len(m.payload) for m in s.messages.values()),
        "qos2_pending_release": len(s.qos2_in),
    } for s in state.sessions.values()]
    retained = [{"topic": t.decode(errors="replace"), "bytes": len(p), "qos": q}
                for t, (p, q) in sorted(state.retained.items())]
    return {"dir": directory, "exists": os.path.exists(path), "journal_bytes": good, "torn_tail_bytes": torn,
            "sessions": sessions, "retained": retained}


def mqtt_command(directory: str, as_json: bool = False) -> str:
    info = inspect_state(directory)
    if as_json:
        return json.dumps(info, indent=2)
    if not info["exists"]:
        return f"{directory}: no MQTT state here"
    lines = [f"{directory}: {len(info['sessions'])} persistent sessions, {len(info['retained'])} retained messages"
             + (f" ({info['torn_tail_bytes']} bytes of torn tail, cut at the next start)" if info["torn_tail_bytes"]
                else "")]
    for s in info["sessions"]:
        subs = ", ".join(f"{f} (QoS {q})" for f, q in s["subscriptions"].items()) or "no subscriptions"
        lines.append(f"  session {s['client_id']!r}: {subs}; {s['queued']} queued ({s['queued_bytes']} bytes)")
    lines.extend(f"  retained {r['topic']!r}: {r['bytes']} bytes, QoS {r['qos']}" for r in info["retained"])
    return "\n".join(lines)
