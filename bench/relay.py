"""Relay overhead at scale: N browser-like sessions against `python main.py` and an echo simulator.

    python -m bench.relay --sessions 50 200 500 --seconds 20

Each session sends 100 ms of 16 kHz PCM16 every 100 ms, stamped with its send time, starting
at a random point of its first 100 ms (browsers are not in step with each other); the
simulator (echo mode) sends every chunk straight back, so the client measures the whole round
trip browser -> relay -> upstream -> relay -> browser. The server runs as its own process,
pinned to core 0 when `taskset` exists; the simulator and this load generator share core 1.
With --workers 2 the server forks two workers and is not pinned (a two-core machine then
shares both cores between the workers, the simulator and the load generator).

By default every session connects in the same instant, the worst burst, and the server's CPU
per connect is printed; --arrivals S spreads the connects over S seconds instead. The echo
stand-in sends no resumption handle unless --handles-every S asks for one after every S seconds
of a session's audio (the conversation mode gives one each turn); without handles the server
keeps all unconfirmed input for replay, up to 30 s of it.
--floor runs bench/floor_relay.py in place of the server: the same stack (uvicorn, the SDK's
connect, LiveSocket, four tasks and two queues) doing nothing but relay, the floor the server's
CPU is read against.
Loopback only; every run is bounded by --seconds plus fixed connect and drain deadlines.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import certifi
import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CHUNK = 3200  # 100 ms of 16 kHz PCM16
PERIOD = 0.1
STAMP = struct.Struct("<d")
CONNECT_SECONDS = 60.0
DRAIN_SECONDS = 10.0
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
METRICS_TOKEN = "bench-relay-metrics"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@dataclass
class SessionResult:
    ready_after: float | None = None
    round_trips: list[float] = field(default_factory=list)
    error: str | None = None
    # Set once the session is ready or has failed.
    settled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Setup:
    """What one invocation runs, the same for every N (the command line's options)."""

    seconds: float = 20.0
    server_dir: Path = ROOT  # a checkout whose main.py to run
    workers: int = 1
    database_url: str | None = None
    floor: bool = False  # bench/floor_relay.py in place of the server
    arrivals: float = 0.0  # 0: every session connects in the same instant
    handles_every: float | None = None
    flamegraph: Path | None = None


# The cores this run may use, read once: the load generator pins itself to the last one during a
# run, and a list read after that would start the next N's server and simulator on that core too.
CORES = sorted(os.sched_getaffinity(0))


def pinned(core: int) -> list[str]:
    if shutil.which("taskset") and len(CORES) > 1:
        return ["taskset", "-c", str(CORES[core])]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    """The server and its worker processes (WORKERS > 1)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid, *found]


def start_simulator(stack: ExitStack, setup: Setup) -> tuple[str, str, int]:
    every = setup.handles_every
    options = f"echo;echo_handle_every={every:g}" if every else "echo"
    simulator = [sys.executable, "-m", "simulator", "--port", "0", "--options", options]
    command = [*(pinned(1) if setup.workers == 1 else []), *simulator]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    stack.callback(_stop, process)
    assert process.stdout is not None
    base_url = process.stdout.readline().split(": ", 1)[1].strip()
    ca_file = process.stdout.readline().split(": ", 1)[1].strip()
    return base_url, ca_file, process.pid


def start_server(
    stack: ExitStack, setup: Setup, base_url: str, ca_file: str, sessions: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-relay-"))
    # Trusted as Google is in production: the public CA bundle (plus the simulator's CA) through
    # SSL_CERT_FILE, so whatever loads a certificate store per session pays what it would there.
    bundle = Path(data) / "trust.pem"
    bundle.write_text(Path(certifi.where()).read_text() + Path(ca_file).read_text())
    env = {
        **os.environ,
        "GEMINI_API_KEY": "sim:simple_visit;echo",
        "GEMINI_BASE_URL": base_url,
        "SSL_CERT_FILE": str(bundle),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": data,
        "LOG_LEVEL": "WARNING",
        "MAX_SESSIONS": str(sessions + 10),
        "MAX_SESSIONS_PER_CLIENT": str(sessions + 10),
        "STALL_TIMEOUT_SECONDS": "600",
        "METRICS_TOKEN": METRICS_TOKEN,
        "WORKERS": str(setup.workers),
    }
    env.pop("DATABASE_URL", None)
    if setup.database_url:
        env["DATABASE_URL"] = setup.database_url
    env.pop("REDIS_URL", None)
    pin = pinned(0) if setup.workers == 1 else []
    # --floor: the bare relay on the same stack (bench/floor_relay.py) in place of the server.
    program, cwd = (["-m", "bench.floor_relay"], ROOT) if setup.floor else (["main.py"], setup.server_dir)
    server = subprocess.Popen([*pin, sys.executable, *program], cwd=cwd, env=env)
    stack.callback(_stop, server)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server, port
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _until_ready(ws: ClientConnection) -> None:
    async for raw in ws:
        if isinstance(raw, str) and json.loads(raw).get("state") == "ready":
            return
    raise ConnectionClosed(None, None)


async def one_session(url: str, started: float, until: float, phase: float, result: SessionResult) -> None:
    """Connects at `started` (a perf_counter time); connect → ready is timed from then."""
    await asyncio.sleep(max(0.0, started - time.perf_counter()))
    try:
        async with connect(
            url, max_size=2**20, ping_interval=None, compression=None, open_timeout=CONNECT_SECONDS
        ) as ws:
            await asyncio.wait_for(_until_ready(ws), CONNECT_SECONDS)
            result.ready_after = time.perf_counter() - started
            result.settled.set()
            receiver = asyncio.create_task(_receive(ws, result))
            frame = bytearray(CHUNK)
            next_at = time.perf_counter() + phase
            await asyncio.sleep(phase)
            while next_at < until:
                STAMP.pack_into(frame, 0, time.perf_counter())
                await ws.send(bytes(frame))
                next_at += PERIOD
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await ws.send(json.dumps({"type": "end_session"}))
            try:
                await asyncio.wait_for(receiver, DRAIN_SECONDS)
            except TimeoutError:
                result.error = "no close after end_session"
    except (OSError, ConnectionClosed, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:80]
    finally:
        result.settled.set()


async def _receive(ws: ClientConnection, result: SessionResult) -> None:
    try:
        async for raw in ws:
            if isinstance(raw, bytes) and len(raw) >= STAMP.size:
                result.round_trips.append(time.perf_counter() - STAMP.unpack_from(raw)[0])
    except ConnectionClosed:
        pass


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(
    port: int, server_pid: int, sim_pid: int, sessions: int, setup: Setup, flamegraph: Path | None
) -> dict[str, float]:
    """`setup.arrivals` 0: every session connects in the same instant (the worst burst);
    otherwise they arrive at random over that many seconds, and the audio runs `setup.seconds`
    after the last."""
    arrivals = setup.arrivals
    url = f"ws://127.0.0.1:{port}/ws"
    pids = tree(server_pid)
    rss_idle = sum(rss_kib(p) for p in pids)
    results = [SessionResult() for _ in range(sessions)]
    started = time.perf_counter()
    until = started + arrivals + setup.seconds
    draw = random.Random(sessions)
    starts = [started + draw.uniform(0, arrivals) for _ in results]
    tasks = [
        asyncio.create_task(one_session(url, start, until, draw.uniform(0, PERIOD), r))
        for start, r in zip(starts, results, strict=True)
    ]
    connect_cpu_from = sum(cpu_seconds(p) for p in pids)
    # CPU and memory are read across the steady part: from when every session is up to the end.
    # (A timeout cancels the gather and with it every waiter still pending.)
    with contextlib.suppress(TimeoutError):
        all_settled = asyncio.gather(*(r.settled.wait() for r in results))
        await asyncio.wait_for(all_settled, timeout=max(0.0, until - time.perf_counter()))
    steady_from, cpu_from = time.perf_counter(), sum(cpu_seconds(p) for p in pids)
    # What the server spent on connecting, per session: only a burst keeps audio out of it.
    connect_cpu = (cpu_from - connect_cpu_from) / sessions if arrivals == 0 else float("nan")
    metrics_from = await scrape(port)
    spy = profile(server_pid, until - steady_from - 1.0, flamegraph) if flamegraph else None
    # The other core's load: if it is saturated, the round trip measures it, not the relay.
    other_from = cpu_seconds(sim_pid) + time.process_time()
    await asyncio.sleep(max(0.0, until - time.perf_counter() - 0.5))
    steady = time.perf_counter() - steady_from
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_from
    other = cpu_seconds(sim_pid) + time.process_time() - other_from
    rss_loaded = sum(rss_kib(p) for p in pids)
    metrics_to = await scrape(port)
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    _, pending = await asyncio.wait(tasks, timeout=CONNECT_SECONDS + DRAIN_SECONDS)
    # A session's expected failures are in its result; anything else, or one that never ended,
    # is counted as an error here rather than lost with its task.
    for task, result in zip(tasks, results, strict=True):
        if task in pending:
            task.cancel()
            result.error = result.error or "did not end"
        elif (exc := task.exception()) is not None:
            result.error = f"{type(exc).__name__}: {exc}"[:80]
    trips = [t for r in results for t in r.round_trips]
    ready = [r.ready_after for r in results if r.ready_after is not None]
    errors = Counter(r.error for r in results if r.error is not None)
    if errors:
        print(f"  N={sessions} session errors: {dict(errors)}", file=sys.stderr)
    measured = steady >= 2.0  # a steady part too short (sessions still connecting) measures nothing
    added = {
        f"{name}_p99_ms": bucket_quantile(metrics_from, metrics_to, metric, 0.99, labels) * 1000
        for name, metric, labels in (
            ("up", "intake_relay_latency_seconds", {"direction": "upstream"}),
            ("down", "intake_relay_latency_seconds", {"direction": "downstream"}),
            ("lag", "intake_event_loop_lag_seconds", {}),
        )
    }
    return {
        **added,
        "ready": len(ready),
        "errors": sum(r.error is not None for r in results),
        "rtt_p50_ms": percentile(trips, 0.5) * 1000,
        "rtt_p99_ms": percentile(trips, 0.99) * 1000,
        "frames": len(trips),
        "cpu_per_session_s": cpu / (sessions * steady) if measured else float("nan"),
        "rss_per_session_kb": (rss_loaded - rss_idle) * 1.024 / sessions,
        "ready_p99_ms": percentile(ready, 0.99) * 1000,
        "connect_cpu_ms": connect_cpu * 1000,
        "server_core": cpu / steady if measured else float("nan"),
        "other_core": other / steady if measured else float("nan"),
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    """/metrics now; nothing (figures then print nan) if the server cannot answer in 10 s."""
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/metrics", headers=METRICS_AUTH, timeout=10)
    except httpx.TransportError:
        return {}
    text = answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def bucket_quantile(before: Samples, after: Samples, name: str, q: float, labels: dict[str, str]) -> float:
    """The upper bound of the histogram bucket holding quantile q of what was observed between
    two scrapes (a server-side figure: it cannot see the load generator's own delays)."""
    counts = []
    for (sample, found), value in after.items():
        tags = dict(found)
        if sample == f"{name}_bucket" and all(tags.get(k) == v for k, v in labels.items()):
            counts.append((float(tags["le"]), value - before.get((sample, found), 0.0)))
    counts.sort()
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return float("nan")
    return next(le for le, count in counts if count >= q * total)


def left_open(port: int, base_url: str, ca_file: str) -> tuple[int, int]:
    """Sessions still open on the server and on the simulator, after a bounded wait for zero."""
    ctx = ssl.create_default_context(cafile=ca_file)
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        server = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["open_sessions"]
        sim = httpx.get(f"{base_url}/_stats", verify=ctx, timeout=5).json()["open_sessions"]
        if (server == 0 and sim == 0) or time.monotonic() > deadline:
            return server, sim
        time.sleep(0.2)


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy samples the server (and its workers) over the steady part into a flame graph."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "100"]
    duration = ["--duration", str(max(1, int(seconds))), "--output", str(out)]
    return subprocess.Popen([*command, *duration], stdout=subprocess.DEVNULL)


def bench(sessions: int, setup: Setup) -> dict[str, float]:
    with ExitStack() as stack:
        base_url, ca_file, sim_pid = start_simulator(stack, setup)
        server, port = start_server(stack, setup, base_url, ca_file, sessions)
        if setup.workers == 1:
            os.sched_setaffinity(0, {CORES[-1]})
            stack.callback(os.sched_setaffinity, 0, set(CORES))
        graph = setup.flamegraph
        out = graph.with_name(f"{graph.stem}-{sessions}{graph.suffix}") if graph else None
        figures = asyncio.run(run_load(port, server.pid, sim_pid, sessions, setup, out))
        figures["server_open"], figures["simulator_open"] = left_open(port, base_url, ca_file)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server-dir", type=Path, default=ROOT, help="a checkout whose main.py to run")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (WORKERS)")
    parser.add_argument(
        "--flamegraph", type=Path, help="py-spy flame graph of the server's steady part, per N (an .svg)"
    )
    parser.add_argument(
        "--database-url", help="the server's DATABASE_URL (default: SQLite in a fresh directory per run)"
    )
    parser.add_argument(
        "--arrivals",
        type=float,
        default=0.0,
        help="sessions arrive at random over this many seconds (default 0: all in the same instant)",
    )
    parser.add_argument(
        "--handles-every",
        type=float,
        help="the stand-in sends a resumption handle after every this many seconds of a session's "
        "audio (default: never, so the server keeps all unconfirmed input for replay, up to 30 s)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="run bench/floor_relay.py, the bare relay on the same stack, in place of the server",
    )
    args = parser.parse_args()
    if args.floor and (args.workers != 1 or args.database_url or args.server_dir != ROOT):
        parser.error(
            "--floor runs one process of bench/floor_relay.py: no --workers, --database-url or --server-dir"
        )
    setup = Setup(
        seconds=args.seconds,
        server_dir=args.server_dir.resolve(),
        workers=args.workers,
        database_url=args.database_url,
        floor=args.floor,
        arrivals=args.arrivals,
        handles_every=args.handles_every,
        flamegraph=args.flamegraph,
    )
    arriving = f"over {args.arrivals:g} s" if args.arrivals else "all at once"
    print(
        f"server: {'bench/floor_relay.py (the floor)' if args.floor else 'main.py'}  "
        f"database: {'none' if args.floor else 'PostgreSQL' if args.database_url else 'SQLite'}  "
        f"workers: {args.workers}  "
        f"sessions arrive: {arriving}  handles: "
        f"{f'every {args.handles_every:g} s of audio' if args.handles_every else 'none'}"
    )
    print(f"cpus: {os.cpu_count()}  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'N':>5} {'ready':>5} {'err':>4} {'rtt p50 ms':>10} {'rtt p99 ms':>10} {'cpu s/sess-s':>12} "
        f"{'rss KB/sess':>11} {'ready p99 ms':>12} {'cpu ms/connect':>14} {'open srv/sim':>12} "
        f"{'server/other busy':>17} "
        f"{'added p99 up/down ms':>20} {'lag p99 ms':>10}"
    )
    for n in args.sessions:
        f = bench(n, setup)
        columns = [
            f"{n:>5} {f['ready']:>5.0f} {f['errors']:>4.0f}",
            f"{f['rtt_p50_ms']:>10.1f} {f['rtt_p99_ms']:>10.1f} {f['cpu_per_session_s']:>12.5f}",
            f"{f['rss_per_session_kb']:>11.0f} {f['ready_p99_ms']:>12.0f} {f['connect_cpu_ms']:>14.2f}",
            f"{f['server_open']:>5.0f}/{f['simulator_open']:.0f}",
            f"{f['server_core']:>11.0%}/{f['other_core']:.0%}",
            f"{f['up_p99_ms']:>14.1f}/{f['down_p99_ms']:.1f} {f['lag_p99_ms']:>10.1f}",
        ]
        print(" ".join(columns), flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
