"""HTTPS for the waiting-room tablet: the clinic CA and server certificate the server makes, and
`python main.py` serving the page, /ws and /app/config over TLS on a stand-in LAN address."""

import asyncio
import json
import os
import socket
import ssl
import stat
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import websockets

from services.tls_certificate import CA_KEY_NAME, CA_NAME, ensure_certificate

REPO = Path(__file__).resolve().parents[1]
LAN_HOST = "127.0.0.2"


def handshake(ca_file: Path, address: str, server_name: str, cert_file: Path, key_file: Path) -> str:
    """A real TLS handshake on loopback, checked the way a browser checks: chain and name."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=ca_file)
    with socket.create_server((address, 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                connection.close()  # the client refused the certificate: what some tests expect

        with socket.create_connection((address, port)) as raw:
            thread = threading.Thread(target=accept)
            thread.start()
            with client_context.wrap_socket(raw, server_hostname=server_name) as tls:
                version = str(tls.version())
                tls.send(b"x")
            thread.join(5)
    return version


def test_the_certificate_names_this_machine_and_its_address(tmp_path: Path) -> None:
    made = ensure_certificate(tmp_path / "tls", LAN_HOST)

    assert made.created
    assert socket.gethostname() in made.dns_names
    assert LAN_HOST in {str(address) for address in made.addresses}
    for name in (LAN_HOST, socket.gethostname(), "localhost"):
        assert handshake(made.ca_file, LAN_HOST, name, made.cert_file, made.key_file).startswith("TLS")


def test_a_name_the_certificate_does_not_hold_is_refused(tmp_path: Path) -> None:
    made = ensure_certificate(tmp_path / "tls", LAN_HOST)

    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(made.ca_file, LAN_HOST, "elsewhere.example", made.cert_file, made.key_file)


def test_keys_and_certificates_are_owner_only(tmp_path: Path) -> None:
    made = ensure_certificate(tmp_path / "tls", LAN_HOST)

    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    for name in (CA_NAME, CA_KEY_NAME, made.cert_file.name, made.key_file.name):
        assert stat.S_IMODE((tmp_path / "tls" / name).stat().st_mode) == 0o600


def test_a_new_address_gets_a_new_certificate_from_the_same_authority(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path / "tls", LAN_HOST)
    again = ensure_certificate(tmp_path / "tls", LAN_HOST)
    moved = ensure_certificate(tmp_path / "tls", "127.0.0.3")

    assert not again.created
    assert moved.created
    # The tablet's trusted CA still holds: nothing to install again.
    assert moved.ca_fingerprint == first.ca_fingerprint
    handshake(moved.ca_file, "127.0.0.3", "127.0.0.3", moved.cert_file, moved.key_file)


def test_a_certificate_another_authority_signed_is_replaced(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path / "tls", LAN_HOST)
    other = ensure_certificate(tmp_path / "other", LAN_HOST)
    for name in (CA_NAME, CA_KEY_NAME):  # an operator restoring another laptop's CA
        (tmp_path / "tls" / name).write_bytes((tmp_path / "other" / name).read_bytes())

    again = ensure_certificate(tmp_path / "tls", LAN_HOST)

    assert again.created
    assert again.ca_fingerprint == other.ca_fingerprint != first.ca_fingerprint
    handshake(again.ca_file, LAN_HOST, LAN_HOST, again.cert_file, again.key_file)


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def tls_server(tmp_path: Path, **settings: str) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    port = free_port(LAN_HOST)
    env = {key: value for key, value in os.environ.items() if key != "GEMINI_API_KEY"}
    env |= {
        "HOST": LAN_HOST,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "data"),
        "UPSTREAM": "simulator",
        "SIMULATOR_TIME_SCALE": "0.1",
        "SAVE_CONVERSATIONS": "false",
        "ENABLE_SESSION_LOGS": "false",
        **settings,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "main.py", cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL
    )
    base = f"https://{LAN_HOST}:{port}"
    ca_file = Path(settings.get("CA_FILE", tmp_path / "data" / "tls" / CA_NAME))
    try:
        async with asyncio.timeout(30):
            while True:
                assert process.returncode is None, "main.py exited during start-up"
                if await asyncio.to_thread(ca_file.is_file):
                    trusted = ssl.create_default_context(cafile=ca_file)
                    try:
                        async with httpx.AsyncClient(verify=trusted) as client:
                            if (await client.get(f"{base}/health")).status_code == 200:
                                break
                    except httpx.TransportError:
                        pass
                await asyncio.sleep(0.1)
        yield base, trusted
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)


async def test_self_signed_serves_page_socket_and_ca_over_tls(tmp_path: Path) -> None:
    async with tls_server(tmp_path, TLS_SELF_SIGNED="true", KIOSK_MODE="true") as (base, trusted):
        async with httpx.AsyncClient(verify=trusted) as client:
            page = await client.get(f"{base}/app/")
            config = (await client.get(f"{base}/app/config")).json()
            ca = await client.get(f"{base}/{CA_NAME}")
        async with websockets.connect(
            f"wss://{LAN_HOST}:{base.rsplit(':', 1)[1]}/ws", ssl=trusted, origin=base
        ) as session:
            first = json.loads(await session.recv())
            await session.send(json.dumps({"type": "end_session"}))
        # The same port does not answer in the clear.
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient() as plain:
                await plain.get(base.replace("https://", "http://") + "/health")

    assert page.status_code == 200 and "Patient intake" in page.text
    assert config["kiosk_mode"] is True and config["kiosk_review_seconds"] == 30
    assert ca.content == (tmp_path / "data" / "tls" / CA_NAME).read_bytes()
    assert first["type"] == "status"


async def test_own_certificate_files_are_served(tmp_path: Path) -> None:
    made = ensure_certificate(tmp_path / "own", LAN_HOST)
    files = {"TLS_CERT_FILE": str(made.cert_file), "TLS_KEY_FILE": str(made.key_file)}

    async with tls_server(tmp_path, CA_FILE=str(made.ca_file), **files) as (base, trusted):
        async with httpx.AsyncClient(verify=trusted) as client:
            health = await client.get(f"{base}/health")
            no_ca = await client.get(f"{base}/{CA_NAME}")

    assert health.json()["status"] == "healthy"
    # Only a server that made the clinic CA hands it out.
    assert no_ca.status_code == 404
