"""Echo mode for benchmarks: every audio chunk the client sends comes straight back as model audio.

The bytes are returned unchanged, so a client that stamps its chunks (a sequence number or a
send time in the first bytes) can measure the whole round trip through a relay. No turns, no
transcripts, no tool calls: only what a relay does per frame is exercised.

With `handle_every`, a resumption update follows every that many seconds of audio received, so a
relay that keeps unconfirmed input for replay can let it go as it would in a conversation. Echo
handles stand for no state: resuming from one in echo mode echoes on, and anywhere else it is
refused as unknown.
"""

import json
import uuid

from starlette.websockets import WebSocket, WebSocketDisconnect

from simulator import protocol
from simulator.audio import MODEL_RATE, PATIENT_RATE
from simulator.conversation import ClientGone, Close, Ending
from simulator.stats import SessionStats

_MIME = f"audio/pcm;rate={MODEL_RATE}"


async def run_echo(
    websocket: WebSocket,
    record: SessionStats,
    *,
    handle_every: float | None = None,
    transparent: bool = False,
) -> Ending:
    try:
        return await _echo(websocket, record, handle_every, transparent)
    except WebSocketDisconnect as exc:
        return ClientGone(exc.code)


async def _echo(
    websocket: WebSocket, record: SessionStats, handle_every: float | None, transparent: bool
) -> Ending:
    await websocket.send_bytes(protocol.encode(protocol.setup_complete()))
    handle_bytes = int(handle_every * PATIENT_RATE * 2) if handle_every else 0
    since_handle = 0
    received = 0
    while True:
        raw = await websocket.receive()
        if raw["type"] == "websocket.disconnect":
            return ClientGone(int(raw.get("code", 1005)))
        data = raw.get("bytes") or raw.get("text")
        if not data:
            continue
        received += 1
        try:
            message = json.loads(data)
        except ValueError:
            return Close(1007, "Invalid JSON payload received.")
        realtime = message.get("realtime_input") or message.get("realtimeInput") or {}
        blob = realtime.get("audio")
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), str):
            continue  # clientContent, audioStreamEnd, tool responses: nothing to echo
        size = len(blob["data"]) * 3 // 4
        record.audio_bytes_received += size
        # The same bytes, not decoded: the client's URL-safe base64 (the SDK's) only mapped to
        # the standard alphabet, which Google's JSON uses for bytes (proto3 JSON mapping).
        try:
            data = protocol.standard_base64(blob["data"])
        except protocol.ProtocolError:
            return Close(1007, "Invalid base64 in realtimeInput.audio.data.")
        reply = {
            "serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": _MIME, "data": data}}]}}
        }
        await websocket.send_bytes(json.dumps(reply, separators=(",", ":")).encode())
        since_handle += size
        if handle_bytes and since_handle >= handle_bytes:
            since_handle = 0
            update = protocol.resumption_update(
                f"sim-echo-{uuid.uuid4().hex}", last_consumed=received if transparent else None
            )
            await websocket.send_bytes(protocol.encode(update))
