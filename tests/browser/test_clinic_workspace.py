"""The staff workspace in Chromium against the real server: a simulated patient completes an intake
while staff watch the queue; staff correct a dose, see the new version and download the FHIR bundle."""

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from bench.patient import converse, open_browser
from tests.browser.clinic_support import STAFF_TOKEN, clinic_server
from tests.browser.conftest import Console, chromium
from tests.browser.test_intake_e2e import free_port

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]


async def test_staff_see_a_new_intake_correct_a_dose_and_download_the_corrected_fhir_bundle(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with (
        clinic_server(port, "dose_correction", tmp_path, time_scale=0.05, MAX_AUDIO_SPEED="1000") as base,
        chromium(
            tmp_path / "profile", accept_downloads=True, viewport={"width": 1280, "height": 800}
        ) as context,
    ):
        page = await context.new_page()
        console = Console.watch(page)
        await page.goto(f"{base}/clinic/")

        await page.get_by_test_id("staff-token").fill("not-a-staff-token-at-all")
        await page.get_by_test_id("sign-in").click()
        await expect(page.get_by_role("alert").first).to_contain_text("not accepted")
        # Keyboard only: the label names the field, Enter signs in.
        await page.get_by_label("Staff token").fill(STAFF_TOKEN)
        await page.get_by_label("Staff token").press("Enter")
        queue = page.get_by_test_id("queue")
        await expect(queue).to_be_visible()
        await page.get_by_test_id("show-practice").check()
        await expect(queue).to_contain_text("No intakes yet today.")

        # A patient completes an intake through the simulator while the page stays open.
        patient = await open_browser(f"ws://127.0.0.1:{port}/ws", "sim:dose_correction")
        await converse(patient, "dose_correction")
        await patient.close()
        item = page.get_by_test_id("queue-item").filter(has_text="Ana Silva")
        await expect(item).to_have_attribute("data-status", "completed", timeout=15_000)

        await item.click()
        record = page.get_by_test_id("record")
        await expect(record).to_contain_text("lisinopril")
        await expect(page.get_by_test_id("transcript")).to_contain_text("10 milligrams")
        dose = record.locator('dd[data-path="medications[0].dose"]')
        await expect(dose).to_contain_text("10 mg")
        await dose.get_by_test_id("edit-field").click()
        await page.get_by_label("New value for medications[0].dose").fill("15 mg")
        await page.get_by_label("Reason for the change").fill("Pharmacy record says 15 mg")
        await page.get_by_test_id("save-edit").click()

        await expect(dose).to_contain_text("15 mg")
        newest = page.get_by_test_id("versions").locator("li").first
        await expect(newest).to_contain_text("corrected by dana: Pharmacy record says 15 mg")

        await page.get_by_test_id("mark-reviewed").click()
        await expect(page.get_by_test_id("review-state")).to_contain_text("Reviewed by dana")

        async with page.expect_download() as info:
            await page.get_by_test_id("download-fhir").click()
        bundle = json.loads((await (await info.value).path()).read_text())
        statements = [
            entry["resource"]
            for entry in bundle["entry"]
            if entry["resource"]["resourceType"] == "MedicationStatement"
        ]
        assert any("15 mg" in json.dumps(s) for s in statements)
        assert not any("10 mg" in json.dumps(s) for s in statements)
        # The browser reports the refused sign-in's 401 itself; nothing else went wrong.
        assert [e for e in console.errors if "status of 401" not in e] == []
        assert len(console.errors) == 1
