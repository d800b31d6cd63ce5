"""The simulator's Live API, driven by the real google-genai SDK over TLS."""

import asyncio
import time
from collections.abc import Iterator

import pytest
from google import genai
from google.genai import errors, types

from simulator import RunningSimulator, load_scenario
from simulator.agent import HOLD_LINE
from simulator.speech import patient_audio, render_utterance
from tests.sim_support import (
    LIVE_MODEL,
    LIVE_MODEL_2_5,
    collect_turn,
    live_config,
    next_message,
    running_simulator,
    sdk_client,
    session_stats,
    speak,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator() as running:
        yield running


async def test_setup_is_answered_with_setup_complete(sim: RunningSimulator) -> None:
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        assert session.setup_complete is not None

    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["model"] == f"models/{LIVE_MODEL}"
    assert summary["resumption_requested"] is True
    assert summary["compression_requested"] is True
    assert summary["declared_functions"] == ["complete_intake"]
    assert summary["close_code"] == 1000


@pytest.mark.parametrize("model", [LIVE_MODEL, LIVE_MODEL_2_5])
async def test_full_scripted_visit_with_audio_in_and_out(sim: RunningSimulator, model: str) -> None:
    scenario = load_scenario("simple_visit")
    turns = patient_audio("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=model, config=live_config()) as session,
    ):
        for exchange, pcm in zip(scenario.exchanges, turns, strict=False):
            await speak(session, pcm)
            log = await collect_turn(session)
            assert log.input_text == exchange.patient
            assert log.output_text == exchange.assistant
            assert log.events.index("input_transcription") < log.events.index("audio")
            assert log.events[-2:] == ["generation_complete", "turn_complete"]
            assert log.usage and log.usage[-1].total_token_count
            # About 65 ms of 24 kHz speech per character of the reply.
            assert log.audio_seconds == pytest.approx(len(exchange.assistant) * 0.065, rel=0.05)

        await speak(session, turns[-1])
        log = await collect_turn(session)
        # 3.8 calls asynchronously: it keeps talking, and speaks the outcome in a turn of its own.
        closing = await collect_turn(session) if model == LIVE_MODEL else log

    assert log.input_text == scenario.confirmation
    assert len(log.tool_calls) == 1
    call = log.tool_calls[0]
    assert call.name == "complete_intake" and call.args == {}
    assert call.id is not None and call.id.startswith("call-")
    assert log.events.index("tool_call") < log.events.index("audio")
    if model == LIVE_MODEL:
        assert log.output_text == HOLD_LINE
    assert closing.output_text == scenario.closing
    assert closing.events[-1] == "turn_complete" and not closing.waiting_for_input

    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["tool_call_ids"] == [call.id]
    assert summary["tool_response_ids"] == [call.id]
    assert summary["tool_response_received"] is True
    assert summary["phase"] == "done"
    assert summary["async_function_calls"] is (model == LIVE_MODEL)
    assert summary["user_turns"] == len(scenario.patient_turns)
    assert summary["audio_bytes_received"] == sum(len(pcm) for pcm in turns)


async def test_barge_in_interrupts_the_reply_and_the_correction_is_the_next_turn(
    sim: RunningSimulator,
) -> None:
    scenario = load_scenario("barge_in_correction")
    turns = patient_audio("barge_in_correction")
    long_reply = next(i for i, exchange in enumerate(scenario.exchanges) if exchange.barge_in)
    correction = scenario.exchanges[long_reply + 1]
    async with (
        sdk_client(sim, "sim:barge_in_correction;time_scale=0.1") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        for pcm in turns[:long_reply]:
            await speak(session, pcm)
            await collect_turn(session)

        await speak(session, turns[long_reply])

        async def talk_over_the_reply() -> None:
            await speak(session, turns[long_reply + 1])

        log = await collect_turn(session, on_audio=talk_over_the_reply)
        for pcm in turns[long_reply + 2 :]:
            await speak(session, pcm)
            await collect_turn(session)

    cut = log.events.index("interrupted")
    interrupted_audio = log.events[:cut].count("audio")
    assert 0 < interrupted_audio
    # Nothing of the interrupted reply after `interrupted`: next comes the correction.
    assert log.events[cut + 1] == "input_transcription"
    assert "generation_complete" not in log.events[:cut]
    assert log.input_text == scenario.exchanges[long_reply].patient + correction.patient
    assert log.output_text.endswith(correction.assistant)
    spoken_before_cut = log.output_text.removesuffix(correction.assistant)
    assert scenario.exchanges[long_reply].assistant.startswith(spoken_before_cut)
    assert len(spoken_before_cut) < len(scenario.exchanges[long_reply].assistant) / 2

    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["replies_interrupted"] == 1
    assert summary["tool_response_received"] is True


async def test_resumption_handle_continues_the_conversation(sim: RunningSimulator) -> None:
    scenario = load_scenario("medications_allergy")
    turns = patient_audio("medications_allergy")
    async with sdk_client(sim, "sim:medications_allergy") as client:
        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as first:
            for pcm in turns[:2]:
                await speak(first, pcm)
                log = await collect_turn(first)
            # The update for the last turn arrives after its turnComplete.
            update = (await next_message(first)).session_resumption_update
            assert update is not None and update.new_handle

        config = live_config(resume_handle=update.new_handle)
        async with client.aio.live.connect(model=LIVE_MODEL, config=config) as second:
            await speak(second, turns[2])
            log = await collect_turn(second)

    assert log.input_text == scenario.exchanges[2].patient
    assert log.output_text == scenario.exchanges[2].assistant
    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    summary = session_stats(sim)
    assert summary["resumed"] is True
    assert summary["scenario"] == "medications_allergy"
    assert summary["script_position"] == 3


async def test_unknown_resumption_handle_is_refused(sim: RunningSimulator) -> None:
    config = live_config(resume_handle="no-such-handle")
    async with sdk_client(sim, "sim:simple_visit") as client:
        with pytest.raises(errors.APIError) as refused:
            async with client.aio.live.connect(model=LIVE_MODEL, config=config):
                pass
    assert refused.value.code == 1007
    assert "resumption handle" in str(refused.value)


async def test_go_away_is_typed_and_the_session_then_ends(sim: RunningSimulator) -> None:
    key = "sim:simple_visit;goaway_after=0.1;goaway_time_left=0.3"
    async with (
        sdk_client(sim, key) as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        message = await next_message(session)
        assert message.go_away is not None
        assert message.go_away.time_left == "0.3s"
        started = time.monotonic()
        with pytest.raises(errors.APIError) as ended:
            await next_message(session)
    assert ended.value.code == 1011
    assert time.monotonic() - started == pytest.approx(0.3, abs=0.25)
    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    assert session_stats(sim)["go_away_sent"] is True


async def test_drop_aborts_the_connection_without_a_close_frame(sim: RunningSimulator) -> None:
    async with (
        sdk_client(sim, "sim:simple_visit;drop_after=0.1") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        with pytest.raises(errors.APIError) as dropped:
            await next_message(session)
    # The SDK reports 1006 when no close frame arrived.
    assert dropped.value.code == 1006
    await wait_for(lambda: bool(session_stats(sim)["closed"]))
    assert session_stats(sim)["dropped"] is True


@pytest.mark.parametrize("key", ["bad-key", "invalid-key-123", "sim:simple_visit;reject_key"])
async def test_rejected_key_makes_the_sdk_raise_at_once(sim: RunningSimulator, key: str) -> None:
    started = time.monotonic()
    async with sdk_client(sim, key) as client:
        with pytest.raises(errors.APIError) as rejected:
            async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()):
                pass
    assert time.monotonic() - started < 2
    assert rejected.value.code == 1008
    assert "API key not valid" in str(rejected.value)


async def test_cancelled_tool_call_is_followed_by_a_fresh_one(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit;cancel_tool_call") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        for text in scenario.patient_turns[:-1]:
            await session.send_realtime_input(text=text)
            await collect_turn(session)
        await session.send_realtime_input(text=scenario.confirmation)
        cancelled = await collect_turn(session, answer_tool_calls=False)
        await session.send_realtime_input(text=scenario.confirmation)
        completed = await collect_turn(session)
        closing = await collect_turn(session)

    assert [call.id for call in cancelled.tool_calls] == cancelled.cancelled_ids
    assert cancelled.events == ["tool_call", "tool_call_cancellation", "turn_complete"]
    assert completed.tool_calls[0].id not in cancelled.cancelled_ids
    assert closing.output_text == scenario.closing


async def test_text_turns_and_the_opening_line(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Please begin.")]),
            turn_complete=True,
        )
        opening = await collect_turn(session)
        await session.send_realtime_input(text="Hello, I have a sore throat.")
        first = await collect_turn(session)

    assert opening.output_text == scenario.opening
    # Typed input gets no input transcription, as with Google.
    assert first.input_text == ""
    assert first.output_text == scenario.exchanges[0].assistant


async def test_manual_activity_and_audio_stream_end_end_turns(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    first_line = render_utterance(scenario.patient_turns[0])
    async with sdk_client(sim, "sim:simple_visit") as client:
        config = live_config(manual_activity=True)
        async with client.aio.live.connect(model=LIVE_MODEL, config=config) as session:
            await session.send_realtime_input(activity_start=types.ActivityStart())
            await speak(session, first_line)
            await session.send_realtime_input(activity_end=types.ActivityEnd())
            manual = await collect_turn(session)

        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session:
            # No trailing silence: the end of the stream ends the turn.
            await speak(session, first_line)
            await session.send_realtime_input(audio_stream_end=True)
            streamed = await collect_turn(session)

    for log in (manual, streamed):
        assert log.input_text == scenario.patient_turns[0]
        assert log.output_text == scenario.exchanges[0].assistant


async def test_slow_reply_delays_each_reply(sim: RunningSimulator) -> None:
    async with (
        sdk_client(sim, "sim:simple_visit;slow_reply=0.4") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        started = time.monotonic()
        await session.send_realtime_input(text="Hello.")
        message = await next_message(session)
        while message.session_resumption_update is not None:
            message = await next_message(session)
        waited = time.monotonic() - started
    assert message.server_content is not None and message.server_content.model_turn
    assert waited >= 0.4


async def test_transcriptions_only_when_the_setup_asks(sim: RunningSimulator) -> None:
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=config) as session,
    ):
        await speak(session, patient_audio("simple_visit")[0])
        log = await collect_turn(session)
    assert log.input_text == log.output_text == ""
    assert log.audio and not log.handles


async def test_faults_do_not_repeat_on_a_resumed_connection(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    key = "sim:simple_visit;drop_after=1"
    handle = None
    async with sdk_client(sim, key) as client:
        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as first:
            await first.send_realtime_input(text=scenario.patient_turns[0])
            # However far the reply got on a loaded machine, the drop comes; keep the newest handle.
            with pytest.raises(errors.APIError) as dropped:
                while True:
                    update = (await next_message(first)).session_resumption_update
                    if update is not None and update.new_handle:
                        handle = update.new_handle
            assert dropped.value.code == 1006 and handle

        config = live_config(resume_handle=handle)
        async with client.aio.live.connect(model=LIVE_MODEL, config=config) as second:
            await asyncio.sleep(1.5)  # past drop_after: a repeated fault would have fired by now
            await second.send_realtime_input(text=scenario.patient_turns[1])
            log = await collect_turn(second)
    assert log.output_text


ECHO_CHUNK = bytes(range(256)) * 25  # 6,400 bytes: 200 ms of 16 kHz PCM16


async def _echo_messages(session: genai.live.AsyncSession, chunks: int, expected: int) -> list[str]:
    """What comes back for `chunks` audio chunks: "audio" (checked to be the chunk) or "handle"."""
    kinds = []
    for _ in range(chunks):
        await session.send_realtime_input(audio=types.Blob(data=ECHO_CHUNK, mime_type="audio/pcm;rate=16000"))
    while len(kinds) < expected:
        message = await asyncio.wait_for(next_message(session), 5)
        if message.session_resumption_update is not None:
            assert message.session_resumption_update.resumable is True
            assert (message.session_resumption_update.new_handle or "").startswith("sim-echo-")
            kinds.append("handle")
        else:
            assert message.server_content and message.server_content.model_turn
            parts = message.server_content.model_turn.parts or []
            assert parts[0].inline_data and parts[0].inline_data.data == ECHO_CHUNK
            kinds.append("audio")
    return kinds


async def test_echo_sends_each_chunk_back_and_a_handle_after_every_stretch_of_audio(
    sim: RunningSimulator,
) -> None:
    async with (
        sdk_client(sim, "sim:simple_visit;echo;echo_handle_every=0.4") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        kinds = await _echo_messages(session, chunks=4, expected=6)
        assert kinds == ["audio", "audio", "handle", "audio", "audio", "handle"]
        # Still echoing after the handles.
        assert await _echo_messages(session, chunks=1, expected=1) == ["audio"]


async def test_echo_sends_no_handle_to_a_client_that_did_not_ask_for_resumption(
    sim: RunningSimulator,
) -> None:
    async with (
        sdk_client(sim, "sim:simple_visit;echo;echo_handle_every=0.2") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config(resumption=False)) as session,
    ):
        assert await _echo_messages(session, chunks=3, expected=3) == ["audio"] * 3
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(next_message(session), 0.5)
