"""Exceptions of anyiotls's own (the faces otherwise raise their host's exceptions)."""

from __future__ import annotations

__all__ = (
    "ChannelBindingError",
    "PeerVerificationError",
    "PinMismatchError",
    "PostHandshakeAuthError",
)

import ssl


class PostHandshakeAuthError(Exception):
    """Post-handshake client authentication cannot be done on this connection.

    Raised *before anything is sent*: the stream stays usable. Reasons: the
    connection is not TLS 1.3, the client did not offer post-handshake authentication
    (its context lacks ``post_handshake_auth = True``), the server's context lacks
    ``post_handshake_auth = True`` or has ``verify_mode = CERT_NONE``, this is the
    client side, or the handshake has not completed.
    """


#: OpenSSL's X509_V_ERR_APPLICATION_VERIFICATION: "application verification failure"
_APPLICATION_VERIFICATION = 50


class PeerVerificationError(ssl.SSLCertVerificationError):
    """A ``verify_peer`` hook rejected the peer after the handshake.

    ``__cause__`` is what the hook raised (for :func:`~anyiotls.pin_sha256`'s hook, a
    :exc:`PinMismatchError`). A subclass of :exc:`ssl.SSLCertVerificationError`, so
    code that handles a failed certificate check handles this one too:
    :attr:`verify_code` is OpenSSL's ``X509_V_ERR_APPLICATION_VERIFICATION`` (50).
    The AnyIO face raises it from :meth:`TLSStream.wrap() <anyiotls.TLSStream.wrap>`
    as it raises any handshake's :exc:`ssl.SSLError`; the Trio face raises
    :exc:`trio.BrokenResourceError` with this as its ``__cause__``.
    """

    def __init__(self, message: str) -> None:
        """*message* says why; the hook's exception goes into ``__cause__``."""
        # (errno, strerror) as OpenSSL's errors have them: str() is the message
        super().__init__(int(ssl.SSL_ERROR_SSL), message)
        self.verify_code = _APPLICATION_VERIFICATION
        self.verify_message = message
        self.reason = "APPLICATION_VERIFICATION_FAILURE"
        self.library = "anyiotls"


class PinMismatchError(Exception):
    """The peer's public key matched none of the pins given to ``pin_sha256()``."""


class ChannelBindingError(ValueError):
    """This connection has no channel binding data of the requested type.

    ``tls-unique`` on a TLS 1.3 connection (RFC 9266: not defined there),
    ``tls-server-end-point`` for a certificate whose signature algorithm names no
    hash (Ed25519, Ed448), on the server side (CPython does not give out the
    server's own certificate), or ``tls-exporter`` (CPython's ``ssl`` cannot export
    keying material). A :exc:`ValueError`, as :meth:`ssl.SSLObject.get_channel_binding`
    raises for a type it does not know.
    """
