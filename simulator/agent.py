"""The scripted intake agent: decides what the model says and does; no I/O."""

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from simulator.scenarios import Scenario

AFTER_CLOSE_LINE = "Your intake is already complete. Take care."


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
    ) -> None:
        self.scenario = scenario
        self.state = state or AgentState(scenario=scenario.name)
        self._tool_declared = tool_declared
        self._cancel_first_call = cancel_first_call

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
            # A real model stays paused until the client answers its function call.
            return []
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
            return [*actions, Say(self.scenario.exchanges[state.position - 1].assistant)]
        return actions + self._complete_intake()

    def on_tool_response(self, call_ids: list[str]) -> list[Action]:
        state = self.state
        state.tool_response_ids.extend(call_ids)
        if state.phase is Phase.AWAITING_TOOL_RESPONSE and state.pending_call_id in call_ids:
            state.phase = Phase.DONE
            state.pending_call_id = None
            return [Say(self.scenario.closing)]
        return []

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
        return [call]

    def _note(self, role: str, text: str, *, interrupted: bool = False) -> None:
        self.state.transcript.append(TranscriptEntry(role=role, text=text, interrupted=interrupted))
