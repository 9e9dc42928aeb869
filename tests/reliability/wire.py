"""A wire between two in-memory endpoints that can mangle what crosses it.

Both ends are AnyIO byte streams over memory object streams. What an end sends can
be changed on its way (a byte flipped at a given offset of the stream, items split
at chosen offsets or into single bytes): the peer then sees exactly that.

A mangled exchange can legitimately stall: a corrupted length field makes one side
wait for bytes the other will never send, while the other waits for an answer.
Real networks end that with a timeout; the wire ends it the moment it happens, with
no clock: an end about to wait while the other end already waits, and nothing was
sent to either since, *cuts the wire* (both directions see the end of the stream).
The endpoints must then finish, with documented errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

#: Changes one item of a direction: (offset of the item in the stream, item) ->
#: the pieces to deliver instead.
Mangler = Callable[[int, bytes], list[bytes]]


def unchanged(offset: int, item: bytes) -> list[bytes]:
    return [item]


def flip(position: int, mask: int) -> Mangler:
    """XOR the byte at *position* of the stream with *mask* (1..255)."""

    def mangle(offset: int, item: bytes) -> list[bytes]:
        if offset <= position < offset + len(item):
            data = bytearray(item)
            data[position - offset] ^= mask
            return [bytes(data)]
        return [item]

    return mangle


def bytewise(offset: int, item: bytes) -> list[bytes]:
    """Every byte on its own: every record split at every byte boundary."""
    return [item[i : i + 1] for i in range(len(item))]


def split_items_at(cut: int) -> Mangler:
    """Split every item longer than *cut* into ``item[:cut]`` and ``item[cut:]``."""

    def mangle(offset: int, item: bytes) -> list[bytes]:
        if 0 < cut < len(item):
            return [item[:cut], item[cut:]]
        return [item]

    return mangle


class WireEnd(ByteStream):
    def __init__(
        self,
        wire: Wire,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
        mangle: Mangler,
    ) -> None:
        self.wire = wire
        self.send_stream = send_stream
        self.receive_stream = receive_stream
        self.mangle = mangle
        self.sent = 0
        self.received = 0
        #: waiting in ``receive`` with nothing sent to this end since it started
        self.waiting = False
        self.peer: WireEnd

    async def send(self, item: bytes) -> None:
        try:
            for piece in self.mangle(self.sent, bytes(item)):
                await self.send_stream.send(piece)
                self.peer.waiting = False  # something is on its way to the peer
        except Exception as exc:
            self.wire.raised.append(exc)
            raise
        self.sent += len(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            data = self.receive_stream.receive_nowait()
        except anyio.WouldBlock:
            self.waiting = True
            if self.peer.waiting:  # and nothing was sent to it since: a stall
                self.wire.cut()
            try:
                data = await self.receive_stream.receive()
            except Exception as exc:
                self.wire.raised.append(exc)
                raise
            finally:
                self.waiting = False
        except Exception as exc:
            self.wire.raised.append(exc)
            raise
        self.received += len(data)
        return data

    async def send_eof(self) -> None:
        await self.send_stream.aclose()

    async def aclose(self) -> None:
        self.send_stream.close()
        self.receive_stream.close()


class Wire:
    """Two connected :class:`WireEnd` objects: ``wire.client``, ``wire.server``."""

    def __init__(
        self,
        client_to_server: Mangler = unchanged,
        server_to_client: Mangler = unchanged,
        max_buffer: float = math.inf,
    ) -> None:
        c2s_send, c2s_receive = anyio.create_memory_object_stream[bytes](max_buffer)
        s2c_send, s2c_receive = anyio.create_memory_object_stream[bytes](max_buffer)
        self.client = WireEnd(self, c2s_send, s2c_receive, client_to_server)
        self.server = WireEnd(self, s2c_send, c2s_receive, server_to_client)
        self.client.peer = self.server
        self.server.peer = self.client
        self.was_cut = False
        #: every exception a send or receive of either end raised, in order
        self.raised: list[BaseException] = []

    def cut(self) -> None:
        """End both directions: every receive sees the end of the stream."""
        self.was_cut = True
        self.client.send_stream.close()
        self.server.send_stream.close()

    def close(self) -> None:
        for end in (self.client, self.server):
            end.send_stream.close()
            end.receive_stream.close()
