"""The sans-I/O TLS engine: one :class:`ssl.SSLObject` between two memory BIOs.

Theory of operation
===================

Everything anyiotls knows about TLS is in this file (the state of the protocol) and in
``_driver.py`` (the one loop that moves bytes between this engine and a transport).
The faces (``_anyio.py``, ``trio.py``) only translate names, exceptions and defaults.

The SSLObject and its BIOs
--------------------------
An :class:`ssl.SSLObject` never touches the network. It reads ciphertext from an
*incoming* :class:`ssl.MemoryBIO` and writes ciphertext to an *outgoing* one. Four calls
move the protocol: ``do_handshake()``, ``read()``, ``write()`` and ``unwrap()``. Each of
them may append bytes to the outgoing BIO and then either return or raise
:exc:`ssl.SSLWantReadError`, which means "I need more bytes from the peer; call me
again, with the same arguments, once they are in the incoming BIO". With memory BIOs
:exc:`ssl.SSLWantWriteError` never happens: the outgoing BIO is unbounded.

So this engine exposes each of the four calls as a *step* that never blocks and
returns either a result or :data:`NEED_DATA`. Two rules follow, and the driver obeys
both:

1. *Flush after every step*, also after a step that returned normally: session
   tickets, KeyUpdate answers, post-handshake messages and alerts are written by calls
   that "succeed". (:meth:`TLSEngine.data_to_send` takes them.)
2. *Retry after NEED_DATA* with the same arguments once more bytes arrived. Other
   steps may run in between (the SSLObject keeps its own state), which is what makes
   full duplex possible.

Full duplex
-----------
A ``read()`` may need to *write* (the peer asked for a KeyUpdate, renegotiates under
TLS 1.2, or sent a post-handshake CertificateRequest) and a ``write()`` may need to
*read* (TLS 1.2 renegotiation). With one task sending and another receiving, both may
need the same side of the transport at once. Two inner locks serialise the transport,
not the TLS operations: one for ``transport.send`` and one for ``transport.receive``.
Whoever holds the send lock drains the *whole* outgoing BIO and sends it, so
ciphertext reaches the wire in exactly the order the SSLObject produced it, no matter
which task produced it. Bytes are taken out of the BIO only while holding the send
lock; until then they wait in the BIO, where a cancelled task cannot lose them.

Receiving works the same way: the holder of the receive lock feeds what it got into
the incoming BIO, where every task's next step sees it. A task that waited for the
receive lock while another task received does not receive again: it retries its step
first (the other task's bytes may be what it needed), the trick trio's ``_ssl.py``
uses with its ``_inner_recv_count``.

One more trap of full duplex under TLS 1.2: during a renegotiation OpenSSL accepts
application data arriving in front of the handshake messages only inside ``read()``;
a ``write()`` that drives the handshake fails on it with ``UNEXPECTED_RECORD``. So a
writer first decrypts buffered input into a *backlog* that ``receive`` empties before
it decrypts anything new (order is kept), and wakes a ``receive`` blocked on the
transport, since the data it waits for may now be in the backlog. A post-handshake
authentication waiter does the same with the data that arrives before the answer.
The backlog is bounded (``max_read_ahead``); what happens at the bound is the
driver's (the "Bounds" paragraph of ``_driver.py``).

Errors
------
The first fatal :exc:`ssl.SSLError` is kept and raised again by every later step:
after a fatal error OpenSSL answers later calls with a less informative
``SSLEOFError``. A transport that ends without close_notify is a *ragged EOF*:
:func:`is_ragged_eof` is the one place that recognises it.

Closing
-------
``unwrap()`` by the side that closes first writes close_notify and then needs the
peer's close_notify; the second call returns. After our own ``unwrap()``, ``read()``
still works under TLS 1.3 (half-close, RFC 8446 section 6.1), which is what
``send_eof()`` uses. ``unwrap()`` refuses to run while decrypted application data
waits unread (``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``), so :meth:`TLSEngine.unwrap`
reads such data out first and hands it to the caller. After a completed unwrap the
incoming BIO holds exactly the plaintext the peer sent after its close_notify: the
*leftover* of a STARTTLS downgrade.

Post-handshake client authentication (TLS 1.3)
-----------------------------------------------
``SSLObject.verify_client_post_handshake()`` only queues the CertificateRequest; the
next step writes it. The client answers only inside its ``read()`` and the server
processes the answer only inside its ``read()``. Success is visible as a new peer
certificate or as new session tickets written by that ``read()``
(:attr:`TLSEngine.client_auth_pending` tracks it). Unwrapping while a request is
pending would put the server's tickets after its close_notify, into the plaintext of
a downgrade, so the driver refuses to.

Cancellation
------------
The engine never awaits, so it cannot be cancelled half-way. What a cancellation
leaves behind is decided in ``_driver.py``, whose header lists each await point.
"""

from __future__ import annotations

__all__ = (
    "NEED_DATA",
    "TLSEngine",
    "check_session",
    "is_ragged_eof",
    "session_error",
)

import ssl
from typing import Final

from ._session import certificate_covers

#: Returned by a step that needs more bytes from the peer before it can finish.
NEED_DATA: Final = None

#: Largest plaintext of one TLS record (RFC 8446 section 5.1).
MAX_RECORD_PLAINTEXT: Final = 16384

#: Most ciphertext put into the incoming BIO at once. OpenSSL's memory BIO keeps the
#: memory it grew to for the life of the connection, so a large transport read is
#: staged here and fed in pieces as the steps consume it (see ``receive_data``).
FEED_SIZE: Final = 65536


def is_ragged_eof(exc: BaseException | None) -> bool:
    """Return ``True`` if *exc* means "the transport ended without close_notify"."""
    return isinstance(exc, ssl.SSLEOFError) or (
        isinstance(exc, ssl.SSLError)
        and "UNEXPECTED_EOF_WHILE_READING" in (exc.strerror or "")
    )


def check_session(session: object, *, server_side: bool) -> None:
    """Refuse a *session* that ``wrap_bio()`` would refuse less clearly."""
    if not isinstance(session, ssl.SSLSession):
        raise TypeError(
            f"session must be an ssl.SSLSession, not {type(session).__name__}"
        )
    if server_side:
        raise ValueError("session= is for clients: a server cannot offer a session")


def session_error(exc: ValueError) -> ValueError:
    """A clear :exc:`ValueError` for the one ``wrap_bio()``/assignment raised."""
    if "different SSLContext" in str(exc):
        return ValueError(
            "this session was made with another SSLContext: a session can only be "
            "resumed with the SSLContext object of the connection that made it"
        )
    return ValueError(f"cannot resume this session: {exc}")


class TLSEngine:
    """An :class:`ssl.SSLObject` and its two memory BIOs, driven one step at a time.

    Every step calls the SSLObject once (``read`` may call it a few times to drain
    several records) and returns a result or :data:`NEED_DATA`. Nothing here awaits.
    """

    __slots__ = (
        "_auth_optional",
        "_cert_before_auth",
        "_error",
        "_incoming",
        "_outgoing",
        "_peer_closed",
        "_resumed_host",
        "_staged",
        "_tickets_after_auth",
        "client_auth_configured",
        "client_auth_pending",
        "server_side",
        "ssl_object",
    )

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | bytes | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        if not server_side and server_hostname is None and ssl_context.check_hostname:
            # Python's own sockets refuse this; wrap_bio() would check no name at all.
            raise ValueError(
                "check_hostname requires server_hostname: give the server's host "
                "name, or turn check_hostname off in the context"
            )
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        #: the SSLObject; public so the faces can expose it as an attribute
        if session is not None:
            check_session(session, server_side=server_side)
        try:
            self.ssl_object: ssl.SSLObject = ssl_context.wrap_bio(
                self._incoming,
                self._outgoing,
                server_side=server_side,
                server_hostname=server_hostname,
                session=session,
            )
        except ValueError as exc:
            if session is None:
                raise
            raise session_error(exc) from exc
        self._error: ssl.SSLError | None = None
        #: the host name a resumed session must be valid for: OpenSSL resumes a
        #: session offered to another host without checking the name again
        self._resumed_host = (
            server_hostname
            if not server_side and server_hostname and ssl_context.check_hostname
            else None
        )
        #: ``True`` between sending a post-handshake CertificateRequest and processing
        #: the client's answer
        self.client_auth_pending = False
        self._cert_before_auth: bytes | None = None
        #: the peer's close_notify was read (``read()`` returns ``b""`` from now on)
        self._peer_closed = False
        #: received ciphertext not yet in the incoming BIO (see ``receive_data``)
        self._staged: bytes | memoryview = b""
        #: ``True`` for the server end (a plain attribute: ``SSLObject.server_side``
        #: is a Python property, read on every handshake)
        self.server_side = server_side
        # As wrap_bio() copied them (the context may change later): whether this
        # server can ask for a certificate after the handshake, whether new session
        # tickets will mark the end of each such exchange, and whether an empty
        # answer is acceptable. A client never asks: it skips the reads (each
        # ``verify_mode`` read builds an enum member).
        if server_side:
            verify_mode = ssl_context.verify_mode
            #: ``True`` if this server may request a post-handshake certificate
            #: (``post_handshake_auth`` set and ``verify_mode`` not ``CERT_NONE``)
            self.client_auth_configured = (
                bool(ssl_context.post_handshake_auth) and verify_mode != ssl.CERT_NONE
            )
            self._tickets_after_auth = ssl_context.num_tickets > 0
            self._auth_optional = verify_mode == ssl.CERT_OPTIONAL
        else:
            self.client_auth_configured = False
            self._tickets_after_auth = False
            self._auth_optional = False

    # -- bytes in and out ------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Take everything the SSLObject has written so far (may be ``b""``)."""
        return self._outgoing.read()

    @property
    def has_data_to_send(self) -> bool:
        """``True`` if the outgoing BIO holds bytes for the peer."""
        return self._outgoing.pending > 0

    @property
    def has_buffered_input(self) -> bool:
        """``True`` if a step can probably make progress without new transport bytes."""
        return (
            self._incoming.pending > 0
            or self.ssl_object.pending() > 0
            or len(self._staged) > 0
        )

    @property
    def needs_peer_data(self) -> bool:
        """``True`` if ``read()`` can only return NEED_DATA until new bytes arrive.

        Nothing buffered, no error, no close_notify read, no request pending: the
        driver may then go to the transport without calling ``read()`` first.
        """
        return self.read_waits_for_peer and not self.has_buffered_input

    @property
    def read_waits_for_peer(self) -> bool:
        """:attr:`needs_peer_data` for a caller that knows nothing is buffered.

        No close_notify read, no error, no request pending.
        """
        return not (
            self._peer_closed or self._error is not None or self.client_auth_pending
        )

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the transport; ``b""`` means the transport reached EOF.

        At most :data:`FEED_SIZE` bytes go into the incoming BIO at once: the rest
        is staged and fed by the steps whenever the SSLObject wants more, so no step
        returns NEED_DATA while staged bytes remain.
        """
        if not data:
            if self._staged:
                self._incoming.write(self._staged)
                self._staged = b""
            self._incoming.write_eof()
            return
        if self._staged:  # rare: another task received before this one was fed
            data = bytes(self._staged) + data
            self._staged = b""
        if len(data) <= FEED_SIZE:
            self._incoming.write(data)
            return
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._incoming.write(view[:FEED_SIZE])
        self._staged = view[FEED_SIZE:]

    def _feed(self) -> bool:
        """Move the next staged piece into the incoming BIO; ``False`` if none."""
        staged = self._staged
        if not staged:
            return False
        self._incoming.write(staged[:FEED_SIZE])
        rest = staged[FEED_SIZE:]
        self._staged = rest if rest else b""  # an empty view would pin the buffer
        return True

    @property
    def peer_closed(self) -> bool:
        """``True`` once the peer's close_notify was read (or our unwrap finished)."""
        return self._peer_closed

    @property
    def error(self) -> ssl.SSLError | None:
        """The first fatal TLS error, if one happened."""
        return self._error

    def fail(self, exc: ssl.SSLError) -> ssl.SSLError:
        """Record *exc* as the fatal error unless one is recorded; return the first."""
        if self._error is None:
            self._error = exc
        return self._error

    # -- the four steps --------------------------------------------------------------

    def do_handshake(self, _: None = None) -> bool | None:
        """Advance the handshake: ``True`` when complete, else :data:`NEED_DATA`.

        (The ignored argument gives every step the same shape for the driver.)
        """
        if self._error is not None:
            raise self._error
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            return self.do_handshake() if self._feed() else NEED_DATA
        except ssl.SSLError as exc:
            raise self.fail(exc) from None
        if self._resumed_host is not None and self.ssl_object.session_reused:
            self._check_resumed_host(self._resumed_host)
        return True

    def _check_resumed_host(self, hostname: str | bytes) -> None:
        """Fail the handshake if the resumed session's certificate does not name
        *hostname* (a session from another host, given as ``session=``)."""
        name = hostname.decode("ascii") if isinstance(hostname, bytes) else hostname
        if certificate_covers(self.ssl_object.getpeercert(), name):
            return
        exc = ssl.SSLCertVerificationError(
            1,
            f"the resumed session's certificate is not valid for {name!r}: the "
            "session was made for another host",
        )
        exc.verify_code = 62  # X509_V_ERR_HOSTNAME_MISMATCH
        exc.verify_message = (
            f"Hostname mismatch, certificate is not valid for {name!r} "
            "(resumed session)"
        )
        raise self.fail(exc)

    def read(self, max_bytes: int) -> bytes | None:
        """Decrypt up to *max_bytes*: data, ``b""`` at close_notify, or NEED_DATA.

        Drains as many whole records as are buffered (``SSLObject.read`` returns at
        most one record per call), so a receive of small records costs one await.
        """
        if self._error is not None:
            raise self._error
        sslobj = self.ssl_object
        pending_auth = self.client_auth_pending
        out_before = self._outgoing.pending if pending_auth else 0
        try:
            data = sslobj.read(max_bytes)
        except ssl.SSLWantReadError:
            if pending_auth:
                self._check_client_auth(out_before)
            return self.read(max_bytes) if self._feed() else NEED_DATA
        except ssl.SSLZeroReturnError:
            self._peer_closed = True
            return b""
        except ssl.SSLError as exc:
            self.client_auth_pending = False
            raise self.fail(exc) from None
        if not data:
            self._peer_closed = True
        if data and len(data) < max_bytes and (self._incoming.pending or self._staged):
            chunks = [data]
            size = len(data)
            while size < max_bytes:
                try:
                    more = sslobj.read(max_bytes - size)
                except ssl.SSLWantReadError:
                    if self._feed():
                        continue
                    break
                except ssl.SSLZeroReturnError:
                    # The peer's close_notify after our own (half-close); the next
                    # read() returns b"" for it.
                    self._peer_closed = True
                    break
                except ssl.SSLError as exc:
                    # Deliver what we have; the next step raises the error again.
                    self.fail(exc)
                    break
                if not more:
                    self._peer_closed = True
                    break
                chunks.append(more)
                size += len(more)
            data = b"".join(chunks)
        if pending_auth:
            self._check_client_auth(out_before)
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int | None:
        """Encrypt all of *data*: its length, or NEED_DATA (retry with same data)."""
        if self._error is not None:
            raise self._error
        try:
            return self.ssl_object.write(data)
        except ssl.SSLWantReadError:
            return self.write(data) if self._feed() else NEED_DATA
        except ssl.SSLError as exc:
            if exc.reason == "PROTOCOL_IS_SHUTDOWN":
                # Writing after our own close_notify is the caller's mistake, not a
                # fatal TLS error: read() still works (half-close).
                raise
            raise self.fail(exc) from None

    def unwrap(self, keep: bytearray | None = None) -> bool | None:
        """Advance the closing handshake: ``True`` when done, else NEED_DATA.

        Application data that arrived before the peer's close_notify is read out
        first (OpenSSL's ``unwrap()`` fails for good on it with
        ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``) and appended to *keep*, or
        discarded if *keep* is ``None``.
        """
        if self._error is not None:
            raise self._error
        if self._incoming.pending or self._staged or self.ssl_object.pending():
            self._drain_into(keep)
        try:
            self.ssl_object.unwrap()
        except ssl.SSLWantReadError:
            return self.unwrap(keep) if self._feed() else NEED_DATA
        except ssl.SSLError as exc:
            raise self.fail(exc) from None
        self._peer_closed = True
        return True

    def leftover(self) -> bytes:
        """After a completed unwrap: the plaintext the peer sent after close_notify."""
        data = self._incoming.read()
        if self._staged:
            data += bytes(self._staged)
            self._staged = b""
        return data

    # -- post-handshake client authentication ---------------------------------------

    def request_client_auth(self) -> None:
        """Queue a TLS 1.3 CertificateRequest; the next step writes it.

        Raises :exc:`ssl.SSLError` (e.g. ``EXTENSION_NOT_RECEIVED``) without changing
        any state if OpenSSL refuses; nothing is written then.
        """
        if self._error is not None:
            raise self._error
        self._cert_before_auth = self.ssl_object.getpeercert(True)
        self.ssl_object.verify_client_post_handshake()
        self.client_auth_pending = True

    @property
    def client_auth_end_visible(self) -> bool:
        """``True`` if the end of a new exchange would show (``_check_client_auth``).

        It shows as a changed peer certificate or as new session tickets. Without
        tickets (``num_tickets = 0``) an answer that leaves the certificate as it
        was, an empty one under ``CERT_OPTIONAL`` or the certificate the client
        already gave, changes nothing that can be seen.
        """
        if self._tickets_after_auth:
            return True
        return not self._auth_optional and self.ssl_object.getpeercert(True) is None

    def _check_client_auth(self, out_before: int) -> None:
        # Called after a read() while a request is pending. The server has processed
        # the client's answer when the peer certificate changed, or when that read()
        # wrote new session tickets (OpenSSL sends them after every successful
        # post-handshake authentication, also after an empty Certificate). Nothing
        # else makes a TLS 1.3 read() write: OpenSSL answers a KeyUpdate request at
        # the next write(), not inside read().
        try:
            cert = self.ssl_object.getpeercert(True)
        except ValueError:  # still inside the exchange
            return
        if cert != self._cert_before_auth or self._outgoing.pending > out_before:
            self.client_auth_pending = False

    # -- helpers ---------------------------------------------------------------------

    def _drain_into(self, keep: bytearray | None) -> None:
        """Read buffered application data out of the SSLObject, up to close_notify."""
        while True:
            try:
                data = self.ssl_object.read(MAX_RECORD_PLAINTEXT)
            except ssl.SSLWantReadError:
                if self._feed():
                    continue
                return
            except ssl.SSLZeroReturnError:
                self._peer_closed = True
                return
            except ssl.SSLError as exc:
                raise self.fail(exc) from None
            if not data:
                self._peer_closed = True
                return
            if keep is not None:
                keep += data
