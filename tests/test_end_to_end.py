"""The real server + the real google-genai SDK + the simulator + a browser-like WebSocket client."""

import asyncio
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from bench import patient
from bench.patient import BrowserClient, converse
from config import Settings
from schemas import MedicalIntake
from simulator import RunningSimulator, load_scenario
from tests.live_support import LiveServer, live_server
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
    return await patient.open_browser(server.ws_url, key)


async def wait_sim_closed(sim: RunningSimulator, within: float = 1.0) -> float:
    started = time.monotonic()
    while sim.stats()["open_sessions"]:
        assert time.monotonic() - started < within, "the upstream session stayed open"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("scenario_name", ["simple_visit", "medications_allergy", "barge_in_correction"])
async def test_full_intake_through_the_real_sdk_records_what_the_patient_said(server, sim, scenario_name):
    # The simulator derives the record from the transcript the server sends, so this holds
    # only if the patient's words reach the extraction intact.
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
    # The outcome goes to the model as the page is told; allow it a moment to arrive.
    for _ in range(100):
        stats = sim.stats()
        if stats["tool_calls_sent"] and stats["tool_responses_received"] == stats["tool_calls_sent"]:
            break
        await asyncio.sleep(0.02)
    assert stats["tool_calls_sent"] and stats["tool_responses_received"] == stats["tool_calls_sent"]
    if scenario_name == "barge_in_correction":
        assert client.of_type("interrupted")
        assert figures.audio_after_interrupted_s is not None and figures.audio_after_interrupted_s <= 0.3
        assert got.medications[0].dose == "20 mg"

    await client.ws.send('{"type": "end_session"}')
    code, _ = await asyncio.wait_for(client.closed, 15)
    assert code == 1000
    await wait_sim_closed(sim)


async def test_browser_disconnect_closes_the_upstream_within_a_second(server, sim):
    client = await open_browser(server, "sim:simple_visit")
    await client.wait_for("audio")
    await client.close()
    assert await wait_sim_closed(sim, within=1.0) < 1.0


async def test_bad_key_gets_a_clear_error_quickly(server, sim):
    started = time.monotonic()
    ws = await connect(f"{server.ws_url}?api_key=bad-key")
    client = BrowserClient(ws)
    error = await client.wait_for("error", within=2)
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


async def test_a_dose_corrected_later_reaches_the_record_corrected(server, sim):
    sim.reset_stats()
    client = await open_browser(server, "sim:dose_correction")
    await converse(client, "dose_correction")
    final = MedicalIntake.model_validate(client.of_type("extracted_data")[-1]["data"])
    [lisinopril] = final.medications
    assert (lisinopril.name.lower(), lisinopril.dose) == ("lisinopril", "10 mg")
    assert final.allergies == [] and final.allergies_reviewed is True
    # Earlier extractions during the conversation held the dose as first said.
    doses = [
        medication["dose"]
        for message in client.of_type("extracted_data")
        for medication in message["data"]["medications"]
    ]
    assert "20 mg" in doses and doses[-1] == "10 mg"
    assert sim.stats()["sessions"][-1]["async_function_calls"] is True
    await client.close()
    await wait_sim_closed(sim)


async def test_root_names_the_simulator_upstream_and_the_current_models(server):
    async with httpx.AsyncClient() as http:
        root = (await http.get(server.base_url + "/")).json()
        health = (await http.get(server.base_url + "/health")).json()
    assert root["upstream"] == "simulator" and root["app"] == "/app/"
    assert root["live_model"] == "gemini-3.8-live"
    assert root["extraction_model"] == "gemini-3.8-flash"
    assert health["status"] == "healthy"
