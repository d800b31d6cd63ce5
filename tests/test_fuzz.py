"""Random frames and messages at /ws, after which the same session must still work and end cleanly."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeConnector, FakeLiveSession
from tests.test_relay import CHUNK, open_ready

pytestmark = [pytest.mark.websocket, pytest.mark.slow]

TYPES = st.sampled_from(["interrupt", "control", "start", "audio", "", "END_SESSION", "error"]) | st.text(
    max_size=12
)
ACTIONS = st.sampled_from(["start", "stop", "interrupt", "explode", ""]) | st.integers() | st.none()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
MESSAGES = st.fixed_dictionaries(
    {"type": TYPES}, optional={"action": ACTIONS, "data": JSON_VALUES, "text": st.text(max_size=50)}
).filter(lambda m: m["type"] != "end_session")
FRAMES = st.one_of(
    st.binary(min_size=0, max_size=70_000).map(lambda b: {"bytes": b}),
    st.integers(0, 35_000).map(lambda n: {"bytes": b"\x00\x01" * n}),  # even, up to past the limit
    st.text(max_size=300).map(lambda t: {"text": t}),
    st.text(min_size=8_100, max_size=8_300).map(lambda t: {"text": t}),
    MESSAGES.map(lambda m: {"text": json.dumps(m)}),
    JSON_VALUES.map(lambda v: {"text": json.dumps(v)}),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(FRAMES, min_size=1, max_size=8))
def test_random_frames_never_break_the_session(make_app, frames: list[dict[str, Any]]):
    upstream = FakeLiveSession()
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        for frame in frames:
            if "bytes" in frame:
                session.send_bytes(frame["bytes"])
            else:
                session.send_text(frame["text"])
        session.send_bytes(CHUNK)
        session.send_json({"type": "end_session"})
        seen: list[dict[str, Any]] = []
        while (raw := session.receive())["type"] != "websocket.close":
            if raw.get("text") is not None:
                seen.append(json.loads(raw["text"]))
        ws.__exit__(None, None, None)
    assert raw["code"] == 1000, seen
    assert not [m for m in seen if m.get("code") == "internal_error"]
    assert upstream.closed
    # Frames under 20 ms are joined with the next, so the clean chunk may carry a short prefix.
    assert upstream.audio_in and (upstream.audio_in[-1].data or b"").endswith(CHUNK)
