"""A TCP byte stream straight on an asyncio loop's transport (``BufferedProtocol``).

Any loop with ``create_connection(sock=...)``, ``connect_accepted_socket`` and
``BufferedProtocol`` support works (the standard loops, uvloop). The stream is an
:class:`anyio.abc.SocketStream`, so the TLS driver wraps it like any AnyIO stream and
:class:`~anyio.abc.SocketAttribute` works on it.

What it saves over AnyIO's asyncio socket stream, per receive: AnyIO resumes reading
before each wait and pauses it after (two ``epoll_ctl`` calls per receive) and goes
through an ``asyncio.Event``; here reading stays on until :data:`READ_BUFFER_LIMIT`
bytes wait unread, and a receive waits on one future.

Flow control, both ways:

- reading pauses while at least :data:`READ_BUFFER_LIMIT` bytes are buffered unread
  (so at most that plus one socket read, :data:`READ_CHUNK` bytes, are held) and
  resumes when a receive takes the buffer below it;
- a send returns once the transport holds at most :data:`WRITE_HIGH_WATER` bytes it
  could not hand to the kernel yet; above that it waits until the transport drained
  to its low-water mark (``asyncio``'s drain rule).

Memory per idle connection: the socket reads go into one buffer per thread
(``get_buffer`` and ``buffer_updated`` run back to back in the loop's thread), so an
idle connection holds no read buffer at all.

Cancellation is AnyIO's: a cancelled receive takes nothing (data is taken from the
buffer only after the wait, synchronously); a send cancelled before it wrote sends
nothing; once written it is not cancellable, except while it waits for the
transport to drain (then the bytes are in the transport and leave).
"""

from __future__ import annotations

__all__ = ("AsyncioSocketStream", "adopt_socket")

import asyncio
import socket
import threading
from collections import deque
from contextlib import suppress
from typing import cast

from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
)
from anyio.abc import SocketStream

from ._driver import _backend_checkpoints

#: Reading pauses while this many bytes (or more) wait unread in the stream.
READ_BUFFER_LIMIT = 262144

#: The most one socket read takes (the per-thread read buffer's size).
READ_CHUNK = 262144

#: A send waits while the transport holds more than this many unsent bytes
#: (asyncio's default high-water mark); it resumes at a quarter of it.
WRITE_HIGH_WATER = 65536

_per_thread = threading.local()


def _read_buffer() -> memoryview:
    """The calling thread's read buffer (one asyncio loop runs per thread)."""
    try:
        buffer: memoryview = _per_thread.buffer
    except AttributeError:
        buffer = _per_thread.buffer = memoryview(bytearray(READ_CHUNK))
    return buffer


class _Protocol(asyncio.BufferedProtocol):
    """Collects what the loop reads; wakes the stream's waiting receive or send."""

    __slots__ = (
        "_buffer",
        "buffered",
        "chunks",
        "eof",
        "exception",
        "lost",
        "read_waiter",
        "reading_paused",
        "transport",
        "write_waiter",
        "writing_paused",
    )

    def __init__(self) -> None:
        self._buffer = _read_buffer()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.exception: BaseException | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport instances)
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.chunks.append(bytes(self._buffer[:nbytes]))
        self.buffered += nbytes
        if self.buffered >= READ_BUFFER_LIMIT and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        waiter = self.read_waiter  # (inline: one call less per socket read)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the transport open: we may still send (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None and self.exception is None:
            self.exception = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AsyncioSocketStream(SocketStream):
    """A TCP connection on an asyncio transport, as an AnyIO socket stream.

    Made by :func:`anyiotls.connect_tcp` (``tls=False``) and the listeners of
    :func:`anyiotls.create_tcp_listener`; behaves like the stream
    :func:`anyio.connect_tcp` returns (same exceptions, same cancellation rules).
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: _Protocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Use :func:`adopt_socket`."""
        self._transport = transport
        self._protocol = protocol
        self._loop = loop
        # AnyIO's asyncio checkpoints, looked up once (see _driver._backend_checkpoints)
        self._cp = _backend_checkpoints()
        self._closed = False
        self._receiving = False
        self._sending = False

    @property
    def _raw_socket(self) -> socket.socket:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Receive up to *max_bytes* bytes.

        :raises ~anyio.EndOfStream: the peer closed its side
        :raises ~anyio.BrokenResourceError: the connection failed
        :raises ~anyio.ClosedResourceError: this stream was closed
        :raises ~anyio.BusyResourceError: another task is receiving
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._receiving:
            raise BusyResourceError("reading from")
        self._receiving = True
        protocol = self._protocol
        try:
            if protocol.chunks or protocol.eof or protocol.lost or self._closed:
                await asyncio.sleep(0)  # AnyIO's checkpoint on asyncio
            else:
                waiter = protocol.read_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    protocol.read_waiter = None
            # Taken only now, after the last await: a cancelled receive takes nothing.
            chunks = protocol.chunks
            if self._closed:
                raise ClosedResourceError
            if not chunks:
                if protocol.exception is not None:
                    raise BrokenResourceError from protocol.exception
                raise EndOfStream
            chunk = chunks[0]
            if len(chunk) > max_bytes:
                chunks[0] = chunk[max_bytes:]
                chunk = chunk[:max_bytes]
            elif len(chunks) == 1 or protocol.buffered <= max_bytes:
                # One chunk: no copy. Or all of them fit: one join, and one
                # receive instead of one per socket read (reading stays on, so
                # a bulk transfer arrives in many reads).
                chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
            else:
                chunks.popleft()
            protocol.buffered -= len(chunk)
            if protocol.reading_paused and protocol.buffered < READ_BUFFER_LIMIT:
                protocol.reading_paused = False
                if not protocol.lost:
                    self._transport.resume_reading()
            return chunk
        finally:
            self._receiving = False

    async def send(self, item: bytes) -> None:
        """Send *item*; wait while the transport holds too much unsent data.

        :raises ~anyio.BrokenResourceError: the connection failed
        :raises ~anyio.ClosedResourceError: this stream was closed
        :raises ~anyio.BusyResourceError: another task is sending
        """
        if self._sending:
            raise BusyResourceError("writing to")
        self._sending = True
        protocol = self._protocol
        try:
            cp = self._cp
            await cp.checkpoint_if_cancelled()
            if protocol.writing_paused and not protocol.lost:
                await self._wait_drained()
            self._check_writable()
            self._transport.write(item)
            if protocol.writing_paused:
                await self._wait_drained()
                self._check_writable()
            else:
                await cp.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    def _check_writable(self) -> None:
        if self._closed:
            raise ClosedResourceError
        protocol = self._protocol
        if protocol.exception is not None:
            raise BrokenResourceError from protocol.exception
        if protocol.lost or self._transport.is_closing():
            raise BrokenResourceError

    async def _wait_drained(self) -> None:
        protocol = self._protocol
        waiter = protocol.write_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            protocol.write_waiter = None

    async def send_eof(self) -> None:
        """Shut down the sending side once buffered data left; receiving goes on."""
        # Already closed or broken: nothing to do, as for AnyIO's socket stream.
        with suppress(OSError, RuntimeError):
            self._transport.write_eof()
        await asyncio.sleep(0)

    async def aclose(self) -> None:
        """Close the connection; data already sent still leaves (as with a socket)."""
        if not self._closed:
            self._closed = True
            self._transport.close()
            self._protocol._wake_reader()
            self._protocol._wake_writer()
        await asyncio.sleep(0)


async def adopt_socket(sock: socket.socket, *, accepted: bool) -> AsyncioSocketStream:
    """Hand a connected non-blocking TCP socket to the running loop.

    On failure the socket is closed.
    """
    loop = asyncio.get_running_loop()
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if accepted:
            transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
        else:
            transport, protocol = await loop.create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return AsyncioSocketStream(transport, protocol, loop)
