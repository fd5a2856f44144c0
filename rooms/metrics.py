"""The realtime path's metrics (declared once; used by the gateway and the hosts).

``transport`` is the gateway's kind: ``edge`` (the per-node ``websockets`` edge), ``serve`` (``/v1/ws``
through Serve's proxy) or ``serve-yjs`` (``/v1/yjs``). Fan-out latency runs from the moment a room
host accepted a message (its ``ts``, before persisting it) to the moment the gateway hands it to its
sockets: one observation per run of messages per gateway, not per recipient.
"""

from __future__ import annotations

import re

from verseflow import metrics

CONNECTIONS = metrics.gauge("verseflow_ws_connections", "WebSockets open on this gateway.", ("transport",))
OPENED = metrics.counter("verseflow_ws_connections_opened_total", "WebSockets authenticated and opened.",
                         ("transport",))
CLOSED = metrics.counter("verseflow_ws_connections_closed_total", "WebSockets closed, by either side.",
                         ("transport",))
CLOSES = metrics.counter("verseflow_ws_closes_total", "WebSockets closed by the server, by close code.",
                         ("transport", "code"))
DELIVERED = metrics.counter("verseflow_ws_messages_delivered_total",
                            "Room messages handed to local sockets (one per recipient).", ("transport",))
FANOUT_LATENCY = metrics.histogram("verseflow_ws_fanout_latency_seconds",
                                   "From a room host accepting a message to the gateway writing it to its sockets.",
                                   ("transport",))
SLOW_CONSUMER_CUTOFFS = metrics.counter("verseflow_ws_slow_consumer_cutoffs_total",
                                        "Sockets closed with 4408 because they did not keep up.",
                                        ("transport", "reason"))
ACTIVATIONS = metrics.counter("verseflow_realtime_activations_total",
                              "Virtual rooms and sessions activated on a host (loaded into memory).", ("kind",))
HOST_RECOVERIES = metrics.counter("verseflow_realtime_host_recoveries_total",
                                  "Room or session host actors restarted by Ray after their process died.",
                                  ("kind",))

#: How often a gateway re-reports its connection gauge: Ray's agent drops a gauge not reported for two
#: export intervals, and a gateway whose sockets do not change would otherwise vanish from the graphs.
GAUGE_REFRESH_S = 5.0

_TS = re.compile(r'"(?:server_)?ts":\s*(\d+)')


def stamped_ms(payload: object) -> int | None:
    """The server time (ms) a room message was accepted, read from its JSON text; None if it has none."""
    if not isinstance(payload, str):
        return None
    found = _TS.search(payload)
    return int(found.group(1)) if found else None
