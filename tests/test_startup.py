"""Start-up as an operator meets it: `make run` and `python main.py` with bad settings, a busy
port and an unwritable DATA_DIR, each a real process; then the same start with the problem
fixed serves."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from startup import StartupError, load_settings

REPO = Path(__file__).resolve().parents[1]


def clean_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"GEMINI_API_KEY", "PORT"}}
    return {**env, "UPSTREAM": "simulator", "SAVE_CONVERSATIONS": "false", **settings}


def start(cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "main.py")],
        cwd=cwd,
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(cwd: Path, **settings: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "main.py")],
        cwd=cwd,
        env=clean_env(PORT=str(port), **settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"main.py exited with {process.returncode}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_make_run_with_a_bad_port_prints_one_line_naming_port_and_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env={**clean_env(PORT="abc"), "DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    ours = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("make")]
    assert ours == ["PORT: must be an integer between 1 and 65535, got 'abc'"]


def test_every_bad_setting_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    result = start(tmp_path, PORT="99999", LOG_LEVEL="verbose", KIOSK_MODE="maybe")

    assert result.returncode == 2
    assert result.stdout == ""
    assert sorted(result.stderr.splitlines()) == [
        "KIOSK_MODE: must be true or false, got 'maybe'",
        "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'VERBOSE'",
        "PORT: must be an integer between 1 and 65535, got '99999'",
    ]


def test_a_bad_line_in_dotenv_is_named_with_its_line_number(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CLINIC_NAME=Riverside\nthis is not a setting\nPORT=abc\n")

    result = start(tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        ".env line 2: cannot be read as NAME=value, got 'this is not a setting'",
        "PORT: must be an integer between 1 and 65535, got 'abc'",
    ]


def test_a_busy_port_is_reported_before_anything_claims_to_serve(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = start(tmp_path, PORT=str(port))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"PORT: {port} on 127.0.0.1 is already in use (is the server already running?); choose another PORT"
    ]


def test_an_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    # A regular file where the directory should be: refused even for root.
    (tmp_path / "occupied").write_text("")

    result = start(tmp_path, DATA_DIR=str(tmp_path / "occupied" / "data"))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"DATA_DIR: cannot write to {tmp_path / 'occupied' / 'data'} (Not a directory)"
    ]


def test_tls_files_that_are_not_a_certificate_and_key_are_one_line(tmp_path: Path) -> None:
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_text("not PEM\n")

    result = start(tmp_path, TLS_CERT_FILE="server.crt", TLS_KEY_FILE="server.key")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "TLS_CERT_FILE / TLS_KEY_FILE: cannot use them "
        "(not a PEM certificate chain and its matching private key)"
    ]


def test_with_the_problems_fixed_the_same_start_serves(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CLINIC_NAME=Riverside\n")

    with serving(tmp_path, DATA_DIR=str(tmp_path / "data")) as base:
        assert httpx.get(f"{base}/health").json()["status"] == "healthy"

    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("SIMULATOR_TIME_SCALE", "0", "must be a number, greater than 0 and at most 10, got '0'"),
        ("MAX_SESSIONS", "0", "must be an integer, at least 1, got '0'"),
        ("IDLE_TIMEOUT_SECONDS", "soon", "must be a number, greater than 0, got 'soon'"),
        ("GREETING_STYLE", "grumpy", "must be one of warm, professional, friendly, got 'grumpy'"),
        ("GEMINI_BASE_URL", "ftp://x", "must be an http:// or https:// URL, got 'ftp://x'"),
        ("TLS_KEY_FILE", "/no/such.key", "no such file: /no/such.key"),
    ],
)
def test_each_kind_of_setting_says_what_it_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, line: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(StartupError) as refused:
        load_settings(tmp_path / ".env")

    assert refused.value.problems == [f"{name}: {line}"]


def test_half_a_tls_pair_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = tmp_path / "server.crt"
    cert.write_text("")
    monkeypatch.setenv("TLS_CERT_FILE", str(cert))

    with pytest.raises(StartupError) as refused:
        load_settings(tmp_path / ".env")

    assert refused.value.problems == ["TLS_CERT_FILE and TLS_KEY_FILE: set both, or neither"]
