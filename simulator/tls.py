"""A throwaway CA and server certificate, written where only this user can read them."""

import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


@dataclass(frozen=True)
class TlsFiles:
    directory: Path
    ca_file: Path
    # Private key and certificate chain in one PEM, as uvicorn's certfile/keyfile accept.
    server_pem: Path

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def make_tls_files(host: str) -> TlsFiles:
    ca = trustme.CA(organization_name="Gemini Live simulator")
    names = list(LOCAL_NAMES)
    if host not in _WILDCARD_HOSTS and host not in names:
        names.append(host)
    leaf = ca.issue_cert(*names)
    # mkdtemp makes the directory 0700; the files are created 0600 below.
    directory = Path(tempfile.mkdtemp(prefix="gemini-simulator-"))
    files = TlsFiles(directory, directory / "ca.pem", directory / "server.pem")
    _write_private(files.ca_file, ca.cert_pem.bytes())
    _write_private(files.server_pem, leaf.private_key_and_cert_chain_pem.bytes())
    return files


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
