"""The whole product as a patient meets it: `python main.py` relaying to its built-in
simulator, and the served page in headless Chromium whose fake microphone plays the patient's
side of a scenario. Both scenarios run at once; each test checks one claim about a run."""

import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, expect

from schemas import MedicalIntake
from simulator.agent import HOLD_LINE
from simulator.scenarios import Scenario, load_scenario
from simulator.speech import conversation_audio, write_wav
from tests.browser.conftest import ARTIFACTS, FAKE_MICROPHONE, REPO, Console, chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

SCENARIOS = ("barge_in_correction", "medications_allergy")
# Replies stream at twice real time; the page still plays them at real time.
TIME_SCALE = 0.5
PATIENT_RATE = 16000
STARTUP_SECONDS = 30
# The recording's length plus time for the last reply, the extraction and the review.
WRAP_UP_SECONDS = 30
BARGE_IN_LIMIT_MS = 300


@dataclass
class IntakeRun:
    scenario: Scenario
    console: Console = field(default_factory=Console)
    failure: str | None = None
    debug: dict[str, Any] = field(default_factory=dict)
    turns: list[dict[str, str]] = field(default_factory=list)
    interrupted_turns: list[str] = field(default_factory=list)
    live_sections: dict[str, str] = field(default_factory=dict)
    review_text: str = ""
    critical_allergies: list[str] = field(default_factory=list)
    download: dict[str, Any] | None = None

    def check(self) -> "IntakeRun":
        if self.failure:
            pytest.fail(f"the {self.scenario.name} intake did not finish: {self.failure}")
        return self


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def intake_server(scenario: str, log: Path) -> AsyncIterator[str]:
    """The product started the way a user starts it, on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "UPSTREAM": "simulator",
        "SIMULATOR_SCENARIO": scenario,
        "SIMULATOR_TIME_SCALE": str(TIME_SCALE),
        "DATA_DIR": str(log.parent / "data"),
    }
    env.pop("GEMINI_API_KEY", None)
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", cwd=REPO, env=env, stdout=output, stderr=output
        )
        try:
            await wait_until_healthy(base, process)
            yield base
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def wait_until_healthy(base: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        async with asyncio.timeout(STARTUP_SECONDS):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"main.py exited with {process.returncode} during start-up")
                try:
                    if (await client.get(f"{base}/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)


def patient_recording(scenario: str, directory: Path) -> tuple[Path, float]:
    pcm = conversation_audio(scenario, PATIENT_RATE, TIME_SCALE)
    path = directory / f"{scenario}.wav"
    write_wav(path, pcm, PATIENT_RATE)
    return path, len(pcm) / 2 / PATIENT_RATE


async def run_intake(name: str, directory: Path) -> IntakeRun:
    run = IntakeRun(load_scenario(name))
    log = directory / "server.log"
    try:
        async with intake_server(name, log) as base:
            await hold_conversation(run, base, directory)
    except (PlaywrightError, AssertionError, RuntimeError, TimeoutError) as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        run.failure = f"{type(exc).__name__}: {exc}\n--- server log (tail) ---\n{tail}"
    return run


async def hold_conversation(run: IntakeRun, base: str, directory: Path) -> None:
    wav, seconds = patient_recording(run.scenario.name, directory)
    # %noloop: Chromium would otherwise start the recording over when it ends.
    microphone = f"--use-file-for-fake-audio-capture={wav}%noloop"
    async with chromium(
        directory / "profile", *FAKE_MICROPHONE, microphone, accept_downloads=True
    ) as context:
        page = await context.new_page()
        run.console = Console.watch(page)
        app = (await (await page.request.get(f"{base}/")).json())["app"]
        await page.goto(f"{base}{app}")
        await page.get_by_test_id("start").click()
        await expect(page.get_by_test_id("status")).to_have_attribute(
            "data-state", "listening", timeout=10_000
        )
        review = page.get_by_test_id("intake-complete")
        await expect(review).to_be_visible(timeout=(seconds + WRAP_UP_SECONDS) * 1000)
        # The closing words stream in after the review appears; let them finish.
        closing = run.scenario.closing
        await page.wait_for_function(
            """closing => [...document.querySelectorAll('#transcript .turn__text')]
                .some(turn => turn.textContent.trim() === closing)""",
            arg=closing,
            timeout=15_000,
        )
        await collect(run, page)
        ARTIFACTS.mkdir(exist_ok=True)
        shot = "review.png" if run.scenario.name == SCENARIOS[0] else f"review-{run.scenario.name}.png"
        await page.screenshot(path=ARTIFACTS / shot, full_page=True, animations="disabled")


async def collect(run: IntakeRun, page: Page) -> None:
    run.debug = await page.evaluate("structuredClone(window.intakeDebug)")
    transcript = page.get_by_test_id("transcript")
    run.turns = await transcript.locator(".turn").evaluate_all(
        """turns => turns.map(t => ({
            role: t.dataset.role, text: t.querySelector('.turn__text').textContent }))"""
    )
    run.interrupted_turns = await transcript.locator(".turn--interrupted .turn__text").all_text_contents()
    run.live_sections = (
        await page.get_by_test_id("record")
        .locator("[data-section]")
        .evaluate_all("all => Object.fromEntries(all.map(s => [s.dataset.section, s.dataset.filled]))")
    )
    review = page.get_by_test_id("intake-complete")
    run.review_text = await review.inner_text()
    run.critical_allergies = await review.locator(".allergy--critical .item__title").all_inner_texts()
    async with page.expect_download() as download_info:
        await review.get_by_role("button", name="Download JSON").click()
    run.download = json.loads((await (await download_info.value).path()).read_text())


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IntakeRun]:
    async with asyncio.TaskGroup() as group:
        tasks = {
            name: group.create_task(run_intake(name, tmp_path_factory.mktemp(name)), name=name)
            for name in SCENARIOS
        }
    return {name: task.result() for name, task in tasks.items()}


def shown_and_scripted(
    scenario: Scenario, shown: list[dict[str, Any]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The page's turns past the opening line, and the scenario's, as (role, words) pairs."""
    turns = [(turn["role"], words(turn["text"])) for turn in shown]
    if turns and turns[0] == ("assistant", words(scenario.opening)):
        turns = turns[1:]
    # gemini-3.8-live keeps talking while complete_intake runs: a holding line, then the closing.
    hold = words(HOLD_LINE)
    turns = [
        (role, text.removeprefix(hold).strip()) for role, text in turns if (role, text) != ("assistant", hold)
    ]
    replies = [exchange.assistant for exchange in scenario.exchanges] + [scenario.closing]
    expected = [
        item
        for patient, reply in zip(scenario.patient_turns, replies, strict=True)
        for item in (("patient", words(patient)), ("assistant", words(reply)))
    ]
    return turns, expected


def words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", SCENARIOS)
async def test_page_runs_without_console_errors(runs: dict[str, IntakeRun], name: str) -> None:
    run = runs[name].check()
    assert run.console.errors == []


@pytest.mark.parametrize("name", SCENARIOS)
async def test_start_leads_to_listening(runs: dict[str, IntakeRun], name: str) -> None:
    states = runs[name].check().debug["states"]
    assert states[:3] == ["idle", "connecting", "listening"]
    assert states[-1] == "done"
    assert runs[name].debug["upstream"] == "simulator"


@pytest.mark.parametrize("name", SCENARIOS)
async def test_the_simulator_hears_the_patient_through_the_page(
    runs: dict[str, IntakeRun], name: str
) -> None:
    run = runs[name].check()
    # 100 ms frames of 16 kHz PCM16, none dropped on the way out.
    assert run.debug["bytesSent"] == run.debug["framesSent"] * 3200 > 0
    assert run.debug["framesDropped"] == 0
    # The simulator only transcribes a patient turn after its voice detection heard one.
    heard = [words(turn["text"]) for turn in run.turns if turn["role"] == "patient"]
    assert heard == [words(turn) for turn in run.scenario.patient_turns]


@pytest.mark.parametrize("name", SCENARIOS)
async def test_transcripts_of_both_roles_appear_in_order(runs: dict[str, IntakeRun], name: str) -> None:
    run = runs[name].check()
    scenario = run.scenario
    turns, expected = shown_and_scripted(scenario, run.turns)
    assert [role for role, _ in turns] == [role for role, _ in expected]
    cut_short = [words(text) for text in run.interrupted_turns]
    for (_, said), (_, scripted) in zip(turns, expected, strict=True):
        # An interrupted reply stops part-way: its transcript is the start of the script.
        assert said == scripted or (said in cut_short and scripted.startswith(said))


@pytest.mark.parametrize("name", SCENARIOS)
async def test_assistant_audio_is_played(runs: dict[str, IntakeRun], name: str) -> None:
    debug = runs[name].check().debug
    assert debug["audioChunksReceived"] > 50
    assert debug["secondsPlayed"] > 10


async def test_barge_in_stops_playback_within_300ms(runs: dict[str, IntakeRun]) -> None:
    run = runs["barge_in_correction"].check()
    interruptions = run.debug["interruptions"]

    assert len(interruptions) == 1
    stop = interruptions[0]
    assert stop["flushMs"] < BARGE_IN_LIMIT_MS
    assert stop["droppedSeconds"] > 0.5, "the interrupted reply should still have been queued"
    if stop["chunksAfterCheck"] == stop["chunksAtInterrupt"]:
        assert stop["framesAfterCheck"] == stop["framesAtFlush"], "audio played on after the flush"
    assert len(run.interrupted_turns) == 1


async def test_the_replies_after_a_barge_in_are_heard(runs: dict[str, IntakeRun]) -> None:
    run = runs["barge_in_correction"].check()
    stop = run.debug["interruptions"][0]
    played_after = (run.debug["framesPlayed"] - stop["framesAtFlush"]) / run.debug["contextSampleRate"]
    # The scenario's replies after the correction (confirmation, summary, goodbye) last well over
    # five seconds; a muted next reply would leave almost nothing.
    assert played_after > 5.0, f"only {played_after:.2f} s of audio played after the barge-in"


@pytest.mark.parametrize("name", SCENARIOS)
async def test_record_sections_fill_during_the_conversation(runs: dict[str, IntakeRun], name: str) -> None:
    run = runs[name].check()
    record = MedicalIntake.model_validate(run.scenario.record)
    expected = {
        "patient": record.patient_info is not None,
        "complaints": record.present_illness is not None,
        "medications": bool(record.medications),
        "allergies": bool(record.allergies),
    }
    assert {section: run.live_sections[section] == "true" for section in expected} == expected


async def test_review_shows_the_corrected_dose(runs: dict[str, IntakeRun]) -> None:
    run = runs["barge_in_correction"].check()

    assert "Priya Shah" in run.review_text
    assert re.search(r"propranolol\s+20 mg", run.review_text)
    assert "40 mg" not in run.review_text
    assert run.download is not None
    assert MedicalIntake.model_validate(run.download) == MedicalIntake.model_validate(run.scenario.record)
    assert (ARTIFACTS / "review.png").stat().st_size > 0


async def test_review_highlights_the_life_threatening_allergy(runs: dict[str, IntakeRun]) -> None:
    run = runs["medications_allergy"].check()

    assert [words(title) for title in run.critical_allergies] == ["Penicillin Life-threatening"]
    assert "Life-threatening allergy: Penicillin" in run.review_text
    for medication in ("lisinopril", "metformin", "atorvastatin"):
        assert medication in run.review_text
    assert run.download is not None
    assert MedicalIntake.model_validate(run.download) == MedicalIntake.model_validate(run.scenario.record)
