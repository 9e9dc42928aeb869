"""Tools of the reliability tests: scale, figures, counted awaits, odd transports.

``ANYIOTLS_RELIABILITY=full`` selects the heavy form of the tests (``nox -s
reliability``); without it every test runs in a small, bounded form that fits the
default test run.
"""

from __future__ import annotations

import math
import os
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteStream, ObjectStream

T = TypeVar("T")

#: ``True`` for the heavy form of the reliability tests.
FULL = os.environ.get("ANYIOTLS_RELIABILITY", "").strip().lower() == "full"


def scale(default: T, full: T) -> T:
    """*full* when ``ANYIOTLS_RELIABILITY=full``, else *default*."""
    return full if FULL else default


# -- figures ---------------------------------------------------------------------------

#: What the tests measured in this run (connections, bytes, inputs, cancellation
#: points, ...), printed at the end of the run by ``conftest.py``.
FIGURES: Counter[str] = Counter()


def record(name: str, amount: int = 1) -> None:
    """Add *amount* to the figure *name*."""
    FIGURES[name] += amount


def figure_lines(figures: Counter[str]) -> list[str]:
    """The figures as a table: names left, amounts right, one column each."""
    width = max(map(len, figures), default=0)
    amounts = {name: f"{amount:,}" for name, amount in figures.items()}
    amount_width = max(map(len, amounts.values()), default=0)
    return [
        f"{name:<{width}}  {amounts[name]:>{amount_width}}" for name in sorted(figures)
    ]


def summary(
    figures: Counter[str], *, verbose: bool, full: bool = FULL
) -> tuple[str | None, list[str]]:
    """What the end of a test run shows of *figures*: (section title, lines).

    The table with ``-v`` or in the heavy form; otherwise one line that says how
    to see it, so that a default run stays quiet.
    """
    if not figures:
        return None, []
    if not (verbose or full):
        return None, [f"reliability: {len(figures)} figures recorded (-v shows them)"]
    form = "full" if full else "default (ANYIOTLS_RELIABILITY=full for the heavy form)"
    return f"reliability figures, {form}", figure_lines(figures)


# -- counting the suspensions of one operation ----------------------------------------


class _Stepper:
    """Awaits a coroutine, calling *on_yield* each time it suspends to the loop.

    It drives the coroutine by hand (``send``/``throw``), passing every value it
    yields up to the event loop unchanged and every value or exception the loop
    sends back down: the operation cannot tell the difference, on asyncio, uvloop
    and trio alike.
    """

    def __init__(self, awaitable: Awaitable[Any], on_yield: Callable[[], None]):
        self._awaitable = awaitable
        self._on_yield = on_yield

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._awaitable.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    item = inner.send(value)
                else:
                    item, error = inner.throw(error), None
            except StopIteration as stop:
                return stop.value
            value = None
            self._on_yield()
            try:
                value = yield item
            except GeneratorExit:
                inner.close()  # type: ignore[attr-defined]
                raise
            except BaseException as exc:
                error = exc


class YieldCounter:
    """Counts where an operation suspends, and cancels a scope at the *at*-th time.

    The method: the operation's coroutine is driven by :class:`_Stepper`, which sees
    every suspension (every scheduling point: checkpoints, lock waits, transport
    waits, including the shielded ones). At the *at*-th suspension it calls
    ``scope.cancel()`` while the task is still running; the event loop then
    delivers the cancellation at that very suspension if it is cancellable, else at
    the next cancellable one (a shielded checkpoint defers it; an operation that
    finishes first returns normally). Sweeping *at* = 1, 2, ... until the
    operation finishes before reaching *at* covers every point the operation has,
    however many there are on this backend and in this scenario.
    """

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.count = 0
        self.scope: anyio.CancelScope | None = None

    def _on_yield(self) -> None:
        self.count += 1
        if self.count == self.at and self.scope is not None:
            self.scope.cancel()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await *awaitable*, counting its suspensions."""
        result: T = await _Stepper(awaitable, self._on_yield)
        return result

    @property
    def reached(self) -> bool:
        """``True`` if the operation suspended at least *at* times."""
        return self.at is not None and self.count >= self.at


# -- transports ------------------------------------------------------------------------


class _Channel:
    """One direction of a :class:`MemoryTransport`: items in order, a capacity.

    Cancellation-safe both ways: a cancelled ``get`` takes nothing and a cancelled
    ``put`` that was still waiting for room puts nothing. (AnyIO's own memory
    object streams before 4.x could drop an item handed to a receiver that was
    cancelled at that moment, anyio issue #728; the driver's cancellation table
    rests on "the transport returns nothing to a cancelled receive".)
    """

    def __init__(self, capacity: float) -> None:
        self.items: deque[bytes] = deque()
        self.capacity = capacity
        self.sender_closed = False
        self.receiver_closed = False
        self.taken = 0
        # Made when a task waits (an Event needs a running event loop with AnyIO
        # 4.0, and close() may run without one, in a fixture's teardown).
        self._changed: anyio.Event | None = None

    def wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    async def put(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        while True:
            if self.sender_closed:
                raise anyio.ClosedResourceError
            if self.receiver_closed:
                raise anyio.BrokenResourceError
            if len(self.items) < max(self.capacity, 1):
                break
            await self._wait()
        self.items.append(item)
        self.wake()
        if self.capacity == 0:  # rendezvous: wait until it was taken
            number = self.taken + len(self.items)
            while self.taken < number and not self.receiver_closed:
                await self._wait()

    def get_nowait(self) -> bytes:
        if self.receiver_closed:
            raise anyio.ClosedResourceError
        if self.items:
            self.taken += 1
            item = self.items.popleft()
            self.wake()
            return item
        if self.sender_closed:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def get(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                await self._wait()


class MemoryTransport(ObjectStream[bytes]):
    """One end of a connected in-memory transport (each item is one "segment")."""

    def __init__(self, outgoing: _Channel, incoming: _Channel) -> None:
        self._outgoing = outgoing
        self._incoming = incoming

    async def send(self, item: bytes) -> None:
        await self._outgoing.put(item)

    async def receive(self) -> bytes:
        return await self._incoming.get()

    def receive_nowait(self) -> bytes:
        return self._incoming.get_nowait()

    async def send_eof(self) -> None:
        self._outgoing.sender_closed = True
        self._outgoing.wake()

    def close(self) -> None:
        for channel, side in ((self._outgoing, "sender"), (self._incoming, "receiver")):
            setattr(channel, f"{side}_closed", True)
            channel.wake()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()


_memory_transports: list[MemoryTransport] = []


def memory_pair(
    max_buffer: float = math.inf,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports; *max_buffer* items fit each way (0: a
    send waits until the peer took it). Closed by :func:`close_memory_pairs`."""
    a_to_b, b_to_a = _Channel(max_buffer), _Channel(max_buffer)
    pair = MemoryTransport(a_to_b, b_to_a), MemoryTransport(b_to_a, a_to_b)
    _memory_transports.extend(pair)
    return pair


def close_memory_pairs() -> None:
    """Close every memory transport :func:`memory_pair` made."""
    while _memory_transports:
        _memory_transports.pop().close()


class Chopped(ByteStream):
    """A transport that sends each item in pieces, with a checkpoint between them.

    A cancellation between two pieces leaves part of a record on the wire: the
    case the driver must treat as "broken".
    """

    def __init__(self, inner: Any, piece: int) -> None:
        self.inner = inner
        self.piece = piece

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        for offset in range(0, len(view), self.piece):
            if offset:
                await anyio.lowlevel.checkpoint()
            await self.inner.send(bytes(view[offset : offset + self.piece]))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data: bytes = await self.inner.receive()
        return data

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Coalescing(ByteStream):
    """A memory transport whose ``receive`` returns every item queued so far.

    As a socket does: what the peer sent in several writes arrives in one read, so
    one TLS step sees several records (a handshake message and data, say).
    """

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = bytearray(await self.inner.receive())
        while True:
            try:
                data += self.inner.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return bytes(data)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Metered(ByteStream):
    """A transport that counts the bytes it was given to send and handed back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0
        self.received = 0
        self.receives = 0

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)
        self.sent += len(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if isinstance(self.inner, ByteReceiveStream):
            data = await self.inner.receive(max_bytes)
        else:  # an object stream: one item, whatever its size
            data = await self.inner.receive()
        self.received += len(data)
        self.receives += 1
        return data

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes
