"""The patient's side of a scenario as 16 kHz PCM16, for tests, demos and fake microphones.

espeak-ng speaks the lines when it is installed; otherwise a synthetic voice stands in
(which the simulator's voice detection treats the same way).

    python -m simulator.speech barge_in_correction patient.wav --time-scale 1.0
"""

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import wave
from functools import cache
from pathlib import Path

import numpy as np

from simulator.audio import (
    PATIENT_PITCH_HZ,
    PATIENT_RATE,
    from_pcm16,
    resample,
    speech_seconds,
    synth_voice,
    to_pcm16,
)
from simulator.scenarios import load_scenario

ESPEAK_TIMEOUT_SECONDS = 30.0
# Silence after a turn before the simulator answers: its voice detection waits 500 ms.
TURN_END_SECONDS = 0.5


def render_utterance(text: str, rate: int = PATIENT_RATE) -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return synth_voice(text, rate, PATIENT_PITCH_HZ)
    return _espeak(espeak, text, rate)


@cache
def _espeak(espeak: str, text: str, rate: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="simulator-speech-") as directory:
        out = Path(directory) / "utterance.wav"
        subprocess.run(
            [espeak, "-v", "en-us", "-s", "165", "-w", str(out), "--", text],
            check=True,
            capture_output=True,
            timeout=ESPEAK_TIMEOUT_SECONDS,
        )
        pcm, source_rate = read_wav(out.read_bytes())
    return to_pcm16(resample(from_pcm16(pcm), source_rate, rate))


def silence(seconds: float, rate: int = PATIENT_RATE) -> bytes:
    return bytes(int(seconds * rate) * 2)


def patient_audio(scenario_name: str, rate: int = PATIENT_RATE, gap_s: float = 0.9) -> list[bytes]:
    """One buffer per patient turn, each ending in enough silence to end the turn."""
    scenario = load_scenario(scenario_name)
    return [render_utterance(turn, rate) + silence(gap_s, rate) for turn in scenario.patient_turns]


def conversation_audio(
    scenario_name: str, rate: int = PATIENT_RATE, time_scale: float = 1.0, slack_s: float = 1.0
) -> bytes:
    """The patient's side as one recording, paced so each line waits for the reply before it,
    except that a line after a `barge_in` reply starts a third of the way into that reply."""
    scenario = load_scenario(scenario_name)
    parts = [silence(speech_seconds(scenario.opening) * time_scale + slack_s, rate)]
    replies = [exchange.assistant for exchange in scenario.exchanges] + [scenario.closing]
    barge_ins = [exchange.barge_in for exchange in scenario.exchanges] + [False]
    for turn, reply, barge_in in zip(scenario.patient_turns, replies, barge_ins, strict=True):
        reply_s = speech_seconds(reply) * time_scale
        wait_s = reply_s / 3 if barge_in else reply_s + slack_s
        parts += [render_utterance(turn, rate), silence(TURN_END_SECONDS + wait_s, rate)]
    return b"".join(parts)


def write_wav(path: Path | str, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


def read_wav(data: bytes) -> tuple[bytes, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError("expected 16-bit PCM")
        frames = wav.readframes(wav.getnframes())
        channels = wav.getnchannels()
        rate = wav.getframerate()
    if channels > 1:
        samples = np.frombuffer(frames, dtype="<i2").reshape(-1, channels)
        frames = samples.mean(axis=1).astype("<i2").tobytes()
    return frames, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.speech", description=__doc__)
    parser.add_argument("scenario")
    parser.add_argument("out", type=Path)
    parser.add_argument("--rate", type=int, default=PATIENT_RATE)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="the simulator's pace, to wait for replies"
    )
    args = parser.parse_args(argv)
    pcm = conversation_audio(args.scenario, args.rate, args.time_scale)
    write_wav(args.out, pcm, args.rate)
    seconds = len(pcm) / 2 / args.rate
    print(f"wrote {args.out} ({seconds:.1f} s at {args.rate} Hz)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
