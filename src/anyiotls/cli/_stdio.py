"""Standard input as an async iterator of byte chunks, on any AnyIO backend.

There is no portable way to wait for standard input in an event loop (a regular
file or ``/dev/null`` cannot be polled, Windows consoles differ), so a *daemon*
thread does the blocking reads and hands each chunk over through a blocking portal.
Daemon, because a read that is still blocked when the command ends must not keep
the process alive (AnyIO's own worker threads are not daemons).
"""

from __future__ import annotations

__all__ = ("open_stdin", "silence_stdout", "to_crlf")

import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

#: Bytes asked for per read of standard input.
READ_SIZE = 65536


def _read_stdin(
    portal: BlockingPortal, send: MemoryObjectSendStream[bytes], fd: int
) -> None:
    while True:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:
            data = b""
        try:
            portal.call(send.send, data)
        except BaseException:  # the portal stopped: nobody wants more input
            return
        if not data:
            return


@asynccontextmanager
async def open_stdin(fd: int = 0) -> AsyncIterator[MemoryObjectReceiveStream[bytes]]:
    """A stream of the chunks that arrive on *fd*; ``b""`` marks its end."""
    send, receive = anyio.create_memory_object_stream[bytes](1)
    async with BlockingPortal() as portal, receive:
        thread = threading.Thread(
            target=_read_stdin,
            args=(portal, send, fd),
            name="anyiotls stdin reader",
            daemon=True,
        )
        thread.start()
        try:
            yield receive
        finally:
            await portal.stop(cancel_remaining=True)


def to_crlf(data: bytes, previous: bytes) -> bytes:
    r"""Turn bare ``\n`` into ``\r\n``; *previous* is the byte before *data*."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"\n") and previous == b"\r":
        out = out[1:]  # the CR of this line end came in the previous chunk
    return out


def silence_stdout() -> None:
    """Point standard output at the null device, after its reader went away.

    Without this, the interpreter's final flush of the buffered output meets the
    closed pipe again, prints "Exception ignored ... BrokenPipeError" and exits 120.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (embedded)
        pass
