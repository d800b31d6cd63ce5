"""The server's model settings against the strict simulator: setups each model accepts,
tool responses it speaks, and extraction that retries only what is worth retrying."""

from collections.abc import Iterator

import pytest
from google.genai import errors, types

from config import Settings
from schemas import Turn
from services.extraction import ExtractionError, IntakeExtractor
from services.gemini_client import UpstreamTarget, close_client
from services.live_config import function_response, live_connect_config
from services.model_profiles import extraction_thinking, live_profile
from simulator import RunningSimulator, load_scenario
from simulator.agent import HOLD_LINE
from tests.sim_support import collect_turn, running_simulator, sdk_client, session_stats, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]

SUPPORTED = ["gemini-3.8-live", "gemini-2.5-flash-native-audio-preview-12-2025"]


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator() as running:
        yield running


def model_settings(model: str, **extra: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        GEMINI_LIVE_MODEL=model,
        TRANSCRIPTION_VOCABULARY="metformin, lisinopril",
        **extra,
    )


def test_defaults_are_the_current_models() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.GEMINI_LIVE_MODEL == "gemini-3.8-live"
    assert settings.GEMINI_EXTRACTION_MODEL == "gemini-3.8-flash"
    assert settings.TRANSCRIPTION_VOCABULARY == []


def test_sessions_share_the_setup_but_each_resumes_from_its_own_handle() -> None:
    settings = model_settings("gemini-3.8-live")
    first = live_connect_config(settings, resume_handle="handle-a")
    fresh = live_connect_config(settings, resume_handle=None)
    second = live_connect_config(settings, resume_handle="handle-b")
    assert [c.session_resumption and c.session_resumption.handle for c in (first, fresh, second)] == [
        "handle-a",
        None,
        "handle-b",
    ]
    assert first.system_instruction == fresh.system_instruction
    renamed_settings = model_settings("gemini-3.8-live", CLINIC_NAME="Hillside Clinic")
    renamed = live_connect_config(renamed_settings, resume_handle=None)
    assert "Hillside Clinic" in str(renamed.system_instruction)
    assert "Hillside Clinic" not in str(fresh.system_instruction)


def test_the_setup_follows_the_profile() -> None:
    new = live_connect_config(model_settings("gemini-3.8-live"), resume_handle=None)
    old = live_connect_config(model_settings(SUPPORTED[1]), resume_handle="h")
    vertex = live_connect_config(model_settings("gemini-live-2.5-flash-native-audio"), resume_handle=None)

    def declaration(config: types.LiveConnectConfig) -> types.FunctionDeclaration:
        assert config.tools and isinstance(config.tools[0], types.Tool)
        assert config.tools[0].function_declarations
        return config.tools[0].function_declarations[0]

    assert declaration(new).behavior is types.Behavior.NON_BLOCKING
    assert declaration(old).behavior is None
    assert new.input_audio_transcription is not None
    assert new.input_audio_transcription.custom_vocabulary == ["metformin", "lisinopril"]
    assert old.input_audio_transcription and old.input_audio_transcription.custom_vocabulary is None
    # Transparent resumption is Vertex AI only; the SDK refuses it with an API key.
    assert new.session_resumption and new.session_resumption.transparent is None
    assert vertex.session_resumption and vertex.session_resumption.transparent is True
    for config in (new, old):
        assert config.enable_affective_dialog is None and config.thinking_config is None


def test_tool_responses_are_scheduled_only_where_calls_are_asynchronous() -> None:
    call = types.FunctionCall(id="call-1", name="complete_intake", args={})
    saved = {"status": "saved", "missing": [], "message": "Saved."}
    new = function_response(model_settings("gemini-3.8-live"), call, saved)
    old = function_response(model_settings(SUPPORTED[1]), call, saved)
    assert new.scheduling is types.FunctionResponseScheduling.WHEN_IDLE
    assert old.scheduling is None
    assert new.id == old.id == "call-1" and new.response == old.response == saved


def test_an_unknown_model_gets_the_conservative_profile() -> None:
    profile = live_profile("gemini-9-live-experimental")
    assert not profile.async_function_calls and not profile.transcription_vocabulary
    assert extraction_thinking("gemini-3.8-flash") == types.ThinkingConfig(
        thinking_level=types.ThinkingLevel.LOW
    )
    assert extraction_thinking("gemini-2.5-flash") is None


@pytest.mark.parametrize("model", SUPPORTED)
async def test_the_setup_the_server_sends_is_accepted_for_each_supported_model(
    sim: RunningSimulator, model: str
) -> None:
    settings = model_settings(model)
    scenario = load_scenario("simple_visit")
    async with sdk_client(sim, "sim:simple_visit") as client:
        config = live_connect_config(settings, resume_handle=None)
        async with client.aio.live.connect(model=model, config=config) as session:
            for text in scenario.patient_turns[:-1]:
                await session.send_realtime_input(text=text)
                await collect_turn(session)
            await session.send_realtime_input(text=scenario.confirmation)
            log = await collect_turn(
                session, respond=lambda call: function_response(settings, call, {"status": "saved"})
            )
            # 3.8 keeps talking while the call runs and speaks the outcome in a turn of its own.
            closing = await collect_turn(session) if model == SUPPORTED[0] else log

    assert log.tool_calls and (log.output_text == HOLD_LINE) is (model == SUPPORTED[0])
    assert closing.output_text == scenario.closing
    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["close_code"] == 1000
    assert summary["async_function_calls"] is (model == SUPPORTED[0])
    assert summary["tool_response_scheduling"] == (["WHEN_IDLE"] if model == SUPPORTED[0] else [""])


@pytest.mark.parametrize(
    ("model", "change", "refused"),
    [
        ("gemini-3.8-live", {"enable_affective_dialog": True}, "enable_affective_dialog"),
        (
            "gemini-3.8-live",
            {"thinking_config": types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)},
            "thinking_config",
        ),
        ("gemini-3.8-live", {"proactivity": types.ProactivityConfig(proactive_audio=False)}, "Proactive"),
        (
            "gemini-2.5-flash-native-audio-preview-12-2025",
            {"input_audio_transcription": types.AudioTranscriptionConfig(custom_vocabulary=["metformin"])},
            "custom_vocabulary",
        ),
    ],
)
async def test_a_field_the_model_refuses_closes_1007_and_the_proper_setup_still_works(
    sim: RunningSimulator, model: str, change: dict[str, object], refused: str
) -> None:
    proper = live_connect_config(model_settings(model), resume_handle=None)
    wrong = proper.model_copy(update=change)
    async with sdk_client(sim, "sim:simple_visit") as client:
        with pytest.raises(errors.APIError) as closed:
            async with client.aio.live.connect(model=model, config=wrong) as session:
                await collect_turn(session)
        assert closed.value.code == 1007
        assert refused in str(closed.value) and model in str(closed.value)

        async with client.aio.live.connect(model=model, config=proper) as session:
            await session.send_realtime_input(text="Hello.")
            log = await collect_turn(session)
    assert log.output_text == load_scenario("simple_visit").exchanges[0].assistant


async def test_a_response_scheduled_interrupt_cuts_the_holding_line(sim: RunningSimulator) -> None:
    settings = model_settings("gemini-3.8-live")
    scenario = load_scenario("simple_visit")
    config = live_connect_config(settings, resume_handle=None)
    events: list[str] = []
    spoken_after = ""
    async with (
        sdk_client(sim, "sim:simple_visit;time_scale=0.5") as client,
        client.aio.live.connect(model="gemini-3.8-live", config=config) as session,
    ):
        for text in scenario.patient_turns[:-1]:
            await session.send_realtime_input(text=text)
            await collect_turn(session)
        await session.send_realtime_input(text=scenario.confirmation)
        calls: list[types.FunctionCall] = []
        async for message in session.receive():
            content = message.server_content
            if message.tool_call and message.tool_call.function_calls:
                calls += message.tool_call.function_calls
            if content and content.model_turn and calls and "answered" not in events:
                # The holding line is playing: answer, asking to be heard at once.
                response = function_response(settings, calls[0], {"status": "failed", "missing": []})
                response.scheduling = types.FunctionResponseScheduling.INTERRUPT
                await session.send_tool_response(function_responses=[response])
                events.append("answered")
            if content and content.interrupted:
                events.append("interrupted")
            if content and content.output_transcription and "interrupted" in events:
                spoken_after += content.output_transcription.text or ""
    assert events == ["answered", "interrupted"]
    assert "couldn't save" in spoken_after


async def extractor(sim: RunningSimulator, key: str, model: str = "gemini-3.8-flash") -> IntakeExtractor:
    client = UpstreamTarget("simulator", sim.base_url, sim.ca_file).client(key)
    return IntakeExtractor(client, model, timeout=20)


def requests_for(sim: RunningSimulator, count: int) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = sim.stats()["generate_content_requests"][-count:]
    return requests


TURNS = [
    Turn(role="patient", text="I take lisinopril 20 milligrams once a day."),
    Turn(role="assistant", text="Lisinopril, 20 milligrams, once a day. Any allergies?"),
    Turn(role="patient", text="No allergies. And sorry, it's 10 milligrams, not 20."),
]


async def test_extraction_retries_an_overloaded_model_and_reads_the_corrected_dose(
    sim: RunningSimulator,
) -> None:
    sim.reset_stats()
    extraction = await extractor(sim, "sim:simple_visit;unavailable_extractions=2")
    try:
        record, _ = await extraction.extract(TURNS)
    finally:
        await close_client(extraction._client)
    assert [(m.name.lower(), m.dose) for m in record.medications] == [("lisinopril", "10 mg")]
    assert record.allergies_reviewed is True
    requests = requests_for(sim, 3)
    assert [r["unavailable"] for r in requests] == [True, True, False]
    assert {r["thinking_level"] for r in requests} == {"LOW"}


async def test_a_refused_key_is_not_retried_and_a_good_one_then_works(sim: RunningSimulator) -> None:
    sim.reset_stats()
    refused = await extractor(sim, "bad-key")
    with pytest.raises(ExtractionError, match=r"\(400\)"):
        await refused.extract(TURNS)
    assert len(sim.stats()["generate_content_requests"]) == 1
    good = await extractor(sim, "sim:simple_visit")
    record, _ = await good.extract(TURNS)
    assert record.medications
    for used in (refused, good):
        await close_client(used._client)


async def test_a_schema_failure_is_asked_once_more_then_reported(sim: RunningSimulator) -> None:
    sim.reset_stats()
    broken = await extractor(sim, "sim:simple_visit;bad_extraction")
    with pytest.raises(ExtractionError, match="did not match the intake schema"):
        await broken.extract(TURNS)
    assert len(sim.stats()["generate_content_requests"]) == 2
    await close_client(broken._client)
