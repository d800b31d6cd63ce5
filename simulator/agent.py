"""The scripted intake agent: decides what the model says and does; no I/O."""

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from simulator.scenarios import Scenario

FLAG_EMERGENCY = "flag_emergency"
AFTER_CLOSE_LINE = "Your intake is already complete. Take care."
# Spoken right after an asynchronous complete_intake call, while the client saves.
HOLD_LINE = "Thank you. I'm saving your answers now; this takes a moment."
STILL_SAVING_LINE = "I'm still saving your answers; one moment, please."
FAILED_LINE = "I'm sorry, I couldn't save your answers. A member of staff will help you."
INCOMPLETE_LINE = "Before I can finish, I still need a little more about: {missing}. Can you tell me?"


class Phase(StrEnum):
    CONVERSING = "conversing"
    AWAITING_TOOL_RESPONSE = "awaiting_tool_response"
    DONE = "done"


class TranscriptEntry(BaseModel):
    role: str
    text: str
    interrupted: bool = False


class AgentState(BaseModel):
    """Everything a resumed session needs to pick the conversation up where it stopped."""

    scenario: str
    position: int = 0
    opened: bool = False
    phase: Phase = Phase.CONVERSING
    pending_call_id: str | None = None
    cancelled_call_ids: list[str] = Field(default_factory=list)
    tool_response_ids: list[str] = Field(default_factory=list)
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    # A reply owed to a patient turn that was consumed but not yet answered; a session
    # resumed from a handle taken at that point speaks it first.
    owed_reply: str | None = None


@dataclass(frozen=True)
class Transcribe:
    text: str


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallTool:
    call_id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class CancelTool:
    call_id: str


@dataclass(frozen=True)
class EndTurn:
    pass


Action = Transcribe | Say | CallTool | CancelTool | EndTurn


class IntakeAgent:
    def __init__(
        self,
        scenario: Scenario,
        *,
        state: AgentState | None = None,
        tool_declared: bool = True,
        cancel_first_call: bool = False,
        async_calls: bool = False,
        emergency_declared: bool = False,
    ) -> None:
        self.scenario = scenario
        self.state = state or AgentState(scenario=scenario.name)
        self._tool_declared = tool_declared
        self._cancel_first_call = cancel_first_call
        # NON_BLOCKING: the model keeps talking while its call runs.
        self.async_calls = async_calls
        self._emergency_declared = emergency_declared

    def snapshot(self) -> AgentState:
        return self.state.model_copy(deep=True)

    def on_start_request(self, typed: str) -> list[Action]:
        """clientContent with turnComplete: the opening line first, typed turns afterwards."""
        if not self.state.opened and self.state.position == 0:
            self.state.opened = True
            return [Say(self.scenario.opening)]
        return self.on_user_turn(typed=typed)

    def on_user_turn(self, typed: str | None = None) -> list[Action]:
        state = self.state
        if state.phase is Phase.AWAITING_TOOL_RESPONSE:
            # A blocking call pauses the model until the client answers it.
            return [Say(STILL_SAVING_LINE)] if self.async_calls else []
        if state.phase is Phase.DONE:
            if typed:
                self._note("patient", typed)
            return [Say(AFTER_CLOSE_LINE)]
        turns = self.scenario.patient_turns
        utterance = turns[state.position]
        state.position += 1
        state.opened = True
        self._note("patient", typed or utterance)
        actions: list[Action] = [] if typed else [Transcribe(utterance)]
        if state.position <= len(self.scenario.exchanges):
            exchange = self.scenario.exchanges[state.position - 1]
            if exchange.emergency is not None and self._emergency_declared:
                # Flagged at once, then the reply that tells the patient to get help.
                actions.append(CallTool(f"call-{uuid.uuid4()}", FLAG_EMERGENCY, exchange.emergency))
            return [*actions, Say(exchange.assistant)]
        return actions + self._complete_intake()

    def on_tool_response(self, responses: dict[str, dict[str, Any]], *, silent: bool = False) -> list[Action]:
        """`responses` by call id; `silent`: the client scheduled the answer SILENT."""
        state = self.state
        state.tool_response_ids.extend(responses)
        call_id = state.pending_call_id
        if state.phase is not Phase.AWAITING_TOOL_RESPONSE or call_id not in responses:
            return []
        state.pending_call_id = None
        response = responses[call_id]
        status = response.get("status", "saved")
        if status == "incomplete":
            # Back to the confirmation: the patient's next answer completes the intake again.
            state.phase = Phase.CONVERSING
            state.position -= 1
            missing = ", ".join(str(m) for m in response.get("missing") or []) or "a few details"
            line = INCOMPLETE_LINE.format(missing=missing.replace("_", " "))
        else:
            state.phase = Phase.DONE
            line = FAILED_LINE if status == "failed" else self.scenario.closing
        return [] if silent else [Say(line)]

    def on_reply_spoken(self, text: str, *, interrupted: bool) -> None:
        self._note("assistant", text, interrupted=interrupted)

    def _complete_intake(self) -> list[Action]:
        state = self.state
        if not self._tool_declared:
            state.phase = Phase.DONE
            return [Say(self.scenario.closing)]
        call = CallTool(f"call-{uuid.uuid4()}", self.scenario.tool_name, self.scenario.tool_args)
        if self._cancel_first_call and not state.cancelled_call_ids:
            # Back to waiting for a confirmation; the next patient turn confirms again.
            state.cancelled_call_ids.append(call.call_id)
            state.position -= 1
            return [call, CancelTool(call.call_id), EndTurn()]
        state.phase = Phase.AWAITING_TOOL_RESPONSE
        state.pending_call_id = call.call_id
        return [call, Say(HOLD_LINE)] if self.async_calls else [call]

    def _note(self, role: str, text: str, *, interrupted: bool = False) -> None:
        self.state.transcript.append(TranscriptEntry(role=role, text=text, interrupted=interrupted))
