"""Start-up against the database: DB_AUTO_MIGRATE=false refuses an outdated schema in one line, the
documented command fixes it, and the server then starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_edge import ROOT, server_process  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    environ.update(UPSTREAM="simulator", **env)
    return subprocess.run(args, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)


def test_without_auto_migrate_start_up_names_the_command_which_then_lets_it_start(
    tmp_path,
    server_process,  # noqa: F811
):
    refused = run(tmp_path, sys.executable, str(ROOT / "main.py"), DB_AUTO_MIGRATE="false")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "refusing to start: the database schema is not up to date; run: alembic upgrade head"
    )
    migrated = run(
        tmp_path,
        str(Path(sys.executable).parent / "alembic"),
        "-c",
        str(ROOT / "alembic.ini"),
        "upgrade",
        "head",
    )
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "intake.db").is_file()
    server = server_process(DB_AUTO_MIGRATE="false")
    assert server.process.poll() is None
