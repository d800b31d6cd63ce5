"""The access token in real Chromium: a link's fragment or the form opens the page, the cookie
opens the API and the socket, and the page runs under its Content-Security-Policy."""

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser.conftest import Console, chromium
from tests.test_edge import ServerProcess

TOKEN = "tok-browser-4417"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_a_link_with_the_token_in_its_fragment_opens_the_page_without_logging_it(tmp_path: Path):
    server = ServerProcess(tmp_path, ACCESS_TOKEN=TOKEN)
    try:
        server.wait_healthy()
        async with chromium(tmp_path / "profile") as context:
            page = await context.new_page()
            console = Console.watch(page)
            await page.goto(f"{server.base_url}/app/#token={TOKEN}")
            await page.wait_for_url(f"{server.base_url}/app/")
            await expect(page.get_by_test_id("status")).to_be_visible()
            assert TOKEN not in page.url
            assert await page.evaluate("fetch('/api-key-status').then(r => r.status)") == 200
            # Chromium reports the login page's own 401 as an error; a CSP violation would show here.
            assert [e for e in console.errors if "status of 401" not in e] == []
    finally:
        server.stop()
    assert TOKEN not in server.text()


async def test_the_form_refuses_a_wrong_code_then_accepts_the_right_one(tmp_path: Path):
    server = ServerProcess(tmp_path, ACCESS_TOKEN=TOKEN)
    try:
        server.wait_healthy()
        async with chromium(tmp_path / "profile") as context:
            page = await context.new_page()
            await page.goto(f"{server.base_url}/app/")
            await page.fill("input[name=token]", "not-the-code")
            await page.click("button[type=submit]")
            await expect(page.get_by_text("was not accepted")).to_be_visible()
            await page.fill("input[name=token]", TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{server.base_url}/app/")
            await expect(page.get_by_test_id("status")).to_be_visible()
    finally:
        server.stop()
