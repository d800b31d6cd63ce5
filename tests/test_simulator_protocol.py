"""The Live wire format at the byte level, with a plain websockets client."""

import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator import RunningSimulator, load_scenario
from simulator.speech import patient_audio
from tests.sim_support import LIVE_MODEL, running_simulator, session_stats, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]

LIVE_PATH = "/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
SETUP = {"setup": {"model": f"models/{LIVE_MODEL}", "outputAudioTranscription": {}}}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator() as running:
        yield running


@asynccontextmanager
async def raw_live(
    sim: RunningSimulator, key: str = "sim:simple_visit", version: str = "v1beta"
) -> AsyncIterator[ClientConnection]:
    url = sim.base_url.replace("https://", "wss://") + LIVE_PATH.format(version=version)
    async with connect(url, additional_headers={"x-goog-api-key": key}, ssl=sim.client_ssl_context()) as ws:
        yield ws


async def receive_json(ws: ClientConnection) -> dict[str, object]:
    frame = await ws.recv()
    # Google sends JSON in binary frames.
    assert isinstance(frame, bytes)
    message: dict[str, object] = json.loads(frame)
    return message


async def close_code_after(ws: ClientConnection, *messages: str) -> tuple[int, str]:
    for message in messages:
        await ws.send(message)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize("version", ["v1", "v1beta", "v1alpha"])
async def test_setup_complete_on_every_api_version(sim: RunningSimulator, version: str) -> None:
    async with raw_live(sim, version=version) as ws:
        await ws.send(json.dumps(SETUP))
        assert await receive_json(ws) == {"setupComplete": {}}


async def test_camel_case_input_and_standard_base64_are_accepted(sim: RunningSimulator) -> None:
    speech = patient_audio("simple_visit")[0]
    async with raw_live(sim) as ws:
        await ws.send(json.dumps(SETUP))
        await receive_json(ws)
        for offset in range(0, len(speech), 6400):
            chunk = base64.b64encode(speech[offset : offset + 6400]).decode()
            audio = {"data": chunk, "mimeType": "audio/pcm;rate=16000"}
            await ws.send(json.dumps({"realtimeInput": {"mediaChunks": [audio]}}))
        first = await receive_json(ws)
    assert "serverContent" in first


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("not json", "Invalid JSON payload"),
        (json.dumps({"bogus": {}}), 'Unknown name "bogus"'),
        (json.dumps({"realtime_input": {"audio": {"data": "!!!", "mime_type": "x"}}}), "base64"),
        (json.dumps({"realtime_input": {"audio": {"data": "AAé=", "mime_type": "x"}}}), "base64"),
        (json.dumps({"realtime_input": {"audoi": {}}}), 'Unknown name "audoi"'),
        (json.dumps(SETUP), "setup"),
        (json.dumps({"realtime_input": {}, "tool_response": {}}), "exactly one"),
    ],
)
async def test_malformed_messages_close_with_1007(sim: RunningSimulator, message: str, reason: str) -> None:
    async with raw_live(sim) as ws:
        await ws.send(json.dumps(SETUP))
        await receive_json(ws)
        code, text = await close_code_after(ws, message)
    assert code == 1007
    assert reason in text


async def test_first_message_must_be_setup(sim: RunningSimulator) -> None:
    async with raw_live(sim) as ws:
        code, text = await close_code_after(ws, json.dumps({"realtime_input": {"text": "hi"}}))
    assert (code, text) == (1007, "The first message must be setup.")


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("sim:no_such_scenario", "unknown scenario 'no_such_scenario'"),
        ("sim:simple_visit;warp=9", "unknown option 'warp'"),
        ("sim:simple_visit;time_scale=fast", "bad value for 'time_scale'"),
    ],
)
async def test_nonsense_simulator_keys_are_explained(sim: RunningSimulator, key: str, reason: str) -> None:
    async with raw_live(sim, key=key) as ws:
        code, text = await close_code_after(ws, json.dumps(SETUP))
    assert code == 1007
    assert reason in text


async def test_client_closing_is_recorded(sim: RunningSimulator) -> None:
    async with raw_live(sim) as ws:
        await ws.send(json.dumps(SETUP))
        await receive_json(ws)
        await ws.send(json.dumps({"realtime_input": {"text": "hello"}}))
        # Close once the reply is over: a close that crosses the reply's frames in flight is
        # recorded as the abnormal closure (1006) it looks like from the server's side.
        while not (await receive_json(ws)).get("serverContent", {}).get("turnComplete"):
            pass
        await ws.close(code=4000, reason="done here")
    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["close_code"] == 4000
    assert summary["user_turns"] == 1
    assert load_scenario("simple_visit").exchanges[0].assistant.startswith("I'm sorry")
