"""The peer's certificates, ``tls-server-end-point`` channel binding, verify hooks.

Shared by both faces. Everything here works from DER bytes that the public
:class:`ssl.SSLObject` API gives out (``getpeercert(True)``, and on Python 3.13+
``get_verified_chain()``/``get_unverified_chain()``); nothing needs ``cryptography``
except :func:`x509_certificates`.

Why a DER walker of our own: the binding's hash depends on the certificate's
signatureAlgorithm and pinning needs the SubjectPublicKeyInfo; both sit at fixed
places in the certificate's outer structure (RFC 5280 section 4.1), so reading
them takes a few dozen lines, while ``cryptography`` would become a dependency of
every SCRAM-PLUS client for that. The certificates were parsed and (usually)
verified by OpenSSL before they get here; the walker still checks every length
against the data and raises :exc:`ValueError` for anything malformed.
"""

from __future__ import annotations

__all__ = (
    "CertificateAttribute",
    "certificate_attributes",
    "channel_binding",
    "get_channel_binding",
    "make_verify_step",
    "peer_chain",
    "pin_sha256",
    "spki_sha256",
    "tls_server_end_point",
    "verify_in_thread",
    "x509_certificates",
)

import base64
import hashlib
import inspect
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from anyio import (
    CapacityLimiter,
    TypedAttributeProvider,
    TypedAttributeSet,
    to_thread,
    typed_attribute,
)
from anyio.streams.tls import TLSAttribute

from ._exceptions import ChannelBindingError, PeerVerificationError, PinMismatchError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from ._anyio import TLSStream
    from .trio import SSLStream

    #: A stream of either face, as a ready-made hook receives it.
    PeerStream: TypeAlias = "TLSStream | SSLStream[Any]"


# -- DER -----------------------------------------------------------------------------

_SEQUENCE = 0x30
_OID = 0x06
_INTEGER = 0x02
_CONTEXT_0 = 0xA0  # [0] EXPLICIT: a certificate's version, a PSS hashAlgorithm


def _tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """``(tag, start of contents, end of contents)`` of the element at *offset*.

    Only the definite-length, low-tag-number form DER allows; every length is
    checked against *end*.
    """
    if offset + 2 > end:
        raise ValueError("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("DER tag numbers above 30 do not occur in certificates")
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:  # indefinite (BER) or over 4 GiB
            raise ValueError("not a DER length")
        if start + count > end:
            raise ValueError("truncated DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > end:
        raise ValueError("DER element longer than its container")
    return tag, start, start + length


def _expect(data: bytes, offset: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _tlv(data, offset, end)
    if found != tag:
        raise ValueError(f"expected {what} (tag {tag:#04x}), found tag {found:#04x}")
    return start, stop


def _oid(dotted: str) -> bytes:
    """The DER contents of an OBJECT IDENTIFIER (for the tables below)."""
    numbers = [int(part) for part in dotted.split(".")]
    arcs = [numbers[0] * 40 + numbers[1], *numbers[2:]]
    out = bytearray()
    for arc in arcs:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _dotted(contents: bytes) -> str:
    """An OBJECT IDENTIFIER's contents as text, for error messages."""
    arcs: list[int] = []
    value = 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return "(empty)"
    first = min(arcs[0] // 40, 2)
    return ".".join(str(n) for n in [first, arcs[0] - 40 * first, *arcs[1:]])


class _Certificate:
    """Where a DER certificate's parts are; raises :exc:`ValueError` if malformed."""

    __slots__ = ("der", "signature_oid", "signature_params", "spki")

    def __init__(self, der: bytes) -> None:
        if not isinstance(der, (bytes, bytearray, memoryview)):
            raise TypeError(f"a DER certificate is bytes, not {type(der).__name__}")
        der = bytes(der)
        self.der = der
        try:
            start, end = _expect(der, 0, len(der), _SEQUENCE, "Certificate")
            if end != len(der):
                raise ValueError("bytes after the certificate")
            # tbsCertificate, then signatureAlgorithm (RFC 5280 section 4.1)
            tbs_start, tbs_end = _expect(der, start, end, _SEQUENCE, "tbsCertificate")
            alg_start, alg_end = _expect(
                der, tbs_end, end, _SEQUENCE, "signatureAlgorithm"
            )
            oid_start, oid_end = _expect(der, alg_start, alg_end, _OID, "an OID")
            self.signature_oid = der[oid_start:oid_end]
            self.signature_params = (der, oid_end, alg_end)
            # tbsCertificate: [0] version?, serialNumber, signature, issuer,
            # validity, subject, subjectPublicKeyInfo, ...
            offset = tbs_start
            tag, _, stop = _tlv(der, offset, tbs_end)
            if tag == _CONTEXT_0:
                offset = stop
            _, offset = _expect(der, offset, tbs_end, _INTEGER, "serialNumber")
            for what in ("signature", "issuer", "validity", "subject"):
                _, offset = _expect(der, offset, tbs_end, _SEQUENCE, what)
            _, spki_end = _expect(
                der, offset, tbs_end, _SEQUENCE, "subjectPublicKeyInfo"
            )
            self.spki = der[offset:spki_end]
        except ValueError as exc:
            raise ValueError(f"not a DER-encoded X.509 certificate: {exc}") from None


# -- tls-server-end-point (RFC 5929 section 4.1) --------------------------------------

#: Hash algorithm OIDs (in RSASSA-PSS parameters) -> hashlib names. MD5 and SHA-1
#: become SHA-256, as RFC 5929 section 4.1 says.
_HASHES = {
    _oid("1.2.840.113549.2.5"): "sha256",  # md5
    _oid("1.3.14.3.2.26"): "sha256",  # sha1
    _oid("2.16.840.1.101.3.4.2.4"): "sha224",
    _oid("2.16.840.1.101.3.4.2.1"): "sha256",
    _oid("2.16.840.1.101.3.4.2.2"): "sha384",
    _oid("2.16.840.1.101.3.4.2.3"): "sha512",
    _oid("2.16.840.1.101.3.4.2.5"): "sha512_224",
    _oid("2.16.840.1.101.3.4.2.6"): "sha512_256",
    _oid("2.16.840.1.101.3.4.2.7"): "sha3_224",
    _oid("2.16.840.1.101.3.4.2.8"): "sha3_256",
    _oid("2.16.840.1.101.3.4.2.9"): "sha3_384",
    _oid("2.16.840.1.101.3.4.2.10"): "sha3_512",
}

#: Signature algorithm OIDs that name their hash -> hashlib names (MD5 and SHA-1
#: replaced by SHA-256).
_SIGNATURE_HASHES = {
    # RSA PKCS #1 v1.5 (RFC 8017)
    _oid("1.2.840.113549.1.1.4"): "sha256",  # md5WithRSAEncryption
    _oid("1.2.840.113549.1.1.5"): "sha256",  # sha1WithRSAEncryption
    _oid("1.3.14.3.2.29"): "sha256",  # sha1WithRSAEncryption (OIW)
    _oid("1.2.840.113549.1.1.14"): "sha224",
    _oid("1.2.840.113549.1.1.11"): "sha256",
    _oid("1.2.840.113549.1.1.12"): "sha384",
    _oid("1.2.840.113549.1.1.13"): "sha512",
    _oid("1.2.840.113549.1.1.15"): "sha512_224",
    _oid("1.2.840.113549.1.1.16"): "sha512_256",
    # ECDSA (RFC 5758)
    _oid("1.2.840.10045.4.1"): "sha256",  # ecdsa-with-SHA1
    _oid("1.2.840.10045.4.3.1"): "sha224",
    _oid("1.2.840.10045.4.3.2"): "sha256",
    _oid("1.2.840.10045.4.3.3"): "sha384",
    _oid("1.2.840.10045.4.3.4"): "sha512",
    # DSA
    _oid("1.2.840.10040.4.3"): "sha256",  # dsa-with-sha1
    _oid("2.16.840.1.101.3.4.3.1"): "sha224",
    _oid("2.16.840.1.101.3.4.3.2"): "sha256",
    _oid("2.16.840.1.101.3.4.3.3"): "sha384",
    _oid("2.16.840.1.101.3.4.3.4"): "sha512",
    # SHA-3 based (NIST CSOR)
    _oid("2.16.840.1.101.3.4.3.9"): "sha3_224",  # id-ecdsa-with-sha3-224
    _oid("2.16.840.1.101.3.4.3.10"): "sha3_256",
    _oid("2.16.840.1.101.3.4.3.11"): "sha3_384",
    _oid("2.16.840.1.101.3.4.3.12"): "sha3_512",
    _oid("2.16.840.1.101.3.4.3.13"): "sha3_224",  # id-rsassa-pkcs1-v1_5-with-sha3-224
    _oid("2.16.840.1.101.3.4.3.14"): "sha3_256",
    _oid("2.16.840.1.101.3.4.3.15"): "sha3_384",
    _oid("2.16.840.1.101.3.4.3.16"): "sha3_512",
}

_RSASSA_PSS = _oid("1.2.840.113549.1.1.10")

#: Signature algorithms without a separate hash. RFC 5929 defines no binding for
#: them, and we refuse as PostgreSQL does (libpq's pgtls_get_peer_certificate_hash
#: and the server's be_tls_get_certificate_hash: "could not find digest for NID
#: UNDEF") and as pgx does (pgconn's getTLSCertificateHash: "tls-server-end-point
#: channel binding is undefined for certificate signature algorithm"). A value of
#: our own choosing (SHA-512, say) would match no such peer, and a SCRAM-PLUS
#: exchange would then fail as an authentication error instead of saying why.
_NO_HASH = {
    _oid("1.3.101.112"): "Ed25519",
    _oid("1.3.101.113"): "Ed448",
}


def _pss_hash(data: bytes, start: int, end: int) -> str:
    """The hash of RSASSA-PSS-params (RFC 8017 A.2.3); absent means SHA-1."""
    if start == end:
        raise ValueError("RSASSA-PSS without parameters")
    params_start, params_end = _expect(data, start, end, _SEQUENCE, "PSS parameters")
    if params_start == params_end:
        return _HASHES[_oid("1.3.14.3.2.26")]  # all defaults: SHA-1
    tag, inner_start, inner_end = _tlv(data, params_start, params_end)
    if tag != _CONTEXT_0:  # hashAlgorithm [0] omitted: SHA-1
        return _HASHES[_oid("1.3.14.3.2.26")]
    alg_start, alg_end = _expect(
        data, inner_start, inner_end, _SEQUENCE, "hashAlgorithm"
    )
    oid_start, oid_end = _expect(data, alg_start, alg_end, _OID, "an OID")
    oid = data[oid_start:oid_end]
    try:
        return _HASHES[oid]
    except KeyError:
        raise ChannelBindingError(
            f"tls-server-end-point: unknown hash {_dotted(oid)} in the RSASSA-PSS "
            "parameters of the certificate's signature"
        ) from None


def _end_point_hash(cert: _Certificate) -> str:
    oid = cert.signature_oid
    name = _SIGNATURE_HASHES.get(oid)
    if name is not None:
        return name
    if oid == _RSASSA_PSS:
        try:
            return _pss_hash(*cert.signature_params)
        except ChannelBindingError:
            raise
        except ValueError as exc:
            raise ValueError(f"not a DER-encoded X.509 certificate: {exc}") from None
    if oid in _NO_HASH:
        raise ChannelBindingError(
            f"tls-server-end-point is not defined for a certificate signed with "
            f"{_NO_HASH[oid]} (RFC 5929 section 4.1 needs a hash named by the "
            "signature algorithm; PostgreSQL and pgx refuse it too): use a server "
            "certificate signed with RSA or ECDSA for channel binding"
        )
    raise ChannelBindingError(
        f"tls-server-end-point: unknown signature algorithm {_dotted(oid)} in the "
        "server certificate"
    )


def tls_server_end_point(certificate: bytes) -> bytes:
    """The ``tls-server-end-point`` channel binding for a server certificate (DER).

    RFC 5929 section 4.1: the hash of the certificate, with the hash function of
    its signature algorithm, except that MD5 and SHA-1 are replaced by SHA-256
    (RSA-PSS: the hash in its parameters). A server computes its own binding with
    this, from the certificate it loaded: CPython does not give a server its own
    certificate back.

    :raises ChannelBindingError: the signature algorithm names no hash (Ed25519,
        Ed448: RFC 5929 defines nothing for them; PostgreSQL and pgx refuse them
        too) or is unknown
    :raises ValueError: *certificate* is not a DER-encoded X.509 certificate
    :raises TypeError: *certificate* is not bytes
    """
    cert = _Certificate(certificate)
    return hashlib.new(_end_point_hash(cert), cert.der).digest()


# -- public key pins ------------------------------------------------------------------

_PIN_PREFIX = "sha256//"


def spki_sha256(certificate: bytes) -> str:
    """The pin of a certificate's public key: ``"sha256//"`` + base64(SHA-256(SPKI)).

    The format of curl's ``--pinnedpubkey``; the part after ``sha256//`` is HPKP's
    ``pin-sha256`` value (RFC 7469), which ``openssl x509 -pubkey | openssl pkey
    -pubin -outform der | openssl dgst -sha256 -binary | base64`` prints too.

    :raises ValueError: *certificate* is not a DER-encoded X.509 certificate
    """
    spki = _Certificate(certificate).spki
    return _PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _parse_pin(pin: object) -> bytes:
    if not isinstance(pin, str):
        raise TypeError(f"a pin is a str, not {type(pin).__name__}")
    text = pin.strip()
    # "sha256//" + 44 base64 characters; bare base64 (HPKP style) is 44 characters
    if text.startswith(_PIN_PREFIX) and len(text) != 44:
        text = text[len(_PIN_PREFIX) :]
    try:
        digest = base64.b64decode(text, validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(
            f"{pin!r} is not a SHA-256 public key pin: expected 'sha256//' followed "
            "by 44 base64 characters (as `anyiotls connect --json` prints it)"
        )
    return digest


def _peer_leaf(stream: PeerStream) -> bytes | None:
    """The peer's certificate (DER) from a stream of either face."""
    if isinstance(stream, TypedAttributeProvider):
        der: bytes | None = stream.extra(TLSAttribute.peer_certificate_binary, None)
        return der
    return stream.getpeercert(True)


def pin_sha256(pins: Iterable[str]) -> Callable[[PeerStream], Awaitable[None]]:
    """A ``verify_peer`` hook that accepts only a peer whose key matches a pin.

    Checks the peer's own certificate (the leaf), on every Python version. Give
    your current key's pin and at least one backup (a key you hold in reserve), as
    HPKP advised: a lost key then does not lock your clients out. The pin of a
    server is in ``anyiotls connect HOST:PORT --json`` (``peer_pin_sha256``) or
    :func:`spki_sha256`. The hook runs in addition to the context's checks
    (chain, host name), not instead of them.

    :param pins: ``"sha256//"`` + base64, as curl's ``--pinnedpubkey`` takes them;
        bare base64 (HPKP's ``pin-sha256`` value) works too
    :raises ValueError: a pin is malformed, or *pins* is empty
    :raises TypeError: *pins* is a single string (give a list) or holds a non-str

    The hook raises :exc:`PinMismatchError` when the key matches no pin (or the
    peer sent no certificate); the face then raises
    :exc:`~anyiotls.PeerVerificationError`.
    """
    if isinstance(pins, str):
        raise TypeError("pin_sha256() takes a list of pins, not a single str")
    digests = frozenset(_parse_pin(pin) for pin in pins)
    if not digests:
        raise ValueError("pin_sha256() needs at least one pin")

    async def check_pin(stream: PeerStream) -> None:
        leaf = _peer_leaf(stream)
        if leaf is None:
            raise PinMismatchError("the peer sent no certificate, so no key to pin")
        spki = _Certificate(leaf).spki
        if hashlib.sha256(spki).digest() not in digests:
            raise PinMismatchError(
                f"the peer's public key {spki_sha256(leaf)} matches none of the "
                f"{len(digests)} pinned key(s)"
            )

    return check_pin


# -- hooks in a worker thread -----------------------------------------------------

# AnyIO 4.1 renamed run_sync's "cancellable" to "abandon_on_cancel".
_ABANDON = (
    "abandon_on_cancel"
    if "abandon_on_cancel" in inspect.signature(to_thread.run_sync).parameters
    else "cancellable"
)


def verify_in_thread(
    check: Callable[[Any], object], *, limiter: CapacityLimiter | None = None
) -> Callable[[Any], Awaitable[None]]:
    """Make a ``verify_peer`` hook out of a blocking check, run in a worker thread.

    For verifiers that would block the event loop: an OS trust store, an OCSP or
    CRL lookup, a database of known keys. ``check(stream)`` runs in a thread
    (:func:`anyio.to_thread.run_sync`, on both faces and every backend); it
    rejects the peer by raising. From the thread, only read the stream (its
    attributes, certificates, :func:`channel_binding`); never send or receive.

    When the hook is cancelled (the handshake's timeout, the caller's cancel
    scope), the connection is rejected at once, as a cancelled handshake is; the
    thread cannot be interrupted, so it runs on until *check* returns, and its
    result is discarded. Give *check* its own timeouts for network lookups.

    :param check: a blocking function of one argument, the stream, that returns
        ``None`` (anything else rejects the peer, as for async hooks)
    :raises TypeError: *check* is not callable, or is an async function
    :param limiter: how many such checks may run at once (default: AnyIO's shared
        thread limiter, 40 threads)
    """
    if not callable(check):
        raise TypeError(f"check must be callable, not {type(check).__name__}")
    if inspect.iscoroutinefunction(check):
        # its coroutine would never run in the thread, and the peer pass unchecked
        raise TypeError(
            "verify_in_thread() takes a blocking function; pass an async check as "
            "verify_peer=check directly"
        )

    async def in_thread(stream: Any) -> None:
        result = await to_thread.run_sync(
            check, stream, limiter=limiter, **{_ABANDON: True}
        )
        if result is not None:  # the same rule as for async hooks
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"verify_peer checks reject by raising and return None; this one "
                f"returned {result!r}"
            )

    return in_thread


def make_verify_step(
    hook: Callable[[Any], Awaitable[object]],
    stream: object,
    on_reject: Callable[[], Awaitable[object]] | None = None,
) -> Callable[[], Awaitable[None]]:
    """What the driver calls after the handshake: run *hook* on *stream*.

    An exception from the hook becomes :exc:`PeerVerificationError` (an
    :exc:`ssl.SSLError`, so the driver fails the handshake with it) with the
    hook's exception as ``__cause__``, after *on_reject* (the Trio face closes its
    transport there; the AnyIO face closes it for every failed handshake). A hook
    that returns something other than ``None`` (``False``, say) is taken for a
    mistake and rejects too: hooks reject by raising. A cancellation passes
    through unchanged (a cancelled handshake).
    """

    async def verify_step() -> None:
        try:
            result = await hook(stream)
            if result is not None:
                raise TypeError(
                    f"verify_peer hooks reject by raising and return None; this one "
                    f"returned {result!r}"
                )
        except Exception as exc:
            error = PeerVerificationError(
                f"the verify_peer hook rejected the peer: {type(exc).__name__}: {exc}"
            )
            if on_reject is not None:
                await on_reject()
            raise error from exc

    return verify_step


# -- the chain ------------------------------------------------------------------------


def peer_chain(
    ssl_object: ssl.SSLObject, which: Literal["verified", "unverified"]
) -> list[bytes]:
    """The peer's chain (DER, leaf first) from ``SSLObject`` (Python 3.13+).

    :raises NotImplementedError: below Python 3.13, which has no public API for it
    """
    if sys.version_info >= (3, 13):
        if which == "verified":
            return ssl_object.get_verified_chain()
        return ssl_object.get_unverified_chain()
    raise NotImplementedError(
        f"the peer's {which} certificate chain needs Python 3.13 or later "
        "(ssl.SSLObject.get_verified_chain()/get_unverified_chain()); this is "
        f"Python {sys.version_info[0]}.{sys.version_info[1]}, where only the "
        "peer's own certificate is available (getpeercert(True))"
    )


def x509_certificates(chain: Iterable[bytes]) -> list[Certificate]:
    """DER certificates (a chain, or one in a list) as ``cryptography`` objects.

    :raises ImportError: ``cryptography`` is not installed (``pip install
        'anyiotls[cryptography]'``)
    :raises ValueError: an item is not a DER-encoded certificate
    """
    try:
        from cryptography import x509
    except ImportError as exc:
        raise ImportError(
            "anyiotls.x509_certificates() needs the cryptography package: "
            "pip install 'anyiotls[cryptography]'"
        ) from exc
    if isinstance(chain, (bytes, bytearray, memoryview)):
        raise TypeError("x509_certificates() takes a list of DER certificates")
    return [x509.load_der_x509_certificate(bytes(der)) for der in chain]


# -- channel binding ------------------------------------------------------------------


def get_channel_binding(ssl_object: ssl.SSLObject, cb_type: str) -> bytes | None:
    """Channel binding data of *cb_type* for both faces.

    ``tls-server-end-point`` is computed from the server's certificate (client side
    only); ``tls-unique`` is refused on TLS 1.3; other types go to the SSLObject
    (which raises :exc:`ValueError` for types it does not know). ``None`` before
    the handshake, as ``SSLObject.get_channel_binding`` returns.
    """
    if cb_type == "tls-server-end-point":
        if ssl_object.server_side:
            raise ChannelBindingError(
                "tls-server-end-point on the server side: CPython's ssl does not give "
                "out the server's own certificate; compute the binding once with "
                "anyiotls.tls_server_end_point(your_certificate_der)"
            )
        leaf = ssl_object.getpeercert(True)
        if leaf is None:
            raise ChannelBindingError(
                "tls-server-end-point: the server sent no certificate"
            )
        return tls_server_end_point(leaf)
    if cb_type == "tls-exporter":
        raise ChannelBindingError(
            "tls-exporter (RFC 9266) needs TLS keying material export, which "
            "CPython's ssl module does not offer; use tls-server-end-point"
        )
    if cb_type == "tls-unique" and ssl_object.version() == "TLSv1.3":
        raise ChannelBindingError(
            "tls-unique is not defined for TLS 1.3 (RFC 9266); this connection uses "
            "TLS 1.3: use tls-server-end-point"
        )
    return ssl_object.get_channel_binding(cb_type)


def channel_binding(
    stream: PeerStream | TypedAttributeProvider, cb_type: str = "tls-server-end-point"
) -> bytes | None:
    """Channel binding data for a stream of either face.

    Works with the AnyIO face (and any stream that forwards its attributes, also
    ``anyio.streams.tls.TLSStream``: it reads ``TLSAttribute.ssl_object``) and with
    the Trio face (it calls ``stream.get_channel_binding()``). The same rules as
    there: ``tls-unique`` is refused on TLS 1.3 whichever stream asks.

    :param cb_type: ``"tls-server-end-point"`` (RFC 5929 section 4.1; the client
        side: a server computes its own with :func:`tls_server_end_point`) or
        ``"tls-unique"`` (TLS 1.2 and older only)
    :raises ChannelBindingError: see there (``tls-unique`` on TLS 1.3, a
        certificate without a hash, the server side, ``tls-exporter``)
    :raises ValueError: a type ``ssl`` does not know
    """
    if isinstance(stream, TypedAttributeProvider):
        # Through the SSLObject, not our attributes: the same answer for AnyIO's own
        # TLSStream, which has no CertificateAttribute and forwards tls-unique.
        ssl_object: ssl.SSLObject = stream.extra(TLSAttribute.ssl_object)
        return get_channel_binding(ssl_object, cb_type)
    return stream.get_channel_binding(cb_type)


# -- the AnyIO face's attributes -------------------------------------------------


class CertificateAttribute(TypedAttributeSet):
    """The peer's certificates and ``tls-server-end-point``, beside ``TLSAttribute``.

    Read them with ``stream.extra(CertificateAttribute.verified_chain)`` on an
    :class:`anyiotls.TLSStream` (or any stream wrapping one).
    """

    #: the chain OpenSSL verified, DER, leaf first and the trust anchor last (Python
    #: 3.13+; :exc:`NotImplementedError` before). Without verification
    #: (``CERT_NONE``), the same as :attr:`unverified_chain`.
    verified_chain: tuple[bytes, ...] = typed_attribute()
    #: the certificates as the peer sent them, DER, leaf first (Python 3.13+;
    #: :exc:`NotImplementedError` before); nothing in it beyond the leaf was checked
    unverified_chain: tuple[bytes, ...] = typed_attribute()
    #: RFC 5929's ``tls-server-end-point`` binding (client side; raises
    #: :exc:`~anyiotls.ChannelBindingError` on the server side and for Ed25519/Ed448
    #: certificates)
    channel_binding_tls_server_end_point: bytes = typed_attribute()


def certificate_attributes(ssl_object: ssl.SSLObject) -> dict[Any, Callable[[], Any]]:
    """The :class:`CertificateAttribute` getters for the AnyIO face."""
    return {
        CertificateAttribute.verified_chain: lambda: tuple(
            peer_chain(ssl_object, "verified")
        ),
        CertificateAttribute.unverified_chain: lambda: tuple(
            peer_chain(ssl_object, "unverified")
        ),
        CertificateAttribute.channel_binding_tls_server_end_point: lambda: (
            get_channel_binding(ssl_object, "tls-server-end-point")
        ),
    }
