"""Does a patient who talks over the assistant hear every later reply? Speaks a scenario through
the real server, SDK and simulator on loopback, starting during the greeting, and prints how much of
each later reply's audio reached the browser. Bounded in time; stops by itself."""

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.patient import BrowserClient, open_browser
from config import Settings
from simulator import load_scenario
from simulator.audio import ASSISTANT_PITCH_HZ, MODEL_RATE, synth_voice
from simulator.speech import patient_audio
from tests.live_support import live_server
from tests.sim_support import running_simulator


def replies(client: BrowserClient) -> list[tuple[str, int, bool]]:
    """Each assistant turn: its text, the audio bytes the browser got, and whether it was cut."""
    turns: list[tuple[str, int, bool]] = []
    text, received = "", 0
    for _, message in client.events:
        if message["type"] == "audio":
            received += message["size"]
        elif message["type"] == "transcript" and message["role"] == "assistant":
            text += message["text"]
        elif message["type"] in ("turn_complete", "interrupted"):
            if text:
                turns.append((text.strip(), received, message["type"] == "interrupted"))
            text, received = "", 0
    return turns


async def run(ws_url: str, scenario_name: str, pace: float) -> list[tuple[str, int, bool]]:
    client = await open_browser(ws_url, f"sim:{scenario_name}")
    utterances = patient_audio(scenario_name)
    await client.wait_for("audio", 3)  # the greeting has started: talk over it
    for index, pcm in enumerate(utterances):
        done = len(client.of_type("turn_complete"))
        await client.speak(pcm, pace=pace)
        if index < len(utterances) - 1:
            await client.wait_for("turn_complete", done + 1, within=60)
    await client.wait_for("intake_complete", within=60)
    await client.wait_for("turn_complete", len(client.of_type("turn_complete")) + 1, within=30)
    await client.close()
    return replies(client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.barge_in", description=__doc__)
    parser.add_argument("--scenario", default="simple_visit")
    parser.add_argument("--time-scale", type=float, default=0.25, help="simulator pace (1.0 = real time)")
    parser.add_argument("--pace", type=float, default=0.02, help="pause after each 100 ms patient frame")
    args = parser.parse_args(argv)
    load_scenario(args.scenario)  # an unknown name fails here, before anything starts
    with tempfile.TemporaryDirectory(prefix="intake-bench-") as tmp:
        settings = Settings(_env_file=None, DATA_DIR=Path(tmp) / "data", MAX_AUDIO_SPEED=10)  # type: ignore[call-arg]
        with running_simulator(time_scale=args.time_scale) as sim, live_server(settings, sim) as server:
            turns = asyncio.run(asyncio.wait_for(run(server.ws_url, args.scenario, args.pace), 240))
    print(f"scenario {args.scenario}: the patient starts talking during the greeting")
    shares = []
    for text, received, cut in turns:
        expected = len(synth_voice(text, MODEL_RATE, ASSISTANT_PITCH_HZ))
        share = received / expected if expected else 0.0
        label = "interrupted" if cut else f"{share:6.1%}"
        if not cut:
            shares.append(share)
        print(f"  {label:>11}  {received / 48000:5.2f} s of {expected / 48000:5.2f} s  {text[:60]!r}")
    print(f"later replies: {len(shares)}, least heard {min(shares):.1%}" if shares else "no later reply")
    return 0 if shares and min(shares) >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
