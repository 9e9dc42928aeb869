"""Default contexts and host names, shared by both faces."""

from __future__ import annotations

__all__ = ("default_context", "encode_hostname")

import ssl


def default_context(*, server_side: bool) -> ssl.SSLContext:
    """A secure default context for one side, as ``anyio.streams.tls`` builds it.

    ``ssl.create_default_context`` for the purpose, with ``OP_IGNORE_UNEXPECTED_EOF``
    cleared so a truncated connection is an error and not a clean close.
    """
    purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose)
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


def encode_hostname(hostname: str | None) -> bytes | None:
    """Host name for SNI and verification, resolved with IDNA 2008 as anyio does.

    ``wrap_bio()`` alone would encode international names with IDNA 2003. Bytes, not
    ``str``: ``wrap_bio()`` runs a ``str`` through Python's ``idna`` codec (0.5 µs,
    more than the rest of this), bytes only through ``decode("ascii")``. As with
    anyio, an ASCII name is passed on as it is.
    """
    if hostname is None:
        return None
    try:
        return hostname.encode("ascii")
    except UnicodeEncodeError:
        import idna

        encoded: bytes = idna.encode(hostname, uts46=True)
        return encoded
