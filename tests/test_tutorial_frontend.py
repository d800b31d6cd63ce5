"""The tutorial's Next.js starter frontend against this server: its exact traffic, replayed.

What the starter does, from its source (frontend/ of the tutorial's repository):
- `GET /health` with a `Content-Type: application/json` header (so the browser preflights it)
  until `status == "healthy"`, then `GET /api-key-status` and asks the patient for a key unless
  `has_api_key` is true;
- opens `NEXT_PUBLIC_WS_URL` (no `api_key` when the server has one), sends
  `{"type":"control","action":"start"}` and then binary PCM16 16 kHz frames of 4096 samples
  (8192 bytes) from its AudioWorklet;
- reads `status` (`state || message` drives its heading: listening, processing, speaking, idle),
  `transcript` (`role`, `text`), binary audio (PCM16 24 kHz), `turn_complete`, `extracted_data`
  (`data` becomes its record: `chief_complaint`, `current_medications[].name/dose/frequency`,
  `allergies[].allergen/reaction/severity`, `past_medical_history.conditions`,
  `social_history.smoking/alcohol/occupation`), `error` (`message`) and `intake_complete`
  (`message`), after which it sends `control` `stop`, `end_session` and closes.
"""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect

from bench.patient import BrowserClient
from config import Settings
from main import SessionClients, Upstream, create_app
from services.gemini_client import UpstreamTarget
from simulator import RunningSimulator, load_scenario
from simulator.speech import patient_audio
from tests.fakes import FakeConnector, FakeExtractor, FakeLiveSession
from tests.live_support import LiveServer, live_server
from tests.sim_support import running_simulator

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini, pytest.mark.slow]

STARTER_ORIGIN = "http://localhost:3002"  # `npm run start` / `npm run dev` in the starter
STARTER_FRAME_BYTES = 4096 * 2  # audio-processor.js: bufferSize 4096 samples of PCM16
SCENARIO = "medications_allergy"
# Every `type` the starter's WebSocketClient handles; anything else it only logs.
STARTER_TYPES = {
    "audio",
    "text",
    "transcript",
    "extracted_data",
    "status",
    "error",
    "turn_complete",
    "intake_complete",
}
HEADINGS = {"listening": "Listening", "processing": "Processing", "speaking": "AI Speaking", "idle": "Ready"}
ALLERGY_SEVERITIES = {"mild", "moderate", "serious", "life-threatening"}


@pytest.fixture(scope="module")
def sim() -> RunningSimulator:
    with running_simulator(time_scale=0.05) as simulator:
        yield simulator


@pytest.fixture
def server(settings: Settings, sim: RunningSimulator) -> LiveServer:
    starter_settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{**settings.model_dump(), "CORS_ORIGINS": [STARTER_ORIGIN]},
    )
    # The server holds the key, as in the README's set-up: the starter sends none.
    with live_server(starter_settings, sim, server_key=f"sim:{SCENARIO}") as running:
        yield running


async def starter_intake(server: LiveServer) -> BrowserClient:
    """Hold one intake exactly as the starter's UnifiedIntakeScreen does, until `intake_complete`."""
    ws = await connect(server.ws_url, origin=STARTER_ORIGIN, max_size=2**22)  # type: ignore[arg-type]
    client = BrowserClient(ws)
    await client.wait_for("turn_complete", 1)
    # Its microphone starts 800 ms after the click and its socket waits for /health first, so
    # `start` came after the greeting in every run held with the real starter.
    await ws.send('{"type": "control", "action": "start"}')
    utterances = patient_audio(SCENARIO)
    for index, pcm in enumerate(utterances):
        done_turns = len(client.of_type("turn_complete"))
        for start in range(0, len(pcm), STARTER_FRAME_BYTES):
            await ws.send(pcm[start : start + STARTER_FRAME_BYTES])
            await asyncio.sleep(0.01)
        if index < len(utterances) - 1:
            await client.wait_for("turn_complete", done_turns + 1)
    await client.wait_for("intake_complete", within=30)
    # The starter's teardownSession, 1.5 s after intake_complete.
    await ws.send('{"type": "control", "action": "stop"}')
    await ws.send('{"type": "end_session"}')
    await asyncio.wait_for(client.closed, 15)
    return client


def starter_state(message: dict[str, Any]) -> Any:
    return message.get("state") or message.get("message")


async def test_the_starter_preflights_health_and_reads_that_no_key_is_needed(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        preflight = await http.options(
            "/health",
            headers={
                "Origin": STARTER_ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        health = await http.get(
            "/health", headers={"Origin": STARTER_ORIGIN, "Content-Type": "application/json"}
        )
        status = await http.get("/api-key-status", headers={"Origin": STARTER_ORIGIN})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == STARTER_ORIGIN
    assert health.headers["access-control-allow-origin"] == STARTER_ORIGIN
    assert health.json()["status"] == "healthy"
    assert status.headers["access-control-allow-origin"] == STARTER_ORIGIN
    body = status.json()
    assert body["has_api_key"] is True
    assert {"configured", "source", "upstream", "browser_key_required"} <= body.keys()


async def test_an_origin_not_listed_is_refused_and_the_starter_origin_still_works(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        refused = await http.options(
            "/health",
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"},
        )
        allowed = await http.get("/api-key-status", headers={"Origin": STARTER_ORIGIN})
    assert refused.status_code == 400
    assert allowed.json()["has_api_key"] is True


def test_without_a_server_key_the_starter_is_told_to_ask_for_one(settings: Settings):
    app = create_app(
        settings,
        upstream=Upstream(UpstreamTarget("google"), None, "none"),
        clients=lambda key: SessionClients(FakeConnector(FakeLiveSession()), FakeExtractor()),
    )
    with TestClient(app) as client:
        body = client.get("/api-key-status").json()
    assert body["has_api_key"] is False
    assert body["browser_key_required"] is True


async def test_the_starters_traffic_gets_every_field_it_reads(server, sim):
    client = await starter_intake(server)

    assert set(client.kinds()) <= STARTER_TYPES | {"interrupted"}  # `interrupted` it only logs
    assert not client.of_type("error"), client.of_type("error")
    assert client.closed.result()[0] == 1000

    for status in client.of_type("status"):
        assert isinstance(starter_state(status), str) and starter_state(status)
    for transcript in client.of_type("transcript"):
        assert transcript["role"] in {"assistant", "patient"}
        assert isinstance(transcript["text"], str)
    assert {t["role"] for t in client.of_type("transcript")} == {"assistant", "patient"}
    audio = client.of_type("audio")
    assert audio and all(frame["size"] > 0 and frame["size"] % 2 == 0 for frame in audio)
    assert isinstance(client.of_type("intake_complete")[0]["message"], str)
    assert client.kinds().index("turn_complete") < client.kinds().index("intake_complete")

    # The starter keeps the last `data` it got as its record; its review screen shows this.
    final = client.of_type("extracted_data")[-1]
    assert final["final"] is True
    record = final["data"]
    assert record["chief_complaint"] == "Follow-up visit."
    assert record["current_medications"] == [
        {"name": "lisinopril", "dose": "10 mg", "frequency": "once daily"},
        {"name": "metformin", "dose": "500 mg", "frequency": "twice daily"},
        {"name": "atorvastatin", "dose": "20 mg", "frequency": "at bedtime"},
    ]
    allergies = {a["allergen"]: a for a in record["allergies"]}
    assert set(allergies) == {"penicillin", "sulfa drugs"}
    for allergy in allergies.values():
        assert allergy["severity"] in ALLERGY_SEVERITIES
        assert all(isinstance(r, str) for r in allergy["reaction"])
    assert allergies["penicillin"]["severity"] == "life-threatening"
    assert "hives" in allergies["penicillin"]["reaction"]
    for optional in ("past_medical_history", "social_history"):
        assert optional not in record or isinstance(record[optional], dict)

    # The canonical record is still all there under `data`, the view derived from it.
    expected = load_scenario(SCENARIO).record
    assert [m["name"] for m in record["medications"]] == [m["name"] for m in expected["medications"]]
    first_complaint = expected["present_illness"]["chief_complaints"][0]["complaint"]
    assert record["present_illness"]["chief_complaints"][0]["complaint"] == first_complaint


async def test_the_starters_heading_follows_the_conversation_state(server, sim):
    """Needs the session's conversation states (issue 13, the lead's part of it)."""
    client = await starter_intake(server)

    heading: str | None = None
    headings: list[str] = []
    spoken_turns: list[set[str | None]] = []  # headings announced during each spoken model turn
    shown: set[str | None] = set()
    audio_in_turn = False
    listening_after_turn: list[bool] = []
    while_patient_spoke: set[str | None] = set()
    for _, message in client.events:
        if message["type"] == "status":
            if "conversation" in message:
                assert message["conversation"] in HEADINGS
            heading = HEADINGS.get(starter_state(message))
            shown.add(heading)
            if heading and (not headings or headings[-1] != heading):
                headings.append(heading)
            if heading == "Listening" and listening_after_turn:
                listening_after_turn[-1] = True
        elif message["type"] == "audio":
            audio_in_turn = True
        elif message["type"] == "transcript" and message["role"] == "patient":
            while_patient_spoke.add(heading)
        elif message["type"] == "turn_complete" and audio_in_turn:
            spoken_turns.append(shown)
            listening_after_turn.append(False)
            shown, audio_in_turn = set(), False

    assert "Listening" in headings, headings
    # Every spoken model turn showed "AI Speaking", and "Listening" came back after it.
    assert spoken_turns and all("AI Speaking" in turn for turn in spoken_turns), spoken_turns
    assert all(listening_after_turn[:-1]), (listening_after_turn, headings)
    # While the patient talks the heading says so (the acknowledgement of `start` must not blank it).
    assert while_patient_spoke == {"Listening"}, while_patient_spoke
    # Extraction shows "Processing" before the final record arrives.
    final_at = next(
        i for i, (_, m) in enumerate(client.events) if m["type"] == "extracted_data" and m["final"]
    )
    assert any(
        m["type"] == "status" and starter_state(m) == "processing" for _, m in client.events[:final_at]
    )
