"""The simulator holds clients to Google's rules: strict setup, resumption updates in the
middle of turns, freezes that only a nudge ends, and transcription that may come late."""

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from google.genai import types
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator import RunningSimulator, load_scenario
from simulator.speech import patient_audio
from simulator.stats import SimulatorStats
from tests.sim_support import (
    LIVE_MODEL,
    collect_turn,
    live_config,
    running_simulator,
    sdk_client,
    session_stats,
    speak,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]

LIVE_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator() as running:
        yield running


@asynccontextmanager
async def raw_live(sim: RunningSimulator, key: str = "sim:simple_visit") -> AsyncIterator[ClientConnection]:
    url = sim.base_url.replace("https://", "wss://") + LIVE_PATH
    async with connect(url, additional_headers={"x-goog-api-key": key}, ssl=sim.client_ssl_context()) as ws:
        yield ws


async def closed_with(ws: ClientConnection, setup: dict[str, object]) -> tuple[int, str]:
    await ws.send(json.dumps({"setup": setup}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_misspelt_setup_field_is_named_the_way_google_names_it(sim: RunningSimulator) -> None:
    setup = {"model": f"models/{LIVE_MODEL}", "generationConfig": {"responseModalites": ["AUDIO"]}}
    async with raw_live(sim) as ws:
        code, reason = await closed_with(ws, setup)
    assert code == 1007
    assert reason == (
        'Invalid JSON payload received. Unknown name "responseModalites" at '
        "'setup.generation_config': Cannot find field."
    )
    async with raw_live(sim) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{LIVE_MODEL}"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}


async def test_an_unknown_model_is_not_found(sim: RunningSimulator) -> None:
    async with raw_live(sim) as ws:
        code, reason = await closed_with(ws, {"model": "models/gemini-0.1-live"})
    assert code == 1008
    assert reason.startswith("models/gemini-0.1-live is not found for API version v1beta")


async def test_handles_arrive_mid_turn_and_not_while_the_model_speaks(sim: RunningSimulator) -> None:
    turns = patient_audio("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        await speak(session, turns[0])
        log = await collect_turn(session)
    # A handle once the patient's turn is taken in (another follows turnComplete, after the
    # SDK's receive() has stopped); none while the model speaks.
    assert len(log.handles) == 1 and log.not_resumable == 1
    assert log.waiting_for_input is True  # the reply asked a question


async def test_resuming_from_a_mid_turn_handle_speaks_the_reply_that_was_owed(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    turns = patient_audio("simple_visit")
    async with sdk_client(sim, "sim:simple_visit;time_scale=1") as client:
        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as first:
            await speak(first, turns[0])
            async for message in first.receive():
                update = message.session_resumption_update
                if update is not None and update.new_handle:
                    mid_turn = update.new_handle
                    break
        config = live_config(resume_handle=mid_turn)
        async with client.aio.live.connect(model=LIVE_MODEL, config=config) as second:
            owed = await collect_turn(second)
    assert owed.output_text == scenario.exchanges[0].assistant


async def test_transparent_resumption_reports_the_last_message_consumed(sim: RunningSimulator) -> None:
    setup = {
        "model": f"models/{LIVE_MODEL}",
        "sessionResumption": {"transparent": True},
        "outputAudioTranscription": {},
    }
    async with raw_live(sim) as ws:
        await ws.send(json.dumps({"setup": setup}))
        await ws.recv()
        await ws.send(json.dumps({"realtimeInput": {"text": "Hello."}}))
        updates = []
        while True:
            message = json.loads(await ws.recv())
            if "sessionResumptionUpdate" in message:
                updates.append(message["sessionResumptionUpdate"])
            if message.get("serverContent", {}).get("turnComplete"):
                updates.append(json.loads(await ws.recv())["sessionResumptionUpdate"])
                break
    parsed = [types.LiveServerSessionResumptionUpdate.model_validate(update) for update in updates]
    assert [u.resumable for u in parsed] == [False, True]
    assert all(u.last_consumed_client_message_index == 1 for u in parsed)


async def test_an_unknown_resumption_handle_is_refused_and_a_fresh_session_works(
    sim: RunningSimulator,
) -> None:
    async with raw_live(sim) as ws:
        code, reason = await closed_with(
            ws, {"model": f"models/{LIVE_MODEL}", "sessionResumption": {"handle": "expired"}}
        )
    assert code == 1007 and "invalid or has expired" in reason
    async with raw_live(sim) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{LIVE_MODEL}"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}


async def test_a_frozen_model_answers_once_nudged(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    turns = patient_audio("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit;freeze_on_turn=1") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        await speak(session, turns[0])
        await wait_for(lambda: session_stats(sim)["freezes"] == 1)
        # The nudge a stalled session sends: a client-content turn.
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Please continue.")]), turn_complete=True
        )
        log = await collect_turn(session)
    assert log.input_text == scenario.patient_turns[0]
    assert log.events.index("input_transcription") < log.events.index("audio")
    assert log.output_text == scenario.exchanges[0].assistant
    assert session_stats(sim)["nudges"] == 1


async def test_a_model_that_ignores_the_nudge_stays_silent(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    turns = patient_audio("simple_visit")
    async with sdk_client(sim, "sim:simple_visit;freeze_on_turn=1;ignore_nudge") as client:
        async with client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session:
            await speak(session, turns[0])
            await wait_for(lambda: session_stats(sim)["freezes"] == 1)
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="Please continue.")]),
                turn_complete=True,
            )
            await wait_for(lambda: session_stats(sim)["nudges"] == 1)
            frozen = session_stats(sim)
    # The simulator itself is fine: a conversation without the fault gets its replies.
    async with (
        sdk_client(sim, "sim:simple_visit") as healthy,
        healthy.aio.live.connect(model=LIVE_MODEL, config=live_config()) as fresh,
    ):
        await fresh.send_realtime_input(text=scenario.patient_turns[0])
        await collect_turn(fresh)
        await fresh.send_realtime_input(text=scenario.patient_turns[1])
        second = await collect_turn(fresh)
    assert frozen["frozen"] is True and frozen["replies_completed"] == 0
    assert second.output_text == scenario.exchanges[1].assistant


async def test_after_an_interrupted_reply_the_model_freezes_until_nudged(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit;freeze_after_interrupt;time_scale=0.5") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        await session.send_realtime_input(text=scenario.patient_turns[0])

        events: list[str] = []
        async for message in session.receive():
            content = message.server_content
            if content and content.model_turn and not events:
                await session.send_realtime_input(text=scenario.patient_turns[1])
                events.append("talked over")
            if content and content.interrupted:
                # No turnComplete follows `interrupted`, and the frozen model says nothing.
                events.append("interrupted")
                break
        await wait_for(lambda: session_stats(sim)["freezes"] == 1)
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Please continue.")]), turn_complete=True
        )
        resumed = await collect_turn(session)
    assert events == ["talked over", "interrupted"]
    assert resumed.output_text == scenario.exchanges[1].assistant


async def test_input_transcription_can_follow_the_tool_call(sim: RunningSimulator) -> None:
    scenario = load_scenario("simple_visit")
    turns = patient_audio("simple_visit")
    async with (
        sdk_client(sim, "sim:simple_visit;late_transcription") as client,
        client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
    ):
        for text in scenario.patient_turns[:-1]:
            await session.send_realtime_input(text=text)
            await collect_turn(session)
        await speak(session, turns[-1])
        log = await collect_turn(session)
    assert log.events.index("tool_call") < log.events.index("input_transcription")
    assert log.input_text == scenario.confirmation


def test_statistics_keep_only_the_latest_closed_sessions() -> None:
    stats = SimulatorStats(max_closed_sessions=3)
    still_open = stats.open_session("simple_visit")
    for _ in range(10):
        stats.open_session("simple_visit").closed = True
    kept = stats.snapshot()["sessions"]
    assert len(kept) == 4 and kept[0]["id"] == still_open.id
    assert stats.snapshot()["total_sessions"] == 11
    assert stats.open_session("simple_visit").id in {s["id"] for s in stats.snapshot()["sessions"]}
