"""TCP with TLS on the fast transport: :func:`connect_tcp`, :func:`create_tcp_listener`.

The arguments mean what they mean for :func:`anyio.connect_tcp` and
:func:`anyio.create_tcp_listener`: the listening sockets are even made by the latter.
What differs is the connected stream under the TLS layer: on asyncio (any loop,
uvloop included) an :class:`asyncio.BufferedProtocol` on the loop's transport
(``_asyncio_transport.py``); on Trio the socket with ``trio.lowlevel``'s waits
(``_trio_transport.py``). Both are :class:`anyio.abc.SocketStream` subclasses, which
the TLS driver wraps like any other stream.
"""

from __future__ import annotations

__all__ = ("TCPListener", "connect_tcp", "create_tcp_listener")

import errno
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any, Literal, overload

import anyio
from anyio import (
    CancelScope,
    ClosedResourceError,
    Event,
    aclose_forcefully,
    create_task_group,
    move_on_after,
)
from anyio.abc import IPAddressType, SocketListener, SocketStream, TaskGroup
from anyio.streams.stapled import MultiListener

from ._anyio import TLSListener, TLSStream, VerifyPeer
from ._driver import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_READ_AHEAD
from ._session import SessionCache
from ._sni import SelectContext

#: The families :func:`anyio.create_tcp_listener` takes.
AnyIPAddressFamily = Literal[
    socket.AddressFamily.AF_UNSPEC,
    socket.AddressFamily.AF_INET,
    socket.AddressFamily.AF_INET6,
]

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup  # type: ignore[import-not-found]

# Renamed in AnyIO 4.7; the old names still exist (deprecated) in newer releases.
_wait_readable: Callable[[socket.socket], Any] = (
    getattr(anyio, "wait_readable", None) or anyio.wait_socket_readable
)
_wait_writable: Callable[[socket.socket], Any] = (
    getattr(anyio, "wait_writable", None) or anyio.wait_socket_writable
)


def _running_trio() -> bool:
    trio = sys.modules.get("trio")  # only a Trio program has imported trio
    if trio is None:
        return False
    in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)  # trio >= 0.26
    if in_trio_run is not None:
        return bool(in_trio_run())
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _adopt(sock: socket.socket, *, accepted: bool) -> SocketStream:
    """The fast transport over a connected non-blocking socket (closed on failure)."""
    if _running_trio():
        from ._trio_transport import adopt_socket

        await anyio.lowlevel.checkpoint()
        return adopt_socket(sock)
    from ._asyncio_transport import adopt_socket as adopt_asyncio

    return await adopt_asyncio(sock, accepted=accepted)


async def _connect_one(family: int, sockaddr: Any, local_address: Any) -> socket.socket:
    """One connection attempt; the connected socket, or the socket closed on error."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_address is not None:
            sock.bind(local_address)
        error = sock.connect_ex(sockaddr)
        if error in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            await _wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, f"{errno.errorcode.get(error, error)}: {sockaddr!r}")
    except BaseException:
        sock.close()
        raise
    return sock


async def _target_addresses(
    remote_host: str, remote_port: int, family: int
) -> list[tuple[int, Any]]:
    """``(family, sockaddr)`` to try, in AnyIO's order: first an IPv6 address (if
    any), then an IPv4 one, then the rest. IP literals need no resolver."""
    try:
        ip_address(remote_host.split("%", 1)[0])
    except ValueError:
        results = await anyio.getaddrinfo(
            remote_host, remote_port, family=family, type=socket.SOCK_STREAM
        )
    else:
        results = socket.getaddrinfo(  # type: ignore[assignment]  # numeric: no lookup, no thread
            remote_host,
            remote_port,
            family,
            socket.SOCK_STREAM,
            0,
            socket.AI_NUMERICHOST,
        )
    ordered: list[tuple[int, Any]] = []
    v6_found = v4_found = False
    for af, _type, _proto, _name, sockaddr in results:
        if af == socket.AF_INET6 and not v6_found:
            v6_found = True
            ordered.insert(0, (af, sockaddr))
        elif af == socket.AF_INET and not v4_found and v6_found:
            v4_found = True
            ordered.insert(1, (af, sockaddr))
        else:
            ordered.append((af, sockaddr))
    return ordered


async def _connect_socket(
    remote_host: str,
    remote_port: int,
    local_host: IPAddressType | None,
    happy_eyeballs_delay: float,
) -> socket.socket:
    """Happy eyeballs (RFC 6555, stateless), as :func:`anyio.connect_tcp` does it."""
    local_address: Any = None
    family: int = socket.AF_UNSPEC
    if local_host:
        gai = await anyio.getaddrinfo(str(local_host), None)
        family, *_, local_address = gai[0]
    targets = await _target_addresses(remote_host, remote_port, family)
    connected: socket.socket | None = None
    errors: list[OSError] = []

    async def attempt(family: int, sockaddr: Any, done: Event) -> None:
        nonlocal connected
        try:
            sock = await _connect_one(family, sockaddr, local_address)
        except OSError as exc:
            errors.append(exc)
            return
        finally:
            done.set()
        if connected is None:
            connected = sock
            tg.cancel_scope.cancel()
        else:
            sock.close()

    try:
        async with create_task_group() as tg:
            for family_, sockaddr in targets:
                done = Event()
                tg.start_soon(attempt, family_, sockaddr, done)
                with move_on_after(happy_eyeballs_delay):
                    await done.wait()
    except BaseException:
        if connected is not None:
            connected.close()
        raise
    if connected is None:
        cause: BaseException = (
            errors[0]
            if len(errors) == 1
            else ExceptionGroup("multiple connection attempts failed", errors)
        )
        raise OSError("All connection attempts failed") from cause
    return connected


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    ssl_context: ssl.SSLContext | None = ...,
    tls_hostname: str | None = ...,
    tls_standard_compatible: bool = ...,
    local_host: IPAddressType | None = ...,
    happy_eyeballs_delay: float = ...,
    tls: Literal[True] = ...,
    session_cache: SessionCache | None = ...,
    verify_peer: VerifyPeer | None = ...,
    max_read_ahead: int = ...,
    close_timeout: float | None = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    ssl_context: None = ...,
    tls_hostname: None = ...,
    tls_standard_compatible: bool = ...,
    local_host: IPAddressType | None = ...,
    happy_eyeballs_delay: float = ...,
    tls: Literal[False],
) -> SocketStream: ...


async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    tls_standard_compatible: bool = True,
    local_host: IPAddressType | None = None,
    happy_eyeballs_delay: float = 0.25,
    tls: bool = True,
    session_cache: SessionCache | None = None,
    verify_peer: VerifyPeer | None = None,
    max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> TLSStream | SocketStream:
    """Connect over TCP and do the TLS handshake, on the fast transport.

    The arguments mean what they mean for ``anyio.connect_tcp(..., tls=True)``:
    every address *remote_host* resolves to is tried (IPv6 first, the next attempt
    started after *happy_eyeballs_delay* seconds if the previous one has not
    finished), the first connection wins.

    :param remote_host: an IP address or a host name
    :param remote_port: the port
    :param ssl_context: the client context; default: :func:`ssl.create_default_context`
        with ``OP_IGNORE_UNEXPECTED_EOF`` cleared
    :param tls_hostname: the name to send as SNI and to check the certificate
        against; default: *remote_host*
    :param tls_standard_compatible: as :meth:`TLSStream.wrap`'s
        ``standard_compatible``
    :param local_host: the local interface to bind to first
    :param happy_eyeballs_delay: seconds before the next address is tried
    :param tls: ``False``: return the connected plaintext stream (an
        :class:`anyio.abc.SocketStream`), for a STARTTLS protocol; upgrade it later
        with :meth:`TLSStream.wrap` (or :mod:`anyiotls.starttls`), whose
        :meth:`~TLSStream.unwrap` hands this stream back
    :param session_cache: resume sessions from this :class:`~anyiotls.SessionCache`
        and give new ones to it (keyed by the context, host name and port; needs
        *ssl_context*, see :doc:`resumption`)
    :param verify_peer: :meth:`TLSStream.wrap`'s (see :doc:`certificates`)
    :param max_read_ahead: :meth:`TLSStream.wrap`'s
    :param close_timeout: :meth:`TLSStream.wrap`'s
    :return: a :class:`TLSStream` whose extra attributes include the
        :class:`~anyio.abc.SocketAttribute` ones; with ``tls=False``, the plaintext
        socket stream
    :raises OSError: no address could be connected to (``__cause__``: the failure,
        or an :exc:`ExceptionGroup` of them), or the name did not resolve
    :raises ~ssl.SSLError: the handshake failed (the connection is then closed)
    :raises ~anyio.BrokenResourceError: the connection failed during the handshake
    :raises ValueError: ``tls=False`` with *ssl_context* or *tls_hostname*

    .. warning:: Cancelled, no connection is left open.
    """
    if not tls and (
        ssl_context is not None
        or tls_hostname is not None
        or session_cache is not None
        or verify_peer is not None
    ):
        raise ValueError(
            "tls=False takes no ssl_context, tls_hostname, session_cache or "
            "verify_peer (pass them to TLSStream.wrap() at the upgrade)"
        )
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(
            f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}"
        )
    host = str(remote_host)
    sock = await _connect_socket(host, remote_port, local_host, happy_eyeballs_delay)
    stream = await _adopt(sock, accepted=False)
    if not tls:
        return stream
    try:
        return await TLSStream.wrap(
            stream,
            server_side=False,
            hostname=tls_hostname or host,
            ssl_context=ssl_context,
            standard_compatible=tls_standard_compatible,
            session_cache=session_cache,
            verify_peer=verify_peer,
            max_read_ahead=max_read_ahead,
            close_timeout=close_timeout,
        )
    except BaseException:
        await aclose_forcefully(stream)
        raise


class TCPListener(SocketListener):
    """Accepts TCP connections on one listening socket, as fast-transport streams.

    Made by :func:`create_tcp_listener`; ``extra()`` gives the listening socket's
    :class:`~anyio.abc.SocketAttribute` values.
    """

    def __init__(self, listener: SocketListener) -> None:
        """Take over the listening socket of *listener* (an AnyIO TCP listener)."""
        self._listener = listener
        self._sock: socket.socket = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        self._closed = False
        self._accept_scope: CancelScope | None = None

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    async def accept(self) -> SocketStream:
        """Wait for a connection and return it as a plaintext stream.

        :raises ~anyio.ClosedResourceError: the listener was closed
        """
        sock = self._sock
        while True:
            if self._closed or sock.fileno() < 0:
                await anyio.lowlevel.checkpoint()
                raise ClosedResourceError
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                # aclose() cancels this wait (not every backend wakes a task
                # waiting on a socket that another task closes)
                with CancelScope() as scope:
                    self._accept_scope = scope
                    try:
                        await _wait_readable(sock)
                    finally:
                        self._accept_scope = None
                continue
            except OSError as exc:
                if self._closed or sock.fileno() < 0:
                    raise ClosedResourceError from exc
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue  # the connection went away before we took it
                raise
            client.setblocking(False)
            return await _adopt(client, accepted=True)

    async def serve(
        self,
        handler: Callable[[SocketStream], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        """Accept connections forever; call *handler* with each in a new task."""
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(create_task_group())
            while True:
                stream = await self.accept()
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        """Close the listening socket; a waiting :meth:`accept` raises
        :exc:`~anyio.ClosedResourceError`."""
        self._closed = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        await self._listener.aclose()


@overload
async def create_tcp_listener(
    *,
    local_host: IPAddressType | None = ...,
    local_port: int = ...,
    ssl_context: ssl.SSLContext,
    family: AnyIPAddressFamily = ...,
    backlog: int = ...,
    reuse_port: bool = ...,
    standard_compatible: bool = ...,
    handshake_timeout: float = ...,
    tls: Literal[True] = ...,
    verify_peer: VerifyPeer | None = ...,
    sni_contexts: Mapping[str, ssl.SSLContext] | None = ...,
    select_context: SelectContext | None = ...,
    refuse_unknown_names: bool = ...,
    max_read_ahead: int = ...,
    close_timeout: float | None = ...,
) -> TLSListener: ...


@overload
async def create_tcp_listener(
    *,
    local_host: IPAddressType | None = ...,
    local_port: int = ...,
    ssl_context: None = ...,
    family: AnyIPAddressFamily = ...,
    backlog: int = ...,
    reuse_port: bool = ...,
    tls: Literal[False],
) -> MultiListener[SocketStream]: ...


async def create_tcp_listener(
    *,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    family: AnyIPAddressFamily = socket.AddressFamily.AF_UNSPEC,
    backlog: int = 65536,
    reuse_port: bool = False,
    standard_compatible: bool = True,
    handshake_timeout: float = 30,
    tls: bool = True,
    verify_peer: VerifyPeer | None = None,
    sni_contexts: Mapping[str, ssl.SSLContext] | None = None,
    select_context: SelectContext | None = None,
    refuse_unknown_names: bool = False,
    max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> TLSListener | MultiListener[SocketStream]:
    """Listen on TCP and serve TLS streams on the fast transport.

    The arguments mean what they mean for :func:`anyio.create_tcp_listener` (which
    makes the listening sockets: no *local_host* listens on every IPv4 and IPv6
    interface, a name resolving to several addresses gives one listener on all)
    and for :class:`TLSListener` (*ssl_context*, *standard_compatible*,
    *handshake_timeout*, and the keywords after *tls*: *verify_peer*,
    *sni_contexts*, *select_context*, *refuse_unknown_names*, *max_read_ahead*,
    *close_timeout*). ``serve()`` handshakes each connection as
    :meth:`TLSListener.serve` does.

    :param ssl_context: the server context (required unless ``tls=False``)
    :param tls: ``False``: a listener of plaintext streams (the
        ``anyio.abc.SocketStream`` subclass of :func:`connect_tcp`'s
        ``tls=False``), for STARTTLS servers
    :return: a :class:`TLSListener` over a :class:`~anyio.streams.stapled.MultiListener`
        of :class:`TCPListener`; with ``tls=False``, that multi-listener
    :raises OSError: binding failed
    :raises TypeError: no *ssl_context* with ``tls=True``, or not an
        :class:`ssl.SSLContext`
    """
    if tls:
        if ssl_context is None:
            raise TypeError("create_tcp_listener() needs ssl_context (or tls=False)")
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, not "
                f"{type(ssl_context).__name__}"
            )
    elif ssl_context is not None:
        raise ValueError("tls=False takes no ssl_context")
    bound = await anyio.create_tcp_listener(
        local_host=local_host,
        local_port=local_port,
        family=family,
        backlog=backlog,
        reuse_port=reuse_port,
    )
    listeners = MultiListener([TCPListener(inner) for inner in bound.listeners])  # type: ignore[arg-type]
    if not tls:
        return listeners
    assert ssl_context is not None
    return TLSListener(
        listeners,
        ssl_context,
        standard_compatible=standard_compatible,
        handshake_timeout=handshake_timeout,
        verify_peer=verify_peer,
        sni_contexts=sni_contexts,
        select_context=select_context,
        refuse_unknown_names=refuse_unknown_names,
        max_read_ahead=max_read_ahead,
        close_timeout=close_timeout,
    )
