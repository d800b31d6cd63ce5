"""Two server processes on one PostgreSQL and one simulator: the process serving an intake is
killed with SIGKILL mid-interview, and the patient finishes the intake on the other one."""

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from bench.patient import BrowserClient, open_browser
from simulator import RunningSimulator
from simulator.speech import patient_audio
from tests import storage_support
from tests.sim_support import running_simulator
from tests.test_edge import ServerProcess
from tests.test_storage_kill import finalized_turns

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.requires_gemini]
STAFF = "resume-test-staff-token-0123"


@pytest.fixture
def postgresql_url(tmp_path: Path) -> Iterator[str]:
    yield from storage_support.database("postgresql", tmp_path)


@pytest.fixture
def two_processes(
    tmp_path: Path, postgresql_url: str
) -> Iterator[tuple[RunningSimulator, ServerProcess, ServerProcess]]:
    """Two `python main.py` on one PostgreSQL, both talking to one simulator."""
    with running_simulator(time_scale=0.05) as sim:
        env = {
            "UPSTREAM": "auto",
            "GEMINI_API_KEY": "sim:simple_visit",
            "GEMINI_BASE_URL": sim.base_url,
            "GEMINI_CA_FILE": str(sim.ca_file),
            "DATABASE_URL": postgresql_url,
            "STAFF_TOKENS": f"nurse:{STAFF}",
        }
        processes: list[ServerProcess] = []
        try:
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                processes.append(ServerProcess(tmp_path / name, **env))
            for process in processes:
                process.wait_healthy()
            yield sim, processes[0], processes[1]
        finally:
            # Before the simulator stops, so no upstream connection is cut from its side.
            for process in processes:
                process.stop()


async def intake_on(server: ServerProcess) -> tuple[BrowserClient, dict[str, str]]:
    client = await open_browser(server.ws_url, "unused")
    ticket = [m for m in client.of_type("status") if m["state"] == "ready"][-1]
    await client.wait_for("turn_complete")  # the opening line
    return client, ticket


async def resume(ws_url: str, ticket: dict[str, str]) -> BrowserClient:
    ws = await connect(f"{ws_url}?api_key=unused", max_size=2**22)
    await ws.send(
        json.dumps(
            {"type": "resume", "session_id": ticket["session_id"], "resume_token": ticket["resume_token"]}
        )
    )
    return BrowserClient(ws)


async def test_sigkill_mid_interview_and_the_intake_is_finished_on_another_process(two_processes):
    sim, a, b = two_processes
    speech = patient_audio("simple_visit")
    client, ticket = await intake_on(a)
    for said, pcm in enumerate(speech[:2], start=2):
        await client.speak(pcm)
        await client.wait_for("turn_complete", said)
    before = finalized_turns(client.of_type("transcript"))
    headers = {"Authorization": f"Bearer {STAFF}"}
    async with httpx.AsyncClient(base_url=b.base_url, headers=headers) as http:
        for _ in range(500):
            detail = (await http.get(f"/api/intakes/{ticket['session_id']}")).json()
            if len(detail["transcript"]) >= len(before):
                break
            await asyncio.sleep(0.02)

    a.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(a.process.wait, 10)
    killed_at = time.monotonic()
    await client.close()

    back = await resume(b.ws_url, ticket)
    resumed = await back.wait_for_status(lambda m: m.get("resumed") is True, within=10)
    resumed_after = time.monotonic() - killed_at
    history = await back.wait_for("history")
    for pcm in speech[2:]:
        said = len(back.of_type("turn_complete"))
        await back.speak(pcm)
        await back.wait_for("turn_complete", said + 1)
    await back.wait_for("intake_complete", within=30)
    code, reason = await asyncio.wait_for(back.closed, 30)
    await back.close()
    async with httpx.AsyncClient(base_url=b.base_url, headers=headers) as http:
        detail = (await http.get(f"/api/intakes/{ticket['session_id']}")).json()

    assert resumed["session_id"] == ticket["session_id"]
    assert resumed_after < 5.0
    assert [(t["role"], t["text"]) for t in history["turns"]] == before
    assert (code, reason) == (1000, "intake_complete")
    stored = [(t["role"], t["text"]) for t in detail["transcript"]]
    assert stored[: len(before)] == before and len(stored) > len(before)
    assert detail["status"] == "completed"
    # What the patient said before the kill is in the final record.
    record = detail["record"]
    assert record["patient_info"]["name"] == "Maria Lopez"
    assert "sore throat" in record["present_illness"]["chief_complaints"][0]["complaint"].lower()
    # The upstream conversation went on from its handle on process B, not from the start.
    assert len([s for s in sim.stats()["sessions"] if s["resumed"]]) == 1


async def test_resuming_on_another_process_closes_the_first_socket_superseded(two_processes):
    _, a, b = two_processes
    speech = patient_audio("simple_visit")
    client, ticket = await intake_on(a)
    await client.speak(speech[0])
    await client.wait_for("turn_complete", 2)

    back = await resume(b.ws_url, ticket)
    await back.wait_for_status(lambda m: m.get("resumed") is True, within=10)
    code, reason = await asyncio.wait_for(client.closed, 5)
    history = await back.wait_for("history")
    await back.speak(speech[1])
    await back.wait_for("turn_complete", 1)
    await back.ws.send(json.dumps({"type": "end_session"}))
    await asyncio.wait_for(back.closed, 10)
    await back.close()
    await client.close()

    assert (code, reason) == (4409, "superseded")
    assert client.of_type("error")[-1]["code"] == "superseded"
    assert [t["role"] for t in history["turns"]] == ["assistant", "patient", "assistant"]
    assert back.of_type("transcript")[-1]["role"] == "assistant"
