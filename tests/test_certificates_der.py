"""The DER walker behind tls-server-end-point and pins, pin parsing, helpers.

No I/O: certificates made with cryptography (``certs_pki.py``) and trustme; every
expected value is computed with cryptography, never with anyiotls.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from contextlib import suppress

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiotls import (
    ChannelBindingError,
    pin_sha256,
    spki_sha256,
    tls_server_end_point,
    verify_in_thread,
    x509_certificates,
)

from .certs_pki import KINDS, expected_end_point, expected_pin, make_pki

#: a well-formed pin that matches no key
WRONG_PIN = "sha256//" + base64.b64encode(b"\x00" * 32).decode()


def _with_signature_oid(der: bytes, old: bytes, new: bytes) -> bytes:
    """*der* with its outer signatureAlgorithm OID replaced (same length)."""
    assert len(old) == len(new)
    at = der.rindex(old)  # the outer AlgorithmIdentifier comes after the tbs one
    return der[:at] + new + der[at + len(old) :]


# sha256WithRSAEncryption -> md5WithRSAEncryption / sha1WithRSAEncryption
_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")
_MD5_RSA = bytes.fromhex("06092a864886f70d010104")
_SHA1_RSA = bytes.fromhex("06092a864886f70d010105")


@pytest.mark.parametrize("weak", [_MD5_RSA, _SHA1_RSA], ids=["md5", "sha1"])
def test_md5_and_sha1_signatures_hash_with_sha256(
    server_cert: trustme.LeafCert, weak: bytes
) -> None:
    rsa = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("localhost")
    der = x509.load_pem_x509_certificate(rsa.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )
    mangled = _with_signature_oid(der, _SHA256_RSA, weak)
    assert x509.load_der_x509_certificate(mangled).signature_hash_algorithm.name in (  # type: ignore[union-attr]
        "md5",
        "sha1",
    )
    assert tls_server_end_point(mangled) == hashlib.sha256(mangled).digest()
    assert tls_server_end_point(mangled) == expected_end_point(mangled)


@pytest.mark.parametrize("kind", [*KINDS, "ed448"])
def test_binding_and_pin_match_cryptography(kind: str) -> None:
    pki = make_pki(kind)
    for cert in (pki.leaf, pki.intermediate, pki.root):
        der = pki.der(cert)
        assert spki_sha256(der) == expected_pin(der)
        expected = expected_end_point(der)
        if expected is None:
            with pytest.raises(ChannelBindingError, match="Ed"):
                tls_server_end_point(der)
        else:
            assert tls_server_end_point(der) == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_certificates_raise_value_error(data: st.DataObject) -> None:
    der = make_pki("ecdsa-p256-sha256").der(make_pki("ecdsa-p256-sha256").leaf)
    choice = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if choice == "truncate":
        mangled = der[: data.draw(st.integers(0, len(der) - 1))]
    elif choice == "flip":
        at = data.draw(st.integers(0, len(der) - 1))
        mangled = (
            der[:at] + bytes([der[at] ^ data.draw(st.integers(1, 255))]) + der[at + 1 :]
        )
    else:
        mangled = data.draw(st.binary(max_size=64))
    for function in (tls_server_end_point, spki_sha256):
        with suppress(ValueError):  # ChannelBindingError is one too
            function(mangled)


def test_bad_input_raises_type_error() -> None:
    with pytest.raises(TypeError, match="bytes"):
        tls_server_end_point("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of pins"):
        pin_sha256(WRONG_PIN)
    with pytest.raises(TypeError, match="str"):
        pin_sha256([b"sha256//abc"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="callable"):
        verify_in_thread("check")  # type: ignore[arg-type]

    async def async_check(stream: object) -> None:
        pass

    with pytest.raises(TypeError, match="blocking function"):
        verify_in_thread(async_check)
    with pytest.raises(TypeError, match="list of DER"):
        x509_certificates(b"\x30\x00")


@pytest.mark.parametrize(
    "pin",
    ["", "sha256//", "sha256//abc", "sha1//" + "A" * 28, "sha256//" + "A" * 43 + "!"],
)
def test_malformed_pins_raise_value_error(pin: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 public key pin"):
        pin_sha256([pin])


def test_pins_in_both_notations_and_empty_list() -> None:
    bare = WRONG_PIN[len("sha256//") :]
    pin_sha256([bare, WRONG_PIN])  # accepted
    with pytest.raises(ValueError, match="at least one"):
        pin_sha256([])


def test_x509_certificates_explains_a_missing_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ImportError, match=r"anyiotls\[cryptography\]"):
        x509_certificates([b""])
