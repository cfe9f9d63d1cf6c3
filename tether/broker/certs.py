"""Key material made by ``tether-broker init``: CA, broker certificate, audit key,
the TOTP seed key and the device-cookie key.

The CA is ECDSA P-256 and signs only the broker's certificate; customers'
clients trust that CA alone. Private keys are written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..protocol.checkpoint import key_fingerprint

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
BROKER_CERT = "broker.pem"
BROKER_KEY = "broker-key.pem"
AUDIT_KEY = "audit-key.pem"
TOTP_KEY = "totp.key"  # AES-256-GCM key for the TOTP seeds in the database
DEVICE_KEY = "device.key"  # HMAC key of the console's device cookies (auth/devices.py)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
#: TLS 1.2 suites the broker offers: forward-secret AEAD only (no CBC, no RSA key
#: exchange); TLS 1.3 suites are all AEAD already
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def fingerprint(der: bytes) -> str:
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def cert_fingerprint(cert: x509.Certificate) -> str:
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _make_ca(certs: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tether broker CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(certs / CA_KEY, _pem_key(key))
    (certs / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue_broker(
    certs: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(certs / BROKER_KEY, _pem_key(key))
    (certs / BROKER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _broker_names(certs: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate((certs / BROKER_CERT).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def ensure(certs: Path, hostnames: list[str]) -> dict[str, str]:
    """Create what is missing; reissue the broker certificate for new names."""
    certs.mkdir(parents=True, exist_ok=True)
    os.chmod(certs, 0o700)
    if (certs / CA_CERT).exists():
        ca = x509.load_pem_x509_certificate((certs / CA_CERT).read_bytes())
        loaded = serialization.load_pem_private_key((certs / CA_KEY).read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca, ca_key = _make_ca(certs)
    names = list(dict.fromkeys([*hostnames, *DEFAULT_NAMES]))
    if not (certs / BROKER_CERT).exists() or not set(names) <= _broker_names(certs):
        if (certs / BROKER_CERT).exists():
            names = list(dict.fromkeys([*names, *sorted(_broker_names(certs))]))
        _issue_broker(certs, ca, ca_key, names)
    ensure_totp_key(certs)
    device_key(certs)
    if not (certs / AUDIT_KEY).exists():
        _write_private(certs / AUDIT_KEY, _pem_key(ed25519.Ed25519PrivateKey.generate()))
    return {
        "ca_fingerprint": cert_fingerprint(ca),
        "audit_key_fingerprint": key_fingerprint(load_audit_key(certs).public_key()),
    }


def ensure_totp_key(certs: Path) -> None:
    """The key that encrypts TOTP seeds in the database (AES-256-GCM)."""
    path = certs / TOTP_KEY
    if not path.exists():
        _write_private(path, os.urandom(32))


def device_key(certs: Path) -> bytes:
    """The HMAC key of the device cookies (made here if a data directory from before
    device cookies has none: its browsers simply have no device cookie yet)."""
    path = certs / DEVICE_KEY
    if not path.exists():
        _write_private(path, os.urandom(32))
    return path.read_bytes()


def server_tls(certs: Path) -> ssl.SSLContext:
    """The broker's TLS: 1.2 or later, AEAD suites only, its own certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.load_cert_chain(certs / BROKER_CERT, certs / BROKER_KEY)
    return ctx


def load_audit_key(certs: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key((certs / AUDIT_KEY).read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key
