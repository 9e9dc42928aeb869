"""The Trio face: :class:`SSLStream` and :class:`SSLListener`, drop-ins for trio's.

``from anyiotls.trio import SSLStream`` replaces ``from trio import SSLStream``: same
constructor, methods, attributes and exceptions (``docs/migrating.md`` lists the few
differences). The TLS state machine, locking and cancellation rules are the ones of
the AnyIO face (``_engine.py``, ``_driver.py``); this module only translates names,
exceptions and checkpoints.

Two small adapters connect the two worlds when running on Trio:
:class:`TrioStreamAsAnyIO` lets the AnyIO :class:`~anyiotls.TLSStream` wrap a native
Trio stream, and :class:`AnyIOStreamAsTrio` lets :class:`SSLStream` wrap an AnyIO
byte stream.
"""

from __future__ import annotations

__all__ = (
    "AnyIOStreamAsTrio",
    "HalfCloseableSSLStream",
    "SSLListener",
    "SSLStream",
    "TrioStreamAsAnyIO",
    "open_ssl_over_tcp_listeners",
    "open_ssl_over_tcp_stream",
    "serve_ssl_over_tcp",
)

import operator
import ssl
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, Generic, Literal, NoReturn, TypeVar, cast, overload

import anyio
import trio
from anyio.abc import AnyByteStream, ByteStream

from ._certs import get_channel_binding, make_verify_step, peer_chain
from ._clienthello import ClientHello, ClientHelloError
from ._context import default_context, encode_hostname
from ._driver import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_READ_AHEAD,
    FaceErrors,
    TLSDriver,
    check_limits,
)
from ._engine import TLSEngine, is_ragged_eof, session_error
from ._locks import ConflictDetector
from ._misuse import check_server_context, side_error
from ._session import SessionCache, SessionKeeper
from ._sni import (
    ALERT_SEND_TIMEOUT,
    SelectContext,
    Selection,
    ServesNames,
    read_client_hello,
    refusal_alert,
)

T_Stream = TypeVar("T_Stream", bound=trio.abc.Stream)
_R = TypeVar("_R")

#: A ``verify_peer`` hook: called with the stream after the handshake, before any
#: application data; rejects the peer by raising.
VerifyPeer = Callable[["SSLStream[Any]"], Awaitable[None]]

#: ``receive_some()`` without ``max_bytes`` decrypts up to this much. trio starts at
#: 16 KiB (one record, all its ``SSLObject.read`` returns per call) and grows with
#: the transport's chunks; the engine drains several records per call, so one
#: transport read's worth (64 KiB, trio's ``SocketStream`` default) fits here.
DEFAULT_RECEIVE_SIZE = 65536

_ERRORS = FaceErrors(
    broken=trio.BrokenResourceError,
    closed=trio.ClosedResourceError,
    busy_sending=lambda: trio.BusyResourceError(
        "another task is already sending on this stream"
    ),
    busy_receiving=lambda: trio.BusyResourceError(
        "another task is already receiving on this stream"
    ),
)


def _is_eof_before_handshake(exc: BaseException | None) -> bool:
    # trio treats SSLSyscallError like a ragged EOF here: some OpenSSL builds report
    # an EOF in the middle of a handshake that way. A listener that reads the
    # ClientHello first (sni_contexts) sees the same EOF earlier.
    return (
        is_ragged_eof(exc)
        or isinstance(exc, ssl.SSLSyscallError)
        or (
            isinstance(exc, ClientHelloError)
            and exc.reason == "EOF_BEFORE_CLIENT_HELLO"
        )
    )


class SSLStream(trio.abc.Stream, Generic[T_Stream]):
    """Encrypted communication over any :class:`trio.abc.Stream`: ``trio.SSLStream``.

    Send plaintext with :meth:`send_all`, receive it with :meth:`receive_some`; the
    ciphertext travels over *transport_stream*. The handshake happens on the first
    send or receive, or when you call :meth:`do_handshake`.

    One task may send while another receives (renegotiation, KeyUpdate and
    post-handshake messages are handled underneath). Two tasks sending at once, or
    receiving at once, get :exc:`trio.BusyResourceError`.

    :param transport_stream: the stream that carries the ciphertext
    :param ssl_context: the :class:`ssl.SSLContext`, usually from
        :func:`ssl.create_default_context`
    :param server_hostname: the server's name, sent as SNI and checked against its
        certificate; effectively mandatory for clients (international names are
        encoded with IDNA 2008, as trio does)
    :param server_side: ``True`` for the server side
    :param https_compatible: ``False`` (the default, the TLS standard): closing
        sends close_notify, and a peer that ends the transport without one raises
        :exc:`trio.BrokenResourceError`. ``True`` (what HTTPS peers do): closing
        only closes the transport, and a transport that ends without close_notify
        (even before the handshake) reads as a clean ``b""``
    :param verify_peer: not in trio: an async callable run with this stream once
        the handshake's messages are done, before any application data passes
        (e.g. :func:`anyiotls.pin_sha256`). Raising rejects the peer: the
        transport is closed and the handshake fails with
        :exc:`trio.BrokenResourceError` whose ``__cause__`` is an
        :exc:`anyiotls.PeerVerificationError` (whose ``__cause__`` is the hook's
        exception). Cancelled, it breaks the stream as a cancelled handshake does.
    :param max_read_ahead: not in trio: most bytes of plaintext decrypted ahead of
        :meth:`receive_some` by :meth:`verify_client_post_handshake`,
        ``send_eof()`` with a request pending, or a TLS 1.2 :meth:`send_all`
        during a renegotiation. At the limit they stop reading the transport until
        :meth:`receive_some` takes some, or raise
        :exc:`anyiotls.ReadAheadLimitError` if no task is receiving (a
        :meth:`send_all`: :exc:`trio.BrokenResourceError` from it). Default: 1 MiB
    :param close_timeout: not in trio: seconds :meth:`aclose` may spend sending
        close_notify (to a peer that does not read, or behind another task's
        send that never ends) before it closes the transport forcefully, and
        :meth:`unwrap` (and ``send_eof()``) may wait for the peer before raising
        :exc:`anyiotls.CloseTimeoutError`; ``None``: as long as the caller's cancel
        scope allows. Default: 5

    :param session_cache: (clients; not in trio) a :class:`anyiotls.SessionCache`:
        the session to resume comes from it, keyed by the context,
        *server_hostname* and the transport's peer port (``socket.getpeername()``
        of a :class:`trio.SocketStream`; else ``None``), and the stream gives its
        new session back after its first receive or when :meth:`aclose` or
        :meth:`unwrap` sent close_notify (see ``docs/resumption.md``)

    :var transport_stream: the wrapped stream (``None`` after :meth:`unwrap`)

    TLS errors (a failed handshake, a bad record, a truncated connection) raise
    :exc:`trio.BrokenResourceError` whose ``__cause__`` is the :exc:`ssl.SSLError`,
    as in trio; so do failures of the transport (``__cause__``: the transport's
    exception). Once broken, every later call raises it again.

    Connection details are forwarded from the :class:`ssl.SSLObject` under the names
    trio forwards (:attr:`context`, :meth:`getpeercert`, :meth:`cipher`, ...); those
    that need the handshake raise :exc:`trio.NeedHandshakeError` before it.

    Beyond trio: :meth:`verify_client_post_handshake` and
    :meth:`request_client_certificate` (TLS 1.3 post-handshake client
    authentication), and a handshake that fails or is cancelled wakes every task
    waiting for it with :exc:`trio.BrokenResourceError`. TLS 1.3 half-close is
    :class:`HalfCloseableSSLStream`'s: like trio's, this class has no ``send_eof``,
    so code that probes for one (``hasattr``, ``except AttributeError``) or checks
    for a :class:`trio.abc.HalfCloseableStream` behaves as with trio.
    """

    #: set by a listener that read the ClientHello (a class default: a stream
    #: without one pays nothing for it)
    _client_hello: ClientHello | None = None

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: ssl.SSLContext,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
        verify_peer: VerifyPeer | None = None,
        session_cache: SessionCache | None = None,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """See the class docstring."""
        check_limits(max_read_ahead, close_timeout)
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, not "
                f"{type(ssl_context).__name__}"
            )
        if isinstance(server_hostname, str):
            server_hostname = encode_hostname(server_hostname)
        self.transport_stream: T_Stream = transport_stream
        self._https_compatible = https_compatible
        session = None
        self._session_keeper: SessionKeeper | None = None
        if session_cache is not None:
            session, self._session_keeper = _from_cache(
                session_cache,
                transport_stream,
                ssl_context,
                server_hostname,
                server_side=server_side,
            )
        try:
            engine = TLSEngine(
                ssl_context,
                server_side=server_side,
                server_hostname=server_hostname,
                session=session,
            )
        except ssl.SSLError as exc:  # a context of the other side: say which, and why
            raise side_error(
                exc,
                where="SSLStream",
                client_fix="leave server_side False and pass "
                "server_hostname='the.server.name'",
            ) from None
        self._ssl_object = engine.ssl_object
        self._transport_wait = transport_stream.wait_send_all_might_not_block
        self._driver = TLSDriver(
            engine,
            transport_send=transport_stream.send_all,
            # receive_some() may return a bytearray, which the engine takes as well
            transport_receive=cast(
                "Callable[[], Awaitable[bytes]]", transport_stream.receive_some
            ),
            transport_eof=(),  # a Trio stream returns b"" at EOF
            errors=_ERRORS,
            ragged_eof_is_error=not https_compatible,
            verify_peer=None
            if verify_peer is None
            else make_verify_step(
                verify_peer,
                self,
                # trio leaves the transport to aclose(); a rejected peer is cut off
                on_reject=partial(trio.aclose_forcefully, transport_stream),
            ),
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )

    @property
    def https_compatible(self) -> bool:
        """The ``https_compatible`` the stream was created with (read-only)."""
        return self._https_compatible

    @property
    def client_hello(self) -> ClientHello | None:
        """What the client offered (server name, ALPN, versions, cipher suites).

        Not in trio. Set once the handshake has started on a stream accepted by an
        :class:`SSLListener` with ``sni_contexts`` or ``select_context`` (which
        reads the ClientHello to choose the context); ``None`` otherwise.
        """
        return self._client_hello

    def _choose_context_first(
        self, default: ssl.SSLContext, selection: Selection, timeout: float
    ) -> None:
        """Make the handshake read the ClientHello and choose the context first.

        The engine built by ``__init__`` is replaced, unused, by one with the
        chosen context, fed every byte read (see ``_sni.py``).
        """
        transport = self.transport_stream
        # The driver keeps make_engine until the handshake: a weak reference back
        # to this stream, so a stream that never handshakes is not in a cycle.
        stream_ref = weakref.ref(self)

        async def refuse(exc: Exception) -> None:
            alert = refusal_alert(exc)
            if alert is not None:
                with trio.move_on_after(ALERT_SEND_TIMEOUT), suppress(Exception):
                    await transport.send_all(alert)

        async def make_engine() -> TLSEngine:
            try:
                with trio.fail_after(timeout):
                    try:
                        hello, prefix = await read_client_hello(transport.receive_some)
                    except ClientHelloError as exc:
                        await refuse(exc)
                        raise
                    try:
                        context = await selection.choose(hello, default)
                    except Exception as exc:  # UnrecognizedNameError, or the hook's
                        await refuse(exc)
                        raise
            except (ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError):
                raise  # the driver makes an SSLError BrokenResourceError, as trio
            except Exception as exc:  # the hook's own exception, or the timeout
                raise trio.BrokenResourceError(
                    "the connection was refused before its handshake"
                ) from exc
            engine = TLSEngine(context, server_side=True, server_hostname=None)
            engine.receive_data(prefix)
            stream = stream_ref()
            if stream is not None:  # (it is: its method runs this handshake)
                stream._ssl_object = engine.ssl_object
                stream._client_hello = hello
            return engine

        self._driver.replace_engine_before_handshake(make_engine)

    # -- the trio.abc.Stream interface -----------------------------------------------

    async def do_handshake(self) -> None:
        """Ensure that the initial handshake has completed.

        Optional: the first :meth:`send_all` or :meth:`receive_some` does it. If
        another task's handshake is in progress, waits for it and gets its outcome;
        if the handshake is done, only executes a checkpoint.

        :raises trio.BrokenResourceError: the handshake failed (``__cause__``: the
            :exc:`ssl.SSLError`, e.g. :exc:`ssl.SSLCertVerificationError`), the
            transport failed or ended, or the stream was already broken
        :raises trio.ClosedResourceError: the stream was closed

        .. warning:: Cancelled, the handshake is abandoned and the stream broken:
            every later call raises :exc:`trio.BrokenResourceError`, including in
            the tasks that were waiting for this handshake.
        """
        await self._driver.handshake()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt at least one byte, at most *max_bytes*.

        Returns ``b""`` once the peer has closed the connection (close_notify, or,
        when ``https_compatible``, the transport's end). Decrypts as many buffered
        records as fit, so it may return more than one record's worth.

        :raises ValueError: *max_bytes* is less than 1
        :raises TypeError: *max_bytes* is not an integer
        :raises trio.BrokenResourceError: the transport failed, a TLS error occurred
            (``__cause__``: the :exc:`ssl.SSLError`), or, unless
            ``https_compatible``, the transport ended without close_notify
        :raises trio.ClosedResourceError: the stream was closed or unwrapped
        :raises trio.BusyResourceError: another task is receiving

        .. warning:: Cancelled, no data is lost and the stream stays usable, except
            during the initial handshake, or while a protocol message (a KeyUpdate
            answer, a renegotiation or post-handshake message) is being sent: then
            the stream is broken.
        """
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        keeper = self._session_keeper
        try:
            data = await self._driver.receive(max_bytes)
        except trio.BrokenResourceError as exc:
            if keeper is not None:
                keeper.failed()
            # HTTPS peers may close before the handshake ends: a clean EOF too.
            if (
                self._https_compatible
                and not self._driver.handshake_done
                and _is_eof_before_handshake(exc.__cause__)
            ):
                await trio.lowlevel.checkpoint()
                return b""
            raise
        if keeper is not None and keeper.waiting_for_ticket:
            keeper.after_receive(self._ssl_object)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt *data* and send it.

        :raises trio.BrokenResourceError: the transport failed or a TLS error
            occurred
        :raises trio.ClosedResourceError: the stream was closed or unwrapped, or
            :meth:`send_eof` was called
        :raises trio.BusyResourceError: another task is sending or waiting in
            :meth:`wait_send_all_might_not_block`

        .. warning:: Cancelled, either nothing of *data* reached the transport and
            the stream stays usable, or the stream is broken (every later call
            raises :exc:`trio.BrokenResourceError`): never a partial or duplicated
            *data* on a usable stream.
        """
        keeper = self._session_keeper
        if keeper is None:
            await self._driver.send(data)
            return
        try:
            await self._driver.send(data)
        except trio.BrokenResourceError:
            keeper.failed()
            raise

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport can probably take more data (trio's semantics).

        Calls the transport's own ``wait_send_all_might_not_block``; does not
        handshake.

        :raises trio.BusyResourceError: another task is sending or waiting here
        :raises trio.ClosedResourceError: the stream was closed
        :raises trio.BrokenResourceError: the stream is broken

        .. warning:: Cancelled, nothing happened.
        """
        await self._driver.wait_send_ready(self._transport_wait)

    async def unwrap(self) -> tuple[T_Stream, bytes]:
        """Close the TLS layer cleanly and hand back the transport (a downgrade).

        Sends close_notify and waits for the peer's. Afterwards
        :attr:`transport_stream` is ``None`` and the stream is closed.

        :return: ``(transport_stream, trailing_bytes)``: *trailing_bytes* arrived
            after the peer's close_notify; treat them as the start of what the
            transport delivers next
        :raises trio.BrokenResourceError: the transport failed or ended first
        :raises trio.BusyResourceError: another task is sending or receiving
        :raises anyiotls.CloseTimeoutError: the peer's close_notify did not arrive
            within ``close_timeout`` (also while it kept sending data); the stream
            is broken, :meth:`aclose` closes the transport

        Application data the peer sent before its close_notify and that was not
        received is discarded.

        .. warning:: Cancelled while waiting for the peer's close_notify, it may be
            called again; the stream can no longer send.
        """
        keeper = self._session_keeper
        try:
            trailing = await self._driver.unwrap_exclusive()
        except trio.BrokenResourceError:
            if keeper is not None:
                keeper.failed()
            raise
        if keeper is not None:
            keeper.closed_cleanly(self._ssl_object)
        transport_stream = self.transport_stream
        # As trio does: nothing may use the transport through this object any more.
        self.transport_stream = None  # type: ignore[assignment]
        return transport_stream, trailing

    async def aclose(self) -> None:
        """Close the connection and the transport, as trio's ``aclose`` does.

        Unless ``https_compatible``: performs the handshake if it has not happened
        (so the peer sees a clean close), sends close_notify without waiting for the
        peer's, then closes the transport. When ``https_compatible``, or if the
        stream is broken, only closes the transport. Closing again does nothing.
        The handshake and close_notify get ``close_timeout`` seconds together (a
        peer that does not read, another task's send that never ends); then the
        transport is closed forcefully, without an error.

        :raises trio.BrokenResourceError: the handshake this had to perform failed
            (the transport is closed anyway)

        .. warning:: Cancelled, the transport is closed forcefully; the stream is
            closed either way.
        """
        driver = self._driver
        transport_stream = self.transport_stream
        keeper = self._session_keeper
        if driver.is_closed:
            await trio.lowlevel.checkpoint()
            return
        if self._https_compatible or not driver.is_usable:
            if keeper is not None:
                keeper.failed()  # no close_notify: OpenSSL drops the session
            driver.mark_closed()
            await transport_stream.aclose()
            return
        sent = False
        try:
            with anyio.move_on_after(driver.close_timeout):
                await driver.handshake()
                sent = await driver.send_close_notify()
        except BaseException:
            if keeper is not None:
                keeper.failed()
            driver.mark_closed()
            await trio.aclose_forcefully(transport_stream)
            raise
        if keeper is not None:
            # Still usable: close_notify was handed to the transport (a failed
            # send breaks the stream).
            if driver.is_usable and driver.engine.error is None:
                keeper.closed_cleanly(self._ssl_object)
            else:
                keeper.failed()
        driver.mark_closed()
        if not sent:  # (close_timeout passed, in the handshake or while sending)
            await trio.aclose_forcefully(transport_stream)
        else:
            await transport_stream.aclose()

    # -- beyond trio: TLS 1.3 post-handshake client authentication --------------------

    async def verify_client_post_handshake(self) -> dict[str, Any] | None:
        """Ask the client for a certificate now (TLS 1.3) and wait for its answer.

        Server side only; the same as the AnyIO face's method. Returns the verified
        certificate (as :meth:`getpeercert` gives it from then on), or ``None``
        under ``CERT_OPTIONAL`` when the client sent none. Another task may go on
        receiving; data that arrives before the answer is kept, in order, for
        :meth:`receive_some`. A client answers only while it is receiving.

        :raises anyiotls.PostHandshakeAuthError: nothing was sent and the stream is
            usable: not TLS 1.3, the client did not offer post-handshake
            authentication, the server context was not set up for it (it needs
            ``post_handshake_auth = True`` and ``verify_mode`` CERT_OPTIONAL or
            CERT_REQUIRED when the stream is created), or this is the client side
        :raises trio.BrokenResourceError: the client's answer was rejected
            (``__cause__``: the :exc:`ssl.SSLError`), or the stream failed
        :raises anyiotls.ReadAheadLimitError: ``max_read_ahead`` bytes arrived
            before the answer and no task is receiving them; the request stays
            pending, the stream usable, nothing is lost (receive, then call again)

        .. warning:: Cancelled while waiting for the answer, the request stays
            pending and the stream usable: a certificate that arrives later is
            processed by :meth:`receive_some`.
        """
        await self.request_client_certificate()
        try:
            await self._driver.wait_client_auth()
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError from exc
        return self._ssl_object.getpeercert()

    async def request_client_certificate(self) -> None:
        """Send a TLS 1.3 CertificateRequest now; do not wait for the answer.

        The answer is processed by later :meth:`receive_some` calls (see
        :attr:`client_certificate_pending` and :meth:`getpeercert`), or wait for it
        with :meth:`verify_client_post_handshake`. Does nothing if a request is
        pending.

        :raises anyiotls.PostHandshakeAuthError: as
            :meth:`verify_client_post_handshake`

        .. warning:: Cancelled while waiting for another task's send to finish,
            nothing was sent and no request is pending; cancelled while the request
            is being handed to the transport, the stream is broken.
        """
        await self._driver.request_client_auth()

    @property
    def client_certificate_pending(self) -> bool:
        """``True`` while a post-handshake certificate request awaits its answer."""
        return self._driver.engine.client_auth_pending

    # -- forwarded from the SSLObject (the names trio forwards) ----------------------

    def _need_handshake(self, name: str) -> ssl.SSLObject:
        # (tls_handshake_done: a verify_peer hook may read these)
        if not self._driver.tls_handshake_done:
            raise trio.NeedHandshakeError(
                f"call do_handshake() before calling {name!r}"
            )
        return self._ssl_object

    @property
    def context(self) -> ssl.SSLContext:
        """The SSLObject's context; assignable, as on :class:`ssl.SSLObject`."""
        return self._ssl_object.context

    @context.setter
    def context(self, value: ssl.SSLContext) -> None:
        self._ssl_object.context = value

    @property
    def server_side(self) -> bool:
        """``True`` on the server side."""
        return self._ssl_object.server_side

    @property
    def server_hostname(self) -> str | None:
        """The host name given at creation (IDNA-encoded), or ``None``."""
        return self._ssl_object.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session; assign one before the handshake to resume it."""
        return self._ssl_object.session

    @session.setter
    def session(self, value: ssl.SSLSession | None) -> None:
        """Offer *value* for resumption; set it before the handshake (client side).

        :raises ValueError: *value* was made with another SSLContext (a clear
            message instead of CPython's), the handshake is done, or this is the
            server side
        :raises TypeError: *value* is not an :class:`ssl.SSLSession`
        """
        try:
            self._ssl_object.session = value
        except ValueError as exc:
            raise session_error(exc) from exc

    @property
    def session_reused(self) -> bool:
        """Whether the session was resumed (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("session_reused").session_reused

    @overload
    def getpeercert(
        self, binary_form: Literal[False] = False
    ) -> dict[str, Any] | None: ...

    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...

    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...

    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """:meth:`ssl.SSLSocket.getpeercert` (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("getpeercert").getpeercert(binary_form)

    def selected_npn_protocol(self) -> str | None:
        """Deprecated NPN result, as trio forwards it (NeedHandshakeError before)."""
        return self._need_handshake("selected_npn_protocol").selected_npn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)`` (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("cipher").cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        """Ciphers both sides offered, server side only (NeedHandshakeError before)."""
        return self._need_handshake("shared_ciphers").shared_ciphers()

    def compression(self) -> str | None:
        """The compression algorithm, if any (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("compression").compression()

    def pending(self) -> int:
        """Decrypted bytes buffered in the SSLObject (allowed before the handshake)."""
        return self._ssl_object.pending()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """Channel binding data (:exc:`trio.NeedHandshakeError` before).

        Beyond trio: ``"tls-server-end-point"`` (RFC 5929, client side; see
        :func:`anyiotls.tls_server_end_point`). Unlike trio, ``"tls-unique"`` on a
        TLS 1.3 connection raises :exc:`anyiotls.ChannelBindingError` (RFC 9266:
        not defined there) instead of returning a value.

        :raises anyiotls.ChannelBindingError: see above; also on the server side
            for ``tls-server-end-point``, for an Ed25519/Ed448 server certificate,
            and for ``tls-exporter`` (CPython cannot export keying material)
        """
        return get_channel_binding(self._need_handshake("get_channel_binding"), cb_type)

    def get_verified_chain(self) -> list[bytes]:
        """The peer's verified chain, DER, leaf first (as ``ssl.SSLObject``'s).

        Not in trio. Without verification (``CERT_NONE``) the same as
        :meth:`get_unverified_chain`.

        :raises NotImplementedError: below Python 3.13 (no public API there)
        :raises trio.NeedHandshakeError: before the handshake
        """
        return peer_chain(self._need_handshake("get_verified_chain"), "verified")

    def get_unverified_chain(self) -> list[bytes]:
        """The certificates as the peer sent them, DER, leaf first.

        Not in trio. Only the leaf was checked for being part of a valid chain.

        :raises NotImplementedError: below Python 3.13 (no public API there)
        :raises trio.NeedHandshakeError: before the handshake
        """
        return peer_chain(self._need_handshake("get_unverified_chain"), "unverified")

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol agreed on (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("selected_alpn_protocol").selected_alpn_protocol()

    def version(self) -> str | None:
        """The TLS version, e.g. ``TLSv1.3`` (:exc:`trio.NeedHandshakeError` before)."""
        return self._need_handshake("version").version()


class HalfCloseableSSLStream(SSLStream[T_Stream], trio.abc.HalfCloseableStream):
    """An :class:`SSLStream` that can also half-close: :meth:`send_eof` (TLS 1.3).

    Not in trio. A separate class, not a method on :class:`SSLStream`, because code
    written for ``trio.SSLStream`` decides whether a stream can half-close by
    looking (``hasattr(stream, "send_eof")``, ``except AttributeError``,
    ``isinstance(stream, trio.abc.HalfCloseableStream)``): hypercorn, for one,
    calls ``send_eof()`` and expects ``AttributeError`` from a TLS stream. Choose
    this class where half-close is wanted; :class:`SSLListener` makes its streams
    with ``half_closeable=True``.
    """

    async def send_eof(self) -> None:
        """Send close_notify and go on receiving until the peer closes (TLS 1.3).

        RFC 8446 section 6.1 lets a TLS 1.3 peer keep sending after our
        close_notify; it sees our end as ``b""``. Later :meth:`send_all` calls raise
        :exc:`trio.ClosedResourceError`; calling this again does nothing.
        Performs the handshake first if it has not happened.

        :raises NotImplementedError: the connection uses TLS 1.2 or older, where the
            peer must answer close_notify at once and discard its pending writes
            (the stream stays usable)
        :raises trio.BrokenResourceError: the stream is broken: the transport failed,
            or ended without close_notify (also when ``https_compatible``, where
            :meth:`receive_some` read that as ``b""``)
        :raises trio.ClosedResourceError: the stream was closed or unwrapped
        :raises trio.BusyResourceError: another task is sending
        :raises anyiotls.ReadAheadLimitError: as the AnyIO face's ``send_eof()``
        :raises anyiotls.CloseTimeoutError: as the AnyIO face's ``send_eof()``

        .. warning:: Cancelled, close_notify may or may not have left: the stream
            is broken if it was being sent.
        """
        await self._driver.send_eof()


def _from_cache(
    cache: SessionCache,
    transport_stream: trio.abc.Stream,
    ssl_context: ssl.SSLContext,
    server_hostname: bytes | None,
    *,
    server_side: bool,
) -> tuple[ssl.SSLSession | None, SessionKeeper]:
    """The cached session to offer and the stream's keeper."""
    if not isinstance(cache, SessionCache):
        raise TypeError(
            "session_cache must be an anyiotls.SessionCache, not "
            f"{type(cache).__name__}"
        )
    if server_side:
        raise ValueError("session_cache is for clients: a server resumes by itself")
    if not server_hostname:
        raise ValueError("session_cache needs server_hostname (kept per host)")
    hostname = server_hostname.decode("ascii")
    port: int | str | None = None
    sock = getattr(transport_stream, "socket", None)
    if isinstance(sock, trio.socket.SocketType):
        with suppress(OSError):
            peer = sock.getpeername()
            port = peer[1] if isinstance(peer, tuple) else str(peer)
    session = cache.get(ssl_context, hostname, port)
    return session, SessionKeeper(cache, ssl_context, hostname, port, session)


class SSLListener(ServesNames, trio.abc.Listener[SSLStream[T_Stream]]):
    """Wraps a :class:`trio.abc.Listener` so that it accepts :class:`SSLStream` objects.

    The handshake happens on the accepted stream's first use (as in trio), not in
    :meth:`accept`.

    Certificates per host name (see :doc:`/sni`), beyond trio: with *sni_contexts*
    or *select_context*, the stream's handshake first reads the client's
    ClientHello (at most 16 KiB of message in at most 64 records, within
    *handshake_timeout*), chooses the context, and only then starts with it,
    handing over every byte it read; :attr:`SSLStream.client_hello` then shows
    what the client offered (until then, the stream's :attr:`SSLStream.context`
    is the default). Without them nothing is read ahead. Assigning
    :attr:`ssl_context` or :attr:`sni_contexts` (or :meth:`reload_certificate`)
    affects only connections accepted afterwards.

    :param transport_listener: the listener whose connections get encrypted
    :param ssl_context: the server's context (with *sni_contexts*: the default)
    :param https_compatible: passed to :class:`SSLStream`
    :param half_closeable: accept :class:`HalfCloseableSSLStream` objects (not in
        trio)
    :param verify_peer: passed to :class:`SSLStream` (runs at the stream's
        handshake, not in :meth:`accept`)
    :param sni_contexts: host name → context, as for :class:`anyiotls.TLSListener`
    :param select_context: ``async def select(hello) -> SSLContext | None``, as
        for :class:`anyiotls.TLSListener`
    :param refuse_unknown_names: refuse names not in *sni_contexts*
        (``unrecognized_name`` alert) instead of using *ssl_context*
    :param handshake_timeout: seconds the ClientHello may take to arrive and
        *select_context* to answer (only with *sni_contexts*/*select_context*; the
        rest of the handshake is bounded by the caller's cancel scopes, as in trio)
    :param max_read_ahead: passed to :class:`SSLStream`
    :param close_timeout: passed to :class:`SSLStream`

    A refused connection's handshake raises :exc:`trio.BrokenResourceError` whose
    ``__cause__`` is :exc:`anyiotls.ClientHelloError` (not a well-formed
    ClientHello), :exc:`anyiotls.UnrecognizedNameError`, :exc:`trio.TooSlowError`
    (*handshake_timeout*) or the exception *select_context* raised.

    :raises TypeError: if *ssl_context* is not an :class:`ssl.SSLContext`
    :raises ValueError: if *ssl_context* is a client context, or has no
        certificate (and no ``sni_callback`` that could supply one)

    :var transport_listener: the wrapped listener
    """

    def __init__(
        self,
        transport_listener: trio.abc.Listener[T_Stream],
        ssl_context: ssl.SSLContext,
        *,
        https_compatible: bool = False,
        half_closeable: bool = False,
        verify_peer: VerifyPeer | None = None,
        sni_contexts: Mapping[str, ssl.SSLContext] | None = None,
        select_context: SelectContext | None = None,
        refuse_unknown_names: bool = False,
        handshake_timeout: float = 30,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        """See the class docstring."""
        check_server_context(ssl_context, where="SSLListener")
        check_limits(max_read_ahead, close_timeout)
        self._max_read_ahead = max_read_ahead
        self._close_timeout = close_timeout
        self.transport_listener = transport_listener
        self._ssl_context = ssl_context
        self._https_compatible = https_compatible
        self._stream_class: type[SSLStream[Any]] = (
            HalfCloseableSSLStream if half_closeable else SSLStream
        )
        self._verify_peer = verify_peer
        self._select_context = select_context
        self._refuse_unknown_names = refuse_unknown_names
        #: seconds for the ClientHello and ``select_context`` (see the class)
        self.handshake_timeout = handshake_timeout
        self._selection: Selection | None = None
        if sni_contexts is not None or select_context is not None:
            self.sni_contexts = sni_contexts or {}

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The (default) server context; assign a new one for later connections."""
        return self._ssl_context

    @ssl_context.setter
    def ssl_context(self, context: ssl.SSLContext) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext, not {type(context).__name__}"
            )
        self._ssl_context = context

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept the next connection and wrap it in an :class:`SSLStream`."""
        transport_stream = await self.transport_listener.accept()
        # What this connection uses is fixed when it is accepted.
        context = self._ssl_context
        selection = self._selection
        stream = self._stream_class(
            transport_stream,
            context,
            server_side=True,
            https_compatible=self._https_compatible,
            verify_peer=self._verify_peer,
            max_read_ahead=self._max_read_ahead,
            close_timeout=self._close_timeout,
        )
        if selection is not None:
            stream._choose_context_first(context, selection, self.handshake_timeout)
        return stream

    async def aclose(self) -> None:
        """Close the wrapped listener."""
        await self.transport_listener.aclose()


# -- trio's TCP helpers --------------------------------------------------------------

#: trio's default for :func:`open_ssl_over_tcp_stream` (``trio.open_tcp_stream``'s)
DEFAULT_HAPPY_EYEBALLS_DELAY = 0.25


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    https_compatible: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = DEFAULT_HAPPY_EYEBALLS_DELAY,
    session_cache: SessionCache | None = None,
    max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> SSLStream[trio.SocketStream]:
    """Connect over TCP and wrap the connection: ``trio.open_ssl_over_tcp_stream``.

    Same arguments and defaults as trio's: :func:`trio.open_tcp_stream` connects
    (happy eyeballs), and the :class:`SSLStream` checks the certificate against
    *host*. The handshake happens on first use (or :meth:`SSLStream.do_handshake`).

    :param ssl_context: default: :func:`ssl.create_default_context`, with
        ``OP_IGNORE_UNEXPECTED_EOF`` cleared (as trio does)
    :param session_cache: not in trio: passed to :class:`SSLStream` (resumes a
        cached session for this host and port; needs an explicit *ssl_context*,
        see :doc:`resumption`)
    :param max_read_ahead: not in trio; passed to :class:`SSLStream`
    :param close_timeout: not in trio; passed to :class:`SSLStream`
    """
    check_limits(max_read_ahead, close_timeout)
    if ssl_context is None:
        if session_cache is not None:
            raise ValueError(
                "session_cache needs an explicit ssl_context: sessions are kept per "
                "context, and the default one is new for every connection"
            )
        ssl_context = default_context(server_side=False)
    tcp_stream = await trio.open_tcp_stream(
        host, port, happy_eyeballs_delay=happy_eyeballs_delay
    )
    return SSLStream(
        tcp_stream,
        ssl_context,
        server_hostname=host,
        https_compatible=https_compatible,
        session_cache=session_cache,
        max_read_ahead=max_read_ahead,
        close_timeout=close_timeout,
    )


async def open_ssl_over_tcp_listeners(
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    half_closeable: bool = False,
    verify_peer: VerifyPeer | None = None,
    sni_contexts: Mapping[str, ssl.SSLContext] | None = None,
    select_context: SelectContext | None = None,
    refuse_unknown_names: bool = False,
    handshake_timeout: float = 30,
    max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> list[SSLListener[trio.SocketStream]]:
    """Listen for TLS over TCP: ``trio.open_ssl_over_tcp_listeners``.

    One :class:`SSLListener` per address :func:`trio.open_tcp_listeners` binds
    (*host* ``None``: every wildcard address). Beyond trio's arguments, the
    keywords after *backlog* are :class:`SSLListener`'s.
    """
    check_limits(max_read_ahead, close_timeout)
    tcp_listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        SSLListener(
            tcp_listener,
            ssl_context,
            https_compatible=https_compatible,
            half_closeable=half_closeable,
            verify_peer=verify_peer,
            sni_contexts=sni_contexts,
            select_context=select_context,
            refuse_unknown_names=refuse_unknown_names,
            handshake_timeout=handshake_timeout,
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )
        for tcp_listener in tcp_listeners
    ]


async def serve_ssl_over_tcp(
    handler: Callable[[SSLStream[trio.SocketStream]], Awaitable[object]],
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[
        list[SSLListener[trio.SocketStream]]
    ] = trio.TASK_STATUS_IGNORED,
    half_closeable: bool = False,
    verify_peer: VerifyPeer | None = None,
    sni_contexts: Mapping[str, ssl.SSLContext] | None = None,
    select_context: SelectContext | None = None,
    refuse_unknown_names: bool = False,
    handshake_timeout: float = 30,
    max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> NoReturn:
    """Serve TLS over TCP forever: ``trio.serve_ssl_over_tcp``.

    :func:`open_ssl_over_tcp_listeners`, then :func:`trio.serve_listeners`; with
    ``nursery.start()`` you get the listeners back. As with trio, an exception
    from *handler* is not caught here: it ends the server unless the handler or
    *handler_nursery* deals with it. Beyond trio's arguments, the keywords after
    *task_status* are :class:`SSLListener`'s.
    """
    listeners = await open_ssl_over_tcp_listeners(
        port,
        ssl_context,
        host=host,
        https_compatible=https_compatible,
        backlog=backlog,
        half_closeable=half_closeable,
        verify_peer=verify_peer,
        sni_contexts=sni_contexts,
        select_context=select_context,
        refuse_unknown_names=refuse_unknown_names,
        handshake_timeout=handshake_timeout,
        max_read_ahead=max_read_ahead,
        close_timeout=close_timeout,
    )
    await trio.serve_listeners(
        handler, listeners, handler_nursery=handler_nursery, task_status=task_status
    )


# -- bridges ------------------------------------------------------------------------


@contextmanager
def _anyio_errors_from_trio(action: str) -> Iterator[None]:
    try:
        yield
    except trio.BrokenResourceError as exc:
        raise anyio.BrokenResourceError from exc
    except trio.ClosedResourceError as exc:
        raise anyio.ClosedResourceError from exc
    except trio.BusyResourceError as exc:
        raise anyio.BusyResourceError(action) from exc


class TrioStreamAsAnyIO(ByteStream):
    """An AnyIO byte stream over a Trio stream, e.g. for the AnyIO face.

    ``await anyiotls.TLSStream.wrap(TrioStreamAsAnyIO(trio_stream), ...)`` puts
    the AnyIO :class:`~anyiotls.TLSStream` over any :class:`trio.abc.Stream`
    (a :class:`trio.SocketStream`, a :func:`trio.testing.memory_stream_pair` half,
    even a :class:`trio.SSLStream`). Works only while running on Trio (AnyIO's
    trio backend). ``b""`` from the Trio stream becomes :exc:`anyio.EndOfStream`;
    trio's resource errors become AnyIO's (``__cause__``: trio's);
    :meth:`send_eof` needs a :class:`trio.abc.HalfCloseableStream`. No typed
    attributes are provided.

    :var trio_stream: the wrapped Trio stream
    """

    def __init__(self, trio_stream: trio.abc.Stream) -> None:
        """See the class docstring."""
        self.trio_stream = trio_stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive up to *max_bytes* bytes; :exc:`anyio.EndOfStream` at the end."""
        with _anyio_errors_from_trio("receiving from"):
            data = await self.trio_stream.receive_some(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def send(self, item: bytes) -> None:
        """Send all of *item*."""
        with _anyio_errors_from_trio("sending to"):
            await self.trio_stream.send_all(item)

    async def send_eof(self) -> None:
        """Half-close, if the Trio stream can.

        :raises NotImplementedError: the Trio stream is not half-closeable
        """
        if not isinstance(self.trio_stream, trio.abc.HalfCloseableStream):
            raise NotImplementedError(
                f"{type(self.trio_stream).__name__} is not a HalfCloseableStream"
            )
        with _anyio_errors_from_trio("sending to"):
            await self.trio_stream.send_eof()

    async def aclose(self) -> None:
        """Close the Trio stream."""
        await self.trio_stream.aclose()


@contextmanager
def _trio_errors_from_anyio() -> Iterator[None]:
    try:
        yield
    except anyio.BrokenResourceError as exc:
        raise trio.BrokenResourceError from exc
    except anyio.ClosedResourceError as exc:
        raise trio.ClosedResourceError from exc
    except anyio.BusyResourceError as exc:
        raise trio.BusyResourceError(str(exc)) from exc


class AnyIOStreamAsTrio(trio.abc.HalfCloseableStream):
    """A Trio stream over an AnyIO byte stream, e.g. for :class:`SSLStream`.

    ``SSLStream(AnyIOStreamAsTrio(anyio_stream), context)`` puts the Trio face over
    any AnyIO byte stream (an AnyIO socket, a stapled memory object stream of
    ``bytes``, the AnyIO :class:`~anyiotls.TLSStream`). Works only while running
    on Trio (AnyIO's trio backend). :exc:`anyio.EndOfStream` becomes ``b""``;
    AnyIO's resource errors become trio's (``__cause__``: AnyIO's). An object
    stream that hands over more than ``max_bytes`` at once is buffered here.
    :meth:`aclose` wakes tasks blocked in :meth:`receive_some` or :meth:`send_all`
    with :exc:`trio.ClosedResourceError`, as trio requires, even where the AnyIO
    stream would not wake them (AnyIO 4.0's memory object streams, for one).
    AnyIO streams have no ``wait_send_all_might_not_block``: it only checks the
    stream's state and executes a checkpoint.

    :var anyio_stream: the wrapped AnyIO stream
    """

    def __init__(self, anyio_stream: AnyByteStream) -> None:
        """See the class docstring."""
        self.anyio_stream = anyio_stream
        self._buffer = bytearray()
        self._closed = False
        #: the cancel scopes of the operations in progress, cancelled by aclose()
        self._in_progress: set[trio.CancelScope] = set()
        self._send_conflict = ConflictDetector(
            lambda: trio.BusyResourceError("another task is sending on this stream")
        )
        self._recv_conflict = ConflictDetector(
            lambda: trio.BusyResourceError("another task is receiving on this stream")
        )

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError

    async def _run(self, operation: Callable[[], Awaitable[_R]]) -> _R:
        """Run an AnyIO operation that ``aclose()`` interrupts (ClosedResourceError)."""
        with trio.CancelScope() as scope:
            self._in_progress.add(scope)
            try:
                with _trio_errors_from_anyio():
                    return await operation()
            finally:
                self._in_progress.discard(scope)
        # only aclose() cancels this scope
        raise trio.ClosedResourceError("the stream was closed while in use")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive at least one byte and at most *max_bytes*; ``b""`` at the end."""
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        with self._recv_conflict:
            if self._closed or not self._buffer:
                self._check_open()
                stream = self.anyio_stream
                try:
                    if isinstance(stream, ByteStream):
                        data = await self._run(lambda: stream.receive(max_bytes))
                    else:
                        data = await self._run(stream.receive)
                except anyio.EndOfStream:
                    return b""
                self._buffer += data
            else:
                await trio.lowlevel.checkpoint()
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data*."""
        with self._send_conflict:
            self._check_open()
            if not data:
                await trio.lowlevel.checkpoint()
                return
            item = bytes(data)
            await self._run(lambda: self.anyio_stream.send(item))

    async def wait_send_all_might_not_block(self) -> None:
        """Check the state and execute a checkpoint (AnyIO has no such wait)."""
        with self._send_conflict:
            self._check_open()
            await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close (:exc:`NotImplementedError` if the AnyIO stream cannot)."""
        with self._send_conflict:
            self._check_open()
            await self._run(self.anyio_stream.send_eof)

    async def aclose(self) -> None:
        """Close the AnyIO stream; always a checkpoint (some AnyIO streams' is not)."""
        self._closed = True
        for scope in self._in_progress:
            scope.cancel()
        await self.anyio_stream.aclose()
        await trio.lowlevel.checkpoint()
