"""More than one process: `main:app` for any process manager, and WORKERS for `python main.py`."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "DATA_DIR": str(tmp_path / "data"),
        "UPSTREAM": "simulator",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    for name in ("GEMINI_API_KEY", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_main_app_is_importable_for_uvicorn_workers(tmp_path):
    check = "import main, fastapi; assert isinstance(main.app, fastapi.FastAPI); print(main.app.title)"
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env=server_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Voice medical intake"


def test_two_workers_serve_one_port_and_all_stop_on_sigterm(tmp_path):
    port = free_port()
    env = server_env(tmp_path, WORKERS="2", PORT=str(port))
    server = subprocess.Popen([sys.executable, "main.py"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(workers := children(server.pid)) < 2 or not _healthy(port):
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "two healthy workers never came up"
            time.sleep(0.2)
        answered = {_health(port)["status"] for _ in range(20)}
        assert answered == {"healthy"}
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _health(port: int) -> dict[str, object]:
    answer: dict[str, object] = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    return answer


def _healthy(port: int) -> bool:
    try:
        return _health(port)["status"] == "healthy"
    except httpx.TransportError:
        return False
