"""`python -m bench.relay`, the README's relay figures, runs end to end on a few sessions against
the server and against the floor relay: every session ready, audio round-trips, nothing left open."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*extra: str) -> tuple[str, list[str]]:
    command = [sys.executable, "-m", "bench.relay", "--sessions", "3", "--seconds", "3", *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    header = done.stdout.splitlines()[0]
    row = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["3"])
    return header, row.split()


@pytest.mark.slow
@pytest.mark.requires_gemini
@pytest.mark.parametrize("floor", [False, True], ids=["server", "floor"])
def test_relay_bench_gets_every_session_ready_round_trips_audio_and_leaves_nothing_open(floor):
    header, row = run_bench(*(["--floor"] if floor else []))
    assert ("floor_relay" in header) == floor
    n, ready, errors, rtt_p50, rtt_p99, cpu = row[:6]
    assert (n, ready, errors) == ("3", "3", "0")
    assert 0 < float(rtt_p50) <= float(rtt_p99) < 1000
    assert float(cpu) > 0
    assert row[9] == "0/0"  # open on the server / on the simulator


def test_floor_refuses_options_it_cannot_honour():
    command = [sys.executable, "-m", "bench.relay", "--floor", "--workers", "2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--floor runs one process" in done.stderr
