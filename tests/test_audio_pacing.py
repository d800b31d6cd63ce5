"""AudioPacer: at most ~1.2x real time upstream after a short burst, tiny frames joined."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeConnector, FakeLiveSession
from tests.test_edge import with_settings
from tests.test_relay import end, open_ready, receive_until
from utils.audio_pacing import AudioPacer

SECOND = 32000  # bytes of 16 kHz PCM16
FRAME = 3200  # 100 ms


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sent_seconds(pacer: AudioPacer, clock: Clock, *, frames: int, every: float, size: int = FRAME) -> float:
    total = 0
    for _ in range(frames):
        paced = pacer.admit(bytes(size))
        total += len(paced.audio or b"")
        clock.now += every
    return total / SECOND


@pytest.mark.unit
def test_real_time_audio_all_goes_through():
    clock = Clock()
    pacer = AudioPacer(clock=clock)
    assert sent_seconds(pacer, clock, frames=600, every=0.1) == pytest.approx(60.0)
    assert pacer.dropped_seconds == 0


@pytest.mark.unit
def test_ten_seconds_of_flood_puts_at_most_twelve_and_a_half_seconds_upstream():
    clock = Clock()
    pacer = AudioPacer(clock=clock)
    # 100 ms frames 1 ms apart for 10 s: 1000 s of audio offered.
    upstream = sent_seconds(pacer, clock, frames=10_000, every=0.001)
    assert 11.5 <= upstream <= 12.5
    assert pacer.dropped_seconds > 980


@pytest.mark.unit
def test_the_excess_is_reported_once_per_burst_and_again_after_the_sender_slowed_down():
    clock = Clock()
    pacer = AudioPacer(clock=clock)
    reports = [pacer.admit(bytes(FRAME)).too_fast for _ in range(50)]
    assert reports.count(True) == 1
    clock.now += 2.0  # the bucket refills: the sender behaved for a while
    assert pacer.admit(bytes(FRAME)).audio is not None
    reports = [pacer.admit(bytes(FRAME)).too_fast for _ in range(50)]
    assert reports.count(True) == 1


@pytest.mark.unit
def test_a_short_burst_after_a_hiccup_passes_whole():
    clock = Clock()
    pacer = AudioPacer(clock=clock)
    clock.now = 5.0
    burst = [pacer.admit(bytes(FRAME)) for _ in range(5)]  # 0.5 s at once
    assert all(p.audio == bytes(FRAME) and not p.too_fast for p in burst)


@pytest.mark.unit
def test_frames_under_20_ms_are_joined_and_the_rest_flushed_when_the_microphone_stops():
    clock = Clock()
    pacer = AudioPacer(clock=clock)
    out = [pacer.admit(b"\x01\x00" * 32) for _ in range(20)]  # 2 ms each
    joined = [p.audio for p in out if p.audio]
    assert [len(a) for a in joined] == [640, 640]  # 20 ms each, in order
    assert pacer.flush().audio is None  # 40 ms sent, nothing left over
    rest = AudioPacer(clock=clock)
    rest.admit(b"\x02\x00" * 10)
    assert rest.flush().audio == b"\x02\x00" * 10
    assert rest.flush().audio is None


@pytest.mark.websocket
def test_a_flooding_page_hears_audio_too_fast_once_and_the_session_goes_on(make_app, settings):
    upstream = FakeLiveSession()
    app = make_app(FakeConnector(upstream), app_settings=with_settings(settings, MAX_AUDIO_SPEED=1.2))
    with TestClient(app) as client:
        ws, session = open_ready(client)
        started = time.monotonic()
        for _ in range(100):  # 10 s of audio at once
            session.send_bytes(bytes(FRAME))
        session.send_json({"type": "interrupt"})
        seen = receive_until(session, "interrupted")
        elapsed = time.monotonic() - started
        assert [m["code"] for m in seen if m["type"] == "error"] == ["audio_too_fast"]
        assert end(ws, session) == 1000
    upstream_seconds = sum(len(blob.data or b"") for blob in upstream.audio_in) / SECOND
    assert upstream_seconds <= 0.5 + 1.2 * elapsed + 0.1
