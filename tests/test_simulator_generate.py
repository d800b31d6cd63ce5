"""generateContent, statistics and defaults, through the real SDK and plain HTTPS."""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from schemas import MedicalIntake
from simulator import RunningSimulator, load_scenario
from tests.sim_support import (
    EXTRACTION_MODEL,
    LIVE_MODEL,
    collect_turn,
    http_options,
    live_config,
    running_simulator,
    sdk_client,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]

EXTRACTION_CONFIG = types.GenerateContentConfig(
    response_mime_type="application/json", response_schema=MedicalIntake, temperature=0.0
)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator() as running:
        yield running


@pytest.fixture
async def control(sim: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    context = sim.client_ssl_context()
    async with httpx.AsyncClient(base_url=sim.base_url, verify=context) as client:
        (await client.post("/_reset")).raise_for_status()
        (await client.post("/_defaults", json={})).raise_for_status()
        yield client
        (await client.post("/_defaults", json={})).raise_for_status()


def transcript(scenario_name: str) -> str:
    scenario = load_scenario(scenario_name)
    lines = []
    for exchange in scenario.exchanges:
        lines += [f"PATIENT: {exchange.patient}", f"ASSISTANT: {exchange.assistant}"]
    return "\n".join([*lines, f"PATIENT: {scenario.confirmation}"])


async def test_extraction_after_a_live_session_returns_its_record(
    sim: RunningSimulator, control: httpx.AsyncClient
) -> None:
    key = "server-held-key"
    scenario = load_scenario("medications_allergy")
    defaults = {"scenario": "medications_allergy"}
    (await control.post("/_defaults", json=defaults)).raise_for_status()
    async with sdk_client(sim, key) as client:
        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session:
            await session.send_realtime_input(text=scenario.patient_turns[0])
            await collect_turn(session)
        response = await client.aio.models.generate_content(
            model=EXTRACTION_MODEL, contents="PATIENT: (nothing to match)", config=EXTRACTION_CONFIG
        )

    assert isinstance(response.parsed, MedicalIntake)
    expected = MedicalIntake.model_validate(scenario.record)
    assert response.parsed.model_dump() == expected.model_dump()
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata and response.usage_metadata.total_token_count
    request = (await control.get("/_stats")).json()["generate_content_requests"][-1]
    assert request["matched_by"] == "live_session_key"
    assert request["schema_field"] == "responseSchema"


async def test_extraction_finds_the_scenario_from_the_transcript(sim: RunningSimulator) -> None:
    async with sdk_client(sim, "never-used-live") as client:
        response = await client.aio.models.generate_content(
            model=EXTRACTION_MODEL,
            contents=transcript("barge_in_correction"),
            config=EXTRACTION_CONFIG,
        )
    assert isinstance(response.parsed, MedicalIntake)
    assert response.parsed.medications[0].name == "propranolol"
    assert response.parsed.medications[0].dose == "20 mg"
    assert sim.stats()["generate_content_requests"][-1]["matched_by"] == "text"


class MedicationNames(BaseModel):
    class Item(BaseModel):
        name: str

    medications: list[Item]


async def test_the_json_schema_drops_fields_it_does_not_have(sim: RunningSimulator) -> None:
    config = types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema=MedicationNames.model_json_schema(),
    )
    async with sdk_client(sim, "sim:medications_allergy") as client:
        response = await client.aio.models.generate_content(
            model=EXTRACTION_MODEL, contents="anything", config=config
        )
    assert json.loads(response.text or "") == {
        "medications": [{"name": "lisinopril"}, {"name": "metformin"}, {"name": "atorvastatin"}]
    }
    assert sim.stats()["generate_content_requests"][-1]["schema_field"] == "responseJsonSchema"


async def test_bad_extraction_answers_text_that_is_not_json(sim: RunningSimulator) -> None:
    async with sdk_client(sim, "sim:simple_visit;bad_extraction") as client:
        response = await client.aio.models.generate_content(
            model=EXTRACTION_MODEL,
            contents="anything",
            config=types.GenerateContentConfig(response_mime_type="application/json"),
        )
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text or "")


async def test_generate_content_with_a_bad_key_is_a_client_error(sim: RunningSimulator) -> None:
    async with sdk_client(sim, "bad-key") as client:
        with pytest.raises(errors.ClientError) as refused:
            await client.aio.models.generate_content(model=EXTRACTION_MODEL, contents="hi")
    assert refused.value.code == 400
    assert "API key not valid" in str(refused.value)


def test_the_sync_client_trusts_the_simulator_too(sim: RunningSimulator) -> None:
    with genai.Client(api_key="sim:simple_visit", http_options=http_options(sim)) as client:
        response = client.models.generate_content(
            model=EXTRACTION_MODEL, contents="hi", config=EXTRACTION_CONFIG
        )
    assert isinstance(response.parsed, MedicalIntake)
    assert response.parsed.patient_info and response.parsed.patient_info.name == "Maria Lopez"


async def test_stats_count_sessions_messages_and_tool_calls(
    sim: RunningSimulator, control: httpx.AsyncClient
) -> None:
    scenario = load_scenario("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        for text in scenario.patient_turns:
            await session.send_realtime_input(text=text)
            log = await collect_turn(session)
        assert (await control.get("/_stats")).json()["open_sessions"] == 1

    await wait_for(lambda: sim.stats()["open_sessions"] == 0)
    stats = (await control.get("/_stats")).json()
    assert stats == sim.stats()
    assert stats["total_sessions"] == 1
    assert stats["messages_received"] == {
        "setup": 1,
        "realtimeInput.text": len(scenario.patient_turns),
        "toolResponse": 1,
    }
    call_id = log.tool_calls[0].id
    assert stats["tool_calls_sent"] == stats["tool_responses_received"] == [call_id]

    (await control.post("/_reset")).raise_for_status()
    cleared = (await control.get("/_stats")).json()
    assert cleared["total_sessions"] == 0 and cleared["sessions"] == []


async def test_defaults_can_be_set_and_restored(control: httpx.AsyncClient) -> None:
    wanted = {"scenario": "barge_in_correction", "slow_reply": 1}
    changed = await control.post("/_defaults", json=wanted)
    assert changed.json() == {**wanted, "time_scale": 0.02}
    refused = await control.post("/_defaults", json={"scenario": "nope"})
    assert refused.status_code == 400
    restored = (await control.post("/_defaults", json={})).json()
    assert restored == {"scenario": "simple_visit", "time_scale": 0.02}
