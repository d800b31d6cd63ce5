"""The intake page against a scripted stand-in for the server: Playwright answers the page's
WebSocket and /api-key-status itself, so each protocol case is exact and fast."""

import json
import math
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import ARTIFACTS, FAKE_MICROPHONE, Console, chromium, until

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SIMULATOR_KEY_STATUS = {
    "configured": True,
    "source": "simulator",
    "upstream": "simulator",
    "browser_key_required": False,
}
PAGE_CONFIG = {"kiosk_mode": False}
NO_KEY_STATUS = {
    "configured": False,
    "source": "none",
    "upstream": "google",
    "browser_key_required": True,
}
RECORD = {
    "patient_info": {
        "name": "James Carter",
        "date_of_birth": "1961-03-04",
        "phone": "555-201-3344",
    },
    "present_illness": {
        "chief_complaints": [{"complaint": "follow-up for blood pressure", "duration": "3 months"}],
        "symptoms": ["high morning blood sugar"],
        "timeline": None,
    },
    "medications": [
        {"name": "lisinopril", "dose": "10 mg", "frequency": "once daily", "route": "oral"},
        {"name": "metformin", "dose": "500 mg", "frequency": "twice daily", "route": "oral"},
    ],
    "allergies": [
        {
            "allergen": "penicillin",
            "reaction": ["anaphylaxis", "hives"],
            "severity": "life-threatening",
            "requires_emergency_treatment": True,
        },
        {"allergen": "sulfa drugs", "reaction": ["rash"], "severity": "mild"},
    ],
    "past_medical_history": {"conditions": ["hypertension", "type 2 diabetes"], "surgeries": []},
    "family_history": {"conditions": ["heart disease"]},
    "social_history": {"smoking": "never", "alcohol": "one glass of wine a week"},
}


@dataclass
class FakeServer:
    """Plays the server's side of /ws and records what the page sent."""

    sockets: list[WebSocketRoute] = field(default_factory=list)
    messages: list[dict[str, object]] = field(default_factory=list)
    frame_sizes: list[int] = field(default_factory=list)

    def accept(self, socket: WebSocketRoute) -> None:
        self.sockets.append(socket)
        socket.on_message(self._received)

    def _received(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.frame_sizes.append(len(message))
        else:
            self.messages.append(json.loads(message))

    def send(self, type: str, **fields: object) -> None:
        self.sockets[-1].send(json.dumps({"type": type, **fields}))

    def ready(self) -> None:
        self.send("status", state="ready", message="Connected", upstream="simulator", session_id="s1")

    def send_tone(self, seconds: float, chunk_seconds: float = 0.04) -> None:
        """24 kHz PCM16 of a 440 Hz tone, in chunks the way the server relays it."""
        rate = 24000
        samples = [int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate))]
        step = int(chunk_seconds * rate)
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step]
            self.sockets[-1].send(struct.pack(f"<{len(chunk)}h", *chunk))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    async with chromium(
        tmp_path_factory.mktemp("profile"), *FAKE_MICROPHONE, accept_downloads=True
    ) as context:
        yield context


async def open_page(
    browser: BrowserContext, site: str, key_status: dict[str, object] = SIMULATOR_KEY_STATUS
) -> tuple[Page, FakeServer, Console]:
    page = await browser.new_page()
    console = Console.watch(page)
    server = FakeServer()
    await page.route("**/api-key-status", lambda route: route.fulfill(json=key_status))
    await page.route("**/config", lambda route: route.fulfill(json=PAGE_CONFIG))
    await page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), server.accept)
    await page.goto(f"{site}/")
    return page, server, console


async def start_listening(page: Page, server: FakeServer) -> None:
    await page.get_by_test_id("start").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connecting")
    await page.wait_for_function("() => document.querySelector('[data-testid=stop]').offsetParent")
    await until(lambda: len(server.sockets) == 1, "the page to connect")
    server.ready()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")


@pytest_asyncio.fixture(loop_scope="module")
async def session(browser: BrowserContext, static_site: str) -> AsyncIterator[tuple[Page, FakeServer]]:
    page, server, console = await open_page(browser, static_site)
    await start_listening(page, server)
    yield page, server
    await page.close()
    assert console.errors == []


async def test_page_loads_idle_without_console_errors(browser: BrowserContext, static_site: str) -> None:
    page, _, console = await open_page(browser, static_site)

    status = page.get_by_test_id("status")
    await expect(status).to_have_attribute("data-state", "idle")
    await expect(status).to_contain_text("Ready to start")
    await expect(page.get_by_test_id("start")).to_be_visible()
    await expect(page.get_by_test_id("api-key")).to_be_hidden()
    await expect(page.get_by_text("Practice mode")).to_be_visible()
    await expect(page.get_by_test_id("record").locator("[data-filled=true]")).to_have_count(0)
    assert console.errors == []
    await page.close()


async def test_microphone_goes_out_as_100ms_pcm16_frames(session: tuple[Page, FakeServer]) -> None:
    page, server = session

    await until(lambda: len(server.frame_sizes) > 5, "microphone frames")
    assert set(server.frame_sizes) == {3200}
    debug = await page.evaluate("window.intakeDebug")
    assert debug["bytesSent"] >= 3200 * 5
    await expect(page.get_by_role("meter", name="Microphone level")).to_be_visible()


async def test_transcript_joins_pieces_of_one_role_until_the_turn_ends(
    session: tuple[Page, FakeServer],
) -> None:
    page, server = session

    server.send("transcript", role="assistant", text="Hello, what ")
    server.send("transcript", role="assistant", text="brings you in?")
    server.send("transcript", role="patient", text="My head")
    server.send("transcript", role="patient", text=" hurts.")
    server.send("transcript", role="assistant", text="I'm sorry.")
    server.send("turn_complete")
    server.send("transcript", role="assistant", text="How long?")

    transcript = page.get_by_test_id("transcript")
    await expect(transcript.locator(".turn")).to_have_count(4)
    await expect(transcript.locator(".turn .turn__text")).to_have_text(
        ["Hello, what brings you in?", "My head hurts.", "I'm sorry.", "How long?"]
    )
    roles = await transcript.locator(".turn").evaluate_all("turns => turns.map(t => t.dataset.role)")
    assert roles == ["assistant", "patient", "assistant", "assistant"]
    await expect(transcript).to_have_attribute("aria-live", "polite")


async def test_record_fills_in_section_by_section(session: tuple[Page, FakeServer]) -> None:
    page, server = session
    record = page.get_by_test_id("record")

    server.send("extracted_data", data={"patient_info": RECORD["patient_info"]}, final=False)
    await expect(record.locator("[data-section=patient]")).to_have_attribute("data-filled", "true")
    await expect(record.locator("[data-section=patient]")).to_contain_text("James Carter")
    await expect(record.locator("[data-section=medications]")).to_have_attribute("data-filled", "false")

    server.send("extracted_data", data=RECORD, final=False)
    for section in ("patient", "complaints", "medications", "allergies", "history", "social"):
        await expect(record.locator(f"[data-section={section}]")).to_have_attribute("data-filled", "true")
    await expect(record.locator("[data-section=medications] .item")).to_have_count(2)
    critical = record.locator(".allergy--critical")
    await expect(critical).to_have_count(1)
    await expect(critical).to_contain_text("Penicillin")
    await expect(critical).to_contain_text("Life-threatening")
    await expect(record.get_by_test_id("critical-allergy")).to_contain_text("Penicillin")
    # The critical allergy is set apart by colour, not only by words.
    colour = await critical.evaluate("el => getComputedStyle(el).borderTopColor")
    mild = await record.locator(".allergy:not(.allergy--critical)").evaluate(
        "el => getComputedStyle(el).borderTopColor"
    )
    assert colour != mild


async def test_interrupted_flushes_playback_at_once(session: tuple[Page, FakeServer]) -> None:
    page, server = session

    server.send_tone(3.0)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "speaking")
    await page.wait_for_function("() => window.intakeDebug.secondsPlayed > 0.3")
    server.send("interrupted")
    await page.wait_for_function("() => window.intakeDebug.interruptions[0]?.framesAfterCheck != null")

    interruption = (await page.evaluate("window.intakeDebug.interruptions"))[0]
    assert interruption["flushMs"] < 300
    assert interruption["droppedSeconds"] > 1.5, "most of the 3 s reply should have been dropped"
    assert interruption["framesAfterCheck"] == interruption["framesAtFlush"], "audio kept playing"
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")


async def test_intake_complete_shows_the_review_and_downloads_json(
    session: tuple[Page, FakeServer],
) -> None:
    page, server = session

    server.send("transcript", role="assistant", text="Thank you, your intake is complete.")
    server.send("extracted_data", data=RECORD, final=True)
    server.send("intake_complete", message="Medical intake completed successfully")

    review = page.get_by_test_id("intake-complete")
    await expect(review).to_be_visible()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "done")
    await expect(review.get_by_role("heading", level=2)).to_be_focused()
    await expect(review).to_contain_text("James Carter")
    await expect(review.locator(".allergy--critical")).to_contain_text("Penicillin")
    await expect(page.get_by_test_id("record")).to_be_hidden()
    async with page.expect_download() as download_info:
        await review.get_by_role("button", name="Download JSON").click()
    download = await download_info.value
    assert json.loads((await download.path()).read_text()) == RECORD


async def test_stop_and_end_send_their_control_messages(session: tuple[Page, FakeServer]) -> None:
    page, server = session

    await page.get_by_test_id("stop").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "paused")
    await expect(page.get_by_test_id("start")).to_have_text("Resume microphone")
    await page.get_by_test_id("start").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    await page.get_by_role("button", name="End conversation").click()
    await until(lambda: len(server.messages) == 3, "three control messages")
    assert server.messages == (
        [
            {"type": "control", "action": "stop"},
            {"type": "control", "action": "start"},
            {"type": "end_session"},
        ]
    )
    await server.sockets[-1].close(code=1000)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "ended")


async def test_passing_errors_are_notices_and_the_conversation_goes_on(
    session: tuple[Page, FakeServer],
) -> None:
    page, server = session

    server.send("error", code="audio_dropped", message="dropped 2.0 s of audio during a reconnect")

    await expect(page.get_by_role("status").filter(has_text="speech was lost")).to_be_visible()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    await expect(page.get_by_role("alert")).to_be_hidden()


async def test_a_dropped_connection_offers_reconnect(session: tuple[Page, FakeServer]) -> None:
    page, server = session

    server.send("error", code="too_many_sessions", message="MAX_SESSIONS reached")
    await server.sockets[-1].close(code=1013)

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    await expect(page.get_by_role("alert")).to_contain_text("busy with other patients")
    reconnect = page.get_by_role("button", name="Reconnect")
    await expect(reconnect).to_be_visible()
    await reconnect.click()
    await until(lambda: len(server.sockets) == 2, "the page to reconnect")
    server.ready()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    await expect(page.get_by_role("alert")).to_be_hidden()


async def test_connection_lost_without_an_error_says_so(session: tuple[Page, FakeServer]) -> None:
    page, server = session

    await server.sockets[-1].close(code=1006)

    await expect(page.get_by_role("alert")).to_have_text("The connection to the clinic was lost.")
    await expect(page.get_by_role("button", name="Reconnect")).to_be_visible()


async def test_api_key_is_asked_for_kept_in_the_tab_and_sent(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site, NO_KEY_STATUS)

    key = page.get_by_test_id("api-key")
    await expect(key).to_be_visible()
    await expect(page.get_by_text("Practice mode")).to_be_hidden()
    await page.get_by_test_id("start").click()
    await expect(page.get_by_role("alert")).to_contain_text("enter the Gemini API key")
    await expect(key).to_be_focused()
    assert server.sockets == []

    await key.fill("AIza-test-key")
    await page.get_by_test_id("start").click()
    await until(lambda: len(server.sockets) == 1, "the page to connect")
    assert "api_key=AIza-test-key" in server.sockets[0].url
    assert await page.evaluate("sessionStorage.getItem('intake.geminiApiKey')") == "AIza-test-key"
    assert await page.evaluate("localStorage.length") == 0
    assert console.errors == []
    await page.close()


async def test_the_controls_work_from_the_keyboard(browser: BrowserContext, static_site: str) -> None:
    page, server, _ = await open_page(browser, static_site)

    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.testid") == "start":
            break
    await page.keyboard.press("Enter")
    await until(lambda: len(server.sockets) == 1, "the page to connect")
    server.ready()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    # The start button hid itself; focus moved to its counterpart instead of the page body.
    await expect(page.get_by_test_id("stop")).to_be_focused()
    await page.keyboard.press("Space")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "paused")
    await expect(page.get_by_test_id("start")).to_be_focused()
    await page.close()


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (360, 740, "phone")])
async def test_layout_fits_the_screen(
    browser: BrowserContext, static_site: str, width: int, height: int, name: str
) -> None:
    page, server, _ = await open_page(browser, static_site)
    await page.set_viewport_size({"width": width, "height": height})
    await start_listening(page, server)
    server.send("transcript", role="assistant", text="Hello, what brings you in today?")
    server.send("turn_complete")
    server.send("transcript", role="patient", text="A follow-up on my blood pressure and diabetes.")
    server.send("extracted_data", data=RECORD, final=False)
    await expect(page.get_by_test_id("record").locator(".allergy--critical")).to_be_visible()

    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"conversation-{name}.png", full_page=True, animations="disabled")

    server.send("intake_complete", message="Medical intake completed successfully")
    await expect(page.get_by_test_id("intake-complete")).to_be_visible()
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    await page.screenshot(path=ARTIFACTS / f"review-{name}.png", full_page=True, animations="disabled")
    await page.close()


async def test_a_refused_session_without_a_key_asks_for_one(
    session: tuple[Page, FakeServer],
) -> None:
    page, server = session

    server.send("error", code="no_api_key", message="No Gemini API key")
    await server.sockets[-1].close(code=1008)

    await expect(page.get_by_role("alert")).to_contain_text("needs a Gemini API key")
    key = page.get_by_test_id("api-key")
    await expect(key).to_be_focused()
    await key.fill("AIza-second-try")
    await page.get_by_role("button", name="Reconnect").click()
    await until(lambda: len(server.sockets) == 2, "the page to reconnect")
    assert "api_key=AIza-second-try" in server.sockets[1].url
