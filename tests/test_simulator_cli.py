"""`python -m simulator` as a separate process, and the embedding API's TLS files."""

import asyncio
import json
import os
import selectors
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from google.genai import errors
from websockets.sync.client import connect

from tests.sim_support import LIVE_MODEL, live_config, next_message, running_simulator, sdk_client

pytestmark = [pytest.mark.integration, pytest.mark.requires_gemini]

REPO = Path(__file__).resolve().parents[1]


def _read_line(process: subprocess.Popen[bytes], timeout: float = 15.0) -> str:
    # Byte by byte from the unbuffered pipe, so select() never waits on data already read.
    assert process.stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            assert selector.select(timeout), "the simulator printed nothing in time"
            byte = os.read(process.stdout.fileno(), 1)
            assert byte, "the simulator exited"
            line += byte
    return line.decode().strip()


@contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, str]]:
    command = [sys.executable, "-m", "simulator", "--port", "0", "--log-level", "warning", *args]
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
    ) as process:
        try:
            base_url = _read_line(process).removeprefix("base_url: ")
            ca_file = _read_line(process).removeprefix("ca_file: ")
            yield base_url, ca_file
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0


def test_cli_serves_tls_with_a_private_ca_file() -> None:
    with simulator_process("--scenario", "medications_allergy", "--time-scale", "0.5") as (
        base_url,
        ca_file,
    ):
        assert base_url.startswith("https://127.0.0.1:")
        ca = Path(ca_file)
        assert stat.S_IMODE(ca.stat().st_mode) == 0o600
        assert stat.S_IMODE(ca.parent.stat().st_mode) == 0o700
        context = ssl.create_default_context(cafile=ca_file)
        with httpx.Client(base_url=base_url, verify=context) as client:
            defaults = client.get("/_defaults").json()
            assert defaults == {"scenario": "medications_allergy", "time_scale": 0.5}
    assert not ca.exists()


def test_cli_without_tls_serves_plain_websockets() -> None:
    with simulator_process("--no-tls", "--options", "slow_reply=0.1") as (base_url, ca_file):
        assert base_url.startswith("http://") and ca_file == "-"
        path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
        url = base_url.replace("http://", "ws://") + path
        with connect(url, additional_headers={"x-goog-api-key": "sim:simple_visit"}) as ws:
            ws.send(json.dumps({"setup": {"model": f"models/{LIVE_MODEL}"}}))
            assert json.loads(ws.recv()) == {"setupComplete": {}}


def test_embedded_simulator_stops_idempotently_and_removes_its_files() -> None:
    with running_simulator() as sim:
        ca_file = sim.ca_file
        assert ca_file is not None and ca_file.is_file()
        assert os.stat(ca_file).st_mode & 0o077 == 0
    assert not ca_file.exists()
    sim.stop()
    assert sim.stats()["total_sessions"] == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.base_url}/_stats", verify=False, timeout=1)


async def test_stopping_with_a_session_open_ends_it_promptly() -> None:
    with running_simulator() as sim:
        async with (
            sdk_client(sim, "sim:simple_visit") as client,
            client.aio.live.connect(model=LIVE_MODEL, config=live_config()) as session,
        ):
            await session.send_realtime_input(text="Hello.")
            await next_message(session)
            started = time.monotonic()
            # The client is not reading while the simulator stops.
            await asyncio.to_thread(sim.stop)
            assert time.monotonic() - started < 1.5
            with pytest.raises(errors.APIError):
                while True:
                    await next_message(session)
    summary = sim.stats()["sessions"][-1]
    assert summary["closed"] is True and summary["close_code"] in (1006, 1012)
