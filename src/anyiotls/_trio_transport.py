"""A TCP byte stream on a plain socket under Trio, as an AnyIO socket stream.

``trio.lowlevel.wait_readable``/``wait_writable`` on the standard socket: the same
system calls and checkpoints as ``trio.socket``'s ``recv``/``send`` (try first; wait
only on ``BlockingIOError``; a cancellation check before and a shielded yield after an
operation that did not wait), without its per-call async context manager.

Flow control is the kernel's: a receive reads at most what it is asked for, so
nothing is buffered here; a send waits while the kernel's send buffer is full.
"""

from __future__ import annotations

__all__ = ("TrioSocketStream", "adopt_socket")

import socket
from contextlib import suppress

import trio
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
)
from anyio.abc import SocketStream


class TrioSocketStream(SocketStream):
    """A TCP connection on a socket under Trio; behaves like the stream
    :func:`anyio.connect_tcp` returns there (same exceptions, same cancellation
    rules)."""

    def __init__(self, sock: socket.socket) -> None:
        """Use :func:`adopt_socket`."""
        self._sock = sock
        self._closed = False
        self._receiving = False
        self._sending = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, trio.ClosedResourceError) or self._closed:
            return ClosedResourceError()
        if isinstance(exc, OSError):
            return BrokenResourceError()
        return exc

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
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self._sock
            try:
                if self._closed:
                    raise ClosedResourceError
                try:
                    data = sock.recv(max_bytes)
                except BlockingIOError:
                    while True:
                        await trio.lowlevel.wait_readable(sock)
                        try:
                            data = sock.recv(max_bytes)
                        except BlockingIOError:
                            continue
                        break
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            except (OSError, trio.ClosedResourceError) as exc:
                raise self._error(exc) from exc
            if not data:
                raise EndOfStream
            return data
        finally:
            self._receiving = False

    async def send(self, item: bytes) -> None:
        """Send all of *item*, waiting while the kernel's send buffer is full.

        :raises ~anyio.BrokenResourceError: the connection failed
        :raises ~anyio.ClosedResourceError: this stream was closed
        :raises ~anyio.BusyResourceError: another task is sending
        """
        if self._sending:
            raise BusyResourceError("writing to")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            sock = self._sock
            waited = False
            try:
                if self._closed:
                    raise ClosedResourceError
                view = memoryview(item)
                while view:
                    try:
                        sent = sock.send(view)
                    except BlockingIOError:
                        waited = True
                        await trio.lowlevel.wait_writable(sock)
                        continue
                    view = view[sent:]
            except (OSError, trio.ClosedResourceError) as exc:
                raise self._error(exc) from exc
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Shut down the sending side; receiving goes on."""
        await trio.lowlevel.checkpoint()
        with suppress(OSError):  # not connected any more: as AnyIO's socket stream
            self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        """Close the socket (tasks waiting on it get ClosedResourceError)."""
        if not self._closed:
            self._closed = True
            if self._sock.fileno() >= 0:
                trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()


def adopt_socket(sock: socket.socket) -> TrioSocketStream:
    """Wrap a connected non-blocking TCP socket."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return TrioSocketStream(sock)
