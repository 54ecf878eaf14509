"""The cluster's certificates: a CA kubeling generates on first start, the API
server's serving certificate (for 127.0.0.1, ::1, localhost and the host's name),
and client certificates (CommonName = user, Organization = groups), as PEM files.
ECDSA P-256 keys, ten years for the CA, one year for the others (regenerated when
they expire or the names change).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365


@dataclass(frozen=True)
class KeyPair:
    certificate: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _save(pair: KeyPair, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(
        pair.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(pair.certificate, certificate.public_bytes(serialization.Encoding.PEM))
    pair.certificate.chmod(0o644)


def _load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        certificate = x509.load_pem_x509_certificate(pair.certificate.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=1
    ):
        return None
    return certificate, key


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name(attributes)


def ensure_ca(directory: Path) -> KeyPair:
    """The CA in `directory` (ca.crt, ca.key), generated if missing or expiring."""
    pair = KeyPair(directory / "ca.crt", directory / "ca.key")
    if _load(pair) is not None:
        return pair
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("kubeling-ca")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _save(pair, certificate, key)
    return pair


def issue(
    ca: KeyPair,
    pair: KeyPair,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
) -> KeyPair:
    """A certificate signed by `ca` at `pair`, unless a valid one with the same names
    is there already."""
    loaded = _load(pair)
    wanted_names = set(dns_names) | set(ip_addresses)
    if loaded is not None:
        certificate, _ = loaded
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            present = set(san.get_values_for_type(x509.DNSName)) | {
                str(ip) for ip in san.get_values_for_type(x509.IPAddress)
            }
        except x509.ExtensionNotFound:
            present = set()
        if present == wanted_names and certificate.subject == _name(common_name, organizations):
            return pair
    ca_loaded = _load(ca)
    if ca_loaded is None:
        raise ValueError(f"CA {ca.certificate}: missing or expired")
    ca_certificate, ca_key = ca_loaded
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if wanted_names:
        alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    _save(pair, builder.sign(ca_key, hashes.SHA256()), key)
    return pair
