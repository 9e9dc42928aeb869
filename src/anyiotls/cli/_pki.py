"""Certificates for the command line, made and read with ``cryptography``.

* :class:`EphemeralCA`: a throw-away certificate authority that lives in memory and
  issues ECDSA P-256 certificates (``demo``, and ``serve`` without ``--cert``).
* :func:`load_chain_into` / :func:`load_ca_file`: load user files into an
  :class:`ssl.SSLContext`, turning every problem into one readable line.
* :func:`describe_certificate`: what ``connect`` and ``serve`` print about a
  certificate.

``ssl.SSLContext.load_cert_chain`` reads only files, so in-memory credentials go
through a private temporary directory that is deleted right after loading.
"""

from __future__ import annotations

__all__ = (
    "Credentials",
    "EphemeralCA",
    "check_ca_file",
    "describe_certificate",
    "load_ca_file",
    "load_chain_into",
    "load_credentials_into",
    "short_subject",
)

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._exit import CLIError, ExitCode

#: How long an ephemeral certificate is valid; it starts an hour in the past so a
#: peer whose clock is a little behind still accepts it.
EPHEMERAL_VALIDITY = datetime.timedelta(days=30)
_CLOCK_SKEW = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Credentials:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class EphemeralCA:
    """A certificate authority that exists only in this process's memory.

    Its certificates carry every extension strict verifiers ask for (key usage,
    subject and authority key identifiers), so Python 3.13's
    ``VERIFY_X509_STRICT`` default accepts them.
    """

    def __init__(self, name: str = "anyiotls ephemeral CA") -> None:
        """Make the CA's key and self-signed certificate."""
        self._key = _new_key()
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public_key = self._key.public_key()
        now = _now()
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + EPHEMERAL_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM: what a peer must trust."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        hosts: tuple[str, ...] = (),
        organization: str | None = None,
        client: bool = False,
    ) -> Credentials:
        """Issue a certificate: for a server with *hosts* as its names, or a client."""
        key = _new_key()
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)
            )
        now = _now()
        usage = (
            ExtendedKeyUsageOID.CLIENT_AUTH
            if client
            else ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + EPHEMERAL_VALIDITY)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()
                ),
                critical=False,
            )
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in hosts]),
                critical=False,
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return Credentials(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_credentials_into(context: ssl.SSLContext, credentials: Credentials) -> None:
    """Load in-memory *credentials* into *context* (through a deleted temp file)."""
    with tempfile.TemporaryDirectory(prefix="anyiotls-") as directory:
        path = os.path.join(directory, "credentials.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(credentials.key_pem + credentials.cert_pem)
        context.load_cert_chain(path)


# -- user files -------------------------------------------------------------------


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CLIError(
            ExitCode.BAD_FILE, f"cannot read {what} {path}: {reason}"
        ) from None


def _parse_certificates(data: bytes, path: str, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise CLIError(
            ExitCode.BAD_FILE,
            f"{what} {path} holds no PEM certificate "
            "(expected '-----BEGIN CERTIFICATE-----')",
        )
    return certs


def _spki(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def load_chain_into(
    context: ssl.SSLContext, certfile: str, keyfile: str | None, *, option: str
) -> None:
    """Load a certificate chain and key from files, explaining any problem in a line.

    *keyfile* may be ``None`` when the key is in *certfile*. *option* names the
    command-line option in messages (``--cert``).
    """
    cert_data = _read(certfile, "certificate file")
    certs = _parse_certificates(cert_data, certfile, "certificate file")
    key_path = keyfile or certfile
    key_data = _read(key_path, "key file") if keyfile else cert_data
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise CLIError(
            ExitCode.BAD_FILE,
            f"key file {key_path} is encrypted; give an unencrypted key "
            "(openssl pkey -in KEY -out PLAIN.key)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        hint = (
            ""
            if keyfile
            else f" (or give the key with {option.replace('cert', 'key')})"
        )
        raise CLIError(
            ExitCode.BAD_FILE,
            f"{key_path} holds no usable PEM private key{hint}",
        ) from None
    if _spki(key.public_key()) != _spki(certs[0].public_key()):
        raise CLIError(
            ExitCode.BAD_FILE,
            f"the key in {key_path} does not belong to the certificate in {certfile}",
        )
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(
            ExitCode.BAD_FILE, f"OpenSSL cannot use {certfile}: {_ssl_reason(exc)}"
        ) from None


def check_ca_file(cafile: str) -> None:
    """Make sure *cafile* is readable and holds PEM certificates (else BAD_FILE)."""
    _parse_certificates(_read(cafile, "CA file"), cafile, "CA file")


def load_ca_file(context: ssl.SSLContext, cafile: str) -> None:
    """Trust the certificates in *cafile* (PEM), explaining any problem in a line."""
    check_ca_file(cafile)
    try:
        context.load_verify_locations(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(
            ExitCode.BAD_FILE,
            f"OpenSSL cannot use CA file {cafile}: {_ssl_reason(exc)}",
        ) from None


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


# -- describing certificates ------------------------------------------------------


def _iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    before = getattr(cert, "not_valid_before_utc", None)
    after = getattr(cert, "not_valid_after_utc", None)
    if before is None or after is None:  # cryptography < 42
        before = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        after = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return before, after


def _key_description(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except Exception:  # an algorithm cryptography does not support
        return "unknown", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__, None


def _san(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    for name in extension.value:
        if isinstance(name, x509.DNSName):
            names.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            names.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            names.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            names.append(f"URI:{name.value}")
        else:
            names.append(f"{type(name).__name__}:{name.value}")
    return names


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # a malformed name must not stop the description
        return repr(name)


def describe_certificate(der: bytes) -> dict[str, Any]:
    """The fields ``connect`` prints (and puts into ``--json``) for one certificate.

    Keys: ``subject``, ``issuer``, ``serial``, ``not_before``, ``not_after`` (ISO 8601,
    UTC), ``expired``, ``san`` (list of ``"DNS:name"``, ``"IP:addr"``, ...),
    ``key_type``, ``key_bits``, ``sha256`` (colon-separated hex), ``self_signed``.
    """
    cert = x509.load_der_x509_certificate(der)
    before, after = _validity(cert)
    key_type, key_bits = _key_description(cert)
    now = _now()
    return {
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "serial": f"{cert.serial_number:X}",
        "not_before": _iso(before),
        "not_after": _iso(after),
        "expired": now > after,
        "not_yet_valid": now < before,
        "san": _san(cert),
        "key_type": key_type,
        "key_bits": key_bits,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        "self_signed": cert.subject == cert.issuer,
    }


def short_subject(der: bytes | None) -> str:
    """The subject of a DER certificate as one RFC 4514 string (``"none"`` if None)."""
    if der is None:
        return "none"
    return _name(x509.load_der_x509_certificate(der).subject)
