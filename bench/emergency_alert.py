"""How soon an emergency reaches the patient's page and the staff webhook, through the real server,
the real SDK and the simulator's chest_pain_emergency scenario.

    python -m bench.emergency_alert --runs 10

From the patient's words arriving at the page to the `emergency` message, and to the signed
webhook delivery arriving at a local receiver. Loopback only; prints its figures and exits.
"""

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.patient import converse, open_browser
from config import Settings
from tests.live_support import live_server
from tests.receivers import webhook_receiver
from tests.sim_support import running_simulator

SCENARIO = "chest_pain_emergency"


async def one_run(ws_url: str, hooks_seen: int, hooks: object) -> tuple[float, float]:
    client = await open_browser(ws_url, f"sim:{SCENARIO}")
    await converse(client, SCENARIO, finish="emergency")
    alerted = next(t for t, m in client.events if m["type"] == "emergency")
    heard = max(
        t for t, m in client.events if m["type"] == "transcript" and m["role"] == "patient" and t <= alerted
    )
    delivery = hooks.wait_for(hooks_seen + 1)[-1]  # type: ignore[attr-defined]
    await client.close()
    return alerted - heard, delivery.at - heard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100:
        parser.error("--runs must be between 1 and 100")
    page: list[float] = []
    webhook: list[float] = []
    with tempfile.TemporaryDirectory(prefix="intake-bench-") as tmp, webhook_receiver() as (url, hooks):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            DATA_DIR=Path(tmp) / "data",
            MAX_AUDIO_SPEED=1000,
            NOTIFY_WEBHOOK_URL=url,
            NOTIFY_WEBHOOK_SECRET="bench-secret",
        )
        with running_simulator(time_scale=0.05) as sim, live_server(settings, sim) as server:
            for run in range(args.runs):
                to_page, to_hook = asyncio.run(one_run(server.ws_url, run, hooks))
                page.append(to_page * 1000)
                webhook.append(to_hook * 1000)
    for name, values in (("page alert", page), ("webhook delivery", webhook)):
        print(
            f"{name}: median {statistics.median(values):.1f} ms, max {max(values):.1f} ms "
            f"over {len(values)} runs (from the patient's words reaching the page)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
