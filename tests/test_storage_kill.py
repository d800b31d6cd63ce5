"""kill -9 mid-interview loses at most the turn in progress: after a restart every finalized turn
is in the database, on SQLite and on PostgreSQL."""

import asyncio
import signal
from itertools import groupby

import httpx
import pytest

from bench.patient import open_browser
from simulator.speech import patient_audio
from tests.test_edge import server_process  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STAFF = "kill-test-staff-token-0123"
STAFF_HEADERS = {"Authorization": f"Bearer {STAFF}"}


async def transcript(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    """The stored transcript of the one practice intake, through the staff API."""
    listed = (await http.get("/api/intakes", params={"practice": "true"})).json()
    if not listed:
        return []
    detail = (await http.get(f"/api/intakes/{listed[0]['id']}")).json()
    return [(turn["role"], turn["text"]) for turn in detail["transcript"]]


async def stored_turns(http: httpx.AsyncClient, *, at_least: int) -> None:
    for _ in range(750):
        if len(await transcript(http)) >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} turns stored after 15 s")


def finalized_turns(transcript: list[dict[str, str]]) -> list[tuple[str, str]]:
    """The browser's transcript pieces joined into turns, the way the session finalizes them."""
    return [
        (role, "".join(piece["text"] for piece in pieces).strip())
        for role, pieces in groupby(transcript, key=lambda piece: piece["role"])
    ]


async def test_sigkill_mid_interview_keeps_every_finalized_turn(server_process, database_url):  # noqa: F811
    server = server_process(STAFF_TOKENS=f"nurse:{STAFF}", DATABASE_URL=database_url)
    client = await open_browser(server.ws_url, "sim:simple_visit")
    await client.wait_for("turn_complete")  # the opening line
    for said, pcm in enumerate(patient_audio("simple_visit")[:2], start=2):
        await client.speak(pcm)
        await client.wait_for("turn_complete", said)  # the reply, finalized
    expected = finalized_turns(client.of_type("transcript"))
    assert [role for role, _ in expected] == ["assistant", "patient", "assistant", "patient", "assistant"]
    # Written as they finalize, with the session still open: a commit is milliseconds behind the
    # browser's turn_complete, so wait for it to show before pulling the plug.
    async with httpx.AsyncClient(base_url=server.base_url, headers=STAFF_HEADERS) as http:
        await stored_turns(http, at_least=len(expected))
    server.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(server.process.wait, 10)
    await client.close()

    restarted = server_process(STAFF_TOKENS=f"nurse:{STAFF}", DATABASE_URL=database_url)
    async with httpx.AsyncClient(base_url=restarted.base_url, headers=STAFF_HEADERS) as http:
        (intake,) = (await http.get("/api/intakes", params={"practice": "true"})).json()
        assert intake["status"] == "in_progress" and intake["practice"] is True
        assert await transcript(http) == expected
