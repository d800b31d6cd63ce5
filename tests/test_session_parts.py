"""The session's small parts: transcript turns, input kept across a reconnect, and the queues."""

import asyncio

import pytest
from google.genai import types

from gemini_live.browser_input import AudioStreamEnd
from gemini_live.queues import JOIN_AUDIO_BYTES, MAX_AUDIO_BYTES, BrowserOutbox, SenderMailbox
from gemini_live.replay import ClientTurn, ReplayBuffer, ToolResponse
from gemini_live.transcript import ConversationLog
from schemas import ErrorMessage, TranscriptMessage, TurnCompleteMessage

pytestmark = pytest.mark.unit


def test_pieces_join_into_turns_in_spoken_order_and_a_role_switch_finalizes():
    log = ConversationLog(max_turns=10)
    assert log.add("patient", "I have ") is None
    assert log.add("patient", "a cough.") is None
    finished = log.add("assistant", "How long?")
    assert finished is not None and (finished.turn.role, finished.turn.text) == ("patient", "I have a cough.")
    assert finished.index == 0 and not finished.interrupted
    last = log.finalize(interrupted=True)
    assert last is not None and last.index == 1 and last.interrupted
    assert last.started_at <= last.ended_at
    assert [(t.role, t.text) for t in log.turns] == [
        ("patient", "I have a cough."),
        ("assistant", "How long?"),
    ]
    assert log.finalize() is None


def test_blank_pieces_make_no_turn_and_history_is_bounded_while_the_count_goes_on():
    log = ConversationLog(max_turns=2)
    log.add("patient", "   ")
    assert log.finalize() is None and len(log) == 0
    for n in range(3):
        log.add("patient", f"turn {n}")
        log.finalize()
    assert [t.text for t in log.turns] == ["turn 1", "turn 2"]
    assert len(log) == 3


def _drain(buffer: ReplayBuffer) -> list[object]:
    items = []
    while (item := buffer.take_held()) is not None:
        items.append(item)
    return items


def test_audio_is_held_up_to_the_bound_and_the_first_drop_is_reported_once():
    buffer = ReplayBuffer(hold_bytes=4, replay_bytes=100)
    assert buffer.hold(b"ab") == "held"
    assert buffer.hold(b"cd") == "held"
    assert buffer.hold(b"ef") == "first_drop"
    assert buffer.hold(b"gh") == "dropped"
    assert buffer.hold(AudioStreamEnd()) == "held"  # a stream end has no size and is never lost
    assert _drain(buffer) == [b"ab", b"cd", AudioStreamEnd()]
    assert buffer.hold(b"ij") == "held"  # the outage is over: a new one reports again
    assert buffer.hold(b"klmn") == "first_drop"


def test_a_resume_resends_only_what_the_upstream_did_not_confirm_before_held_input():
    buffer = ReplayBuffer(hold_bytes=100, replay_bytes=100)
    for index, chunk in enumerate([b"00", b"11", b"22", b"33"]):
        buffer.sent(index, chunk)
    buffer.consumed(1)  # the upstream's state includes messages 0 and 1
    buffer.hold(b"44")
    buffer.resumed()
    assert _drain(buffer) == [b"22", b"33", b"44"]
    buffer.resumed()  # nothing is sent twice
    assert _drain(buffer) == []


def test_a_handle_without_an_index_covers_everything_and_replay_is_bounded():
    buffer = ReplayBuffer(hold_bytes=100, replay_bytes=4)
    buffer.sent(0, b"01")
    buffer.handle_renewed()
    for index, chunk in enumerate([b"23", b"45", b"67"], start=1):
        buffer.sent(index, chunk)
    buffer.resumed()
    assert _drain(buffer) == [b"45", b"67"]


def test_a_fresh_upstream_gets_the_patients_audio_but_no_answer_to_a_call_it_never_made():
    buffer = ReplayBuffer(hold_bytes=100, replay_bytes=100)
    response = ToolResponse((types.FunctionResponse(id="c1", name="complete_intake", response={}),))
    buffer.sent(0, b"00")
    buffer.hold(response)
    buffer.hold(b"11")
    buffer.hold(AudioStreamEnd())
    buffer.started_fresh()
    assert _drain(buffer) == [b"11", AudioStreamEnd()]
    turn = ClientTurn((types.Content(role="user", parts=[types.Part(text="hi")]),))
    buffer.hold_again(turn)
    assert _drain(buffer) == [turn]


async def test_mailbox_events_go_before_input_and_a_full_mailbox_blocks_the_producer():
    mailbox: SenderMailbox[str, bytes] = SenderMailbox(2)
    await mailbox.put(b"a")
    await mailbox.put(b"b")
    blocked = asyncio.create_task(mailbox.put(b"c"))
    await asyncio.sleep(0)
    assert not blocked.done() and mailbox.full()
    mailbox.post("connected")
    assert await mailbox.get() == "connected"
    assert await mailbox.get() == b"a"
    await asyncio.wait_for(blocked, 1)
    assert [await mailbox.get(), await mailbox.get()] == [b"b", b"c"]


async def test_queued_small_frames_leave_as_one_message_in_order_up_to_the_bound():
    mailbox: SenderMailbox[str, bytes | AudioStreamEnd] = SenderMailbox(4)
    for frame in (b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 10):
        await mailbox.put(frame)
    blocked = asyncio.create_task(mailbox.put(AudioStreamEnd()))
    await asyncio.sleep(0)
    assert not blocked.done()
    first = await mailbox.get()
    assert isinstance(first, bytes)
    # Up to the bound (30 bytes), in the order they came; the producer is let go.
    assert mailbox.join_queued(first, 30) == b"a" * 10 + b"b" * 10 + b"c" * 10
    await asyncio.wait_for(blocked, 1)
    # The end of the stream is never folded into audio.
    last = await mailbox.get()
    assert mailbox.join_queued(last, 30) == b"d" * 10  # type: ignore[arg-type]
    assert isinstance(await mailbox.get(), AudioStreamEnd)
    # An event waiting goes first: nothing is joined past it.
    await mailbox.put(b"e")
    await mailbox.put(b"f")
    mailbox.post("disconnected")
    assert mailbox.join_queued(b"x", 30) == b"x"
    assert await mailbox.get() == "disconnected"
    assert [await mailbox.get(), await mailbox.get()] == [b"e", b"f"]


async def test_model_audio_queued_together_reaches_the_browser_in_fewer_frames_and_in_order():
    outbox = BrowserOutbox()
    chunk = JOIN_AUDIO_BYTES // 3
    for n in range(4):
        await outbox.audio(bytes([n]) * chunk)
    outbox.after_audio(TurnCompleteMessage())
    await outbox.audio(b"\x09" * 10)
    first = await outbox.get()
    assert first == bytes([0]) * chunk + bytes([1]) * chunk + bytes([2]) * chunk
    assert await outbox.get() == bytes([3]) * chunk
    # The end of the turn still follows all of the turn's audio, and the next reply comes after.
    assert isinstance(await outbox.get(), TurnCompleteMessage)
    assert await outbox.get() == b"\x09" * 10
    assert outbox.audio_bytes == 0


async def test_outbox_messages_never_wait_behind_audio_and_audio_is_bounded_in_bytes():
    outbox = BrowserOutbox()
    await outbox.audio(b"\x00" * MAX_AUDIO_BYTES)
    blocked = asyncio.create_task(outbox.audio(b"\x01\x00"))
    await asyncio.sleep(0)
    assert not blocked.done()
    error = ErrorMessage(code="save_failed", message="not saved")
    outbox.message(error)
    assert await outbox.get() is error
    assert len(await outbox.get()) == MAX_AUDIO_BYTES  # type: ignore[arg-type]
    await asyncio.wait_for(blocked, 1)
    assert outbox.drop_audio() == 2 and outbox.audio_bytes == 0


async def test_a_browser_that_stops_reading_loses_transcript_pieces_never_errors():
    outbox = BrowserOutbox()
    error = ErrorMessage(code="save_failed", message="not saved")
    outbox.message(error)
    for n in range(2000):
        outbox.message(TranscriptMessage(role="assistant", text=str(n)))
    assert await outbox.get() is error
