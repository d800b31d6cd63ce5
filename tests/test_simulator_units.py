"""The simulator's parts on their own: scenarios, key grammar, voice detection, audio, agent."""

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from schemas import MedicalIntake
from simulator import SessionOptions, load_scenario, scenario_names
from simulator.agent import (
    FAILED_LINE,
    HOLD_LINE,
    STILL_SAVING_LINE,
    CallTool,
    CancelTool,
    EndTurn,
    IntakeAgent,
    Phase,
    Say,
    Transcribe,
)
from simulator.audio import from_pcm16, resample, synth_voice, to_pcm16
from simulator.conversation import split_pieces
from simulator.extraction import shape_to_schema
from simulator.options import InvalidSimulatorKey, parse_api_key
from simulator.protocol import ProtocolError, decode_base64, parse_client_message
from simulator.scenarios import UnknownScenario
from simulator.speech import main as speech_main
from simulator.speech import patient_audio, read_wav, render_utterance, write_wav
from simulator.vad import VadEvent, VoiceActivityDetector

pytestmark = pytest.mark.unit


def test_the_three_required_scenarios_exist_and_hold_valid_records() -> None:
    assert {"simple_visit", "medications_allergy", "barge_in_correction"} <= set(scenario_names())
    for name in scenario_names():
        scenario = load_scenario(name)
        MedicalIntake.model_validate(scenario.record)
        assert scenario.exchanges[-1].assistant.endswith("?")

    allergy = MedicalIntake.model_validate(load_scenario("medications_allergy").record)
    assert len(allergy.medications) >= 3
    assert [a.severity for a in allergy.allergies if a.requires_emergency_treatment] == ["life-threatening"]
    barge_in = load_scenario("barge_in_correction")
    assert any(exchange.barge_in for exchange in barge_in.exchanges)
    assert "I meant 20 milligrams" in " ".join(barge_in.patient_turns)
    corrected = MedicalIntake.model_validate(barge_in.record)
    assert corrected.medications[0].dose == "20 mg"


def test_unknown_scenario_is_refused_with_the_known_names() -> None:
    with pytest.raises(UnknownScenario, match="simple_visit"):
        load_scenario("../etc/passwd")


def test_key_grammar() -> None:
    choice = parse_api_key("sim:barge_in_correction;goaway_after=3;time_scale=0.2;bad_extraction")
    assert choice.scenario == "barge_in_correction" and not choice.denied
    assert choice.options.model_dump(exclude_unset=True) == {
        "goaway_after": 3.0,
        "time_scale": 0.2,
        "bad_extraction": True,
    }
    assert parse_api_key("sim:;cancel_tool_call=false").scenario is None
    assert parse_api_key("AIza-a-real-looking-key").options.model_fields_set == set()
    for denied in ("bad-key", "invalid", "invalid-anything", "", None):
        assert parse_api_key(denied).denied
    with pytest.raises(InvalidSimulatorKey, match="unknown option 'nope'"):
        parse_api_key("sim:simple_visit;nope=1")
    with pytest.raises(InvalidSimulatorKey, match="bad value for 'drop_after'"):
        parse_api_key("sim:simple_visit;drop_after=-1")


def test_option_layers_override_field_by_field() -> None:
    base = SessionOptions(time_scale=0.5, slow_reply=1.0)
    merged = base.layered(SessionOptions(slow_reply=2.0)).layered(SessionOptions())
    assert (merged.time_scale, merged.slow_reply) == (0.5, 2.0)


def _tone(seconds: float, rate: int = 16_000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return to_pcm16(level * np.sin(2 * np.pi * 220 * t))


def test_voice_detection_is_timed_by_audio_not_by_the_clock() -> None:
    vad = VoiceActivityDetector(16_000, threshold=500, silence_ms=500)
    assert vad.feed(bytes(16_000)) == []
    # Speech arriving one odd-sized piece at a time still starts once.
    speech = _tone(0.5)
    events = [event for i in range(0, len(speech), 333) for event in vad.feed(speech[i : i + 333])]
    assert events == [VadEvent.SPEECH_STARTED]
    assert vad.feed(bytes(int(0.48 * 32_000))) == []
    assert vad.feed(bytes(int(0.04 * 32_000))) == [VadEvent.SPEECH_ENDED]
    assert vad.audio_seconds == pytest.approx(0.5 + 0.5 + 0.5 + 0.02, abs=0.03)


def test_voice_detection_ignores_clicks_and_quiet_noise() -> None:
    vad = VoiceActivityDetector(16_000, threshold=500, silence_ms=500)
    assert vad.feed(_tone(0.02) + bytes(3200)) == []
    assert vad.feed(_tone(1.0, level=0.01)) == []
    assert vad.end_of_stream() is False


def test_split_pieces_join_back_to_the_text() -> None:
    text = "Thank you. Are you taking any medications at the moment?"
    assert "".join(split_pieces(text, 3)) == text
    assert len(split_pieces(text, 3)) == 3
    spread = split_pieces(text, 40, spread=True)
    assert len(spread) == 40 and "".join(spread) == text
    assert spread[-1].endswith("moment?")


def test_shape_to_schema_follows_refs_and_nullable_branches() -> None:
    schema = {
        "$defs": {"Med": {"properties": {"name": {"type": "string"}}}},
        "properties": {
            "medications": {"items": {"$ref": "#/$defs/Med"}},
            "patient_info": {"anyOf": [{"properties": {"name": {}}}, {"type": "null"}]},
        },
    }
    record = {
        "medications": [{"name": "a", "dose": "1 mg"}],
        "patient_info": {"name": "X", "phone": "1"},
        "allergies": [],
    }
    assert shape_to_schema(record, schema) == {
        "medications": [{"name": "a"}],
        "patient_info": {"name": "X"},
    }


def test_client_messages_accept_both_spellings_and_both_base64_alphabets() -> None:
    snake = parse_client_message('{"realtime_input": {"audio_stream_end": true}}')
    camel = parse_client_message('{"realtimeInput": {"audioStreamEnd": true}}')
    assert snake == camel
    assert decode_base64("__77") == decode_base64("//77") == b"\xff\xfe\xfb"
    assert decode_base64("_w") == b"\xff"
    with pytest.raises(ProtocolError, match="Unknown name"):
        parse_client_message('{"realtimeInput": {"audio": {"data": "", "rate": 1}}}')


def test_agent_walks_the_script_and_waits_for_the_tool_response() -> None:
    scenario = load_scenario("simple_visit")
    agent = IntakeAgent(scenario)
    assert agent.on_start_request("begin") == [Say(scenario.opening)]
    for exchange in scenario.exchanges:
        assert agent.on_user_turn() == [Transcribe(exchange.patient), Say(exchange.assistant)]
    transcribe, call = agent.on_user_turn()
    assert transcribe == Transcribe(scenario.confirmation)
    assert isinstance(call, CallTool) and call.name == "complete_intake"
    assert agent.on_user_turn() == []
    assert agent.on_tool_response({"call-wrong": {}}) == []
    assert agent.on_tool_response({call.call_id: {"status": "saved"}}) == [Say(scenario.closing)]
    assert agent.state.phase is Phase.DONE
    assert agent.state.tool_response_ids == ["call-wrong", call.call_id]


def test_an_asynchronous_call_keeps_the_model_talking_and_it_speaks_each_outcome() -> None:
    scenario = load_scenario("simple_visit")
    agent = IntakeAgent(scenario, async_calls=True)
    for _ in scenario.exchanges:
        agent.on_user_turn()
    _, call, hold = agent.on_user_turn()
    assert isinstance(call, CallTool) and hold == Say(HOLD_LINE)
    assert agent.on_user_turn(typed="hello?") == [Say(STILL_SAVING_LINE)]

    incomplete = {"status": "incomplete", "missing": ["allergies"]}
    [asks] = agent.on_tool_response({call.call_id: incomplete})
    assert isinstance(asks, Say) and "allergies" in asks.text
    # The patient's next answer confirms again and the model calls again.
    _, again, _ = agent.on_user_turn()
    assert isinstance(again, CallTool) and again.call_id != call.call_id
    assert agent.on_tool_response({again.call_id: {"status": "failed"}}) == [Say(FAILED_LINE)]
    assert agent.state.phase is Phase.DONE

    silent = IntakeAgent(scenario, async_calls=True)
    for _ in scenario.exchanges:
        silent.on_user_turn()
    _, quiet_call, _ = silent.on_user_turn()
    assert silent.on_tool_response({quiet_call.call_id: {"status": "saved"}}, silent=True) == []
    assert silent.state.phase is Phase.DONE


def test_agent_cancels_the_first_call_once_and_skips_undeclared_tools() -> None:
    scenario = load_scenario("simple_visit")
    agent = IntakeAgent(scenario, cancel_first_call=True)
    for _ in scenario.exchanges:
        agent.on_user_turn(typed="typed")
    _, call, cancel, end = agent.on_user_turn()
    assert isinstance(call, CallTool) and cancel == CancelTool(call.call_id) and end == EndTurn()
    _, again = agent.on_user_turn()
    assert isinstance(again, CallTool) and again.call_id != call.call_id

    without_tool = IntakeAgent(scenario, tool_declared=False)
    for _ in scenario.exchanges:
        without_tool.on_user_turn()
    assert without_tool.on_user_turn()[-1] == Say(scenario.closing)


def test_synthetic_voice_lasts_about_65_ms_per_character() -> None:
    text = "Let me summarize what you told me."
    pcm = synth_voice(text, 24_000, 118.0)
    assert len(pcm) / 2 / 24_000 == pytest.approx(len(text) * 0.065, rel=0.01)
    assert np.sqrt(np.mean(from_pcm16(pcm) ** 2)) * 32768 > 1000


def test_resampling_keeps_the_band_and_removes_what_cannot_fit() -> None:
    rate = 22_050
    t = np.arange(rate) / rate
    kept = resample(np.sin(2 * np.pi * 1000 * t), rate, 16_000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16_000) / 16_000)
    assert np.max(np.abs(kept[100:-100] - expected[100:-100])) < 1e-3
    aliased = resample(np.sin(2 * np.pi * 9000 * t), rate, 16_000)
    assert np.sqrt(np.mean(aliased[100:-100] ** 2)) < 1e-3


def _turn_count(pcm: bytes) -> list[VadEvent]:
    return VoiceActivityDetector(16_000, threshold=500, silence_ms=500).feed(pcm)


def test_patient_audio_is_one_detected_turn_per_line() -> None:
    turns = patient_audio("barge_in_correction")
    assert len(turns) == len(load_scenario("barge_in_correction").patient_turns)
    for pcm in turns:
        assert _turn_count(pcm) == [VadEvent.SPEECH_STARTED, VadEvent.SPEECH_ENDED]


def test_speech_falls_back_to_a_synthetic_voice_without_espeak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    pcm = render_utterance("No allergies.", rate=16_000)
    assert pcm == synth_voice("No allergies.", 16_000, 205.0)
    assert _turn_count(pcm + bytes(32_000)) == [VadEvent.SPEECH_STARTED, VadEvent.SPEECH_ENDED]


def test_wav_round_trip_and_the_speech_cli(tmp_path: Path) -> None:
    pcm = _tone(0.1)
    write_wav(tmp_path / "tone.wav", pcm, 16_000)
    assert read_wav((tmp_path / "tone.wav").read_bytes()) == (pcm, 16_000)

    out = tmp_path / "patient.wav"
    assert speech_main(["simple_visit", str(out), "--time-scale", "0.1"]) == 0
    with wave.open(io.BytesIO(out.read_bytes())) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        frames = wav.readframes(wav.getnframes())
    events = VoiceActivityDetector(16_000, 500, 500).feed(frames)
    assert events.count(VadEvent.SPEECH_ENDED) == len(load_scenario("simple_visit").patient_turns)
