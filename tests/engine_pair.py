"""Two :class:`~anyiotls._engine.TLSEngine` objects back to back, no I/O at all.

:class:`EnginePair` is h11's ``ConnectionPair`` for TLS: a client engine and a server
engine, with helpers that move the ciphertext one side has written (its
``data_to_send()``) into the other side's ``receive_data()``. Nothing here loops
without a bound: a handshake that does not finish in a few round trips fails the test
instead of hanging it.

The contexts come from one module-level :mod:`trustme` CA (plus a second, untrusted
CA for "unknown client certificate" tests), so this module works without any
fixture from ``conftest.py``.
"""

from __future__ import annotations

__all__ = (
    "CA",
    "CLIENT_CERT_DER",
    "CLIENT_IDENTITY",
    "HOSTNAME",
    "UNTRUSTED_CA",
    "EnginePair",
    "client_context",
    "records",
    "server_context",
)

import ssl
from collections.abc import Iterator
from typing import Literal

import trustme

from anyiotls._engine import NEED_DATA, TLSEngine

#: The name the server certificate is issued for and the client verifies.
HOSTNAME = "localhost"
#: The identity in the client certificates (post-handshake authentication).
CLIENT_IDENTITY = "client@example.org"

#: Trusted by both sides: issues the server certificate and the good client one.
CA = trustme.CA()
#: Trusted by nobody: issues the client certificate a server must reject.
UNTRUSTED_CA = trustme.CA()

_SERVER_CERT = CA.issue_cert(HOSTNAME, "127.0.0.1")
_CLIENT_CERT = CA.issue_cert(CLIENT_IDENTITY)
_UNTRUSTED_CLIENT_CERT = UNTRUSTED_CA.issue_cert(CLIENT_IDENTITY)
#: What ``getpeercert(True)`` returns on the server once the trusted client cert
#: arrived.
CLIENT_CERT_DER = ssl.PEM_cert_to_DER_cert(
    _CLIENT_CERT.cert_chain_pems[0].bytes().decode("ascii")
)

Version = Literal["1.2", "1.3"]
ClientCert = Literal["none", "trusted", "untrusted"]

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# How many steps a handshake may take before the pair gives up (a real one takes 2-3).
_MAX_ROUNDS = 10


def server_context(
    version: Version = "1.3",
    *,
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE,
    post_handshake_auth: bool = False,
    num_tickets: int | None = None,
    ignore_unexpected_eof: bool = False,
) -> ssl.SSLContext:
    """A server context pinned to one TLS *version*, trusting :data:`CA` for clients.

    ``OP_IGNORE_UNEXPECTED_EOF`` is cleared unless *ignore_unexpected_eof* (some
    OpenSSL/Python defaults set it; these tests want to see a truncation).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _SERVER_CERT.configure_cert(context)
    CA.configure_trust(context)
    context.minimum_version = context.maximum_version = _VERSIONS[version]
    context.verify_mode = verify_mode
    context.post_handshake_auth = post_handshake_auth
    if num_tickets is not None:
        context.num_tickets = num_tickets
    _set_ignore_unexpected_eof(context, ignore_unexpected_eof)
    return context


def client_context(
    version: Version = "1.3",
    *,
    cert: ClientCert = "none",
    post_handshake_auth: bool = False,
    ignore_unexpected_eof: bool = False,
) -> ssl.SSLContext:
    """A client context pinned to one TLS *version* that trusts :data:`CA`."""
    # Not create_default_context(): loading the system store costs ~20 ms per context.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    CA.configure_trust(context)
    context.minimum_version = context.maximum_version = _VERSIONS[version]
    if cert == "trusted":
        _CLIENT_CERT.configure_cert(context)
    elif cert == "untrusted":
        _UNTRUSTED_CLIENT_CERT.configure_cert(context)
    context.post_handshake_auth = post_handshake_auth
    _set_ignore_unexpected_eof(context, ignore_unexpected_eof)
    return context


def _set_ignore_unexpected_eof(context: ssl.SSLContext, enabled: bool) -> None:
    if enabled:
        context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    else:
        context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF


def records(ciphertext: bytes) -> Iterator[tuple[int, bytes]]:
    """Split whole TLS records: yield ``(content_type, record)`` (header included)."""
    pos = 0
    while pos < len(ciphertext):
        if len(ciphertext) - pos < 5:
            raise ValueError(f"truncated record header at {pos}")
        length = int.from_bytes(ciphertext[pos + 3 : pos + 5], "big")
        end = pos + 5 + length
        if end > len(ciphertext):
            raise ValueError(f"truncated record body at {pos}")
        yield ciphertext[pos], ciphertext[pos:end]
        pos = end


class EnginePair:
    """A client and a server :class:`TLSEngine` wired back to back.

    Bytes move only when a test says so (:meth:`pump`, :meth:`deliver`), so every
    intermediate state can be inspected.
    """

    def __init__(
        self,
        client_ctx: ssl.SSLContext | None = None,
        server_ctx: ssl.SSLContext | None = None,
        *,
        version: Version = "1.3",
        hostname: str = HOSTNAME,
    ) -> None:
        if client_ctx is None:
            client_ctx = client_context(version)
        if server_ctx is None:
            server_ctx = server_context(version)
        self.client = TLSEngine(client_ctx, server_side=False, server_hostname=hostname)
        self.server = TLSEngine(server_ctx, server_side=True, server_hostname=None)

    def peer(self, engine: TLSEngine) -> TLSEngine:
        """The other side of *engine*."""
        if engine is self.client:
            return self.server
        if engine is self.server:
            return self.client
        raise ValueError("engine is not part of this pair")

    def pump(self, source: TLSEngine) -> bytes:
        """Move everything *source* has written to its peer; return those bytes."""
        data = source.data_to_send()
        if data:
            self.peer(source).receive_data(data)
        return data

    def pump_all(self) -> int:
        """Pump both ways until neither side has anything to send; return the count."""
        moved = 0
        for _ in range(_MAX_ROUNDS):
            step = len(self.pump(self.client)) + len(self.pump(self.server))
            if not step:
                return moved
            moved += step
        raise AssertionError("pump_all did not settle")

    def handshake(self) -> None:
        """Run both handshakes to completion, then deliver what they wrote last.

        The server's TLS 1.3 session tickets end up in the client's incoming BIO,
        unread (a client processes them only inside ``read()``).
        """
        done = {self.client: False, self.server: False}
        for _ in range(_MAX_ROUNDS):
            for engine in (self.client, self.server):
                if not done[engine]:
                    done[engine] = engine.do_handshake() is not NEED_DATA
                self.pump(engine)
            if all(done.values()):
                return
        raise AssertionError("handshake did not complete")

    def send(self, source: TLSEngine, data: bytes) -> bytes:
        """*source* encrypts *data*; the ciphertext goes to its peer and is returned."""
        assert source.write(data) == len(data)
        return self.pump(source)

    def read_all(self, engine: TLSEngine, max_bytes: int = 1 << 20) -> bytes:
        """Everything *engine* can decrypt from what it has buffered (``b""`` if none).

        Stops at NEED_DATA or at close_notify; whatever the reads wrote (answers,
        tickets, alerts) stays in *engine*'s outgoing BIO.
        """
        out = bytearray()
        for _ in range(10_000):
            data = engine.read(max_bytes)
            if not data:  # NEED_DATA or close_notify
                return bytes(out)
            out += data
        raise AssertionError("read_all did not settle")
