"""The waiting-room tablet, whole: `python main.py` with TLS_SELF_SIGNED and KIOSK_MODE on
127.0.0.2 (standing in for the laptop's LAN address), its built-in simulator, and headless
Chromium that ignores certificate errors as a tablet does once it trusts the clinic CA. Two
patients hold intakes back to back on one page; each test checks one claim about that run."""

import asyncio
import contextlib
import json
import os
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect
from playwright.async_api import Error as PlaywrightError

from simulator import RunningSimulator
from simulator.scenarios import Scenario, load_scenario
from simulator.server import SimulatorConfig, start_simulator
from simulator.speech import conversation_audio, write_wav
from tests.browser.conftest import FAKE_MICROPHONE, REPO, Console, chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

LAN_HOST = "127.0.0.2"
FIRST, SECOND = "simple_visit", "medications_allergy"
TIME_SCALE = 0.5
# Long enough for the test to download and take heap snapshots on a busy machine.
REVIEW_SECONDS = 10
PATIENT_RATE = 16000
WRAP_UP_SECONDS = 30


@dataclass
class Patient:
    scenario: Scenario
    review_text: str = ""
    download: dict[str, Any] | None = None
    back_at_start_after: float | None = None
    # The probe's own check: on the review, it must find the patient everywhere it looks.
    at_review: list[str] = field(default_factory=list)
    in_memory_at_review: list[str] = field(default_factory=list)
    # What the page held once it was back at Start, and while the next patient talked.
    after: list[str] = field(default_factory=list)


@dataclass
class TabletRun:
    page_url: str = ""
    socket_urls: list[str] = field(default_factory=list)
    served_certificate_names: list[str] = field(default_factory=list)
    first: Patient = field(default_factory=lambda: Patient(load_scenario(FIRST)))
    second: Patient = field(default_factory=lambda: Patient(load_scenario(SECOND)))
    # Every look at the page during the second intake: (moment, first patient's words found).
    during_second: list[tuple[str, list[str]]] = field(default_factory=list)
    console: Console = field(default_factory=Console)
    failure: str | None = None

    def check(self) -> "TabletRun":
        if self.failure:
            pytest.fail(f"the tablet run did not finish: {self.failure}")
        return self


def identifying_words(scenario: Scenario) -> list[str]:
    """Words only this patient said or has in their record."""
    record = scenario.record
    words = [record["patient_info"]["name"]]
    words += [medication["name"] for medication in record.get("medications", [])]
    words += [turn.split(".")[0] for turn in scenario.patient_turns[:2]]
    return words


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def tablet_server(directory: Path, sim: RunningSimulator) -> AsyncIterator[tuple[str, Path]]:
    port = free_port(LAN_HOST)
    log = directory / "server.log"
    env = {
        **os.environ,
        "HOST": LAN_HOST,
        "PORT": str(port),
        "TLS_SELF_SIGNED": "true",
        "DATA_DIR": str(directory / "data"),
        "KIOSK_MODE": "true",
        "KIOSK_REVIEW_SECONDS": str(REVIEW_SECONDS),
        # A simulator of the test's own, with its control endpoints (an embedded one has none),
        # so the test can switch patients between the two intakes.
        "GEMINI_BASE_URL": sim.base_url,
        "GEMINI_CA_FILE": str(sim.ca_file),
        "GEMINI_API_KEY": "tablet-test-key",
    }
    base = f"https://{LAN_HOST}:{port}"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", cwd=REPO, env=env, stdout=output, stderr=output
        )
        try:
            await wait_until_healthy(base, process, directory / "data" / "tls" / "clinic-ca.crt")
            yield base, log
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def wait_until_healthy(base: str, process: asyncio.subprocess.Process, ca_file: Path) -> None:
    async with asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"main.py exited with {process.returncode} during start-up")
            if await asyncio.to_thread(ca_file.is_file):
                # Checked against the clinic CA the server made: a plain or untrusted
                # server would not pass.
                trusted = ssl.create_default_context(cafile=ca_file)
                try:
                    async with httpx.AsyncClient(verify=trusted, timeout=2) as client:
                        if (await client.get(f"{base}/health")).status_code == 200:
                            return
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.1)


def set_microphone(path: Path, scenario: str) -> None:
    # Chromium reads the fake microphone's file afresh for each new capture.
    pcm = conversation_audio(scenario, PATIENT_RATE, TIME_SCALE)
    staged = path.with_suffix(".next.wav")
    write_wav(staged, pcm, PATIENT_RATE)
    staged.replace(path)


async def simulator_scenario(sim: RunningSimulator, scenario: str) -> None:
    """Points the test's simulator at the next patient's scenario."""
    # The simulator's own throwaway certificate; this control call is test plumbing.
    trusted = ssl.create_default_context(cafile=str(sim.ca_file))
    async with httpx.AsyncClient(verify=trusted, timeout=5) as client:
        answer = await client.post(f"{sim.base_url}/_defaults", json={"scenario": scenario})
        answer.raise_for_status()


async def leftovers(page: Page, words: list[str]) -> list[str]:
    """Which of words the page holds: on screen, in the DOM, in web storage or in JS memory."""
    in_page, in_memory = await where_held(page, words)
    return [word for word in words if word in in_page or word in in_memory]


async def where_held(page: Page, words: list[str]) -> tuple[list[str], list[str]]:
    held = await page.evaluate(
        """() => [
            document.documentElement.outerHTML,
            document.body.innerText,
            ...[...document.querySelectorAll('input, textarea')].map(field => field.value),
            JSON.stringify({ ...sessionStorage }),
            JSON.stringify({ ...localStorage }),
        ].join('\\n').toLowerCase()"""
    )
    memory = await heap_strings(page)
    return [word for word in words if word.lower() in held], [w for w in words if w.lower() in memory]


async def heap_strings(page: Page) -> str:
    """A garbage-collected heap snapshot of the page, lower-cased: every string it still holds."""
    cdp = await page.context.new_cdp_session(page)
    chunks: list[str] = []
    cdp.on("HeapProfiler.addHeapSnapshotChunk", lambda event: chunks.append(event["chunk"]))
    try:
        await cdp.send("HeapProfiler.enable")
        await cdp.send("HeapProfiler.collectGarbage")
        await cdp.send("HeapProfiler.takeHeapSnapshot", {"reportProgress": False})
    finally:
        await cdp.detach()
    return "".join(chunks).lower()


async def hold_intake(run: TabletRun, page: Page, patient: Patient) -> None:
    seconds = len(conversation_audio(patient.scenario.name, PATIENT_RATE, TIME_SCALE)) / 2 / PATIENT_RATE
    await page.get_by_test_id("start").click()
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "listening", timeout=10_000)
    review = page.get_by_test_id("intake-complete")
    await expect(review).to_be_visible(timeout=(seconds + WRAP_UP_SECONDS) * 1000)
    await expect(review).to_contain_text(patient.scenario.record["patient_info"]["name"], timeout=10_000)
    patient.review_text = await review.inner_text()
    async with page.expect_download() as download_info:
        await review.get_by_role("button", name="Download JSON").click()
    saved = await (await download_info.value).path()
    patient.download = json.loads(await asyncio.to_thread(saved.read_text))
    patient.at_review, patient.in_memory_at_review = await where_held(
        page, identifying_words(patient.scenario)
    )


async def back_at_start(page: Page, within: float) -> float:
    started = time.monotonic()
    await expect(page.get_by_test_id("intake-complete")).to_be_hidden(timeout=within * 1000)
    await expect(page.get_by_test_id("status")).to_have_attribute("data-state", "idle")
    await expect(page.get_by_test_id("start")).to_be_enabled()
    return time.monotonic() - started


async def watch_second_intake(run: TabletRun, page: Page, first_words: list[str]) -> None:
    """Looks for the first patient's words, every second, until the second review shows."""
    review = page.get_by_test_id("intake-complete")
    while not await review.is_visible():
        state = await page.get_by_test_id("status").get_attribute("data-state")
        run.during_second.append((str(state), await leftovers(page, first_words)))
        await asyncio.sleep(1)


async def run_tablet(directory: Path) -> TabletRun:
    run = TabletRun()
    microphone = directory / "microphone.wav"
    set_microphone(microphone, FIRST)
    log = directory / "server.log"
    try:
        config = SimulatorConfig(
            host="127.0.0.1", port=0, tls=True, scenario=FIRST, time_scale=TIME_SCALE, controls=True
        )
        with start_simulator(config) as sim:
            async with (
                tablet_server(directory, sim) as (base, log),
                chromium(
                    directory / "profile",
                    *FAKE_MICROPHONE,
                    f"--use-file-for-fake-audio-capture={microphone}%noloop",
                    "--ignore-certificate-errors",
                    accept_downloads=True,
                ) as context,
            ):
                await hold_both(run, context, base, log, microphone, sim)
    except (PlaywrightError, AssertionError, RuntimeError, TimeoutError, httpx.HTTPError) as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        run.failure = f"{type(exc).__name__}: {exc}\n--- server log (tail) ---\n{tail}"
    return run


async def hold_both(
    run: TabletRun, context: BrowserContext, base: str, log: Path, microphone: Path, sim: RunningSimulator
) -> None:
    page = await context.new_page()
    run.console = Console.watch(page)
    page.on("websocket", lambda socket: run.socket_urls.append(socket.url))
    await page.goto(f"{base}/app/")
    run.page_url = page.url
    first_words = identifying_words(run.first.scenario)

    await hold_intake(run, page, run.first)
    run.first.back_at_start_after = await back_at_start(page, REVIEW_SECONDS + 10)
    run.first.after = await leftovers(page, first_words)

    set_microphone(microphone, SECOND)
    await simulator_scenario(sim, SECOND)
    watcher = asyncio.create_task(watch_second_intake(run, page, first_words), name="watch-second")
    try:
        await hold_intake(run, page, run.second)
    except BaseException:
        # Without a second review the watcher would look for ever.
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        raise
    await watcher
    run.during_second.append(("review", await leftovers(page, first_words)))

    await page.get_by_role("button", name="Done").click()
    run.second.back_at_start_after = await back_at_start(page, 5)
    run.second.after = await leftovers(page, identifying_words(run.second.scenario))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> TabletRun:
    return await run_tablet(tmp_path_factory.mktemp("tablet"))


async def test_page_and_socket_are_served_over_tls(run: TabletRun) -> None:
    run.check()
    assert run.page_url.startswith(f"https://{LAN_HOST}:")
    assert len(run.socket_urls) == 2
    assert all(url.startswith(f"wss://{LAN_HOST}:") for url in run.socket_urls)


async def test_two_patients_each_finish_their_own_intake(run: TabletRun) -> None:
    run.check()
    for patient in (run.first, run.second):
        assert patient.download is not None
        assert patient.download["patient_info"]["name"] == patient.scenario.record["patient_info"]["name"]
    assert "James Carter" in run.second.review_text


async def test_kiosk_returns_to_start_within_the_review_time(run: TabletRun) -> None:
    run.check()
    assert run.first.back_at_start_after is not None
    assert run.first.back_at_start_after <= REVIEW_SECONDS + 10
    # "Done" does not wait for the review time.
    assert run.second.back_at_start_after is not None
    assert run.second.back_at_start_after < REVIEW_SECONDS


async def test_the_probe_finds_a_patient_on_their_review(run: TabletRun) -> None:
    run.check()
    for patient in (run.first, run.second):
        assert patient.at_review == identifying_words(patient.scenario)
        assert patient.scenario.record["patient_info"]["name"] in patient.in_memory_at_review


async def test_nothing_of_a_patient_is_left_once_back_at_start(run: TabletRun) -> None:
    run.check()
    assert run.first.after == []
    assert run.second.after == []


async def test_nothing_of_the_first_patient_is_visible_or_stored_during_the_second(run: TabletRun) -> None:
    run.check()
    states = {state for state, _ in run.during_second}
    assert {"listening", "review"} <= states, states
    assert [(state, found) for state, found in run.during_second if found] == []


async def test_tablet_run_without_console_errors(run: TabletRun) -> None:
    run.check()
    assert run.console.errors == []
