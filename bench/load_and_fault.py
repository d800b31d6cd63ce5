"""N concurrent simulated patients against the real server and the simulator, with upstream faults.

    python -m bench.load_and_fault --patients 20 --drop-every 4 --goaway-every 5

Loopback only; bounded by --patients and --deadline; prints its figures and exits.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.patient import BrowserClient, converse, open_browser
from config import Settings
from schemas import MedicalIntake
from simulator import load_scenario
from tests.live_support import live_server
from tests.sim_support import running_simulator
from utils.validators import normalize_intake

SCENARIOS = ("simple_visit", "medications_allergy", "barge_in_correction")


@dataclass
class PatientOutcome:
    scenario: str
    key: str
    completed: bool = False
    reconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failure: str | None = None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def patient_key(index: int, args: argparse.Namespace) -> tuple[str, str]:
    scenario = SCENARIOS[index % len(SCENARIOS)]
    faults = []
    number = index + 1
    if args.drop_every and number % args.drop_every == 0:
        faults.append(f"drop_after={args.fault_after:g}")
    if args.goaway_every and number % args.goaway_every == 0:
        faults.append(f"goaway_after={args.fault_after:g}")
    return scenario, ";".join([f"sim:{scenario}", *faults])


def expected_record(scenario: str) -> MedicalIntake:
    record, _ = normalize_intake(MedicalIntake.model_validate(load_scenario(scenario).record))
    return record


async def run_patient(
    ws_url: str, scenario: str, key: str, start_delay: float, speech_pace: float
) -> PatientOutcome:
    outcome = PatientOutcome(scenario, key)
    await asyncio.sleep(start_delay)
    client: BrowserClient | None = None
    try:
        client = await open_browser(ws_url, key, within=30)
        conversation = await converse(client, scenario, speech_pace=speech_pace)
        outcome.latencies = conversation.reply_latencies
        final = [m for m in client.of_type("extracted_data") if m["final"]]
        outcome.completed = bool(final) and (
            MedicalIntake.model_validate(final[-1]["data"]).model_dump()
            == expected_record(scenario).model_dump()
        )
        await client.ws.send('{"type": "end_session"}')
        await asyncio.wait_for(client.closed, 10)
    except (AssertionError, OSError, TimeoutError) as exc:
        outcome.failure = f"{type(exc).__name__}: {str(exc)[:160]}"
    finally:
        if client is not None:
            outcome.reconnects = sum(m.get("state") == "reconnecting" for m in client.of_type("status"))
            outcome.errors.update(m["code"] for m in client.of_type("error"))
            await client.close()
    return outcome


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_all(ws_url: str, args: argparse.Namespace) -> list[PatientOutcome]:
    # Arrivals are spread over a second so the opening lines do not all start on one tick.
    spread = 1.0 / max(args.patients, 1)
    async with asyncio.timeout(args.deadline), asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                run_patient(ws_url, *patient_key(i, args), i * spread, 0.1 / args.speech_speed),
                name=f"patient-{i}",
            )
            for i in range(args.patients)
        ]
    return [task.result() for task in tasks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--drop-every", type=int, default=0, help="drop_after on every K-th patient")
    parser.add_argument("--goaway-every", type=int, default=0, help="goaway_after on every K-th patient")
    parser.add_argument("--time-scale", type=float, default=0.1, help="simulator speech pace")
    parser.add_argument(
        "--speech-speed",
        type=float,
        default=1.0,
        help="how fast patients speak: 1.0 = real time, as a microphone sends (higher sends faster)",
    )
    parser.add_argument("--deadline", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument(
        "--fault-after",
        type=float,
        default=None,
        help="seconds into a session when faults fire (default: 20 x time-scale, after the opening line)",
    )
    args = parser.parse_args(argv)
    if args.fault_after is None:
        args.fault_after = 20 * args.time_scale
    if not 1 <= args.patients <= 200:
        parser.error("--patients must be between 1 and 200")

    with tempfile.TemporaryDirectory(prefix="intake-bench-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            DATA_DIR=Path(tmp) / "data",
            MAX_SESSIONS=args.patients,
            MAX_SESSIONS_PER_CLIENT=args.patients,
            # Patients faster than real time (--speech-speed) are not the flood pacing is for.
            MAX_AUDIO_SPEED=max(1.2, args.speech_speed * 1.5),
        )
        with running_simulator(time_scale=args.time_scale) as sim, live_server(settings, sim) as server:
            rss_before = rss_kib()
            started = time.monotonic()
            outcomes = asyncio.run(run_all(server.ws_url, args))
            wall = time.monotonic() - started
            rss_after = rss_kib()
            for _ in range(100):
                if not sim.stats()["open_sessions"]:
                    break
                time.sleep(0.05)
            open_upstreams = sim.stats()["open_sessions"]
            open_server = server.app.state.intake.registry.open_sessions

    latencies = [lat for o in outcomes for lat in o.latencies]
    errors: Counter[str] = Counter()
    for outcome in outcomes:
        errors.update(outcome.errors)
    completed = sum(o.completed for o in outcomes)
    print(
        f"patients {args.patients} (drop every {args.drop_every or '-'}, goAway every "
        f"{args.goaway_every or '-'}, faults at {args.fault_after:g} s, time_scale {args.time_scale}, "
        f"speech x{args.speech_speed:g})"
    )
    print(f"sessions completed (record == scenario): {completed}/{args.patients}")
    print(f"reconnects seen: {sum(o.reconnects for o in outcomes)}")
    print(f"errors by code: {dict(sorted(errors.items())) or '{}'}")
    print(
        f"end of speech -> first audio: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms "
        f"(n={len(latencies)}, mean {statistics.fmean(latencies) * 1000 if latencies else 0:.0f} ms)"
    )
    print(f"RSS before/after: {rss_before / 1024:.1f} MiB / {rss_after / 1024:.1f} MiB")
    print(f"open sessions at the end: simulator {open_upstreams}, server {open_server}")
    print(f"wall time: {wall:.1f} s")
    for outcome in outcomes:
        if not outcome.completed:
            print(f"  not completed: {outcome.key}: {outcome.failure or 'record mismatch'}")
    return 0 if completed == args.patients and open_upstreams == 0 and open_server == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
