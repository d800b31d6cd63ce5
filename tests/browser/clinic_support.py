"""The product started as a user starts it, with staff tokens and a scenario, for the clinic's tests."""

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.browser.conftest import REPO

STAFF_TOKEN = "front-desk-token-0123456789"
STARTUP_SECONDS = 30


@asynccontextmanager
async def clinic_server(
    port: int, scenario: str, directory: Path, time_scale: float, **extra_env: str
) -> AsyncIterator[str]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "UPSTREAM": "simulator",
        "SIMULATOR_SCENARIO": scenario,
        "SIMULATOR_TIME_SCALE": str(time_scale),
        "DATA_DIR": str(directory / "data"),
        "STAFF_TOKENS": f"dana:{STAFF_TOKEN}",
        **extra_env,
    }
    env.pop("GEMINI_API_KEY", None)
    base = f"http://127.0.0.1:{port}"
    log = directory / "server.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "main.py", cwd=REPO, env=env, stdout=output, stderr=output
        )
        try:
            async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(STARTUP_SECONDS):
                while True:
                    if process.returncode is not None:
                        tail = log.read_text()[-2000:]
                        raise RuntimeError(f"main.py exited with {process.returncode}: {tail}")
                    try:
                        if (await client.get(f"{base}/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            yield base
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
