"""A three-second network drop in the middle of an intake, as a patient's phone has one:
`python main.py` relaying to its simulator, the served page in headless Chromium reaching it
through a TCP proxy the test can cut, and a fake microphone playing the patient's side.

Chromium's offline mode (Playwright's `set_offline`, or CDP `Network.emulateNetworkConditions`)
refuses new connections but does not close a WebSocket that is already open: its frames just
wait until the page is back online. What drops the open socket, as a lost Wi-Fi link does, is the
TCP connection going away, so the test cuts it at the proxy and takes the page offline at the
same time, so the page's first tries to reconnect fail as they would on a real phone."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import expect

from simulator.scenarios import Scenario, load_scenario
from simulator.speech import conversation_audio, write_wav
from tests.browser.conftest import FAKE_MICROPHONE, Console, chromium
from tests.browser.test_intake_e2e import (
    PATIENT_RATE,
    TIME_SCALE,
    WRAP_UP_SECONDS,
    intake_server,
    shown_and_scripted,
    words,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

SCENARIO = "no_allergies"
# The patient waits this long after each reply before speaking again, so the drop (3 s, and up
# to a second more to reconnect) falls in a pause and the next line is heard live.
PATIENT_PAUSE_SECONDS = 8.0
DROP_SECONDS = 3.0
# The drop comes once the assistant's reply to the first patient line has been heard.
DROP_AFTER_REPLY = 0


class DroppingProxy:
    """Forwards TCP connections to the server until cut(), which drops every one of them at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "DroppingProxy":
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        # abort(): no FIN, no close frame; both ends see the connection die as on a lost network.
        for writer in self._links:
            writer.transport.abort()
        self._links.clear()

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._links |= {client_writer, server_writer}
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(client_reader, server_writer), name="proxy-up")
                group.create_task(self._pump(server_reader, client_writer), name="proxy-down")
        finally:
            self._links -= {client_writer, server_writer}
            client_writer.transport.abort()
            server_writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A cut ends both directions; that is what the proxy is for, not a failure.
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@dataclass
class DropRun:
    scenario: Scenario
    console: Console = field(default_factory=Console)
    failure: str | None = None
    turns_before_drop: list[dict[str, str]] = field(default_factory=list)
    states_during_drop: list[str] = field(default_factory=list)
    status_text_during_drop: str = ""
    turns: list[dict[str, str]] = field(default_factory=list)
    debug: dict[str, Any] = field(default_factory=dict)
    # What the page told its console about the server's answers (never patient words).
    page_notes: list[str] = field(default_factory=list)

    def check(self) -> "DropRun":
        if self.failure:
            pytest.fail(f"the intake with a network drop did not finish: {self.failure}")
        return self


TURNS = """() => [...document.querySelectorAll('#transcript .turn')].map(t => ({
    role: t.dataset.role, text: t.querySelector('.turn__text').textContent }))"""


@asynccontextmanager
async def served_through_proxy(directory: Path) -> AsyncIterator[tuple[str, DroppingProxy]]:
    async with intake_server(SCENARIO, directory / "server.log") as base:
        async with DroppingProxy(int(base.rsplit(":", 1)[1])) as proxy:
            yield f"http://127.0.0.1:{proxy.port}", proxy


async def hold_interrupted_conversation(run: DropRun, directory: Path) -> None:
    pcm = conversation_audio(SCENARIO, PATIENT_RATE, TIME_SCALE, slack_s=PATIENT_PAUSE_SECONDS)
    wav = directory / f"{SCENARIO}.wav"
    write_wav(wav, pcm, PATIENT_RATE)
    seconds = len(pcm) / 2 / PATIENT_RATE
    first_reply = run.scenario.exchanges[DROP_AFTER_REPLY].assistant
    async with (
        served_through_proxy(directory) as (base, proxy),
        chromium(
            directory / "profile", *FAKE_MICROPHONE, f"--use-file-for-fake-audio-capture={wav}%noloop"
        ) as context,
    ):
        page = await context.new_page()
        run.console = Console.watch(page)
        page.on(
            "console",
            lambda message: (
                run.page_notes.append(message.text)
                if message.text.startswith(("resume refused", "server error"))
                else None
            ),
        )
        app = (await (await page.request.get(f"{base}/")).json())["app"]
        await page.goto(f"{base}{app}")
        await page.get_by_test_id("start").click()
        await expect(page.get_by_test_id("status")).to_have_attribute(
            "data-state", "listening", timeout=10_000
        )
        # The reply has been heard out: the page is listening again with it on screen.
        await page.wait_for_function(
            """reply => window.intakeDebug.state === 'listening' &&
                [...document.querySelectorAll('#transcript .turn__text')]
                    .some(turn => turn.textContent.trim() === reply)""",
            arg=first_reply,
            timeout=30_000,
        )
        run.turns_before_drop = await page.evaluate(TURNS)

        await context.set_offline(True)
        proxy.cut()
        status = page.get_by_test_id("status")
        await expect(status).to_have_attribute("data-state", "reconnecting", timeout=2000)
        run.status_text_during_drop = await status.inner_text()
        await asyncio.sleep(DROP_SECONDS)
        run.states_during_drop = (await page.evaluate("window.intakeDebug.states"))[-3:]
        await context.set_offline(False)

        await expect(page.get_by_test_id("intake-complete")).to_be_visible(
            timeout=(seconds + WRAP_UP_SECONDS) * 1000
        )
        await page.wait_for_function(
            """closing => [...document.querySelectorAll('#transcript .turn__text')]
                .some(turn => turn.textContent.trim() === closing)""",
            arg=run.scenario.closing,
            timeout=15_000,
        )
        run.turns = await page.evaluate(TURNS)
        run.debug = await page.evaluate("structuredClone(window.intakeDebug)")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> DropRun:
    directory = tmp_path_factory.mktemp("resume-e2e")
    result = DropRun(load_scenario(SCENARIO))
    try:
        await hold_interrupted_conversation(result, directory)
    except (PlaywrightError, AssertionError, RuntimeError, TimeoutError) as exc:
        log = directory / "server.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        notes = "\n".join(result.page_notes)
        result.failure = (
            f"{type(exc).__name__}: {exc}\n--- page notes ---\n{notes}\n--- server log (tail) ---\n{tail}"
        )
    return result


async def test_the_page_says_reconnecting_while_the_network_is_down(run: DropRun) -> None:
    run.check()
    assert "Reconnecting…" in run.status_text_during_drop
    assert run.states_during_drop[-1] == "reconnecting"
    assert run.debug["resume"]["drops"] == 1
    # Tries made while offline fail; the first one after the network is back picks the intake up.
    assert run.debug["resume"]["attempts"] >= 2
    assert run.debug["resume"]["outcomes"] == ["resumed"]


async def test_the_conversation_carries_on_after_the_drop(run: DropRun) -> None:
    run.check()
    replies_after = [exchange.assistant for exchange in run.scenario.exchanges[DROP_AFTER_REPLY + 1 :]]
    shown = [words(turn["text"]) for turn in run.turns if turn["role"] == "assistant"]
    for reply in [*replies_after, run.scenario.closing]:
        assert words(reply) in shown


async def test_no_turn_is_lost_or_shown_twice(run: DropRun) -> None:
    run.check()
    scenario = run.scenario
    shown = [(turn["role"], words(turn["text"])) for turn in run.turns]
    # Nothing shown before the drop went missing or moved.
    assert shown[: len(run.turns_before_drop)] == [
        (turn["role"], words(turn["text"])) for turn in run.turns_before_drop
    ]
    turns, expected = shown_and_scripted(scenario, run.turns)
    assert turns == expected


async def test_the_page_reports_no_errors(run: DropRun) -> None:
    # Chromium logs each connection refused while offline itself; those are the drop, not the page.
    errors = [error for error in run.check().console.errors if "WebSocket connection to" not in error]
    assert errors == []
