"""A clinic certificate authority and a server certificate for this machine's names and LAN addresses.

A tablet trusts the authority once (`clinic-ca.crt`); the server certificate is made again
whenever the machine's names or addresses change or it nears expiry, without a new install.
"""

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Under DATA_DIR.
TLS_DIR = "tls"
CA_NAME = "clinic-ca.crt"
CA_KEY_NAME = "clinic-ca.key"
CERT_NAME = "server.crt"
KEY_NAME = "server.key"
# Apple refuses server certificates valid for longer than 825 days; 397 keeps every browser happy.
SERVER_DAYS = 397
CA_DAYS = 3650
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServerCertificate:
    cert_file: Path
    key_file: Path
    ca_file: Path
    ca_fingerprint: str
    dns_names: tuple[str, ...]
    addresses: tuple[IPAddress, ...]
    created: bool


def machine_names(host: str) -> tuple[list[str], list[IPAddress]]:
    """The names and addresses a tablet on the LAN may use to reach a server listening on host."""
    hostname = socket.gethostname()
    dns = {"localhost", hostname, f"{hostname}.local", socket.getfqdn()}
    addresses: set[IPAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    try:
        addresses.add(ipaddress.ip_address(host))
    except ValueError:
        dns.add(host)
    for name in (hostname, socket.getfqdn()):
        try:
            for *_, sockaddr in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
                addresses.add(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
        except (socket.gaierror, ValueError):
            continue
    addresses.update(_routed_addresses())
    unspecified = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::")}
    return sorted(n for n in dns if n), sorted(addresses - unspecified, key=str)


def _routed_addresses() -> set[IPAddress]:
    # The source address the kernel would use to reach other networks: the LAN address on a
    # laptop. connect() on UDP sends nothing.
    found: set[IPAddress] = set()
    for family, target in ((socket.AF_INET, "10.255.255.255"), (socket.AF_INET6, "fd00::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((target, 9))
                found.add(ipaddress.ip_address(probe.getsockname()[0].split("%")[0]))
        except OSError:
            continue
    return found


def ensure_certificate(directory: Path, host: str) -> ServerCertificate:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    dns_names, addresses = machine_names(host)
    ca_cert, ca_key = _certificate_authority(directory)
    cert_file, key_file = directory / CERT_NAME, directory / KEY_NAME
    created = not _still_covers(cert_file, key_file, ca_cert, dns_names, addresses)
    if created:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(address) for address in addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(key_file, _key_pem(key))
        # The chain a browser needs: the server certificate, then the authority that signed it.
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
            serialization.Encoding.PEM
        )
        _write_private(cert_file, chain)
    return ServerCertificate(
        cert_file=cert_file,
        key_file=key_file,
        ca_file=directory / CA_NAME,
        ca_fingerprint=ca_cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        dns_names=tuple(dns_names),
        addresses=tuple(addresses),
        created=created,
    )


def _certificate_authority(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_file, ca_key_file = directory / CA_NAME, directory / CA_KEY_NAME
    if ca_file.is_file() and ca_key_file.is_file():
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey) and _valid_for_a_while(ca_cert):
            return ca_cert, loaded
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Voice intake"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Clinic intake CA ({socket.gethostname()})"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key_file, _key_pem(key))
    _write_private(ca_file, cert.public_bytes(serialization.Encoding.PEM))
    # A new authority invalidates a server certificate the old one signed.
    (directory / CERT_NAME).unlink(missing_ok=True)
    return cert, key


def _still_covers(
    cert_file: Path,
    key_file: Path,
    ca_cert: x509.Certificate,
    dns_names: list[str],
    addresses: list[IPAddress],
) -> bool:
    if not (cert_file.is_file() and key_file.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    if not _valid_for_a_while(cert):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False  # signed by an authority the tablets no longer trust
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have_names = set(sans.get_values_for_type(x509.DNSName))
    have_addresses = set(sans.get_values_for_type(x509.IPAddress))
    return set(dns_names) <= have_names and set(addresses) <= have_addresses


def _valid_for_a_while(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    # Created owner-only from the first byte, not chmod-ed after the fact.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, 0o600)


def trust_steps(certificate: ServerCertificate, host: str, port: int) -> list[str]:
    try:
        listening: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        listening = None
    if listening is not None and not listening.is_unspecified:
        reachable = [listening]
    else:
        reachable = [a for a in certificate.addresses if not a.is_loopback]
    urls = [f"https://{_host(a)}:{port}" for a in reachable] or [f"https://localhost:{port}"]
    steps = [
        f"HTTPS with the clinic's own certificate authority ({certificate.ca_file}),",
        f"  SHA-256 fingerprint {certificate.ca_fingerprint}.",
        f"  Once per tablet: open {urls[0]}/{CA_NAME}, install it as a CA certificate "
        "(Android: Settings > Security > Encryption & credentials > Install a certificate > "
        "CA certificate; iPad: allow the profile, install it in Settings, then turn it on in "
        "Settings > General > About > Certificate Trust Settings) and check the fingerprint.",
        "  Then open " + " or ".join(f"{url}/app/" for url in urls),
    ]
    if listening is not None and listening.is_loopback:
        steps.append(f"  HOST is {host}: only this machine can connect; set HOST=0.0.0.0 for tablets.")
    return steps


def _host(address: IPAddress) -> str:
    return f"[{address}]" if address.version == 6 else str(address)
