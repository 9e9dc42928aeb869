"""The TLS stream implementations under test, each reduced to the same small surface.

Every implementation opens a loopback TCP connection, wraps both ends in TLS 1.3 with
the same certificates and hands back two :class:`Pair` ends. Each end exposes the
implementation's *own* bound methods for sending and receiving where its API allows
(``stream.send``, ``stream.receive``, ``trio.SSLStream.send_all`` ...), so the
benchmark adds no call layer to anyio's, trio's or anyiotls's streams. asyncio's
native streams need ``writer.write(data); await writer.drain()`` for one send: that
two-line function is their API, not an extra layer.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import trustme

HOST = "127.0.0.1"
HOSTNAME = "localhost"
RECEIVE_SIZE = 65536


@dataclass
class Contexts:
    """A server and a client context: TLS 1.3 only, ECDSA P-256 certificate."""

    server: ssl.SSLContext
    client: ssl.SSLContext

    @classmethod
    def create(cls) -> Contexts:
        ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
        cert = ca.issue_cert(HOSTNAME, HOST, key_type=trustme.KeyType.ECDSA)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        for context in (server, client):
            context.minimum_version = ssl.TLSVersion.TLSv1_3
        cert.configure_cert(server)
        ca.configure_trust(client)
        return cls(server, client)


@dataclass
class End:
    """One end of an established TLS connection."""

    send: Callable[[bytes], Awaitable[Any]]
    receive: Callable[[int], Awaitable[bytes]]
    close: Callable[[], Awaitable[None]]  # forceful: no closing handshake
    obj: Any = None


@dataclass
class Server:
    """A listening server: ``accept()`` returns the server end of the next connection
    (handshake done); ``connect()`` opens a client end (handshake done)."""

    connect: Callable[[], Awaitable[End]]
    accept: Callable[[], Awaitable[End]]
    aclose: Callable[[], Awaitable[None]]
    extra: list[Any] = field(default_factory=list)


class Impl:
    """An implementation: a name, the backends it runs on, and a server factory."""

    name: str
    backends: tuple[str, ...] = ("asyncio", "uvloop", "trio")
    #: a reference without TLS: measured in the throughput scenarios only
    reference = False

    async def server(self, contexts: Contexts) -> Server:
        raise NotImplementedError

    async def pair(self, server: Server) -> tuple[End, End]:
        """One connection: (client end, server end), both handshaken."""
        async with anyio.create_task_group() as tg:
            ends: dict[str, End] = {}

            async def accept() -> None:
                ends["server"] = await server.accept()

            tg.start_soon(accept)
            ends["client"] = await server.connect()
        return ends["client"], ends["server"]


# -- AnyIO socket streams wrapped by an AnyIO-style TLSStream ------------------------


class _AnyIOStyle(Impl):
    def stream_class(self) -> Any:
        raise NotImplementedError

    async def server(self, contexts: Contexts) -> Server:
        cls = self.stream_class()
        multi = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
        listener = multi.listeners[0]
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        def end(stream: Any) -> End:
            return End(
                stream.send,
                stream.receive,
                lambda: anyio.aclose_forcefully(stream),
                stream,
            )

        async def connect() -> End:
            sock = await anyio.connect_tcp(HOST, port)
            stream = await cls.wrap(
                sock, hostname=HOSTNAME, ssl_context=contexts.client
            )
            return end(stream)

        async def accept() -> End:
            sock = await listener.accept()
            stream = await cls.wrap(sock, server_side=True, ssl_context=contexts.server)
            return end(stream)

        return Server(connect, accept, multi.aclose)


class AnyIOTLS(_AnyIOStyle):
    """``anyiotls.TLSStream`` over AnyIO socket streams."""

    name = "anyiotls"

    def stream_class(self) -> Any:
        import anyiotls

        return anyiotls.TLSStream


class AnyIOStreamsTLS(_AnyIOStyle):
    """``anyio.streams.tls.TLSStream`` over AnyIO socket streams."""

    name = "anyio"

    def stream_class(self) -> Any:
        from anyio.streams.tls import TLSStream

        return TLSStream


class AnyIOTLSFastTCP(Impl):
    """``anyiotls.connect_tcp``/``create_tcp_listener``: TLS on anyiotls's own TCP
    transport (asyncio ``BufferedProtocol``; Trio's socket with ``trio.lowlevel``
    waits). The server side accepts from the plaintext listener and wraps, as
    ``TLSListener.serve`` does."""

    name = "anyiotls.tcp"

    async def server(self, contexts: Contexts) -> Server:
        import anyiotls

        multi = await anyiotls.create_tcp_listener(
            local_host=HOST, local_port=0, tls=False
        )
        listener = multi.listeners[0]
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        def end(stream: Any) -> End:
            return End(
                stream.send,
                stream.receive,
                lambda: anyio.aclose_forcefully(stream),
                stream,
            )

        async def connect() -> End:
            return end(
                await anyiotls.connect_tcp(
                    HOST, port, ssl_context=contexts.client, tls_hostname=HOSTNAME
                )
            )

        async def accept() -> End:
            sock = await listener.accept()
            return end(
                await anyiotls.TLSStream.wrap(
                    sock, server_side=True, ssl_context=contexts.server
                )
            )

        return Server(connect, accept, multi.aclose)


class PlainTCP(Impl):
    """AnyIO socket streams without TLS: what the transport alone can carry."""

    name = "tcp"
    reference = True

    async def server(self, contexts: Contexts) -> Server:
        multi = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
        listener = multi.listeners[0]
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        def end(stream: Any) -> End:
            return End(
                stream.send,
                stream.receive,
                functools.partial(anyio.aclose_forcefully, stream),
                stream,
            )

        async def connect() -> End:
            return end(await anyio.connect_tcp(HOST, port))

        async def accept() -> End:
            return end(await listener.accept())

        return Server(connect, accept, multi.aclose)


# -- Trio socket streams wrapped by an SSLStream --------------------------------------


class _TrioStyle(Impl):
    backends = ("trio",)

    def stream_class(self) -> Any:
        raise NotImplementedError

    async def server(self, contexts: Contexts) -> Server:
        import trio

        cls = self.stream_class()
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        listener = listeners[0]
        port = listener.socket.getsockname()[1]

        def end(stream: Any) -> End:
            return End(
                stream.send_all,
                stream.receive_some,
                functools.partial(trio.aclose_forcefully, stream),
                stream,
            )

        async def connect() -> End:
            sock = await trio.open_tcp_stream(HOST, port)
            stream = cls(sock, contexts.client, server_hostname=HOSTNAME)
            await stream.do_handshake()
            return end(stream)

        async def accept() -> End:
            sock = await listener.accept()
            stream = cls(sock, contexts.server, server_side=True)
            await stream.do_handshake()
            return end(stream)

        return Server(connect, accept, listener.aclose)


class TrioSSL(_TrioStyle):
    """``trio.SSLStream`` over trio socket streams."""

    name = "trio"

    def stream_class(self) -> Any:
        import trio

        return trio.SSLStream


class AnyIOTLSTrioFace(_TrioStyle):
    """``anyiotls.trio.SSLStream`` (the trio face) over trio socket streams."""

    name = "anyiotls.trio"

    def stream_class(self) -> Any:
        from anyiotls.trio import SSLStream

        return SSLStream


# -- asyncio's own TLS streams ------------------------------------------------------


class AsyncioNative(Impl):
    """``asyncio.open_connection``/``start_server`` with ``ssl=`` (the loop's TLS:
    asyncio's ``sslproto`` on plain asyncio, uvloop's own on uvloop)."""

    name = "asyncio"
    backends = ("asyncio", "uvloop")

    async def server(self, contexts: Contexts) -> Server:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.Queue()

        async def on_connect(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await accepted.put((reader, writer))

        srv = await asyncio.start_server(
            on_connect, HOST, 0, ssl=contexts.server, limit=RECEIVE_SIZE
        )
        port = srv.sockets[0].getsockname()[1]

        def end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> End:
            async def send(data: bytes) -> None:
                writer.write(data)
                await writer.drain()

            async def close() -> None:
                writer.transport.abort()

            return End(send, reader.read, close, writer)

        async def connect() -> End:
            reader, writer = await asyncio.open_connection(
                HOST,
                port,
                ssl=contexts.client,
                server_hostname=HOSTNAME,
                limit=RECEIVE_SIZE,
            )
            return end(reader, writer)

        async def accept() -> End:
            return end(*await accepted.get())

        async def aclose() -> None:
            srv.close()
            await srv.wait_closed()

        return Server(connect, accept, aclose)


ALL_IMPLS: tuple[Impl, ...] = (
    AnyIOTLS(),
    AnyIOTLSFastTCP(),
    AnyIOStreamsTLS(),
    AnyIOTLSTrioFace(),
    TrioSSL(),
    AsyncioNative(),
    PlainTCP(),
)


def impls_for(backend: str, *, references: bool = False) -> list[Impl]:
    """The implementations that run on *backend*, anyiotls first."""
    return [
        impl
        for impl in ALL_IMPLS
        if backend in impl.backends and (references or not impl.reference)
    ]
