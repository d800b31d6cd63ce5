"""The session's small parts: transcript turns and audio kept across a reconnect."""

import pytest

from gemini_live.transcript import ConversationLog
from gemini_live.replay import ResumableAudio
from gemini_live.browser_input import AudioStreamEnd

pytestmark = pytest.mark.unit


def test_pieces_join_into_turns_in_spoken_order_and_a_role_switch_finalizes():
    log = ConversationLog(max_turns=10)
    assert log.add("patient", "I have ") is None
    assert log.add("patient", "a cough.") is None
    finished = log.add("assistant", "How long?")
    assert finished is not None and (finished.role, finished.text) == ("patient", "I have a cough.")
    assert log.finalize() is not None
    assert [(t.role, t.text) for t in log.turns] == [
        ("patient", "I have a cough."),
        ("assistant", "How long?"),
    ]
    assert log.finalize() is None


def test_blank_pieces_make_no_turn_and_history_is_bounded():
    log = ConversationLog(max_turns=2)
    log.add("patient", "   ")
    assert log.finalize() is None and len(log) == 0
    for n in range(3):
        log.add("patient", f"turn {n}")
        log.finalize()
    assert [t.text for t in log.turns] == ["turn 1", "turn 2"]


def test_audio_is_held_up_to_the_bound_and_the_first_drop_is_reported_once():
    audio = ResumableAudio(hold_bytes=4, replay_bytes=100)
    assert audio.hold(b"ab") == "held"
    assert audio.hold(b"cd") == "held"
    assert audio.hold(b"ef") == "first_drop"
    assert audio.hold(b"gh") == "dropped"
    assert audio.hold(AudioStreamEnd()) == "held"  # a stream end has no size and is never lost
    sent = []
    while (item := audio.waiting) is not None:
        sent.append(item)
        audio.sent_waiting()
    assert sent == [b"ab", b"cd", AudioStreamEnd()]
    assert audio.hold(b"ij") == "held"  # the outage is over: a new one reports again
    assert audio.hold(b"klmn") == "first_drop"


def test_resuming_resends_what_the_restored_state_has_not_heard_before_held_audio():
    audio = ResumableAudio(hold_bytes=100, replay_bytes=4)
    audio.sent(b"01")
    audio.handle_updated()  # the handle now covers b"01"
    audio.sent(b"23")
    audio.sent(b"45")
    audio.sent(b"67")  # only the newest 4 bytes are kept for replay
    audio.hold(b"89")
    audio.resume()
    replayed = []
    while (item := audio.waiting) is not None:
        replayed.append(item)
        audio.sent_waiting()
    assert replayed == [b"45", b"67", b"89"]
