"""One vocabulary for both faces, so a scenario is written once.

:class:`AnyIOFace` drives ``anyiotls.TLSStream`` (every AnyIO backend) and
:class:`TrioFace` drives ``anyiotls.trio.SSLStream`` (trio only). Each builds
connected, not yet handshaken, client/server pairs over a chosen transport:

* ``memory``: in-memory, unbounded buffers;
* ``chopped``: the same, but every send goes out in pieces with a checkpoint in
  between (a cancellation there leaves half a record on the wire);
* ``rendezvous``: a send waits until the peer receives it (back-pressure);
* ``coalescing``: a receive returns everything sent so far, in one piece (trio's
  ``memory_stream_pair`` always does).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import trio
import trio.testing

from anyiotls import TLSStream
from anyiotls.trio import SSLStream

from .harness import Chopped, Coalescing, memory_pair


@dataclass
class Contexts:
    """Client and server contexts for one TLS version (and PHA, if asked)."""

    client: ssl.SSLContext
    server: ssl.SSLContext


@dataclass
class Pair:
    client: Any
    server: Any
    #: the innermost transports, to check that they were closed
    raw_client: Any
    raw_server: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def ours(self, side: str) -> tuple[Any, Any]:
        """(our stream, the peer's stream) for *side* ``"client"``/``"server"``."""
        if side == "client":
            return self.client, self.server
        return self.server, self.client

    def raw(self, side: str) -> Any:
        return self.raw_client if side == "client" else self.raw_server


class AnyIOFace:
    """``anyiotls.TLSStream`` on any AnyIO backend."""

    name = "anyio"
    broken: type[Exception] = anyio.BrokenResourceError
    closed: type[Exception] = anyio.ClosedResourceError
    #: what a peer may see when the other side misbehaves or vanishes
    peer_errors: tuple[type[BaseException], ...] = (
        anyio.BrokenResourceError,
        ssl.SSLError,
    )
    #: a failed or cancelled handshake closes the transport
    handshake_failure_closes_transport = True

    def pair(self, contexts: Contexts, transport: str, piece: int = 256) -> Pair:
        raw_c, raw_s = memory_pair(0 if transport == "rendezvous" else float("inf"))
        tc: Any = raw_c
        ts: Any = raw_s
        if transport == "chopped":
            tc, ts = Chopped(raw_c, piece), Chopped(raw_s, piece)
        elif transport == "coalescing":
            tc, ts = Coalescing(raw_c), Coalescing(raw_s)
        client = TLSStream(tc, hostname="localhost", ssl_context=contexts.client)
        server = TLSStream(ts, server_side=True, ssl_context=contexts.server)
        return Pair(client, server, raw_c, raw_s)

    async def handshake(self, stream: TLSStream) -> None:
        await stream.do_handshake()

    async def send(self, stream: TLSStream, data: bytes) -> None:
        await stream.send(data)

    async def receive(self, stream: TLSStream) -> bytes:
        """Some plaintext, or ``b""`` at close_notify."""
        try:
            return await stream.receive()
        except anyio.EndOfStream:
            return b""

    async def unwrap(self, stream: TLSStream) -> tuple[Any, bytes]:
        return await stream.unwrap()

    async def aclose(self, stream: TLSStream) -> None:
        await stream.aclose()

    async def force_close(self, stream: TLSStream) -> None:
        await anyio.aclose_forcefully(stream.transport_stream)

    async def verify(self, stream: TLSStream) -> dict[str, Any] | None:
        return await stream.verify_client_post_handshake()

    async def request(self, stream: TLSStream) -> None:
        await stream.request_client_certificate()

    async def transport_send(self, transport: Any, data: bytes) -> None:
        await transport.send(data)

    async def transport_receive(self, transport: Any) -> bytes:
        try:
            return bytes(await transport.receive())
        except anyio.EndOfStream:
            return b""

    async def assert_raw_closed(self, raw: Any) -> None:
        """The innermost transport was closed by us."""
        try:
            await raw.send(b"x")
        except anyio.ClosedResourceError:
            return
        raise AssertionError("the transport is still open")


class _TrioChopped(trio.abc.Stream):
    def __init__(self, inner: trio.abc.Stream, piece: int) -> None:
        self.inner = inner
        self.piece = piece

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for offset in range(0, len(view), self.piece):
            if offset:
                await trio.lowlevel.checkpoint()
            await self.inner.send_all(view[offset : offset + self.piece])

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


class TrioFace:
    """``anyiotls.trio.SSLStream`` (trio backend only)."""

    name = "trio"
    broken: type[Exception] = trio.BrokenResourceError
    closed: type[Exception] = trio.ClosedResourceError
    peer_errors: tuple[type[BaseException], ...] = (trio.BrokenResourceError,)
    handshake_failure_closes_transport = False

    def pair(self, contexts: Contexts, transport: str, piece: int = 256) -> Pair:
        if transport == "rendezvous":
            raw_c, raw_s = trio.testing.lockstep_stream_pair()
        else:
            raw_c, raw_s = trio.testing.memory_stream_pair()
        tc: Any = raw_c
        ts: Any = raw_s
        if transport == "chopped":
            tc, ts = _TrioChopped(raw_c, piece), _TrioChopped(raw_s, piece)
        client = SSLStream(tc, contexts.client, server_hostname="localhost")
        server = SSLStream(ts, contexts.server, server_side=True)
        return Pair(client, server, raw_c, raw_s)

    async def handshake(self, stream: SSLStream[Any]) -> None:
        await stream.do_handshake()

    async def send(self, stream: SSLStream[Any], data: bytes) -> None:
        await stream.send_all(data)

    async def receive(self, stream: SSLStream[Any]) -> bytes:
        return await stream.receive_some()

    async def unwrap(self, stream: SSLStream[Any]) -> tuple[Any, bytes]:
        return await stream.unwrap()

    async def aclose(self, stream: SSLStream[Any]) -> None:
        await stream.aclose()

    async def force_close(self, stream: SSLStream[Any]) -> None:
        transport = stream.transport_stream
        if transport is not None:
            await trio.aclose_forcefully(transport)

    async def verify(self, stream: SSLStream[Any]) -> dict[str, Any] | None:
        return await stream.verify_client_post_handshake()

    async def request(self, stream: SSLStream[Any]) -> None:
        await stream.request_client_certificate()

    async def transport_send(self, transport: Any, data: bytes) -> None:
        await transport.send_all(data)

    async def transport_receive(self, transport: Any) -> bytes:
        return bytes(await transport.receive_some())

    async def assert_raw_closed(self, raw: Any) -> None:
        try:
            await raw.send_all(b"x")
        except trio.ClosedResourceError:
            return
        raise AssertionError("the transport is still open")
