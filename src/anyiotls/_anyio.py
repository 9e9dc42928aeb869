"""The AnyIO face: :class:`TLSStream`, :class:`TLSListener`, :class:`TLSConnectable`.

A drop-in for ``anyio.streams.tls``: same names, signatures, defaults, attributes and
exceptions. All TLS logic is in the engine and driver; this module translates.
"""

from __future__ import annotations

__all__ = ("TLSConnectable", "TLSListener", "TLSStream")

import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from functools import wraps
from typing import Any

from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    aclose_forcefully,
    fail_after,
    get_cancelled_exc_class,
    move_on_after,
)
from anyio.abc import (
    AnyByteStream,
    ByteReceiveStream,
    ByteStream,
    Listener,
    SocketAttribute,
    TaskGroup,
)
from anyio.streams.tls import TLSAttribute

from ._attributes import ClientHelloAttribute
from ._certs import certificate_attributes, get_channel_binding, make_verify_step
from ._clienthello import ClientHello, ClientHelloError
from ._context import default_context, encode_hostname
from ._driver import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_READ_AHEAD,
    FaceErrors,
    TLSDriver,
    check_limits,
)
from ._engine import TLSEngine, is_ragged_eof
from ._log import describe_handshake_error
from ._misuse import check_server_context, side_error
from ._session import SessionAttribute, SessionCache, SessionKeeper
from ._sni import (
    ALERT_SEND_TIMEOUT,
    SelectContext,
    Selection,
    ServesNames,
    read_client_hello,
    refusal_alert,
)

try:
    from anyio.abc import ByteStreamConnectable as _ConnectableBase
except ImportError:  # anyio < 4.10 has no connectables; keep the class usable
    _ConnectableBase = object  # type: ignore[assignment,misc]

logger = logging.getLogger("anyiotls")

#: A ``verify_peer`` hook: called with the stream after the handshake, before any
#: application data; rejects the peer by raising.
VerifyPeer = Callable[["TLSStream"], Awaitable[None]]

_ERRORS = FaceErrors(
    broken=BrokenResourceError,
    closed=ClosedResourceError,
    busy_sending=lambda: BusyResourceError("sending to"),
    busy_receiving=lambda: BusyResourceError("receiving from"),
    # anyio.streams.tls turns an OSError from the transport into this
    wrapped_transport_errors=(OSError,),
)


class TLSStream(ByteStream):
    """A byte stream that encrypts what is sent and decrypts what is received.

    Create it with :meth:`wrap` (which also performs the handshake), exactly as
    ``anyio.streams.tls.TLSStream``; or construct it and call :meth:`do_handshake`.
    Every :class:`~anyio.streams.tls.TLSAttribute` is available through
    :meth:`extra`, along with the transport's own attributes.

    One task may send while another receives. Two tasks sending at once (or
    receiving at once) get :exc:`~anyio.BusyResourceError`.

    :var transport_stream: the wrapped stream
    :var standard_compatible: whether closing sends close_notify and waits for the
        peer's, and whether a missing close_notify is an error
    """

    def __init__(
        self,
        transport_stream: AnyByteStream,
        *,
        server_side: bool | None = None,
        hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        standard_compatible: bool = True,
        verify_peer: VerifyPeer | None = None,
        session: ssl.SSLSession | None = None,
        session_cache: SessionCache | None = None,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """Prepare TLS over *transport_stream*; no handshake yet (see :meth:`wrap`).

        Takes the same arguments as :meth:`wrap` and raises what it raises before
        the handshake.
        """
        check_limits(max_read_ahead, close_timeout)
        if server_side is None:
            server_side = not hostname
        if ssl_context is None:
            if session_cache is not None:
                raise ValueError(
                    "session_cache needs ssl_context: sessions resume only with the "
                    "context that made them, and the default one is new per stream"
                )
            ssl_context = default_context(server_side=server_side)
        elif not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, not "
                f"{type(ssl_context).__name__}"
            )
        self.transport_stream = transport_stream
        self.standard_compatible = standard_compatible
        #: hands this client's session to *session_cache* (``None`` without one)
        self._session_keeper: SessionKeeper | None = None
        if session_cache is not None:
            session, self._session_keeper = _from_cache(
                session_cache,
                transport_stream,
                ssl_context,
                hostname,
                session,
                server_side=server_side,
            )
        try:
            engine = TLSEngine(
                ssl_context,
                server_side=server_side,
                server_hostname=encode_hostname(hostname),
                session=session,
            )
        except ssl.SSLError as exc:  # a context of the other side: say which, and why
            raise side_error(
                exc, where="TLSStream", client_fix="pass hostname='the.server.name'"
            ) from None
        self._driver = TLSDriver(
            engine,
            transport_send=transport_stream.send,
            transport_receive=transport_stream.receive,
            transport_eof=EndOfStream,
            errors=_ERRORS,
            ragged_eof_is_error=standard_compatible,
            verify_peer=None
            if verify_peer is None
            else make_verify_step(verify_peer, self),
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )
        self._ssl_object = engine.ssl_object

    @classmethod
    async def wrap(
        cls,
        transport_stream: AnyByteStream,
        *,
        server_side: bool | None = None,
        hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        standard_compatible: bool = True,
        verify_peer: VerifyPeer | None = None,
        session: ssl.SSLSession | None = None,
        session_cache: SessionCache | None = None,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> TLSStream:
        """Wrap *transport_stream* in TLS and perform the handshake.

        :param transport_stream: any AnyIO byte stream (a socket, a memory stream
            pair, another TLS stream, your own)
        :param server_side: ``True`` for the server side; if omitted, ``False`` when
            *hostname* is given and ``True`` otherwise. Used only to build a default
            context.
        :param hostname: the peer's host name: sent as SNI and checked against its
            certificate (when the context checks host names)
        :param ssl_context: the context; default: :func:`ssl.create_default_context`
            for the side, with ``OP_IGNORE_UNEXPECTED_EOF`` cleared
        :param standard_compatible: if ``False``, closing skips the closing
            handshake and a peer that does the same is not an error
        :param verify_peer: an async callable run with the stream once the
            handshake's messages are done, before any application data passes
            (e.g. :func:`anyiotls.pin_sha256`); it rejects the peer by raising
            (see ``docs/certificates.md``)
        :param session: (client) an :class:`ssl.SSLSession` to resume, taken from
            ``extra(SessionAttribute.session)`` of an earlier connection made with
            the *same* context; whether the server accepted it shows as
            ``extra(SessionAttribute.session_reused)`` (a refused session costs a
            full handshake, never an error). The server's certificate and host name
            are checked as in a full handshake.
        :param session_cache: (client) a :class:`~anyiotls.SessionCache`: the
            session to resume comes from it (unless *session* is given), keyed by
            the context, *hostname* and the transport's remote port
            (``SocketAttribute.remote_port``; a UNIX socket's path; else ``None``),
            and the stream gives its new session back (see :doc:`resumption`)
        :raises ValueError: *session* was made with another context, or this is
            the server side; *session_cache* without *hostname*
        :raises TypeError: *session* is not an :class:`ssl.SSLSession`
        :param max_read_ahead: most bytes of plaintext decrypted ahead of
            :meth:`receive` by the operations that must read past application data
            (:meth:`verify_client_post_handshake`, :meth:`send_eof` with a request
            pending, a TLS 1.2 :meth:`send` during a renegotiation); at the limit
            they stop reading the transport until :meth:`receive` takes some, or
            raise :exc:`~anyiotls.ReadAheadLimitError` if no task is receiving
            (see ``docs/reliability.md``). Default: 1 MiB
        :param close_timeout: seconds :meth:`aclose`, :meth:`unwrap` and
            :meth:`send_eof` wait for the peer; ``None``: as long as the caller's
            cancel scope allows. Default: 5 (see ``docs/closing.md``)
        :raises ~ssl.SSLError: if the handshake fails (its own type, such as
            :exc:`ssl.SSLCertVerificationError`); the transport is then closed.
            Also at once, before anything is sent, if *ssl_context* is for the
            other side (a client context without *hostname*, say), with the fix
            in the message
        :raises ~anyiotls.PeerVerificationError: *verify_peer* raised (its
            exception is the ``__cause__``); the transport is then closed
        :raises ~anyio.BrokenResourceError: if the transport fails or ends during the
            handshake; the transport is then closed

        .. warning:: Cancelled, the handshake is abandoned and the transport closed.
        """
        stream = cls(
            transport_stream,
            server_side=server_side,
            hostname=hostname,
            ssl_context=ssl_context,
            standard_compatible=standard_compatible,
            verify_peer=verify_peer,
            session=session,
            session_cache=session_cache,
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )
        # Not ``await stream.do_handshake()``: one frame less between this task
        # and the transport at each of the handshake's waits.
        try:
            await stream._driver.handshake()
        except BaseException as exc:
            await stream._handshake_failed(exc)
            raise
        return stream

    async def do_handshake(self) -> None:
        """Perform the TLS handshake (:meth:`wrap` calls this for you).

        A task calling this while another task's handshake runs waits for that one
        and gets its outcome.

        :raises ~ssl.SSLError: if the handshake fails; the transport is closed
        :raises ~anyiotls.PeerVerificationError: the ``verify_peer`` hook rejected
            the peer; the transport is closed
        :raises ~anyio.BrokenResourceError: if the transport fails or ends; the
            transport is closed

        .. warning:: Cancelled, the handshake is abandoned and the transport closed;
            other tasks waiting for it get :exc:`~anyio.BrokenResourceError`.
        """
        try:
            await self._driver.handshake()
        except BaseException as exc:
            await self._handshake_failed(exc)
            raise

    async def _handshake_failed(self, exc: BaseException) -> None:
        """After the handshake raised *exc*: close the transport if the handshake
        failed, and raise its :exc:`ssl.SSLError` itself rather than the wrapper.

        Returns (the caller re-raises *exc*) when there is nothing more to do.
        """
        if not self._driver.handshake_failed:
            return  # e.g. a waiting task was cancelled: the handshake goes on
        await aclose_forcefully(self.transport_stream)
        cause = exc.__cause__
        if (
            isinstance(exc, BrokenResourceError)
            and isinstance(cause, ssl.SSLError)
            and not is_ragged_eof(cause)
        ):
            # (``from`` its own cause: a PeerVerificationError keeps the hook's
            # exception; other ssl errors have none, so this is ``from None``)
            raise cause from cause.__cause__

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive up to *max_bytes* bytes of decrypted data.

        Decrypts as many buffered records as fit, so it may return more than one
        record's worth.

        :raises ~anyio.EndOfStream: the peer closed the connection with
            close_notify (or, when not ``standard_compatible``, without it)
        :raises ~anyio.BrokenResourceError: the transport failed, a TLS error
            occurred (``__cause__`` is the :exc:`ssl.SSLError`), or, when
            ``standard_compatible``, the transport ended without close_notify
        :raises ~anyio.ClosedResourceError: the stream was closed or unwrapped
        :raises ~anyio.BusyResourceError: another task is receiving

        .. warning:: Cancelled, no data is lost and the stream stays usable, except
            when the cancellation strikes while a protocol message (a KeyUpdate
            answer, a renegotiation or post-handshake message) is being sent: then
            the stream is broken (the next call raises
            :exc:`~anyio.BrokenResourceError`) after returning any data decrypted
            before.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        keeper = self._session_keeper
        if keeper is None:
            data = await self._driver.receive(max_bytes)
        else:
            try:
                data = await self._driver.receive(max_bytes)
            except BrokenResourceError:
                keeper.failed()
                raise
            if keeper.waiting_for_ticket:
                keeper.after_receive(self._ssl_object)
        if not data:
            raise EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        """Encrypt and send *item*.

        :raises ~anyio.BrokenResourceError: the transport failed or a TLS error
            occurred; or (``__cause__``: :exc:`~anyiotls.ReadAheadLimitError`) a
            TLS 1.2 peer renegotiating sent ``max_read_ahead`` bytes ahead of its
            handshake messages while no task was receiving them
        :raises ~anyio.ClosedResourceError: the stream was closed, unwrapped or
            :meth:`send_eof` was called
        :raises ~anyio.BusyResourceError: another task is sending

        .. warning:: Cancelled, either nothing of *item* reached the transport and
            the stream stays usable, or the stream is broken: never a partial or
            duplicated item on a usable stream.
        """
        keeper = self._session_keeper
        if keeper is None:
            await self._driver.send(item)
            return
        try:
            await self._driver.send(item)
        except BrokenResourceError:
            keeper.failed()
            raise

    async def send_eof(self) -> None:
        """Send close_notify and go on receiving until the peer closes (TLS 1.3).

        RFC 8446 section 6.1 lets a TLS 1.3 peer keep sending after close_notify;
        Python's ``SSLObject`` allows ``read()`` after our ``unwrap()`` there.

        :raises NotImplementedError: the connection uses TLS 1.2 or older, where the
            peer must answer close_notify at once and discard its pending writes
        :raises ~anyiotls.ReadAheadLimitError: with a certificate request pending
            (or data buffered), ``max_read_ahead`` bytes arrived that no task
            receives: nothing was sent, receive them and call again
        :raises ~anyiotls.CloseTimeoutError: ``close_timeout`` passed while waiting
            for the pending certificate answer (nothing was sent, the stream is
            usable) or for the transport to take close_notify (the stream is
            broken)

        .. warning:: Cancelled, close_notify may or may not have left: the stream
            is broken if it was being sent.
        """
        await self._driver.send_eof()

    async def unwrap(self) -> tuple[AnyByteStream, bytes]:
        """Do the TLS closing handshake and hand back the transport (a downgrade).

        :return: ``(transport_stream, leftover)``: *leftover* is the plaintext the
            peer sent after its close_notify, which arrived with it
        :raises ~anyio.BrokenResourceError: the transport failed or ended first, or
            a pending post-handshake answer was rejected (``__cause__``: the ssl
            error)
        :raises PostHandshakeAuthError: a client closed without answering a
            pending certificate request (its late answer could otherwise end up
            in the plaintext after the downgrade)
        :raises ~anyiotls.CloseTimeoutError: the peer's close_notify (or the
            answer to a pending certificate request) did not arrive within
            ``close_timeout``, also while it kept sending data; the stream is
            broken, :meth:`aclose` closes the transport

        Application data the peer sent before its close_notify that was not
        received is discarded. A pending post-handshake authentication is completed
        (or fails) first, so no handshake message follows our close_notify.

        .. warning:: Cancelled while waiting for the peer's close_notify, it may be
            called again; the stream can no longer send.
        """
        keeper = self._session_keeper
        if keeper is None:
            leftover = await self._driver.unwrap()
        else:
            try:
                leftover = await self._driver.unwrap()
            except BrokenResourceError:
                keeper.failed()
                raise
            keeper.closed_cleanly(self._ssl_object)
        return self.transport_stream, leftover

    async def verify_client_post_handshake(self) -> dict[str, Any] | None:
        """Ask the client for a certificate now (TLS 1.3) and wait for its answer.

        Server side only. Sends a CertificateRequest at once and returns when the
        client's answer has been processed, with the verified certificate (the value
        ``extra(TLSAttribute.peer_certificate)`` gives from then on), or ``None``
        under ``CERT_OPTIONAL`` when the client sent none. If a request is already
        pending (see :meth:`request_client_certificate`), waits for that one.

        Another task may go on receiving or sending meanwhile; application data
        that arrives before the answer is kept, in order, for :meth:`receive`. A
        client answers only while it is inside ``receive()``: against a client that
        only sends, this keeps at most ``max_read_ahead`` bytes of what it sends;
        then it waits for another task's :meth:`receive` to take some, or, if no
        task is receiving, raises :exc:`~anyiotls.ReadAheadLimitError` (receive,
        then call again, or use :meth:`request_client_certificate` and let
        :meth:`receive` process the answer). A client that sends nothing and never
        reads makes it wait until the caller's cancel scope ends it.

        Both contexts are read when the streams are created: the server's needs
        ``post_handshake_auth = True``, ``verify_mode`` ``CERT_REQUIRED`` or
        ``CERT_OPTIONAL``, trusted CAs for client certificates and, for
        ``CERT_OPTIONAL`` or a second request, ``num_tickets > 0`` (the default);
        the client's needs ``post_handshake_auth = True`` and its certificate.

        :raises PostHandshakeAuthError: before anything was sent, the stream usable:
            not TLS 1.3, the client did not offer post-handshake authentication, the
            server context was not set up for it (see above), or this is the client
            side. Or the client closed the connection (close_notify) instead of
            answering: data it sent before is still returned by :meth:`receive`, but
            :meth:`unwrap` refuses from then on (the bytes after its close_notify may
            hold a late answer)
        :raises ~ssl.SSLError: the client's answer was rejected (no certificate under
            ``CERT_REQUIRED``: ``PEER_DID_NOT_RETURN_A_CERTIFICATE``; an untrusted
            one: :exc:`ssl.SSLCertVerificationError`), also when another task's
            :meth:`receive` processed it; the stream is broken, later calls raise
            :exc:`~anyio.BrokenResourceError`
        :raises ~anyio.BrokenResourceError: the transport failed, or ended without
            close_notify (when ``standard_compatible``)
        :raises ~anyio.ClosedResourceError: the stream was closed, or
            :meth:`send_eof` was called
        :raises ~anyiotls.ReadAheadLimitError: ``max_read_ahead`` bytes arrived
            before the answer and no task is receiving them; the request stays
            pending, the stream usable, nothing is lost

        .. warning:: Cancelled while waiting for another task's send to finish,
            nothing was sent and no request is pending. Cancelled while the request
            is being handed to the transport, the stream is broken (as for
            :meth:`send`). Cancelled while waiting for the answer, the request stays
            pending and the stream usable: the answer is processed by a later
            :meth:`receive` (or :meth:`verify_client_post_handshake`) and then shows
            in the attributes.
        """
        await self._driver.request_client_auth()
        await self._driver.wait_client_auth()
        return self._ssl_object.getpeercert()

    async def request_client_certificate(self) -> None:
        """Send a TLS 1.3 CertificateRequest now; do not wait for the answer.

        For servers that go on serving: the answer is processed by later
        :meth:`receive` calls (check :attr:`client_certificate_pending` and the
        ``peer_certificate`` attribute), or wait for it with
        :meth:`verify_client_post_handshake`. Does nothing if a request is pending.
        An answer that is rejected makes that :meth:`receive` raise
        :exc:`~anyio.BrokenResourceError` (``__cause__``: the ssl error).

        :raises PostHandshakeAuthError: as :meth:`verify_client_post_handshake`,
            before anything was sent

        .. warning:: Cancelled while waiting for another task's send to finish,
            nothing was sent and no request is pending; cancelled while the request
            is being handed to the transport, the stream is broken.
        """
        await self._driver.request_client_auth()

    @property
    def client_certificate_pending(self) -> bool:
        """``True`` while a post-handshake certificate request awaits its answer.

        Stays ``True`` if the client closed the connection without answering.
        """
        return self._driver.engine.client_auth_pending

    async def aclose(self) -> None:
        """Close the stream and the transport.

        When ``standard_compatible``, sends close_notify and waits for the peer's,
        reading and discarding any data and session tickets still in flight (so
        unread data never turns into an error, nor our close into a TCP reset). A
        peer that misbehaves or vanishes never makes this raise. After
        ``close_timeout`` seconds (a peer that never answers close_notify, or that
        does not read ours, or another task's send that never ends) it stops
        waiting and closes the transport forcefully; close_notify was sent unless
        the transport did not take it.

        .. warning:: Cancelled, the transport is closed forcefully.
        """
        driver = self._driver
        keeper = self._session_keeper
        usable = driver.is_usable and driver.handshake_done
        try:
            if self.standard_compatible:
                answered = await driver.close_gracefully()
            else:
                answered = True
                driver.mark_closed()
        except BaseException:
            driver.mark_closed()
            if keeper is not None:
                keeper.failed()
            await aclose_forcefully(self.transport_stream)
            raise
        if keeper is not None:
            engine = driver.engine
            error = engine.error
            # Clean: a stream that never broke, and our close_notify left (a ragged
            # EOF while waiting for the peer's means it did, and so does a close
            # that timed out waiting for the peer's). OpenSSL keeps a session once
            # this side sent close_notify, and many servers close without
            # answering it; without ours it marks the session dead.
            if (
                usable
                and self.standard_compatible
                and (
                    not answered
                    or (engine.peer_closed and error is None)
                    or is_ragged_eof(error)
                )
            ):
                keeper.closed_cleanly(self._ssl_object)
            else:
                keeper.failed()
        if answered:
            await self.transport_stream.aclose()
        else:
            await aclose_forcefully(self.transport_stream)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The transport's attributes, every :class:`TLSAttribute` and every
        :class:`~anyiotls.CertificateAttribute` and
        :class:`~anyiotls.SessionAttribute`.

        ``TLSAttribute.channel_binding_tls_unique`` raises
        :exc:`~anyiotls.ChannelBindingError` on a TLS 1.3 connection (RFC 9266).
        """
        sslobj = self._ssl_object
        return {
            **self.transport_stream.extra_attributes,
            TLSAttribute.alpn_protocol: sslobj.selected_alpn_protocol,
            # refused on TLS 1.3 (docs/migrating.md)
            TLSAttribute.channel_binding_tls_unique: lambda: get_channel_binding(
                sslobj, "tls-unique"
            ),
            TLSAttribute.cipher: sslobj.cipher,
            TLSAttribute.peer_certificate: lambda: sslobj.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: sslobj.getpeercert(True),
            TLSAttribute.server_side: lambda: sslobj.server_side,
            TLSAttribute.shared_ciphers: lambda: (
                sslobj.shared_ciphers() if sslobj.server_side else None
            ),
            TLSAttribute.standard_compatible: lambda: self.standard_compatible,
            TLSAttribute.ssl_object: lambda: sslobj,
            TLSAttribute.tls_version: sslobj.version,
            **certificate_attributes(sslobj),
            SessionAttribute.session: lambda: sslobj.session,
            SessionAttribute.session_reused: lambda: sslobj.session_reused,
        }


class _AcceptedTLSStream(TLSStream):
    """A server stream whose listener read the ClientHello first (to choose its
    context): :class:`ClientHelloAttribute` on top of the usual attributes."""

    def __init__(
        self,
        transport_stream: AnyByteStream,
        *,
        ssl_context: ssl.SSLContext,
        standard_compatible: bool,
        verify_peer: VerifyPeer | None,
        max_read_ahead: int,
        close_timeout: float | None,
        client_hello: ClientHello,
        prefix: bytes,
    ) -> None:
        super().__init__(
            transport_stream,
            server_side=True,
            ssl_context=ssl_context,
            standard_compatible=standard_compatible,
            verify_peer=verify_peer,
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )
        self._client_hello = client_hello
        # Every byte read for the ClientHello goes to the engine unchanged, as if
        # the handshake had read it from the transport itself.
        self._driver.engine.receive_data(prefix)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """:class:`TLSStream`'s attributes plus :class:`ClientHelloAttribute`."""
        hello = self._client_hello
        return {
            **super().extra_attributes,
            ClientHelloAttribute.client_hello: lambda: hello,
            ClientHelloAttribute.server_name: lambda: hello.server_name,
            ClientHelloAttribute.offered_alpn_protocols: lambda: hello.alpn_protocols,
        }


async def _receive_or_empty(stream: AnyByteStream, max_bytes: int) -> bytes:
    """One transport receive for the ClientHello reader; ``b""`` at the end."""
    try:
        if isinstance(stream, ByteReceiveStream):
            return await stream.receive(max_bytes)
        return await stream.receive()
    except EndOfStream:
        return b""


async def _refuse(stream: AnyByteStream, exc: BaseException) -> None:
    """Tell a client refused before its handshake why (an alert), briefly."""
    alert = refusal_alert(exc)
    if alert is not None:
        with move_on_after(ALERT_SEND_TIMEOUT), suppress(Exception):
            await stream.send(alert)


def _from_cache(
    cache: SessionCache,
    transport_stream: AnyByteStream,
    ssl_context: ssl.SSLContext,
    hostname: str | None,
    session: ssl.SSLSession | None,
    *,
    server_side: bool,
) -> tuple[ssl.SSLSession | None, SessionKeeper]:
    """The session to offer (*session*, else the cache's) and the stream's keeper."""
    if not isinstance(cache, SessionCache):
        raise TypeError(
            "session_cache must be an anyiotls.SessionCache, not "
            f"{type(cache).__name__}"
        )
    if server_side:
        raise ValueError("session_cache is for clients: a server resumes by itself")
    if not hostname:
        raise ValueError("session_cache needs hostname (sessions are kept per host)")
    port: int | str | None = transport_stream.extra(SocketAttribute.remote_port, None)
    if port is None:  # a UNIX socket: its path; a memory stream: no port
        address = transport_stream.extra(SocketAttribute.remote_address, None)
        port = address if isinstance(address, str) else None
    if session is None:
        session = cache.get(ssl_context, hostname, port)
    return session, SessionKeeper(cache, ssl_context, hostname, port, session)


class TLSListener(ServesNames, Listener[TLSStream]):
    """Wraps a listener and performs a TLS handshake on every accepted connection.

    A handshake that fails or exceeds *handshake_timeout* is passed to
    :meth:`handle_handshake_error` (which logs it and closes that connection); it
    never stops the server.

    Certificates per host name (see :doc:`/sni`): with *sni_contexts* or
    *select_context*, the listener first reads the client's ClientHello (at most
    16 KiB of message in at most 64 records, within *handshake_timeout* like the
    rest of the handshake), chooses the context, and only then starts the
    handshake with it, handing over every byte it read. The chosen context's
    settings all apply (certificate, ALPN, client authentication). The streams it
    accepts then also have :class:`ClientHelloAttribute`. Without these keywords
    nothing is read ahead.

    Assigning :attr:`ssl_context` or :attr:`sni_contexts` (or calling
    :meth:`reload_certificate`) affects only connections accepted afterwards.

    :param listener: the listener to wrap
    :param ssl_context: the server's context (with *sni_contexts*: the default,
        for clients without SNI and, unless *refuse_unknown_names*, for names not
        in the table)
    :param standard_compatible: passed to :meth:`TLSStream.wrap`
    :param handshake_timeout: seconds a handshake may take (reading the
        ClientHello, *select_context* and the *verify_peer* hook included)
    :param verify_peer: passed to :meth:`TLSStream.wrap`; a rejected client is a
        failed handshake
    :param sni_contexts: host name → context: exact names and ``*.example.org``
        wildcards (one label), Unicode or IDNA A-labels, case-insensitive
    :param select_context: ``async def select(hello: ClientHello) -> SSLContext |
        None``, called with the parsed ClientHello before the handshake; its
        context is used, ``None`` falls back to *sni_contexts* and *ssl_context*;
        an exception refuses the connection (the client gets a
        ``handshake_failure`` alert; :meth:`handle_handshake_error` gets the
        exception)
    :param refuse_unknown_names: refuse a client whose server name is not in
        *sni_contexts* (``unrecognized_name`` alert,
        :exc:`~anyiotls.UnrecognizedNameError`) instead of giving it *ssl_context*
    :param max_read_ahead: passed to :meth:`TLSStream.wrap`
    :param close_timeout: passed to :meth:`TLSStream.wrap`
    :raises TypeError: if *ssl_context* is not an :class:`ssl.SSLContext`
    :raises ValueError: if *ssl_context* is a client context, or has no
        certificate (and no ``sni_callback`` that could supply one)

    A connection that does not begin with a well-formed ClientHello within those
    bounds fails with :exc:`~anyiotls.ClientHelloError` (an :exc:`ssl.SSLError`).
    """

    def __init__(
        self,
        listener: Listener[Any],
        ssl_context: ssl.SSLContext,
        standard_compatible: bool = True,
        handshake_timeout: float = 30,
        *,
        verify_peer: VerifyPeer | None = None,
        sni_contexts: Mapping[str, ssl.SSLContext] | None = None,
        select_context: SelectContext | None = None,
        refuse_unknown_names: bool = False,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """See the class docstring."""
        check_server_context(ssl_context, where="TLSListener")
        check_limits(max_read_ahead, close_timeout)
        self.max_read_ahead = max_read_ahead
        self.close_timeout = close_timeout
        self.listener = listener
        self.verify_peer = verify_peer
        self.ssl_context = ssl_context
        self.standard_compatible = standard_compatible
        self.handshake_timeout = handshake_timeout
        self._select_context = select_context
        self._refuse_unknown_names = refuse_unknown_names
        self._selection: Selection | None = None
        if sni_contexts is not None or select_context is not None:
            self.sni_contexts = sni_contexts or {}

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: AnyByteStream) -> None:
        """Handle an exception raised during the handshake of an accepted connection.

        Closes *stream* forcefully, logs *exc* on the ``anyiotls`` logger (unless it
        is a cancellation), and re-raises it if it is a cancellation or not an
        :exc:`Exception` (so the server's own cancellation still works). Override to
        change this.

        The log: one ``ERROR`` line with the cause, and the traceback in a
        ``DEBUG`` record.
        """
        await aclose_forcefully(stream)
        if not isinstance(exc, get_cancelled_exc_class()):
            logger.error(
                "Error during TLS handshake: %s", describe_handshake_error(exc)
            )
            logger.debug("Traceback of the failed TLS handshake", exc_info=exc)
        if not isinstance(exc, Exception) or isinstance(exc, get_cancelled_exc_class()):
            raise exc

    async def serve(
        self,
        handler: Callable[[TLSStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Accept connections forever, handshake each one and call *handler* with it."""

        @wraps(handler)
        async def handler_wrapper(stream: AnyByteStream) -> None:
            # What this connection uses is fixed when it is accepted.
            context = self.ssl_context
            selection = self._selection
            try:
                with fail_after(self.handshake_timeout):
                    if selection is None:
                        wrapped = await TLSStream.wrap(
                            stream,
                            ssl_context=context,
                            standard_compatible=self.standard_compatible,
                            verify_peer=self.verify_peer,
                            max_read_ahead=self.max_read_ahead,
                            close_timeout=self.close_timeout,
                        )
                    else:
                        wrapped = await self._wrap_selected(stream, context, selection)
            except BaseException as exc:
                await self.handle_handshake_error(exc, stream)
            else:
                await handler(wrapped)

        await self.listener.serve(handler_wrapper, task_group)

    async def _wrap_selected(
        self, stream: AnyByteStream, default: ssl.SSLContext, selection: Selection
    ) -> TLSStream:
        """Read the ClientHello, choose the context, then handshake with it."""
        try:
            hello, prefix = await read_client_hello(
                lambda size: _receive_or_empty(stream, size)
            )
        except ClientHelloError as exc:
            await _refuse(stream, exc)
            raise
        try:
            context = await selection.choose(hello, default)
        except Exception as exc:  # UnrecognizedNameError, or the hook's
            await _refuse(stream, exc)
            raise
        wrapped = _AcceptedTLSStream(
            stream,
            ssl_context=context,
            standard_compatible=self.standard_compatible,
            verify_peer=self.verify_peer,
            max_read_ahead=self.max_read_ahead,
            close_timeout=self.close_timeout,
            client_hello=hello,
            prefix=prefix,
        )
        try:
            await wrapped._driver.handshake()
        except BaseException as exc:
            await wrapped._handshake_failed(exc)
            raise
        return wrapped

    async def aclose(self) -> None:
        """Close the wrapped listener."""
        await self.listener.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        """The wrapped listener's attributes, plus ``standard_compatible``."""
        return {
            **self.listener.extra_attributes,
            TLSAttribute.standard_compatible: lambda: self.standard_compatible,
        }


class TLSConnectable(_ConnectableBase):
    """Wraps a connectable and performs a TLS handshake after connecting.

    :param connectable: the connectable to wrap
    :param hostname: the server's host name (SNI and certificate check)
    :param ssl_context: the context (default: a secure client context)
    :param standard_compatible: passed to :meth:`TLSStream.wrap`
    :param verify_peer: passed to :meth:`TLSStream.wrap`
    :param session_cache: a :class:`~anyiotls.SessionCache` to resume sessions
        from and give new ones to (see :doc:`resumption`); default ``None``: every
        connection does a full handshake, as with AnyIO
    :raises ValueError: *session_cache* without *hostname*
    :param max_read_ahead: passed to :meth:`TLSStream.wrap`
    :param close_timeout: passed to :meth:`TLSStream.wrap`
    """

    def __init__(
        self,
        connectable: Any,
        *,
        hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        standard_compatible: bool = True,
        verify_peer: VerifyPeer | None = None,
        session_cache: SessionCache | None = None,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """See the class docstring."""
        check_limits(max_read_ahead, close_timeout)
        self.max_read_ahead = max_read_ahead
        self.close_timeout = close_timeout
        self.connectable = connectable
        self.ssl_context: ssl.SSLContext = ssl_context or default_context(
            server_side=False
        )
        if not isinstance(self.ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, not "
                f"{type(self.ssl_context).__name__}"
            )
        if session_cache is not None:
            if not isinstance(session_cache, SessionCache):
                raise TypeError(
                    "session_cache must be an anyiotls.SessionCache, not "
                    f"{type(session_cache).__name__}"
                )
            if not hostname:
                raise ValueError(
                    "session_cache needs hostname (sessions are kept per host)"
                )
        self.hostname = hostname
        self.standard_compatible = standard_compatible
        self.verify_peer = verify_peer
        self.session_cache = session_cache

    async def connect(self) -> TLSStream:
        """Connect, then handshake; the connection is closed if the handshake fails."""
        stream = await self.connectable.connect()
        try:
            return await TLSStream.wrap(
                stream,
                hostname=self.hostname,
                ssl_context=self.ssl_context,
                standard_compatible=self.standard_compatible,
                verify_peer=self.verify_peer,
                session_cache=self.session_cache,
                max_read_ahead=self.max_read_ahead,
                close_timeout=self.close_timeout,
            )
        except BaseException:
            await aclose_forcefully(stream)
            raise
