"""WORKERS > 1: fork that many server processes on one listening socket, and keep them running.

The kernel spreads new connections across the processes; each holds its own sessions, so the
limits are shared only through Redis (REDIS_URL). SIGTERM to the parent reaches every worker,
and each one stops the way a single server does (sessions told, answers saved).
"""

import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("intake")

RESTART_DELAY_SECONDS = 1.0


def run_workers(count: int, serve: Callable[[], None]) -> int:
    children: dict[int, int] = {}
    stopping = False

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                serve()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logger.exception("worker %d failed", slot)
                code = 1
            os._exit(code)
        children[pid] = slot

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        # Ctrl-C reaches the workers from the terminal already; a second signal would force them.
        if signum == signal.SIGTERM:
            for pid in children:
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(count):
        start(slot)
    failed = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        slot = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(status)
        if stopping or slot < 0:
            # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
            failed = failed or code not in (0, -signal.SIGTERM, -signal.SIGINT)
            continue
        logger.warning("worker %d exited (%d); starting another", slot, code)
        time.sleep(RESTART_DELAY_SECONDS)
        start(slot)
    return 1 if failed else 0
