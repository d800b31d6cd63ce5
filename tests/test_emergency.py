"""Red flags: the model's flag_emergency call and the server's safety net, through the /ws relay."""

import hashlib
import hmac
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.genai import types

from config import Settings
from gemini_live.red_flags import RedFlagMatcher
from services.live_config import FLAG_EMERGENCY, live_connect_config
from simulator.agent import CallTool, IntakeAgent, Say
from simulator.scenarios import load_scenario
from tests.conftest import AppFactory
from tests.fakes import FakeConnector, FakeLiveSession, Step, heard, said, turn_complete
from tests.receivers import smtp_receiver, webhook_receiver
from tests.ws_support import CHUNK, end, open_ready, receive_until

pytestmark = [pytest.mark.websocket, pytest.mark.integration]

STAFF = "clinician-token-0123456789"
SECRET = "webhook-secret-abcdef"


def flag_call(call_id: str) -> types.LiveServerMessage:
    call = types.FunctionCall(
        id=call_id,
        name=FLAG_EMERGENCY,
        args={"reason": "chest pain with shortness of breath", "symptoms": ["chest pain", "breathless"]},
    )
    return types.LiveServerMessage(tool_call=types.LiveServerToolCall(function_calls=[call]))


def clinic_settings(settings: Settings, **extra: Any) -> Settings:
    return Settings(_env_file=None, **{**settings.model_dump(), "STAFF_TOKENS": {"carol": STAFF}, **extra})  # type: ignore[call-arg]


def queue(client: TestClient) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get(
        "/api/intakes", headers={"Authorization": f"Bearer {STAFF}"}
    ).json()
    return listed


def test_phrases_match_whole_words_in_any_case_and_spacing() -> None:
    matcher = RedFlagMatcher(["chest pain", "can't breathe right now", "suicidal"])
    assert matcher.find("I have CHEST   pain and I can\u2019t breathe right now") == [
        "chest pain",
        "can't breathe right now",
    ]
    assert matcher.find("My chest painting hobby; not suicidality") == []
    assert matcher.find("chest pain, chest pain") == ["chest pain"]
    assert RedFlagMatcher([]).find("chest pain") == []


def test_the_live_config_declares_flag_emergency_beside_complete_intake(settings: Settings) -> None:
    config = live_connect_config(settings, resume_handle=None)
    [tool] = config.tools or []
    assert isinstance(tool, types.Tool)
    declarations = {d.name: d for d in tool.function_declarations or []}
    assert set(declarations) == {"complete_intake", FLAG_EMERGENCY}
    flag = declarations[FLAG_EMERGENCY]
    assert flag.parameters is not None and flag.parameters.required == ["reason", "symptoms"]
    # 3.8 calls functions asynchronously; both declarations say so.
    assert flag.behavior == types.Behavior.NON_BLOCKING
    instruction = config.system_instruction
    assert isinstance(instruction, types.Content) and instruction.parts
    assert FLAG_EMERGENCY in (instruction.parts[0].text or "")


def test_the_safety_net_raises_an_emergency_the_model_did_not(
    settings: Settings, make_app: AppFactory
) -> None:
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("I have crushing chest pain "), heard("since this morning."), said("I see. ")]),
            Step(1, [said("How long has it lasted?"), turn_complete()]),
        ]
    )
    with (
        webhook_receiver() as (hook_url, hooks),
        smtp_receiver() as (smtp_url, mails),
    ):
        app_settings = clinic_settings(
            settings,
            NOTIFY_WEBHOOK_URL=hook_url,
            NOTIFY_WEBHOOK_SECRET=SECRET,
            SMTP_URL=smtp_url,
            NOTIFY_EMAIL_TO=["desk@clinic.example"],
        )
        with TestClient(make_app(FakeConnector(upstream), app_settings=app_settings)) as client:
            ws, session = open_ready(client)
            session.send_bytes(CHUNK)
            alert = receive_until(session, "emergency")[-1]
            assert alert == {
                "type": "emergency",
                "source": "server",
                "instructions": app_settings.EMERGENCY_INSTRUCTIONS,
            }
            # The conversation goes on: the assistant's turn still reaches the page.
            seen = receive_until(session, "turn_complete")
            assert "emergency" not in [m["type"] for m in seen]
            intake_id = session_id(client)
            assert end(ws, session) == 1000
            [flagged] = queue(client)
            assert flagged["id"] == intake_id
            assert flagged["flags"]["emergency_reported"] == "server"

            [hook] = hooks.wait_for(1)
            [(rcpt, mail)] = mails.wait_for(1)
    assert hook.json["event"] == "intake.emergency" and hook.json["intake_id"] == intake_id
    assert hook.json["flags"]["emergency_reported"] == "server"
    assert "summary" not in hook.json  # NOTIFY_INCLUDE_SUMMARY is off: no clinical content
    expected = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Intake-Signature"] == expected
    assert rcpt == ["desk@clinic.example"] and mail["X-Intake-Event"] == "intake.emergency"
    assert "chest" not in mail.get_payload()


def session_id(client: TestClient) -> str:
    # The session's row is committed by the storage writer moments after the session starts.
    deadline = time.monotonic() + 5
    while not (intakes := queue(client)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert intakes, "the session's row was not written"
    found: str = intakes[0]["id"]
    return found


def test_the_models_call_is_answered_and_the_safety_net_does_not_raise_it_twice(
    settings: Settings, make_app: AppFactory
) -> None:
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("I have chest pain and I'm short of breath."), flag_call("call-sos")]),
            Step(1, [said("Please call your local emergency number now."), turn_complete()]),
            Step(2, [heard("Also chest pain in my arm."), said("Help is coming."), turn_complete()]),
        ]
    )
    with TestClient(make_app(FakeConnector(upstream), app_settings=clinic_settings(settings))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        alerts = [m for m in seen if m["type"] == "emergency"]
        assert [a["source"] for a in alerts] == ["model"]
        [answer] = upstream.tool_responses
        assert answer.id == "call-sos" and answer.name == FLAG_EMERGENCY
        assert answer.response and answer.response["status"] == "flagged"
        session.send_bytes(CHUNK)
        later = receive_until(session, "turn_complete")
        assert "emergency" not in [m["type"] for m in later]
        assert end(ws, session) == 1000
        [flagged] = queue(client)
        assert flagged["flags"]["emergency_reported"] == "model"


def test_an_ordinary_intake_raises_no_emergency(settings: Settings, make_app: AppFactory) -> None:
    upstream = FakeLiveSession(
        script=[Step(1, [heard("My father had chest pains years ago."), said("I see."), turn_complete()])]
    )
    custom = clinic_settings(settings, RED_FLAG_PHRASES=["crushing chest pain"])
    with TestClient(make_app(FakeConnector(upstream), app_settings=custom)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        assert "emergency" not in [m["type"] for m in seen]
        assert end(ws, session) == 1000
        [intake] = queue(client)
        assert intake["flags"]["emergency_reported"] is None


def test_the_simulated_model_flags_only_when_the_client_declared_flag_emergency() -> None:
    scenario = load_scenario("chest_pain_emergency")
    declared = IntakeAgent(scenario, emergency_declared=True).on_user_turn()
    calls = [a for a in declared if isinstance(a, CallTool)]
    assert [(c.name, c.args["symptoms"]) for c in calls] == [
        (FLAG_EMERGENCY, ["crushing chest pain", "shortness of breath"])
    ]
    # The call comes before the reply that tells the patient to get help.
    assert declared.index(calls[0]) < next(i for i, a in enumerate(declared) if isinstance(a, Say))
    undeclared = IntakeAgent(scenario, emergency_declared=False).on_user_turn()
    assert not [a for a in undeclared if isinstance(a, CallTool)]
    assert any(isinstance(a, Say) for a in undeclared)
