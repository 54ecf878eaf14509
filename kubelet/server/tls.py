"""The node server's TLS: its serving certificate and the server-side SSL context.

Without --tls-cert-file the kubelet serves a self-signed certificate it makes once
under <root_dir>/pki (kubelet.crt, kubelet.key; the real kubelet's file names), valid
for the node name, the node IP, 127.0.0.1 and localhost, and made again when it
has expired or no longer names the node. Files are written atomically, the key 0600.

Client certificates: with a client CA the server asks for a certificate and Python's
ssl verifies it against that CA during the handshake (CERT_OPTIONAL: a client without
one still connects and gets 401 from the server; one whose certificate the CA did not
sign fails the handshake, as Python's ssl has no verify callback to defer it to the
request as Go's RequestClientCert does). Without a client CA no certificate is asked.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


def node_address(configured: str) -> str:
    """The node IP: the configured one, else the address this host would send from to
    a non-local address (a UDP connect sends nothing), else 127.0.0.1."""
    if configured:
        return configured
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing decides, no packet leaves
            address: str = probe.getsockname()[0]
            return address
    except OSError:
        return "127.0.0.1"


def _names(node_name: str, node_ip: str) -> tuple[set[str], set[str]]:
    dns = {node_name, "localhost"}
    ips = {"127.0.0.1"}
    try:
        ipaddress.ip_address(node_ip)
        ips.add(node_ip)
    except ValueError:
        dns.add(node_ip)
    return dns, ips


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _usable(cert_file: Path, dns: set[str], ips: set[str]) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc <= now + datetime.timedelta(days=1):
        return False
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(names.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return dns <= have_dns and ips <= have_ips


def self_signed(pki: Path, node_name: str, node_ip: str) -> tuple[Path, Path]:
    """(certificate, key) under `pki`, made if missing, expired or not naming the node."""
    pki.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = pki / "kubelet.crt", pki / "kubelet.key"
    dns, ips = _names(node_name, node_ip)
    if key_file.is_file() and _usable(cert_file, dns, ips):
        return cert_file, key_file
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(now.timestamp())}")]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in sorted(dns)]
                + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in sorted(ips)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomic(key_file, key_pem, 0o600)
    _write_atomic(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_file, key_file


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        context.load_verify_locations(cafile=str(client_ca_file))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
