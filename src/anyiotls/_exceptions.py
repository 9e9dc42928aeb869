"""Exceptions of anyiotls's own (the faces otherwise raise their host's exceptions)."""

from __future__ import annotations

__all__ = ("PostHandshakeAuthError",)


class PostHandshakeAuthError(Exception):
    """Post-handshake client authentication cannot be done on this connection.

    Raised *before anything is sent*: the stream stays usable. Reasons: the
    connection is not TLS 1.3, the client did not offer post-handshake authentication
    (its context lacks ``post_handshake_auth = True``), the server's context lacks
    ``post_handshake_auth = True`` or has ``verify_mode = CERT_NONE``, this is the
    client side, or the handshake has not completed.
    """
