"""Certificates and keys for the local control plane.

One private CA signs the API server's serving certificate and every client
certificate, so a single ``certificate-authority-data`` in a kubeconfig trusts the
server, and the API server (``--client-ca-file``) trusts every identity we mint: the
admin in ``system:masters`` and, in tests, unprivileged users that RBAC must deny.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gitsync.errors import ConfigurationError

__all__ = ["CertificateAuthority", "KeyPair", "Pki", "ensure_pki"]

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The CA of one local control plane, able to issue more certificates."""

    pair: KeyPair

    def issue_client(self, *, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate: CN is the user name, O entries are the groups."""
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        return self._issue(
            subject=x509.Name(subject),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            alt_names=[],
        )

    def issue_server(self, *, hosts: tuple[str, ...]) -> KeyPair:
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        return self._issue(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            alt_names=alt_names,
        )

    def _issue(
        self,
        *,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName],
    ) -> KeyPair:
        ca_cert = x509.load_pem_x509_certificate(self.pair.cert_pem)
        ca_key = serialization.load_pem_private_key(self.pair.key_pem, password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError("the dev CA key is not an EC key: remove the pki folder")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return KeyPair(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_ca() -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitsync-dev-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
    return KeyPair(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _load_or_create(cert_path: Path, key_path: Path, create: Callable[[], KeyPair]) -> KeyPair:
    if cert_path.exists() and key_path.exists():
        return KeyPair(cert_pem=cert_path.read_bytes(), key_pem=key_path.read_bytes())
    pair = create()
    cert_path.write_bytes(pair.cert_pem)
    _write_private(key_path, pair.key_pem)
    return pair


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of every file the API server and the admin kubeconfig need."""

    ca: CertificateAuthority
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    admin: KeyPair


def ensure_pki(folder: Path) -> Pki:
    """Create the CA, serving cert, admin identity and service-account key once.

    Kept across restarts so that a kubeconfig handed out earlier stays valid.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ca_pair = _load_or_create(folder / "ca.crt", folder / "ca.key", _new_ca)
    ca = CertificateAuthority(ca_pair)
    _load_or_create(
        folder / "apiserver.crt",
        folder / "apiserver.key",
        lambda: ca.issue_server(
            hosts=("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default")
        ),
    )
    admin = _load_or_create(
        folder / "admin.crt",
        folder / "admin.key",
        lambda: ca.issue_client(user="gitsync-admin", groups=("system:masters",)),
    )
    sa_key = folder / "service-account.key"
    if not sa_key.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(sa_key, _key_pem(key))
    return Pki(
        ca=ca,
        ca_cert=folder / "ca.crt",
        serving_cert=folder / "apiserver.crt",
        serving_key=folder / "apiserver.key",
        service_account_key=sa_key,
        admin=admin,
    )
