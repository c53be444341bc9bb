"""Certificates the sandbox generates for its SMTP STARTTLS, so no key is ever committed.

Two kinds, chosen per instance:
- `trusted`: a server certificate signed by a throwaway CA whose certificate is written to
  `ca_file`; a client told to trust that file (Beacon's `SMTP_CA_BUNDLE`) verifies the server.
- `untrusted`: a self-signed server certificate that no CA file vouches for, as a relay with a
  broken or home-made certificate presents: a verifying client must refuse it.

Both name `localhost`, `127.0.0.1` and `::1`, and live for a day. Files go to a private
temporary directory that `CertificateFiles.remove()` deletes.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TlsMode = Literal["off", "trusted", "untrusted"]
TLS_MODES: tuple[str, ...] = ("off", "trusted", "untrusted")
# Long enough for any test run or dev session, short enough to be worthless if it leaks.
VALIDITY = timedelta(days=1)
SERVER_NAMES = ("localhost",)
SERVER_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificateFiles:
    """PEM files of one generated server certificate; `ca_file` is None when nothing vouches for it."""

    directory: Path
    cert_file: Path
    key_file: Path
    ca_file: Path | None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def certificate_generate(mode: Literal["trusted", "untrusted"], *, common_name: str = "sandbox.localhost") -> CertificateFiles:
    """Write a fresh key and certificate (and, when `trusted`, the CA that signed it) to a new
    private temporary directory and return their paths."""
    directory = Path(tempfile.mkdtemp(prefix="beacon-sandbox-tls-"))
    now = datetime.now(UTC)
    server_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    if mode == "trusted":
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Beacon sandbox CA")])
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(ca_key, hashes.SHA256())
        )
        issuer, signing_key = ca_name, ca_key
    else:
        ca_cert, issuer, signing_key = None, subject, server_key
    server_cert = (
        _builder(subject, issuer, server_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in (*SERVER_NAMES, common_name)]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    ca_file = None
    if ca_cert is not None:
        ca_file = directory / "ca.pem"
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return CertificateFiles(directory=directory, cert_file=cert_file, key_file=key_file, ca_file=ca_file)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )
