"""The page picking an intake up again after its socket dropped (issue 16), against a scripted
stand-in for the server: Playwright answers every /ws socket the page opens, so each case of the
resume protocol is exact. The microphone plays a steady tone, so held audio is never silence."""

import asyncio
import json
import math
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Locator, Page, WebSocketRoute, expect

from simulator.speech import write_wav
from tests.browser.conftest import FAKE_MICROPHONE, Console, chromium, until
from tests.browser.test_page import RECORD, SIMULATOR_KEY_STATUS

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

# A steady 440 Hz tone at about -18 dBFS: every 100 ms frame is well above the silence the page
# trims from the ends of held audio.
TONE_RATE = 16000
# Long enough that a test leaves the page before the file ends (%noloop).
TONE_SECONDS = 120
HELD_LIMIT = 96000
# Long enough to tell "did not reconnect" from "has not reconnected yet": the first retry is at 0.5 s.
NO_RETRY_SECONDS = 2.0


@dataclass
class Socket:
    route: WebSocketRoute
    texts: list[dict[str, object]] = field(default_factory=list)
    # Bytes of audio received, and how many had arrived before each text message.
    audio_bytes: int = 0
    audio_before_text: list[int] = field(default_factory=list)

    def received(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.audio_bytes += len(message)
        else:
            self.audio_before_text.append(self.audio_bytes)
            self.texts.append(json.loads(message))

    def send(self, type: str, **fields: object) -> None:
        self.route.send(json.dumps({"type": type, **fields}))

    def ready(self, session_id: str, token: str | None, **fields: object) -> None:
        extra = {"resume_token": token} if token else {}
        self.send(
            "status",
            state="ready",
            message="Connected",
            upstream="simulator",
            session_id=session_id,
            **extra,
            **fields,
        )


@dataclass
class ResumingServer:
    """Every socket the page opens, in order, each with what the page sent on it."""

    sockets: list[Socket] = field(default_factory=list)
    # Set: every new socket drops at once, as while the network is still down.
    unreachable: bool = False

    async def accept(self, route: WebSocketRoute) -> None:
        socket = Socket(route)
        self.sockets.append(socket)
        route.on_message(socket.received)
        if self.unreachable:
            await route.close(code=1006)

    @property
    def last(self) -> Socket:
        return self.sockets[-1]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    directory = tmp_path_factory.mktemp("resume-page")
    tone = directory / "tone.wav"
    samples = (
        int(4000 * math.sin(2 * math.pi * 440 * n / TONE_RATE)) for n in range(TONE_RATE * TONE_SECONDS)
    )
    write_wav(tone, struct.pack(f"<{TONE_RATE * TONE_SECONDS}h", *samples), TONE_RATE)
    async with chromium(
        directory / "profile", *FAKE_MICROPHONE, f"--use-file-for-fake-audio-capture={tone}%noloop"
    ) as context:
        yield context


async def open_page(
    browser: BrowserContext, site: str, config: dict[str, object] | None = None, *, fake_clock: bool = False
) -> tuple[Page, ResumingServer, Console]:
    page = await browser.new_page()
    console = Console.watch(page)
    if fake_clock:
        # Runs at real speed until fast_forward jumps it.
        await page.clock.install()
    server = ResumingServer()
    await page.route("**/api-key-status", lambda route: route.fulfill(json=SIMULATOR_KEY_STATUS))
    await page.route("**/config", lambda route: route.fulfill(json=config or {"kiosk_mode": False}))
    await page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), server.accept)
    await page.goto(f"{site}/?token=clinic-link")
    return page, server, console


async def start_intake(page: Page, server: ResumingServer, token: str = "t1") -> None:
    await page.get_by_test_id("start").click()
    await until(lambda: len(server.sockets) == 1, "the page to connect")
    server.last.ready("s1", token)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")


async def reconnects(page: Page, server: ResumingServer, sockets: int) -> Socket:
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "reconnecting")
    await expect(page.get_by_test_id("status")).to_contain_text("Reconnecting…")
    await until(lambda: len(server.sockets) == sockets and server.last.texts != [], "the resume", within=10)
    return server.last


def transcript_of(page: Page) -> Locator:
    return page.get_by_test_id("transcript").locator(".turn .turn__text")


@pytest_asyncio.fixture(loop_scope="module")
async def page_and_server(
    browser: BrowserContext, static_site: str
) -> AsyncIterator[tuple[Page, ResumingServer]]:
    page, server, console = await open_page(browser, static_site)
    yield page, server
    await page.close()
    assert console.errors == []


async def test_a_drop_resumes_with_the_newest_token_and_keeps_the_conversation(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    page, server = page_and_server
    await start_intake(page, server)
    first = server.last
    # An upstream-only reconnect keeps the token; a newer ready wins all the same.
    first.ready("s1", "t2")
    first.send("transcript", role="assistant", text="Hello, what brings you in?")
    first.send("turn_complete")
    first.send("transcript", role="patient", text="My head hurts.")
    first.send("transcript", role="assistant", text="I'm sorry to")
    first.send("extracted_data", data={"patient_info": RECORD["patient_info"]}, final=False)
    await expect(transcript_of(page)).to_have_count(3)

    await first.route.close(code=1006)

    second = await reconnects(page, server, 2)
    assert second.texts[0] == {"type": "resume", "session_id": "s1", "resume_token": "t2"}
    assert second.route.url == first.route.url
    assert "token=clinic-link" in second.route.url
    await expect(transcript_of(page)).to_have_text(
        ["Hello, what brings you in?", "My head hurts.", "I'm sorry to"]
    )
    # A server may start a fresh session before it reads the resume: none of it is shown.
    second.send("status", state="connecting", message="Connecting", session_id="fresh")
    second.send("transcript", role="assistant", text="Hello, what brings you in?")
    second.route.send(bytes(4800))
    second.ready("s1", "t3", resumed=True)
    second.send(
        "history",
        turns=[
            {"type": "transcript", "role": "assistant", "text": "Hello, what brings you in?"},
            {"type": "transcript", "role": "patient", "text": "My head hurts."},
            {"type": "transcript", "role": "assistant", "text": "I'm sorry to hear that. How long?"},
            {"type": "transcript", "role": "patient", "text": "Two days."},
        ],
        record={"type": "extracted_data", "data": RECORD, "final": False},
    )
    second.send("transcript", role="assistant", text="Any fever?")

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    await expect(transcript_of(page)).to_have_text(
        [
            "Hello, what brings you in?",
            "My head hurts.",
            "I'm sorry to hear that. How long?",
            "Two days.",
            "Any fever?",
        ]
    )
    await expect(page.get_by_test_id("record").locator(".medication")).to_have_count(2)
    debug = await page.evaluate("structuredClone(window.intakeDebug)")
    assert debug["audioChunksReceived"] == 0, "audio sent before the resume answer was played"
    assert debug["resume"]["outcomes"] == ["resumed"]

    # The next drop resumes with the token the resume handed out.
    await second.route.close(code=1001)
    third = await reconnects(page, server, 3)
    assert third.texts[0] == {"type": "resume", "session_id": "s1", "resume_token": "t3"}


async def test_audio_from_the_gap_goes_out_after_the_resume_bounded_and_paced(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    page, server = page_and_server
    await start_intake(page, server)
    await until(lambda: server.last.audio_bytes > 3200 * 5, "microphone frames")

    await server.last.route.close(code=1006)
    second = await reconnects(page, server, 2)
    # Over 3 s of the patient talking while the page waits for the resume answer.
    await asyncio.sleep(4.5)
    assert second.audio_bytes == 0, "audio went out before the server picked the intake up"
    second.ready("s1", "t2", resumed=True)
    second.send("history", turns=[], record=None)

    await asyncio.sleep(0.3)
    # Sent faster than the server's pacer admits (a 0.5 s burst, then 1.2x), most would be dropped.
    assert second.audio_bytes < HELD_LIMIT * 2 // 3
    held = await page.evaluate("window.intakeDebug.heldAudio")
    assert held["dropped"] > 0, "the gap was longer than the bound"
    # The tone is never silence: the whole bound's worth goes out, and no more.
    assert HELD_LIMIT - 3200 <= held["released"] <= HELD_LIMIT
    await until(lambda: second.audio_bytes >= held["released"], "the held audio", within=5)
    assert second.audio_before_text == [0]
    # Once the backlog is out, live frames go straight to the socket again.
    await page.wait_for_function(
        """() => {
            const { held, dropped, trimmed, sent } = window.intakeDebug.heldAudio;
            return sent > 0 && sent === held - dropped - trimmed;
        }"""
    )
    sent = await page.evaluate("window.intakeDebug.framesSent")
    await asyncio.sleep(0.5)
    assert await page.evaluate("window.intakeDebug.framesSent") > sent


# The contract sends the fresh intake's ready after the refusal; a server that started the fresh
# intake before it read the resume may have sent it just before.
@pytest.mark.parametrize("ready_first", [False, True], ids=["ready-after", "ready-before"])
async def test_a_refused_resume_clears_the_page_and_carries_on_as_a_new_intake(
    page_and_server: tuple[Page, ResumingServer], ready_first: bool
) -> None:
    page, server = page_and_server
    await start_intake(page, server)
    server.last.send("transcript", role="patient", text="My name is Ada Quill.")
    server.last.send("extracted_data", data=RECORD, final=False)
    await expect(page.get_by_test_id("record").locator("[data-filled=true]")).not_to_have_count(0)

    await server.last.route.close(code=1006)
    second = await reconnects(page, server, 2)
    if ready_first:
        second.ready("s2", "u1")
    second.send("error", code="resume_refused", message="This conversation can no longer be resumed.")
    if not ready_first:
        second.ready("s2", "u1")

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    await expect(page.get_by_test_id("transcript")).to_contain_text(
        "could not pick up your earlier conversation"
    )
    await expect(transcript_of(page)).to_have_count(0)
    await expect(page.get_by_test_id("record").locator("[data-filled=true]")).to_have_count(0)
    assert "Ada Quill" not in await page.content()
    second.send("transcript", role="assistant", text="Hello, what brings you in?")
    await expect(transcript_of(page)).to_have_text(["Hello, what brings you in?"])

    # The fresh intake is the one a later drop resumes.
    await second.route.close(code=1006)
    third = await reconnects(page, server, 3)
    assert third.texts[0] == {"type": "resume", "session_id": "s2", "resume_token": "u1"}


async def test_a_superseded_page_says_so_and_does_not_reconnect(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    page, server = page_and_server
    await start_intake(page, server)

    server.last.send("error", code="superseded", message="This conversation continued on another connection.")
    await server.last.route.close(code=4409, reason="superseded")

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "superseded")
    await expect(page.get_by_role("alert")).to_have_text(
        "This conversation carried on in another window or tab. You can close this one."
    )
    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == 1
    # And a new intake still starts from here.
    await page.get_by_role("button", name="Start a new intake").click()
    await until(lambda: len(server.sockets) == 2, "a new intake")
    server.last.ready("s2", "u1")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    assert all(message["type"] != "resume" for message in server.last.texts)


async def test_a_drop_after_intake_complete_does_not_reconnect(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    page, server = page_and_server
    await start_intake(page, server)
    server.last.send("extracted_data", data=RECORD, final=True)
    server.last.send("intake_complete", message="Your intake is saved.")
    await expect(page.get_by_test_id("intake-complete")).to_be_visible()

    await server.last.route.close(code=1006)

    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == 1
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "done")


async def test_a_drop_after_end_session_does_not_reconnect(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    page, server = page_and_server
    await start_intake(page, server)

    await page.get_by_role("button", name="End conversation").click()
    await until(lambda: {"type": "end_session"} in server.last.texts, "end_session")
    await server.last.route.close(code=1006)

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ended")
    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == 1


@pytest.mark.parametrize("code", [1000, 1008, 1011])
async def test_other_closes_do_not_reconnect(page_and_server: tuple[Page, ResumingServer], code: int) -> None:
    page, server = page_and_server
    await start_intake(page, server)

    await server.last.route.close(code=code)

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == 1
    await expect(page.get_by_role("button", name="Reconnect")).to_be_visible()


async def test_a_restart_that_refuses_the_first_resume_is_retried_until_it_takes(
    page_and_server: tuple[Page, ResumingServer],
) -> None:
    # The old process closes 1001 and, still shutting down, refuses the next socket with 1013.
    page, server = page_and_server
    await start_intake(page, server)
    await server.last.route.close(code=1001)
    refused = await reconnects(page, server, 2)
    await refused.route.close(code=1013)
    back = await reconnects(page, server, 3)
    assert back.texts[0] == {"type": "resume", "session_id": "s1", "resume_token": "t1"}
    back.ready("s1", "t2", resumed=True)
    back.send("history", turns=[], record=None)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")


async def test_retries_back_off_and_give_up_when_the_server_would_have(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site, fake_clock=True)
    await start_intake(page, server)
    server.last.send("transcript", role="patient", text="My head hurts.")
    await expect(transcript_of(page)).to_have_count(1)
    server.unreachable = True
    await server.last.route.close(code=1006)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "reconnecting")
    await until(lambda: len(server.sockets) >= 4, "three retries", within=10)
    # 0.5 + 1 + 2 s: the first retries come quickly, then they spread out.
    await asyncio.sleep(1.0)
    assert len(server.sockets) == 4
    await expect(transcript_of(page)).to_have_text(["My head hurts."])

    # Two minutes on (the server's default RESUME_GRACE_SECONDS), the page gives up.
    await page.clock.fast_forward(121_000)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error", timeout=10_000)
    await expect(page.get_by_role("alert")).to_contain_text("could not be restored")
    reconnect = page.get_by_role("button", name="Reconnect")
    await expect(reconnect).to_be_visible()
    tries = len(server.sockets)
    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == tries
    await page.close()
    assert console.errors == []


async def test_kiosk_moving_to_the_next_patient_cancels_the_reconnect(
    browser: BrowserContext, static_site: str
) -> None:
    kiosk = {
        "kiosk_mode": True,
        "kiosk_review_seconds": 30,
        "kiosk_idle_seconds": 90,
        "kiosk_idle_answer_seconds": 20,
    }
    page, server, console = await open_page(browser, static_site, kiosk)
    await start_intake(page, server)
    server.last.send("transcript", role="patient", text="My name is Ada Quill.")
    await expect(transcript_of(page)).to_have_count(1)
    server.unreachable = True
    await server.last.route.close(code=1006)
    await until(lambda: len(server.sockets) >= 2, "a first retry")

    # The patient leaves mid-reconnect: the kiosk forgets them by loading the page afresh.
    await page.evaluate("window.beforeForgetting = true")
    await page.get_by_role("button", name="End conversation").click()
    await page.wait_for_function("window.beforeForgetting === undefined")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle", timeout=5000)
    assert "Ada Quill" not in await page.content()
    tries = len(server.sockets)
    await asyncio.sleep(NO_RETRY_SECONDS)
    assert len(server.sockets) == tries, "the page went on reconnecting for the patient who left"

    server.unreachable = False
    await page.get_by_test_id("start").click()
    await until(lambda: len(server.sockets) == tries + 1, "the next patient's intake")
    server.last.ready("s2", "u1")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    assert all(message["type"] != "resume" for message in server.last.texts)
    await page.close()
    assert console.errors == []


RECONCILE = """async ({ shown, history }) => {
  const { reconcile } = await import('/resume.js');
  return reconcile(shown, history);
}"""


def said(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "text": text} for role, text in turns]


@pytest.mark.parametrize(
    ("shown", "history", "complete", "append"),
    [
        # Everything arrived: nothing to add.
        (
            said(("assistant", "Hi."), ("patient", "Hello.")),
            said(("assistant", "Hi."), ("patient", " Hello. ")),
            [],
            [],
        ),
        # Turns sent while the socket was down are appended.
        (
            said(("assistant", "Hi.")),
            said(("assistant", "Hi."), ("patient", "Hello.")),
            [],
            said(("patient", "Hello.")),
        ),
        # A reply cut off by the drop is completed in place, not shown twice.
        (
            said(("assistant", "Hi."), ("patient", "Hello."), ("assistant", "How long")),
            said(("assistant", "Hi."), ("patient", "Hello."), ("assistant", "How long has it hurt?")),
            [{"index": 2, "text": "How long has it hurt?"}],
            [],
        ),
        # The turn in progress was lost on the server: the page keeps what it showed.
        (said(("assistant", "Hi."), ("patient", "Hello.")), said(("assistant", "Hi.")), [], []),
        # Split into turns differently: only what follows the page's last turn is new.
        (
            said(("assistant", "Hi."), ("assistant", "What brings you in?"), ("patient", "Headaches.")),
            said(
                ("assistant", "Hi. What brings you in?"),
                ("patient", "Headaches."),
                ("assistant", "Since when?"),
            ),
            [],
            said(("assistant", "Since when?")),
        ),
        # Nothing in common (the server kept a different conversation): the page adds nothing.
        (said(("patient", "Yes.")), said(("assistant", "Hi."), ("patient", "No.")), [], []),
    ],
)
async def test_history_meets_the_transcript_without_repeating_it(
    browser: BrowserContext,
    static_site: str,
    shown: list[dict[str, str]],
    history: list[dict[str, str]],
    complete: list[dict[str, object]],
    append: list[dict[str, str]],
) -> None:
    page = await browser.new_page()
    await page.goto(f"{static_site}/")
    history_turns = [{"type": "transcript", **turn} for turn in history]

    result = await page.evaluate(RECONCILE, {"shown": shown, "history": history_turns})

    assert result["complete"] == complete
    assert [{"role": turn["role"], "text": turn["text"]} for turn in result["append"]] == append
    await page.close()
