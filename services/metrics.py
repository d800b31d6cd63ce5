"""Prometheus series for the relay, and the token-guarded /metrics endpoint that serves them.

Labels are bounded sets (outcome, direction, cause, kind); never a session id or a client.
Per-frame code only touches pre-bound children (one increment or observe, no allocation).
"""

import asyncio
import hmac
import time
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

# Latencies a listener notices start near 100 ms; the relay's own share should stay in the
# low milliseconds, so the two histograms get different ranges.
REPLY_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RELAY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOOP_TICK_SECONDS = 0.25

SESSIONS_ACTIVE = Gauge("intake_sessions_active", "Sessions open on this process")
SESSIONS_ENDED = Counter("intake_sessions_ended", "Sessions ended, by why they ended", ["outcome"])
REPLY_LATENCY = Histogram(
    "intake_reply_latency_seconds",
    "Last patient speech heard (input transcription) to the first model audio byte sent to the browser",
    buckets=REPLY_BUCKETS,
)
_RELAY = Histogram(
    "intake_relay_latency_seconds",
    "Time the relay holds an audio frame: handed to its queue to written to the other side",
    ["direction"],
    buckets=RELAY_BUCKETS,
)
RELAY_UP = _RELAY.labels("upstream")
RELAY_DOWN = _RELAY.labels("downstream")
_FRAMES = Counter("intake_audio_frames", "Audio frames relayed", ["direction"])
FRAMES_UP = _FRAMES.labels("upstream")
FRAMES_DOWN = _FRAMES.labels("downstream")
_DROPPED = Counter("intake_audio_dropped_bytes", "Audio dropped, by where", ["where"])
DROPPED_RECONNECT = _DROPPED.labels("reconnect_hold")
DROPPED_BARGE_IN = _DROPPED.labels("barge_in")
RECONNECTS = Counter(
    "intake_upstream_reconnects", "Upstream connections lost and retried, by cause", ["cause"]
)
COMPLETE_INTAKE_CALLS = Counter("intake_complete_intake_calls", "complete_intake calls from the model")
_EXTRACTIONS = Counter("intake_extractions", "Extractions run, by kind and result", ["kind", "result"])
EXTRACTION_LATENCY = Histogram(
    "intake_extraction_latency_seconds", "Extraction (generateContent) time", ["kind"], buckets=SLOW_BUCKETS
)
INTAKES_ENDED = Counter(
    "intake_records_at_end",
    "Intakes at the end of their session: completed, incomplete (abandoned) or failed",
    ["status"],
)
STORAGE_WRITE = Histogram(
    "intake_storage_write_seconds", "One batched commit of queued storage writes", buckets=SLOW_BUCKETS
)
LOOP_LAG = Histogram(
    "intake_event_loop_lag_seconds", "How late a 250 ms ticker wakes up", buckets=RELAY_BUCKETS
)
_QUEUED = Gauge("intake_queue_depth", "Items queued in all sessions, by queue", ["queue"])


def extraction(kind: str, ok: bool, latency: float | None = None) -> None:
    _EXTRACTIONS.labels(kind, "ok" if ok else "failed").inc()
    if latency is not None:
        EXTRACTION_LATENCY.labels(kind).observe(latency)


def reconnect_cause(why: str) -> str:
    """`why` carries a status or an exception name; the label keeps only its bounded first word."""
    return why.split(" ", 1)[0].split("(", 1)[0] or "unknown"


def watch_queues(depths: Callable[[], Iterable[tuple[int, int, int]]]) -> None:
    """Queue depths are summed at scrape time, so the relay's hot path pays nothing for them."""

    def total(position: int) -> Callable[[], float]:
        return lambda: float(sum(d[position] for d in depths()))

    _QUEUED.labels("upstream_mailbox").set_function(total(0))
    _QUEUED.labels("browser_audio_bytes").set_function(total(1))
    _QUEUED.labels("browser_messages").set_function(total(2))


async def watch_loop_lag(tick: float = LOOP_TICK_SECONDS) -> None:
    while True:
        due = time.perf_counter() + tick
        await asyncio.sleep(tick)
        LOOP_LAG.observe(max(0.0, time.perf_counter() - due))


def metrics_endpoint(token: str | None) -> Callable[[Request], Response]:
    """GET /metrics: 404 when no METRICS_TOKEN is set, 401 without the right bearer token."""

    def endpoint(request: Request) -> Response:
        if token is None:
            return PlainTextResponse("Not Found", 404)
        presented = request.headers.get("authorization", "")
        scheme, _, value = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            return PlainTextResponse(
                "A valid metrics token is required.", 401, {"WWW-Authenticate": "Bearer"}
            )
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
