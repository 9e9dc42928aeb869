"""Load and soak: many concurrent TLS connections on 127.0.0.1, several rounds.

Each round starts a fresh ``TLSListener`` (or, for the Trio face, ``SSLListener``)
on 127.0.0.1, opens CONNECTIONS client connections at once, and every client
echoes random-sized frames (length, SHA-256, payload) until it has sent MESSAGES
frames or the round's soak time is over; the server checks every digest, the
client compares every echo with what it sent. Then everything is closed and the
process must be back where it started: the same open file descriptors, the same
running tasks, no TLS stream left alive, and traced memory flat from round to
round.

Default form: 50 connections, 2 rounds. ``ANYIOTLS_RELIABILITY=full``: 1,000
connections (the soft ``RLIMIT_NOFILE`` is raised for it), 3 rounds, a longer
soak. Loopback only; everything is bounded and stops by itself.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import resource
import struct
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import trio
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import TLSListener, TLSStream
from anyiotls.trio import SSLStream

from .faces import Contexts
from .harness import record, scale

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONNECTIONS = scale(50, 1000)
ROUNDS = scale(2, 3)
MESSAGES = scale(6, 400)  # per connection and round, at most
SOAK_SECONDS = scale(0.5, 5.0)  # per round, at most
MAX_FRAME = scale(8192, 32768)
#: Upper bound for a whole round (connect, soak, close): generous, never reached.
ROUND_TIMEOUT = scale(60, 180)
#: Traced memory may not grow from the first round to the last by more than this.
MEMORY_SLACK = 1_000_000

HEADER = struct.Struct("!I32s")


class Corrupt(AssertionError):
    pass


@dataclass
class Totals:
    bytes: int = 0
    frames: int = 0


# -- the process' resources ---------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def enough_file_descriptors(connections: int) -> Iterator[int]:
    """Raise the soft RLIMIT_NOFILE for *connections* (two sockets each); yields
    how many connections fit (fewer only where the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + 256
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield min(connections, (max(wanted, soft) - 256) // 2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def settled(check: Callable[[], bool]) -> None:
    """Wait (bounded) until *check* holds: closed sockets are released by the event
    loop a moment after ``aclose`` returns."""
    with anyio.fail_after(10):
        while not check():
            gc.collect()
            await anyio.sleep(0.01)


# -- frames ----------------------------------------------------------------------------


def frame(rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.randint(1, MAX_FRAME))
    return HEADER.pack(len(payload), hashlib.sha256(payload).digest()) + payload


def check_frame(header: bytes, payload: bytes) -> None:
    length, digest = HEADER.unpack(header)
    if len(payload) != length or hashlib.sha256(payload).digest() != digest:
        raise Corrupt("a frame arrived corrupted")


# -- the two faces' servers ------------------------------------------------------------


async def anyio_echo(stream: TLSStream, totals: Totals) -> None:
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        while True:
            try:
                header = await reader.receive_exactly(HEADER.size)
            except anyio.IncompleteRead:
                return  # the client closed (close_notify) between frames
            payload = await reader.receive_exactly(HEADER.unpack(header)[0])
            check_frame(header, payload)
            await stream.send(header + payload)
            totals.bytes += len(header) + len(payload)
            totals.frames += 1


@asynccontextmanager
async def anyio_server(
    contexts: Contexts, totals: Totals, streams: weakref.WeakSet[Any]
) -> AsyncIterator[int]:
    class Listener(TLSListener):
        @staticmethod
        async def handle_handshake_error(exc: BaseException, stream: Any) -> None:
            await anyio.aclose_forcefully(stream)
            raise AssertionError("a handshake failed under load") from exc

    async def handler(stream: TLSStream) -> None:
        streams.add(stream)
        await anyio_echo(stream, totals)

    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = Listener(inner, contexts.server, handshake_timeout=ROUND_TIMEOUT)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield listener.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def trio_face_server(
    contexts: Contexts, totals: Totals, streams: weakref.WeakSet[Any]
) -> AsyncIterator[int]:
    """The Trio face over native trio sockets (only on the trio backend)."""

    async def handler(transport: trio.SocketStream) -> None:
        stream = SSLStream(transport, contexts.server, server_side=True)
        streams.add(stream)
        async with stream:
            buffer = bytearray()
            while True:
                while (
                    len(buffer) < HEADER.size
                    or len(buffer) < HEADER.size + (HEADER.unpack_from(buffer)[0])
                ):
                    data = await stream.receive_some()
                    if not data:
                        assert not buffer, "the client closed in the middle of a frame"
                        return
                    buffer += data
                size = HEADER.size + HEADER.unpack_from(buffer)[0]
                check_frame(
                    bytes(buffer[: HEADER.size]), bytes(buffer[HEADER.size : size])
                )
                await stream.send_all(buffer[:size])
                del buffer[:size]
                totals.bytes += size
                totals.frames += 1

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        yield port
        nursery.cancel_scope.cancel()


# -- a round ------------------------------------------------------------------------


async def client(
    port: int,
    contexts: Contexts,
    seed: int,
    stop: anyio.Event,
    totals: Totals,
    streams: weakref.WeakSet[Any],
) -> None:
    rng = random.Random(seed)
    transport = await anyio.connect_tcp("127.0.0.1", port)
    stream = await TLSStream.wrap(
        transport, hostname="localhost", ssl_context=contexts.client
    )
    streams.add(stream)
    async with stream:
        reader = BufferedByteReceiveStream(stream)
        for number in range(MESSAGES):
            # The soak's end stops a client only after its first echo: on a loaded
            # machine the timer may fire before the last handshakes are done.
            if number and stop.is_set():
                break
            message = frame(rng)
            await stream.send(message)
            echoed = await reader.receive_exactly(len(message))
            if echoed != message:
                raise Corrupt("an echo came back different")
            totals.bytes += len(message)
            totals.frames += 1


async def one_round(
    server: Callable[..., Any],
    contexts: Contexts,
    connections: int,
    round_number: int,
) -> tuple[Totals, Totals]:
    sent, echoed = Totals(), Totals()
    streams: weakref.WeakSet[Any] = weakref.WeakSet()
    stop = anyio.Event()
    with anyio.fail_after(ROUND_TIMEOUT):
        async with server(contexts, echoed, streams) as port:
            async with anyio.create_task_group() as tg:

                async def soak_timer() -> None:
                    await anyio.sleep(SOAK_SECONDS)
                    stop.set()

                tg.start_soon(soak_timer)
                async with anyio.create_task_group() as clients:
                    for number in range(connections):
                        seed = round_number * 1_000_003 + number
                        clients.start_soon(
                            client, port, contexts, seed, stop, sent, streams
                        )
                tg.cancel_scope.cancel()
            # The server has echoed everything; its handlers see the closes.
            await settled(lambda: echoed.frames == sent.frames)
    await settled(lambda: not streams)  # every TLS stream can be freed
    assert echoed.bytes == sent.bytes
    return sent, echoed


async def load_and_soak(
    server: Callable[..., Any], contexts: Contexts, name: str
) -> None:
    with enough_file_descriptors(CONNECTIONS) as connections:
        # A warm-up round first: event loops create some resources lazily, once
        # (uvloop opens /dev/null on its first connection).
        await one_round(server, contexts, 2, -1)
        gc.collect()
        fds = open_fds()
        tasks = len(anyio.get_running_tasks())
        tracemalloc.start()
        try:
            memory: list[int] = []
            for round_number in range(ROUNDS):
                sent, _ = await one_round(server, contexts, connections, round_number)
                assert sent.frames >= connections  # every connection echoed
                await settled(lambda: open_fds() == fds)
                await settled(lambda: len(anyio.get_running_tasks()) == tasks)
                gc.collect()
                memory.append(tracemalloc.get_traced_memory()[0])
                record(f"load ({name}): connections", connections)
                record(f"load ({name}): rounds")
                record(f"load ({name}): frames echoed", sent.frames)
                record(f"load ({name}): bytes moved (both ways)", 2 * sent.bytes)
        finally:
            tracemalloc.stop()
    # Flat from the first round to the last: nothing accumulates per connection.
    growth = memory[-1] - memory[0]
    record(f"load ({name}): traced memory growth, first to last round", max(growth, 0))
    assert growth < MEMORY_SLACK, memory


def backend_id(anyio_backend: Any) -> str:
    if isinstance(anyio_backend, tuple):
        name, options = anyio_backend
        return f"{name}+uvloop" if options.get("use_uvloop") else str(name)
    return str(anyio_backend)


async def test_many_connections_echo_without_loss_or_leak(
    make_contexts: Callable[[str, bool], Contexts], anyio_backend: Any
) -> None:
    await load_and_soak(
        anyio_server, make_contexts("1.3", False), backend_id(anyio_backend)
    )


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_many_connections_to_the_trio_face(
    make_contexts: Callable[[str, bool], Contexts],
) -> None:
    await load_and_soak(trio_face_server, make_contexts("1.3", False), "trio face")
