"""The page in kiosk mode and on a non-secure origin, against a scripted stand-in for the server
(Playwright answers /app/config, /api-key-status and the WebSocket), with a silent microphone so
only what the test does counts as the patient being there."""

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from simulator.speech import write_wav
from tests.browser.conftest import FAKE_MICROPHONE, Console, chromium, until
from tests.browser.test_page import NO_KEY_STATUS, RECORD, SIMULATOR_KEY_STATUS, FakeServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

KIOSK = {
    "kiosk_mode": True,
    "kiosk_review_seconds": 30,
    "kiosk_idle_seconds": 1.5,
    "kiosk_idle_answer_seconds": 2,
}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    directory = tmp_path_factory.mktemp("kiosk-page")
    silence = directory / "silence.wav"
    write_wav(silence, bytes(16000 * 2 * 120), 16000)
    async with chromium(
        directory / "profile",
        *FAKE_MICROPHONE,
        f"--use-file-for-fake-audio-capture={silence}%noloop",
        # clinic.test stands in for the server's LAN address: not loopback, so not secure.
        "--host-resolver-rules=MAP clinic.test 127.0.0.1",
        accept_downloads=True,
    ) as context:
        yield context


async def open_page(
    browser: BrowserContext,
    site: str,
    config: dict[str, object] = KIOSK,
    key_status: dict[str, object] = SIMULATOR_KEY_STATUS,
) -> tuple[Page, FakeServer, Console]:
    page = await browser.new_page()
    console = Console.watch(page)
    server = FakeServer()
    await page.route("**/config", lambda route: route.fulfill(json=config))
    await page.route("**/api-key-status", lambda route: route.fulfill(json=key_status))
    await page.route_web_socket(re.compile(r".*/ws(\?.*)?$"), server.accept)
    await page.goto(f"{site}/")
    return page, server, console


async def start_listening(page: Page, server: FakeServer, sockets: int = 1) -> None:
    await page.get_by_test_id("start").click()
    await until(lambda: len(server.sockets) == sockets, "the page to connect")
    server.ready()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")


def sent_types(server: FakeServer) -> list[object]:
    return [message["type"] for message in server.messages]


async def test_idle_intake_asks_and_carries_on_when_answered(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site)
    await start_listening(page, server)
    server.send("transcript", role="assistant", text="What brings you in today?")

    prompt = page.get_by_test_id("idle-prompt")
    await expect(prompt).to_be_visible(timeout=5000)
    await expect(prompt).to_contain_text("Are you still there?")
    await page.get_by_test_id("still-here").click()

    await expect(prompt).to_be_hidden()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening")
    server.send("transcript", role="assistant", text="Take your time.")
    await expect(page.get_by_test_id("transcript")).to_contain_text("Take your time.")
    assert "end_session" not in sent_types(server)
    assert console.errors == []
    await page.close()


async def test_unanswered_idle_prompt_ends_the_intake_and_clears_the_page(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site)
    await start_listening(page, server)
    server.send("transcript", role="patient", text="My name is Ada Quill.")
    await expect(page.get_by_test_id("transcript")).to_contain_text("Ada Quill")

    await expect(page.get_by_test_id("idle-prompt")).to_be_visible(timeout=5000)
    await until(lambda: "end_session" in sent_types(server), "end_session", within=5)
    await page.evaluate("window.beforeForgetting = true")
    await server.sockets[-1].close(code=1000, reason="end_session")
    # The page forgets the patient by loading itself afresh (after the close, or after a short
    # wait for it): a document without the mark is the new one.
    await page.wait_for_function("window.beforeForgetting === undefined")

    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle", timeout=5000)
    await expect(page.get_by_test_id("idle-prompt")).to_be_hidden()
    assert "Ada Quill" not in await page.content()
    # The next patient starts as the first did.
    await start_listening(page, server, sockets=2)
    assert console.errors == []
    await page.close()


async def test_review_offers_the_download_then_done_forgets_the_patient(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site)
    await start_listening(page, server)
    server.send("transcript", role="patient", text="I am James Carter.")
    server.send("extracted_data", data=RECORD, final=True)
    server.send("intake_complete", message="Your intake is saved.")

    review = page.get_by_test_id("intake-complete")
    await expect(review).to_be_visible()
    await expect(review).to_contain_text("James Carter")
    await expect(page.get_by_test_id("review-countdown")).to_contain_text("clears in")
    async with page.expect_download() as download:
        await page.get_by_test_id("download").click()
    saved = await (await download.value).path()
    assert "James Carter" in await asyncio.to_thread(saved.read_text)

    await page.get_by_role("button", name="Done").click()
    await until(lambda: "end_session" in sent_types(server), "end_session")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle", timeout=5000)
    await expect(review).to_be_hidden()
    assert "James Carter" not in await page.content()
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
    assert console.errors == []
    await page.close()


async def test_review_clears_itself_after_the_review_time(browser: BrowserContext, static_site: str) -> None:
    page, server, console = await open_page(browser, static_site, {**KIOSK, "kiosk_review_seconds": 1})
    await start_listening(page, server)
    server.send("extracted_data", data=RECORD, final=True)
    server.send("intake_complete", message="Your intake is saved.")
    await expect(page.get_by_test_id("intake-complete")).to_be_visible()

    await expect(page.get_by_test_id("intake-complete")).to_be_hidden(timeout=5000)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle")
    assert "James Carter" not in await page.content()
    assert console.errors == []
    await page.close()


async def test_kiosk_never_shows_the_key_field(browser: BrowserContext, static_site: str) -> None:
    page, _, console = await open_page(browser, static_site, key_status=NO_KEY_STATUS)

    await expect(page.get_by_role("alert")).to_contain_text("not set up yet")
    await expect(page.get_by_test_id("api-key")).to_be_hidden()
    assert console.errors == []
    await page.close()


async def test_server_ending_a_finished_intake_is_the_normal_end(
    browser: BrowserContext, static_site: str
) -> None:
    page, server, console = await open_page(browser, static_site, {"kiosk_mode": False})
    await start_listening(page, server)
    server.send("extracted_data", data=RECORD, final=True)
    server.send("intake_complete", message="Your intake is saved.")
    server.send("transcript", role="assistant", text="Thank you, goodbye.")
    await server.sockets[-1].close(code=1000, reason="intake_complete")

    await expect(page.get_by_test_id("intake-complete")).to_be_visible()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "done")
    await expect(page.get_by_role("alert")).to_be_hidden()
    await expect(page.get_by_test_id("reconnect")).to_be_hidden()
    # Leaving the review starts afresh, still as an ordinary page.
    # With the socket already closed by the server, leaving the review loads the page afresh.
    await page.evaluate("window.beforeForgetting = true")
    await page.get_by_role("button", name="Start a new intake").click()
    await page.wait_for_function("window.beforeForgetting === undefined")
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle", timeout=5000)
    await start_listening(page, server, sockets=2)
    assert console.errors == []
    await page.close()


async def test_a_non_secure_origin_says_the_microphone_needs_https(
    browser: BrowserContext, static_site: str
) -> None:
    port = static_site.rsplit(":", 1)[1]
    page, server, console = await open_page(browser, f"http://clinic.test:{port}", {"kiosk_mode": False})

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("only works on a secure page")
    await expect(alert).to_contain_text(f"https://clinic.test:{port}/")
    await expect(alert).not_to_contain_text("current version")
    await page.get_by_test_id("start").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle")
    assert server.sockets == []
    assert console.errors == []
    await page.close()
