"""The simulator's routes: Live WebSocket, generateContent, and the test controls."""

import json

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from simulator.extraction import (
    API_KEY_INVALID,
    error_body,
    generate_response,
    request_text,
    response_schema,
    thinking_level,
)
from simulator.hub import SimulatorHub
from simulator.live import serve_live
from simulator.options import InvalidSimulatorKey, SessionOptions
from simulator.scenarios import UnknownScenario
from simulator.stats import GenerateStats

API_VERSIONS = ("v1", "v1beta", "v1alpha")
MODEL_OVERLOADED = "The model is overloaded. Please try again later."
LIVE_METHODS = ("BidiGenerateContent", "BidiGenerateContentConstrained")


def create_app(hub: SimulatorHub, *, controls: bool = False) -> Starlette:
    """`controls` adds `/_stats`, `/_reset` and `/_defaults`: only for a simulator running on its
    own (`python -m simulator`); a server that embeds it must not expose them."""

    async def live(websocket: WebSocket) -> None:
        await serve_live(websocket, hub)

    async def generate_content(request: Request) -> JSONResponse:
        if request.path_params["version"] not in API_VERSIONS:
            return _error(404, "NOT_FOUND", "Unknown API version.")
        model = str(request.path_params["model"])
        api_key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        try:
            choice, _ = hub.choose(api_key)
        except (InvalidSimulatorKey, UnknownScenario) as exc:
            return _error(400, "INVALID_ARGUMENT", f"Invalid simulator key: {exc}")
        scenario, matched_by = hub.scenario_for_extraction(api_key, choice, request_text(body))
        options = hub.options_for(scenario, choice)
        rejected = choice.denied or options.reject_key
        unavailable = not rejected and hub.take_unavailable(api_key, options.unavailable_extractions)
        schema_field, _ = response_schema(body)
        hub.stats.generate_requests.append(
            GenerateStats(
                model=model,
                scenario=scenario.name,
                matched_by=matched_by,
                schema_field=schema_field,
                bad_extraction=options.bad_extraction,
                rejected=rejected,
                unavailable=unavailable,
                thinking_level=thinking_level(body),
            )
        )
        if rejected:
            return _error(400, "INVALID_ARGUMENT", API_KEY_INVALID, reason="API_KEY_INVALID")
        if unavailable:
            return _error(503, "UNAVAILABLE", MODEL_OVERLOADED)
        return JSONResponse(generate_response(body, model, malformed=options.bad_extraction))

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(hub.stats.snapshot())

    async def reset(request: Request) -> JSONResponse:
        hub.stats.reset()
        return JSONResponse({"reset": True})

    async def defaults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
            if not isinstance(body, dict) or not isinstance(body.get("scenario", ""), str):
                return _error(400, "INVALID_ARGUMENT", "Expected an object; scenario a string.")
            scenario = body.pop("scenario", None)
            try:
                hub.set_defaults(scenario, SessionOptions.model_validate(body))
            except (ValidationError, UnknownScenario) as exc:
                return _error(400, "INVALID_ARGUMENT", str(exc))
        current = hub.defaults
        return JSONResponse({"scenario": current.scenario, **current.options.model_dump(exclude_unset=True)})

    routes: list[Route | WebSocketRoute] = [
        WebSocketRoute(f"/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}", live)
        for version in API_VERSIONS
        for method in LIVE_METHODS
    ]
    routes.append(Route("/{version}/models/{model}:generateContent", generate_content, methods=["POST"]))
    if controls:
        routes += [
            Route("/_stats", stats, methods=["GET"]),
            Route("/_reset", reset, methods=["POST"]),
            Route("/_defaults", defaults, methods=["GET", "POST"]),
        ]
    return Starlette(routes=routes)


def _error(status: int, code: str, message: str, reason: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message, reason), status_code=status)
