"""generateContent, statistics and defaults, through the real SDK and plain HTTPS."""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from schemas import MedicalIntake
from simulator import RunningSimulator, load_scenario, scenario_names
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
    with running_simulator(controls=True) as running:
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


async def extract(sim: RunningSimulator, contents: str, key: str = "sim:simple_visit") -> MedicalIntake:
    async with sdk_client(sim, key) as client:
        response = await client.aio.models.generate_content(
            model=EXTRACTION_MODEL, contents=contents, config=EXTRACTION_CONFIG
        )
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert isinstance(response.parsed, MedicalIntake)
    return response.parsed


@pytest.mark.parametrize("name", scenario_names())
async def test_the_record_is_what_the_scenario_transcript_says(sim: RunningSimulator, name: str) -> None:
    # The key names another scenario on purpose: only the request's text counts.
    got = await extract(sim, transcript(name), key="sim:simple_visit")
    assert got == MedicalIntake.model_validate(load_scenario(name).record)


async def test_a_later_correction_wins_and_the_assistant_is_not_the_patient(sim: RunningSimulator) -> None:
    text = "\n".join(
        [
            "PATIENT: I take metformin 500 milligrams twice a day.",
            "ASSISTANT: So that is metformin 1000 milligrams twice a day?",
            "PATIENT: Actually it's 850 milligrams, not 500.",
            "PATIENT: I'm allergic to latex, it gives me a mild rash.",
            "PATIENT: Sorry, the latex allergy is severe: my throat swells.",
        ]
    )
    got = await extract(sim, text)
    assert [(m.name, m.dose, m.frequency) for m in got.medications] == [
        ("metformin", "850 mg", "twice daily")
    ]
    [latex] = got.allergies
    assert latex.severity == "life-threatening" and latex.reaction == ["rash", "throat swelling"]


async def test_never_asked_is_not_reviewed_none(sim: RunningSimulator) -> None:
    never_asked = await extract(sim, "PATIENT: I have had a cough for three days.")
    assert never_asked.allergies == [] and never_asked.allergies_reviewed is False
    assert (
        never_asked.present_illness and never_asked.present_illness.chief_complaints[0].duration == "3 days"
    )

    none = await extract(sim, "ASSISTANT: Do you have any allergies?\nPATIENT: None.")
    assert none.allergies == [] and none.allergies_reviewed is True


async def test_spanish_is_recorded_in_english(sim: RunningSimulator) -> None:
    got = await extract(sim, "Me llamo Rosa Díaz. Tomo ibuprofeno 400 miligramos cada ocho horas.")
    assert got.patient_info and got.patient_info.name == "Rosa Díaz"
    assert [(m.name, m.dose, m.frequency) for m in got.medications] == [
        ("ibuprofen", "400 mg", "every 8 hours")
    ]


async def test_an_empty_conversation_gives_an_empty_record(
    sim: RunningSimulator, control: httpx.AsyncClient
) -> None:
    got = await extract(sim, "PATIENT: (nothing to match)", key="server-held-key")
    assert got == MedicalIntake()
    request = (await control.get("/_stats")).json()["generate_content_requests"][-1]
    assert request["schema_field"] == "responseSchema" and request["model"] == EXTRACTION_MODEL


def test_an_embedded_simulator_has_no_control_endpoints() -> None:
    with running_simulator() as embedded:
        context = embedded.client_ssl_context()
        for method, path in [("GET", "/_stats"), ("POST", "/_reset"), ("GET", "/_defaults")]:
            response = httpx.request(method, embedded.base_url + path, verify=context or False)
            assert response.status_code == 404
        # In-process statistics still work, and so does the API itself.
        assert embedded.stats()["total_sessions"] == 0
        with genai.Client(api_key="sim:simple_visit", http_options=http_options(embedded)) as client:
            answer = client.models.generate_content(
                model=EXTRACTION_MODEL, contents=transcript("simple_visit"), config=EXTRACTION_CONFIG
            )
        assert isinstance(answer.parsed, MedicalIntake) and answer.parsed.medications


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
            model=EXTRACTION_MODEL, contents=transcript("medications_allergy"), config=config
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
            model=EXTRACTION_MODEL, contents=transcript("simple_visit"), config=EXTRACTION_CONFIG
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
