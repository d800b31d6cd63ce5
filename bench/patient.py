"""A simulated patient: a browser-like WebSocket client that speaks a scenario to the server."""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator import load_scenario
from simulator.speech import patient_audio
from utils.audio_processing import AudioProcessor

CHUNK = 3200  # 100 ms of 16 kHz PCM16
_AUDIO = AudioProcessor()


class BrowserClient:
    """Plays the browser: a reader task logs every frame with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[tuple[int | None, str | None]] = loop.create_future()
        self._reader = asyncio.create_task(self._read(), name="browser-client")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = {"type": "audio", "size": len(raw)} if isinstance(raw, bytes) else json.loads(raw)
                self.events.append((time.monotonic(), message))
                self._arrived.set()
        except ConnectionClosed:
            pass  # the close code and reason are what callers look at
        finally:
            if not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason))
            self._arrived.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.events if m["type"] == kind]

    def kinds(self) -> list[str]:
        return [m["type"] for _, m in self.events]

    async def wait_for(self, kind: str, count: int = 1, within: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while len(self.of_type(kind)) < count:
            if self.closed.done():
                raise AssertionError(
                    f"closed {self.closed.result()} before {kind!r} #{count}: {self.kinds()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} #{count} within {within} s: {self.kinds()[-20:]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return self.of_type(kind)[count - 1]

    async def wait_for_status(
        self, wanted: Callable[[dict[str, Any]], bool], within: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while not (found := [m for m in self.of_type("status") if wanted(m)]):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed.done():
                raise AssertionError(f"no such status within {within} s: {self.kinds()[-20:]}")
            await self.wait_for("status", len(self.of_type("status")) + 1, within=remaining)
        return found[0]

    async def speak(self, pcm: bytes, pace: float = 0.005) -> float:
        """Send speech in 100 ms frames, `pace` seconds apart; return when the last voiced frame
        went out (the end of speech, before the trailing silence that ends the turn)."""
        last_voiced = time.monotonic()
        for start in range(0, len(pcm), CHUNK):
            frame = pcm[start : start + CHUNK]
            await self.ws.send(frame)
            if not _AUDIO.is_silence(frame):
                last_voiced = time.monotonic()
            await asyncio.sleep(pace)
        return last_voiced

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def open_browser(ws_url: str, key: str, *, query: str = "", within: float = 10.0) -> BrowserClient:
    """Connect with `key` as the browser's API key and wait until the server says `ready`."""
    ws = await connect(f"{ws_url}?api_key={quote(key)}{query}", max_size=2**22)
    client = BrowserClient(ws)
    deadline = time.monotonic() + within
    while not any(m.get("state") == "ready" for m in client.of_type("status")):
        if time.monotonic() > deadline:
            raise AssertionError(f"never ready: {client.kinds()}")
        await client.wait_for("status", len(client.of_type("status")) + 1, within=within)
    return client


@dataclass
class Conversation:
    """What one spoken scenario measured."""

    # From the end of each patient utterance's speech to the assistant's first audio after it.
    reply_latencies: list[float] = field(default_factory=list)
    # How long model audio kept arriving after `interrupted` (barge-in scenarios only).
    audio_after_interrupted_s: float | None = None


async def converse(
    client: BrowserClient,
    scenario_name: str,
    *,
    finish: str | None = "intake_complete",
    speech_pace: float = 0.005,
) -> Conversation:
    """Speak every patient turn of the scenario, each after the assistant's reply, then wait for
    `finish` (None: return right after the last turn). `speech_pace` is the pause after each
    100 ms frame: 0.1 is real time, the small default lets tests run fast."""
    scenario = load_scenario(scenario_name)
    utterances = patient_audio(scenario_name)
    result = Conversation()
    await client.wait_for("turn_complete", 1)  # the assistant's opening line
    barge_next = False
    for index, pcm in enumerate(utterances):
        done_turns = len(client.of_type("turn_complete"))
        audio_before = len(client.of_type("audio"))
        spoken_at = await client.speak(pcm, pace=speech_pace)
        if barge_next:
            barge_next = False
            result.audio_after_interrupted_s = _audio_after_interrupted(
                client, await client.wait_for("interrupted")
            )
        if index < len(scenario.exchanges) and scenario.exchanges[index].barge_in:
            await client.wait_for("audio", audio_before + 3)
            barge_next = True
            continue
        if index == len(utterances) - 1:
            break
        await client.wait_for("turn_complete", done_turns + 1)
        first_audio = next((t for t, m in client.events if m["type"] == "audio" and t > spoken_at), None)
        if first_audio is not None:
            result.reply_latencies.append(first_audio - spoken_at)
    if finish is not None:
        await client.wait_for(finish, within=30)
    return result


def _audio_after_interrupted(client: BrowserClient, interrupted: dict[str, Any]) -> float:
    at = next(t for t, m in client.events if m is interrupted)
    late = [t for t, m in client.events if m["type"] == "audio" and t > at]
    first_patient_after = next(
        (t for t, m in client.events if t > at and m["type"] == "transcript" and m["role"] == "patient"),
        None,
    )
    stray = [t for t in late if first_patient_after is None or t < first_patient_after]
    return (max(stray) - at) if stray else 0.0
