"""The patient's page in Chromium when the model flags an emergency: a full-width alert that stays."""

from pathlib import Path

import pytest
from playwright.async_api import expect

from config import Settings
from tests.browser.clinic_support import STAFF_TOKEN, clinic_server
from tests.browser.conftest import FAKE_MICROPHONE, Console, chromium
from tests.browser.test_intake_e2e import free_port, patient_recording

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]


async def test_the_emergency_alert_appears_within_two_seconds_and_stays(tmp_path: Path) -> None:
    wav, seconds = patient_recording("chest_pain_emergency", tmp_path)
    microphone = f"--use-file-for-fake-audio-capture={wav}%noloop"
    async with (
        clinic_server(free_port(), "chest_pain_emergency", tmp_path, time_scale=0.5) as base,
        chromium(tmp_path / "profile", *FAKE_MICROPHONE, microphone) as context,
    ):
        page = await context.new_page()
        console = Console.watch(page)
        await page.goto(f"{base}/app/")
        alert = page.get_by_test_id("emergency-alert")
        await expect(alert).to_be_hidden()
        await page.get_by_test_id("start").click()
        await expect(alert).to_be_visible(timeout=(seconds + 15) * 1000)
        assert await alert.get_attribute("role") == "alert"
        await expect(alert).to_contain_text(Settings.model_fields["EMERGENCY_INSTRUCTIONS"].default)
        shown_after = await page.evaluate("window.intakeDebug.emergencyAfterPatientMs")
        assert shown_after < 2000
        # Full width, above everything else on the page.
        box = await alert.bounding_box()
        width = await page.evaluate("document.documentElement.clientWidth")
        assert box is not None and box["y"] == 0 and abs(box["width"] - width) < 1
        # The conversation goes on (the model's next turn arrives) and the alert stays.
        turns = page.get_by_test_id("transcript").locator('.turn[data-role="assistant"]')
        await expect(turns).to_have_count(3, timeout=20_000)
        await expect(alert).to_be_visible()
        assert console.errors == []

        # Staff see the intake flagged red in the workspace's queue.
        staff = await context.new_page()
        await staff.goto(f"{base}/clinic/")
        await staff.get_by_label("Staff token").fill(STAFF_TOKEN)
        await staff.get_by_test_id("sign-in").click()
        await staff.get_by_test_id("show-practice").check()
        flag = staff.get_by_test_id("queue-item").get_by_test_id("emergency-flag")
        await expect(flag).to_have_text("Emergency flagged")
