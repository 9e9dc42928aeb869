"""Exceptions of anyiotls's own (the faces otherwise raise their host's exceptions)."""

from __future__ import annotations

__all__ = (
    "ChannelBindingError",
    "CloseTimeoutError",
    "PeerVerificationError",
    "PinMismatchError",
    "PostHandshakeAuthError",
    "ReadAheadLimitError",
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


class ReadAheadLimitError(Exception):
    """The peer sent ``max_read_ahead`` bytes that no ``receive()`` has taken yet.

    Only an operation other than ``receive`` decrypts ahead of the application (a
    post-handshake certificate wait, ``send_eof()`` with a request pending, a TLS 1.2
    send during a renegotiation). At the limit it stops reading the transport and
    waits for ``receive()`` to take the data, if another task is receiving; if none
    is (none is inside ``receive()`` and none took any of that data), nobody would,
    and it raises this instead. Nothing is lost: ``receive()`` returns the data.

    Raised by ``verify_client_post_handshake()`` and ``send_eof()`` with the stream
    usable and the certificate request still pending (receive, then call again). A
    TLS 1.2 send is broken by it (OpenSSL may have taken part of the data): it
    raises the face's ``BrokenResourceError`` with this as ``__cause__``.
    """


class CloseTimeoutError(TimeoutError):
    """The peer did not complete the closing handshake within ``close_timeout``.

    Raised by ``unwrap()`` (and ``send_eof()``): our close_notify may have been
    sent, the peer's did not arrive in time (or, with a certificate request
    pending, the client's answer did not). The stream is broken afterwards (a
    downgrade to plaintext is impossible); ``aclose()`` then only closes the
    transport. A :exc:`TimeoutError`, as AnyIO's ``fail_after`` raises.
    ``aclose()`` does not raise it: it closes the transport at the limit.
    """
