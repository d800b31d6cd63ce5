"""The emergency scenario through the real SDK and the simulator: the model calls flag_emergency."""

import asyncio
import time
from typing import Any

import httpx
import pytest

from bench.patient import converse, open_browser
from config import Settings
from simulator import RunningSimulator
from tests.live_support import live_server
from tests.receivers import smtp_receiver, webhook_receiver
from tests.sim_support import running_simulator

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini, pytest.mark.slow]

STAFF = "clinician-token-0123456789"


@pytest.fixture(scope="module")
def sim() -> RunningSimulator:
    with running_simulator(time_scale=0.05) as simulator:
        yield simulator


async def test_the_models_flag_reaches_the_page_the_queue_and_both_receivers_once(
    settings: Settings, sim: RunningSimulator
) -> None:
    with webhook_receiver() as (hook_url, hooks), smtp_receiver() as (smtp_url, mails):
        clinic = Settings(  # type: ignore[call-arg]
            _env_file=None,
            **{
                **settings.model_dump(),
                "STAFF_TOKENS": {"carol": STAFF},
                "NOTIFY_WEBHOOK_URL": hook_url,
                "NOTIFY_WEBHOOK_SECRET": "webhook-secret-abcdef",
                "SMTP_URL": smtp_url,
                "NOTIFY_EMAIL_TO": ["desk@clinic.example"],
            },
        )
        with live_server(clinic, sim) as server:
            sim.reset_stats()
            client = await open_browser(server.ws_url, "sim:chest_pain_emergency")
            await converse(client, "chest_pain_emergency", finish="emergency")
            alert = client.of_type("emergency")[0]
            assert alert["source"] == "model" and alert["instructions"] == clinic.EMERGENCY_INSTRUCTIONS
            # The alert reaches the page before the model's reply does (timings: bench/emergency_alert.py).
            kinds = [(m["type"], m.get("role")) for _, m in client.events]
            first_reply = kinds.index(("transcript", "assistant"), kinds.index(("transcript", "patient")))
            assert kinds.index(("emergency", None)) < first_reply
            # The model then tells the patient to get help, in its own words.
            await client.wait_for("turn_complete", 2)
            said = " ".join(m["text"] for m in client.of_type("transcript") if m["role"] == "assistant")
            assert "emergency number" in " ".join(said.split())
            await client.ws.send('{"type": "end_session"}')
            await asyncio.wait_for(client.closed, 15)

            async with httpx.AsyncClient(base_url=server.base_url) as http:
                listed = (
                    await http.get("/api/intakes?practice=true", headers={"Authorization": f"Bearer {STAFF}"})
                ).json()
            [intake] = [i for i in listed if i["flags"]["emergency_reported"]]
            assert intake["flags"]["emergency_reported"] == "model"
            hooks.wait_for(1)
            mails.wait_for(1)
            log = await settled_deliveries(server.base_url)
            assert sorted((d["channel"], d["event"], d["status"]) for d in log) == [
                ("email", "intake.emergency", "delivered"),
                ("webhook", "intake.emergency", "delivered"),
            ]
            stats = sim.stats()
            # flag_emergency, the first call, was answered.
            assert stats["tool_calls_sent"][0] in stats["tool_responses_received"]
        emergencies = [h for h in hooks.items if h.json["event"] == "intake.emergency"]
        assert [h.json["intake_id"] for h in emergencies] == [intake["id"]]
        assert [m["X-Intake-Event"] for _, m in mails.items].count("intake.emergency") == 1


async def settled_deliveries(base_url: str, within: float = 10.0) -> list[dict[str, Any]]:
    """The delivery log once nothing in it is still pending."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base_url) as http:
        while True:
            log: list[dict[str, Any]] = (
                await http.get("/api/notifications", headers={"Authorization": f"Bearer {STAFF}"})
            ).json()
            if log and all(d["status"] != "pending" for d in log):
                return log
            assert time.monotonic() < deadline, f"deliveries still pending: {log}"
            await asyncio.sleep(0.05)
