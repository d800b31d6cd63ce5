"""The Live WebSocket endpoint: key check, setup, resumption, and how the socket ends."""

import contextlib
import logging
from collections.abc import Callable
from typing import cast

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from simulator import protocol
from simulator.agent import FLAG_EMERGENCY, IntakeAgent
from simulator.conversation import Abort, ClientGone, Close, Conversation, Ending, payload
from simulator.echo import run_echo
from simulator.extraction import API_KEY_INVALID
from simulator.hub import SimulatorHub
from simulator.models import SETUP_MODEL_NOT_FOUND, live_model, refusal
from simulator.options import InvalidSimulatorKey
from simulator.protocol import ProtocolError
from simulator.scenarios import UnknownScenario, load_scenario
from simulator.stats import SessionStats

logger = logging.getLogger(__name__)

# Set by `server.AbortableWebSocketProtocol`: ASGI itself cannot drop a connection
# without a close frame, and that is the fault `drop_after` simulates.
ABORT_EXTENSION = "simulator.transport.abort"
SETUP_TIMEOUT_SECONDS = 30.0
BAD_RESUMPTION_HANDLE = "Session resumption handle is invalid or has expired."


async def serve_live(websocket: WebSocket, hub: SimulatorHub) -> None:
    await websocket.accept()
    record = hub.stats.open_session(scenario="")
    ending: Ending = Close(1011, "Internal error encountered.")
    try:
        ending = await _handshake_and_converse(websocket, hub, record)
    except Exception:
        logger.exception("simulated Live session failed")
    finally:
        record.close_code, record.close_reason = await _end(websocket, ending)
        record.dropped = isinstance(ending, Abort)
        record.closed = True


async def _handshake_and_converse(websocket: WebSocket, hub: SimulatorHub, record: SessionStats) -> Ending:
    first = None
    with anyio.move_on_after(SETUP_TIMEOUT_SECONDS):
        first = await websocket.receive()
    if first is None:
        return Close(1007, "The first message must be setup.")
    if first["type"] == "websocket.disconnect":
        return ClientGone(int(first.get("code", 1005)))

    api_key = websocket.headers.get("x-goog-api-key") or websocket.query_params.get("key")
    try:
        choice, scenario = hub.choose(api_key)
    except (InvalidSimulatorKey, UnknownScenario) as exc:
        return Close(1007, f"Invalid simulator key: {exc}")
    options = hub.options_for(scenario, choice)
    record.scenario = scenario.name
    if choice.denied or options.reject_key:
        return Close(1008, API_KEY_INVALID)
    try:
        setup = protocol.parse_client_message(payload(first)).setup
    except ProtocolError as exc:
        return Close(1007, str(exc))
    if setup is None:
        return Close(1007, "The first message must be setup.")
    hub.stats.messages_received["setup"] += 1
    record.model = setup.model
    model = live_model(setup.model)
    if model is None:
        parts = websocket.url.path.split(".")
        version = parts[3] if len(parts) > 3 else "v1beta"
        return Close(1008, SETUP_MODEL_NOT_FOUND.format(model=setup.model_name, version=version))
    refused = refusal(setup, model)
    if refused is not None:
        return Close(1007, refused)
    if options.echo:
        every = options.echo_handle_every if setup.session_resumption is not None else None
        return await run_echo(websocket, record, handle_every=every, transparent=setup.transparent_resumption)

    state = None
    handle = setup.session_resumption.handle if setup.session_resumption else None
    if handle:
        state = hub.resumption.load(handle)
        if state is None:
            return Close(1007, BAD_RESUMPTION_HANDLE)
        scenario = load_scenario(state.scenario)
        record.scenario = scenario.name
        record.resumed = True
    record.resumption_requested = setup.session_resumption is not None
    record.compression_requested = setup.context_window_compression is not None
    record.declared_functions = sorted(setup.function_names)
    hub.remember_key(api_key, scenario.name)

    agent = IntakeAgent(
        scenario,
        state=state,
        tool_declared=scenario.tool_name in setup.function_names,
        cancel_first_call=options.cancel_tool_call,
        emergency_declared=FLAG_EMERGENCY in setup.function_names,
        # 3.8 calls functions asynchronously unless the declaration asks for BLOCKING.
        async_calls=model.async_function_calls and setup.behavior_of(scenario.tool_name) != "BLOCKING",
    )
    record.async_function_calls = agent.async_calls
    conversation = Conversation(websocket, hub, agent=agent, setup=setup, options=options, record=record)
    return await conversation.run()


async def _end(websocket: WebSocket, ending: Ending) -> tuple[int, str]:
    match ending:
        case ClientGone(code=code):
            return code, ""
        case Close(code=code, reason=reason):
            if websocket.application_state is WebSocketState.CONNECTED:
                with contextlib.suppress(WebSocketDisconnect):
                    await websocket.close(code, _close_reason(reason))
            return code, reason
        case Abort():
            extension = websocket.scope.get("extensions", {}).get(ABORT_EXTENSION)
            if extension is None:
                logger.warning("this server cannot drop connections; closing with 1011")
                with contextlib.suppress(WebSocketDisconnect):
                    await websocket.close(1011, "dropped")
            else:
                cast(Callable[[], None], extension["abort"])()
            return 1006, "dropped"


def _close_reason(reason: str) -> str:
    # A close frame carries at most 123 bytes of reason.
    return reason.encode()[:123].decode(errors="ignore")
