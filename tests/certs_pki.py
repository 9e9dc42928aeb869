"""A root -> intermediate -> leaf PKI per signature algorithm, made with cryptography.

The leaf's signature algorithm is the intermediate's key and hash, which is what
decides the ``tls-server-end-point`` hash; :func:`expected_end_point` computes the
binding independently of anyiotls (cryptography parses the certificate).
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ("KINDS", "Pki", "expected_end_point", "expected_pin", "make_pki")

#: signer (intermediate) key type and hash -> the end-point hash RFC 5929 gives
KINDS = {
    "rsa-pss-sha384": "sha384",
    "rsa-sha512": "sha512",
    "ecdsa-p256-sha256": "sha256",
    "ecdsa-p384-sha384": "sha384",
    "ed25519": None,
}


def _key(kind: str) -> Any:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind.startswith("ecdsa-p384"):
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("ecdsa"):
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    return ed25519.Ed25519PrivateKey.generate()


def _sign_args(kind: str) -> dict[str, Any]:
    if kind == "rsa-pss-sha384":
        return {
            "algorithm": hashes.SHA384(),
            "rsa_padding": padding.PSS(padding.MGF1(hashes.SHA384()), 48),
        }
    if kind.startswith("ed"):
        return {"algorithm": None}
    bits = kind.rsplit("sha", 1)[1]
    return {"algorithm": getattr(hashes, f"SHA{bits}")()}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    public_key: Any,
    issuer: str,
    signer: Any,
    sign_args: dict[str, Any],
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Python 3.13's default contexts verify with VERIFY_X509_STRICT: these are
        # required there
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(signer, **sign_args)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    kind: str
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: Any

    def der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        """Leaf, intermediate, root (what a verified chain is)."""
        return tuple(self.der(c) for c in (self.leaf, self.intermediate, self.root))

    def write(self, directory: Path) -> dict[str, Path]:
        """``server`` (key + leaf), ``chain`` (the intermediate), ``ca`` (the root)."""
        directory.mkdir(parents=True, exist_ok=True)
        key = self.leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        files = {
            "server": directory / f"{self.kind}-server.pem",
            "chain": directory / f"{self.kind}-chain.pem",
            "ca": directory / f"{self.kind}-ca.pem",
        }
        files["server"].write_bytes(key + _pem(self.leaf))
        files["chain"].write_bytes(_pem(self.intermediate))
        files["ca"].write_bytes(_pem(self.root))
        return files


@functools.cache
def make_pki(kind: str) -> Pki:
    """Root (ECDSA P-256) -> intermediate (*kind*'s key) -> leaf signed by *kind*."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_args = {"algorithm": hashes.SHA256()}
    root = _certificate(
        "anyiotls test root", root_key.public_key(), "anyiotls test root", root_key,
        root_args, ca=True,
    )  # fmt: skip
    intermediate_key = _key(kind)
    intermediate = _certificate(
        f"anyiotls test intermediate ({kind})",
        intermediate_key.public_key(),
        "anyiotls test root",
        root_key,
        root_args,
        ca=True,
    )
    leaf_key = _key(kind)
    leaf = _certificate(
        "localhost",
        leaf_key.public_key(),
        f"anyiotls test intermediate ({kind})",
        intermediate_key,
        _sign_args(kind),
        ca=False,
    )
    return Pki(kind, root, intermediate, leaf, leaf_key)


def expected_end_point(der: bytes) -> bytes | None:
    """RFC 5929 section 4.1, computed with cryptography; None where undefined."""
    cert = x509.load_der_x509_certificate(der)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:  # Ed25519, Ed448
        return None
    if isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()


def expected_pin(der: bytes) -> str:
    """``sha256//`` + base64(SHA-256(SubjectPublicKeyInfo)), with cryptography."""
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
