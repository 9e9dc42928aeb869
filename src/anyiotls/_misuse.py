"""Clear errors for contexts given to the wrong side, raised at the call that is wrong.

OpenSSL's own words for these ("Cannot create a server socket with a
PROTOCOL_TLS_CLIENT context", or ``NO_SHARED_CIPHER`` on every connection of a
server without a certificate) name neither the mistake nor the fix. Nothing here
runs on a stream's hot path: :func:`side_error` translates an error that already
happened, :func:`check_server_context` runs once per listener.
"""

from __future__ import annotations

__all__ = ("check_server_context", "side_error")

import contextlib
import ssl

_CLIENT_CONTEXT_AS_SERVER = "Cannot create a server socket with a PROTOCOL_TLS_CLIENT"
_SERVER_CONTEXT_AS_CLIENT = "Cannot create a client socket with a PROTOCOL_TLS_SERVER"


def side_error(exc: ssl.SSLError, *, where: str, client_fix: str) -> ssl.SSLError:
    """A clear replacement for OpenSSL's error about a context of the wrong side.

    *where* names the class (``"TLSStream"``), *client_fix* says how to make the
    stream a client. Any other error comes back as it is. The type stays
    :exc:`ssl.SSLError`, which is what ``wrap_bio()`` raised before (and what
    code written for ``anyio.streams.tls`` may catch).
    """
    message = str(exc)
    if _CLIENT_CONTEXT_AS_SERVER in message:
        return ssl.SSLError(
            ssl.SSL_ERROR_SSL,
            f"{where}: this is a client context (PROTOCOL_TLS_CLIENT, as "
            "ssl.create_default_context() makes) but the stream is the server side. "
            f"For a client, {client_fix} (checked against its certificate); for a "
            "server, use ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) with "
            "load_cert_chain()",
        )
    if _SERVER_CONTEXT_AS_CLIENT in message:
        return ssl.SSLError(
            ssl.SSL_ERROR_SSL,
            f"{where}: this is a server context (PROTOCOL_TLS_SERVER, as "
            "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) makes) but the "
            "stream is the client side. For a client, use "
            "ssl.create_default_context(); for a server, pass server_side=True",
        )
    return exc


def check_server_context(context: object, *, where: str) -> None:
    """Refuse a context that cannot serve: wrong type, client side, no certificate.

    The certificate check feeds a ClientHello from a throw-away client (all
    versions and ciphers this OpenSSL has) to a server ``SSLObject`` over memory
    BIOs and looks at the server's first answer: ``NO_SHARED_CIPHER`` there means
    the context has no certificate (or none usable with any cipher). Nothing is
    sent anywhere. Python has no public way to ask a context whether it holds a
    certificate. Skipped with an ``sni_callback``, which may switch each
    connection to another context, and with a ``keylog_filename``.
    """
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(
            f"{where}: ssl_context must be an ssl.SSLContext, not "
            f"{type(context).__name__}"
        )
    if context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError(
            f"{where} needs a server context; this is a client context "
            "(PROTOCOL_TLS_CLIENT, as ssl.create_default_context() makes): use "
            "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) and "
            "load_cert_chain(certfile, keyfile)"
        )
    if context.sni_callback is not None or context.keylog_filename:
        return  # (a key log would get a line for the throw-away handshake)
    if _first_answer_error(context) == "NO_SHARED_CIPHER":
        raise ValueError(
            f"{where}: the server context has no certificate, so every client's "
            "handshake would fail with NO_SHARED_CIPHER: call "
            "context.load_cert_chain(certfile, keyfile) first"
        )


_client_hello: bytes | None = None


def _wide_open_client_hello() -> bytes:
    """A ClientHello offering every version and cipher (made once per process)."""
    global _client_hello
    if _client_hello is None:
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.check_hostname = False
        client_context.verify_mode = ssl.CERT_NONE
        client_context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with contextlib.suppress(ssl.SSLError):  # an OpenSSL without SECLEVEL
            client_context.set_ciphers("ALL:@SECLEVEL=0")
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context.wrap_bio(incoming, outgoing, server_side=False)
        with contextlib.suppress(ssl.SSLWantReadError):  # (as expected)
            client.do_handshake()
        _client_hello = outgoing.read()
    return _client_hello


def _first_answer_error(server_context: ssl.SSLContext) -> str | None:
    """The reason the server refuses a wide-open ClientHello with, if it does."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    incoming.write(_wide_open_client_hello())
    server = server_context.wrap_bio(incoming, outgoing, server_side=True)
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        return None
    except ssl.SSLError as exc:
        return str(exc.reason)
    return None
