"""The real server + the real google-genai SDK + the simulator + a browser-like WebSocket client."""

import asyncio
import time
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect

from config import Settings
from schemas import MedicalIntake
from simulator import RunningSimulator, load_scenario
from simulator.speech import patient_audio
from tests.live_support import BrowserClient, LiveServer, live_server
from tests.sim_support import running_simulator
from utils.validators import normalize_intake

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini, pytest.mark.slow]


@pytest.fixture(scope="module")
def sim() -> RunningSimulator:
    with running_simulator(time_scale=0.05) as simulator:
        yield simulator


@pytest.fixture
def server(settings: Settings, sim: RunningSimulator) -> LiveServer:
    with live_server(settings, sim) as running:
        yield running


async def open_browser(server: LiveServer, key: str) -> BrowserClient:
    ws = await connect(f"{server.ws_url}?api_key={quote(key)}", max_size=2**22)
    client = BrowserClient(ws)
    deadline = time.monotonic() + 10
    while not any(m.get("state") == "ready" for m in client.of_type("status")):
        assert time.monotonic() < deadline, client.kinds()
        await client.wait_for("status", len(client.of_type("status")) + 1, timeout=10)
    return client


async def wait_sim_closed(sim: RunningSimulator, timeout: float = 1.0) -> float:
    started = time.monotonic()
    while sim.stats()["open_sessions"]:
        assert time.monotonic() - started < timeout, "the upstream session stayed open"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def converse(client: BrowserClient, scenario_name: str) -> dict[str, float]:
    scenario = load_scenario(scenario_name)
    utterances = patient_audio(scenario_name)
    figures: dict[str, float] = {}
    await client.wait_for("turn_complete", 1)  # the assistant's opening line
    barge_next = False
    for index, pcm in enumerate(utterances):
        done_turns = len(client.of_type("turn_complete"))
        audio_before = len(client.of_type("audio"))
        await client.speak(pcm)
        if barge_next:
            barge_next = False
            interrupted = await client.wait_for("interrupted")
            at = next(t for t, m in client.events if m is interrupted)
            late = [t for t, m in client.events if m["type"] == "audio" and t > at]
            first_patient_after = next(
                (t for t, m in client.events if t > at and m["type"] == "transcript" and m["role"] == "patient"),
                None,
            )
            stray = [t for t in late if first_patient_after is None or t < first_patient_after]
            figures["audio_after_interrupted_s"] = (max(stray) - at) if stray else 0.0
        if index < len(scenario.exchanges) and scenario.exchanges[index].barge_in:
            await client.wait_for("audio", audio_before + 3)
            barge_next = True
            continue
        if index == len(utterances) - 1:
            break
        await client.wait_for("turn_complete", done_turns + 1)
    await client.wait_for("intake_complete", timeout=30)
    return figures


@pytest.mark.parametrize("scenario_name", ["simple_visit", "medications_allergy", "barge_in_correction"])
async def test_full_intake_through_the_real_sdk_matches_the_scenario_record(server, sim, scenario_name):
    sim.reset_stats()
    client = await open_browser(server, f"sim:{scenario_name}")
    figures = await converse(client, scenario_name)

    extracted = client.of_type("extracted_data")[-1]
    assert extracted["final"] is True
    got = MedicalIntake.model_validate(extracted["data"])
    expected, _ = normalize_intake(MedicalIntake.model_validate(load_scenario(scenario_name).record))
    assert got.model_dump() == expected.model_dump()
    assert client.kinds().index("extracted_data") < client.kinds().index("intake_complete")

    roles = {m["role"] for m in client.of_type("transcript")}
    assert roles == {"assistant", "patient"}
    assert client.of_type("audio") and all(m["size"] % 2 == 0 for m in client.of_type("audio"))
    stats = sim.stats()
    assert stats["tool_calls_sent"] and stats["tool_responses_received"] == stats["tool_calls_sent"]
    if scenario_name == "barge_in_correction":
        assert client.of_type("interrupted")
        assert figures["audio_after_interrupted_s"] <= 0.3
        assert got.medications[0].dose == "20 mg"

    await client.ws.send('{"type": "end_session"}')
    try:
        code, _ = await asyncio.wait_for(asyncio.shield(client.closed), 5)
    except TimeoutError:
        import faulthandler, sys
        faulthandler.dump_traceback(sys.stderr)
        loop = server.app.state.loop_for_debug if hasattr(server.app.state, "loop_for_debug") else None
        raise AssertionError(client.kinds()[-15:]) from None
    assert code == 1000
    await wait_sim_closed(sim)


async def test_browser_disconnect_closes_the_upstream_within_a_second(server, sim):
    client = await open_browser(server, "sim:simple_visit")
    await client.wait_for("audio")
    await client.close()
    assert await wait_sim_closed(sim, timeout=1.0) < 1.0


async def test_bad_key_gets_a_clear_error_quickly(server, sim):
    started = time.monotonic()
    ws = await connect(f"{server.ws_url}?api_key=bad-key")
    client = BrowserClient(ws)
    error = await client.wait_for("error", timeout=2)
    assert time.monotonic() - started < 2
    assert error["code"] == "upstream_auth"
    code, _ = await asyncio.wait_for(client.closed, 2)
    assert code == 1011
    await client.close()


@pytest.mark.parametrize("fault", ["drop_after=1.0", "goaway_after=1.0"])
async def test_upstream_drop_or_go_away_is_survived_with_resumption(server, sim, fault):
    sim.reset_stats()
    client = await open_browser(server, f"sim:simple_visit;{fault}")
    await converse(client, "simple_visit")
    statuses = [m["state"] for m in client.of_type("status")]
    assert "reconnecting" in statuses and statuses.count("ready") >= 2
    assert not [m for m in client.of_type("error") if m["code"] == "upstream_error"]
    assert any(s["resumed"] for s in sim.stats()["sessions"])
    await client.close()
    await wait_sim_closed(sim)


async def test_root_names_the_simulator_upstream(server):
    async with httpx.AsyncClient() as http:
        root = (await http.get(server.base_url + "/")).json()
        health = (await http.get(server.base_url + "/health")).json()
    assert root["upstream"] == "simulator" and root["app"] == "/app/"
    assert health["status"] == "healthy"
