"""CA, broker certificate and audit key made by ``init`` (broker/certs.py)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from tether.broker import certs
from tether.protocol.checkpoint import key_fingerprint

KEYS = (certs.CA_KEY, certs.BROKER_KEY, certs.AUDIT_KEY)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(path: Path) -> set[str]:
    san = load(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(v) for v in san.get_values_for_type(x509.DNSName)}
            | {str(v) for v in san.get_values_for_type(x509.IPAddress)})


@pytest.fixture
def certdir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "certs"


def handshake(certdir: Path, server_hostname: str, cafile: Path | None = None) -> str:
    """A real TLS handshake over a socket pair; returns the negotiated version."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certdir / certs.BROKER_CERT, certdir / certs.BROKER_KEY)
    client_ctx = ssl.create_default_context(cafile=str(cafile or certdir / certs.CA_CERT))
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    server_error: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(b, server_side=True) as s:
                s.sendall(s.recv(5))
        except (OSError, ssl.SSLError) as exc:
            server_error.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(a, server_hostname=server_hostname) as c:
            c.sendall(b"hello")
            assert c.recv(5) == b"hello"
            return c.version() or ""
    finally:
        a.close()
        t.join()
        b.close()


def test_ensure_makes_a_ca_a_broker_cert_and_an_audit_key(certdir: Path) -> None:
    info = certs.ensure(certdir, ["broker.example.com"])
    for name in (certs.CA_CERT, *KEYS, certs.BROKER_CERT):
        assert (certdir / name).is_file(), name
    ca = load(certdir / certs.CA_CERT)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    broker = load(certdir / certs.BROKER_CERT)
    assert not broker.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert broker.issuer == ca.subject
    eku = broker.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    ca_key = serialization.load_pem_private_key((certdir / certs.CA_KEY).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    audit_key = certs.load_audit_key(certdir)
    assert isinstance(audit_key, ed25519.Ed25519PrivateKey)
    assert info["ca_fingerprint"] == certs.cert_fingerprint(ca)
    assert info["ca_fingerprint"].startswith("SHA256:") and len(info["ca_fingerprint"]) == 71
    assert info["audit_key_fingerprint"] == key_fingerprint(audit_key.public_key())


def test_broker_cert_names_loopback_and_extra_hostnames(certdir: Path) -> None:
    certs.ensure(certdir, ["broker.example.com", "10.1.2.3", "tether.internal"])
    assert sans(certdir / certs.BROKER_CERT) >= {
        "localhost", "127.0.0.1", "::1", "broker.example.com", "10.1.2.3", "tether.internal"}
    san = load(certdir / certs.BROKER_CERT).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    # addresses are IP entries, not DNS names (clients match them differently)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    assert "127.0.0.1" not in san.get_values_for_type(x509.DNSName)


def test_defaults_without_extra_hostnames(certdir: Path) -> None:
    certs.ensure(certdir, [])
    assert sans(certdir / certs.BROKER_CERT) == {"localhost", "127.0.0.1", "::1"}


def test_private_keys_are_mode_0600_and_the_directory_0700(certdir: Path) -> None:
    certs.ensure(certdir, [])
    for name in KEYS:
        assert stat.S_IMODE((certdir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(certdir.stat().st_mode) == 0o700


def test_ensure_is_idempotent(certdir: Path) -> None:
    first = certs.ensure(certdir, ["broker.example.com"])
    files = {p.name: p.read_bytes() for p in certdir.iterdir()}
    second = certs.ensure(certdir, ["broker.example.com"])
    assert second == first
    assert {p.name: p.read_bytes() for p in certdir.iterdir()} == files
    # asking for a name already on the certificate changes nothing either
    assert certs.ensure(certdir, ["localhost"]) == first
    assert {p.name: p.read_bytes() for p in certdir.iterdir()} == files


def test_a_new_hostname_reissues_the_broker_cert_and_keeps_the_ca(certdir: Path) -> None:
    first = certs.ensure(certdir, ["old.example.com"])
    ca_pem = (certdir / certs.CA_CERT).read_bytes()
    ca_key = (certdir / certs.CA_KEY).read_bytes()
    audit_key = (certdir / certs.AUDIT_KEY).read_bytes()
    old_broker = load(certdir / certs.BROKER_CERT)
    second = certs.ensure(certdir, ["new.example.com"])
    assert second == first  # the CA and audit key fingerprints customers rely on
    assert (certdir / certs.CA_CERT).read_bytes() == ca_pem
    assert (certdir / certs.CA_KEY).read_bytes() == ca_key
    assert (certdir / certs.AUDIT_KEY).read_bytes() == audit_key
    new_broker = load(certdir / certs.BROKER_CERT)
    assert new_broker.serial_number != old_broker.serial_number
    # the old names stay, so existing clients keep working
    assert sans(certdir / certs.BROKER_CERT) >= {
        "old.example.com", "new.example.com", "localhost", "127.0.0.1", "::1"}
    assert stat.S_IMODE((certdir / certs.BROKER_KEY).stat().st_mode) == 0o600
    handshake(certdir, "new.example.com")
    handshake(certdir, "old.example.com")


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1", "broker.example.com"])
def test_a_client_trusting_only_the_ca_completes_a_tls_handshake(certdir: Path,
                                                                 name: str) -> None:
    certs.ensure(certdir, ["broker.example.com"])
    assert handshake(certdir, name) in ("TLSv1.2", "TLSv1.3")


def test_a_name_not_on_the_certificate_is_refused(certdir: Path) -> None:
    certs.ensure(certdir, ["broker.example.com"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certdir, "evil.example.com")


def test_another_brokers_ca_is_refused(certdir: Path, tmp_path: Path) -> None:
    certs.ensure(certdir, [])
    other = tmp_path / "other" / "certs"
    certs.ensure(other, [])
    assert (other / certs.CA_CERT).read_bytes() != (certdir / certs.CA_CERT).read_bytes()
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certdir, "localhost", cafile=other / certs.CA_CERT)


def test_the_broker_cert_is_signed_by_the_ca(certdir: Path) -> None:
    certs.ensure(certdir, [])
    ca = load(certdir / certs.CA_CERT)
    broker = load(certdir / certs.BROKER_CERT)
    broker.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key((certdir / certs.BROKER_KEY).read_bytes(), None)
    assert key.public_key().public_numbers() == broker.public_key().public_numbers()  # type: ignore[union-attr]
