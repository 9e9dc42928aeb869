"""One operation, cancelled at its 1st, 2nd, ... suspension: the cases.

Each ``*_case`` function builds a fresh connected pair, runs one operation of "our"
stream under :class:`~.harness.YieldCounter` with the cancellation requested at
suspension number *at*, and then checks that what is left is what
``docs/semantics.md`` (and the table at the top of ``src/anyiotls/_driver.py``)
promises:

* the operation completed: its result is right and the stream works;
* it was cancelled and the stream is usable: no byte lost, none duplicated, none
  of a cancelled ``send`` delivered;
* it was cancelled and the stream is broken: the face's ``BrokenResourceError``
  from then on, and the peer saw at most a prefix of what was sent.

Any other exception, in our task or the peer's, fails the test (undocumented), and
every case runs under ``fail_after`` (a hang fails it too). :func:`sweep` raises
*at* until the operation finishes before reaching it.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from .faces import AnyIOFace, Contexts, TrioFace
from .harness import YieldCounter, close_memory_pairs, record

Face = AnyIOFace | TrioFace

#: Upper bound for one case (a fresh pair, one cancelled operation, the checks).
CASE_TIMEOUT = 10
#: No operation here suspends this often; more means a loop that does not end.
MAX_POINTS = 500

CLIENT_IDENTITY = ("email", "client@example.org")


@dataclass
class Run:
    counter: YieldCounter
    completed: bool
    result: Any


async def counted(awaitable: Awaitable[Any], at: int) -> Run:
    """Run *awaitable*, requesting its cancellation at suspension *at*."""
    counter = YieldCounter(at)
    completed = False
    result = None
    with anyio.CancelScope() as scope:
        counter.scope = scope
        result = await counter.run(awaitable)
        completed = True
    if not completed:
        assert scope.cancelled_caught
        assert counter.reached, "cancelled before the cancellation was requested"
    return Run(counter, completed, result)


async def sweep(name: str, case: Callable[[int], Awaitable[Run]]) -> int:
    """Run *case* with the cancellation at suspension 1, 2, ... until the operation
    finishes before reaching it; return how many suspensions were covered."""
    at = 1
    while True:
        with anyio.fail_after(CASE_TIMEOUT):
            run = await case(at)
        close_memory_pairs()
        if not run.counter.reached:
            break
        at += 1
        assert at <= MAX_POINTS, f"{name}: more than {MAX_POINTS} suspensions"
    points = at - 1
    # Every async operation is a checkpoint: it suspends at least once.
    assert points >= 1, f"{name} never suspended"
    record("cancellation: cases run", at)
    record(f"cancellation points covered: {name.split('[')[0]}", points)
    return points


def outcome(name: str, kind: str) -> None:
    record(f"cancellation outcomes: {name} {kind}")


class Collector:
    """What a peer task received, and a way to wait for it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self._changed = anyio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, face: Face, stream: Any) -> None:
        """Receive until the end of the stream, or until it breaks."""
        try:
            while chunk := await face.receive(stream):
                self.data += chunk
                self._wake()
        except face.peer_errors:
            pass
        finally:
            self.ended = True
            self._wake()

    async def wait_for(self, size: int) -> None:
        while len(self.data) < size and not self.ended:
            await self._changed.wait()

    async def wait_ended(self) -> None:
        while not self.ended:
            await self._changed.wait()


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def receive_exactly(face: Face, stream: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await face.receive(stream)
        assert chunk, f"end of stream after {len(data)} of {size} bytes"
        data += chunk
    assert len(data) == size
    return bytes(data)


async def receive_until_broken(face: Face, stream: Any) -> bytes:
    """Receive until the face's BrokenResourceError (required), return the data."""
    data = bytearray()
    try:
        while chunk := await face.receive(stream):
            data += chunk
    except face.broken:
        return bytes(data)
    raise AssertionError("clean end of stream; expected a broken stream")


async def quietly(face: Face, operation: Awaitable[Any]) -> None:
    """Run a peer's operation that may fail because our side went away."""
    with suppress(face.peer_errors):
        await operation


# -- the cases -------------------------------------------------------------------------


async def handshake_case(
    face: Face, contexts: Contexts, transport: str, side: str, at: int
) -> Run:
    pair = face.pair(contexts, transport)
    ours, peer = pair.ours(side)
    name = f"handshake {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            while chunk := await face.receive(peer):
                await face.send(peer, chunk)

        tg.start_soon(quietly, face, peer_side())
        run = await counted(face.handshake(ours), at)
        if run.completed:
            await face.send(ours, b"ping")
            assert await receive_exactly(face, ours, 4) == b"ping"
            outcome(name, "completed")
        else:
            with pytest.raises(face.broken):
                await face.send(ours, b"x")
            with pytest.raises(face.broken):
                await face.receive(ours)
            if face.handshake_failure_closes_transport:
                await face.assert_raw_closed(pair.raw(side))
            outcome(name, "cancelled, broken")
        await face.force_close(ours)
    return run


async def send_case(
    face: Face,
    contexts: Contexts,
    transport: str,
    side: str,
    size: int,
    at: int,
) -> Run:
    piece = 256 if size < 4096 else 8192
    pair = face.pair(contexts, transport, piece)
    ours, peer = pair.ours(side)
    item = payload(size, at)
    marker = b"<marker after the cancelled send>"
    got = Collector()
    name = f"send {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            await got.run(face, peer)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        run = await counted(face.send(ours, item), at)
        if run.completed:
            expected = item + marker
            outcome(name, "completed")
        else:
            expected = marker
        try:
            await face.send(ours, marker)
        except face.broken:
            assert not run.completed
            expected = b""
            outcome(name, "cancelled, broken")
        else:
            await got.wait_for(len(expected))
            if not run.completed:
                outcome(name, "cancelled, usable")
        await face.force_close(ours)
    if expected:
        assert got.data == expected
    else:  # broken: the peer got at most a prefix of the item, never garbage
        assert item.startswith(got.data)
    return run


async def receive_case(
    face: Face,
    contexts: Contexts,
    transport: str,
    side: str,
    timing: str,
    at: int,
) -> Run:
    """*timing*: ``buffered`` (the data is there before the receive starts) or
    ``waiting`` (the receive waits; the peer sends in several steps)."""
    pair = face.pair(contexts, transport)
    ours, peer = pair.ours(side)
    messages = [payload(100, at), payload(20000, at + 1), payload(3000, at + 2)]
    sent = b"".join(messages)
    go = anyio.Event()
    all_sent = anyio.Event()
    name = f"receive {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            if timing == "waiting":
                await go.wait()
            for message in messages:
                await face.send(peer, message)
                await anyio.lowlevel.checkpoint()
            all_sent.set()
            await Collector().run(face, peer)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        if timing == "buffered":
            await all_sent.wait()
            await anyio.lowlevel.checkpoint()
        go.set()
        run = await counted(face.receive(ours), at)
        got = bytearray(run.result if run.completed else b"")
        # Usable in every case (nothing of ours had to be sent): nothing lost.
        while len(got) < len(sent):
            chunk = await face.receive(ours)
            assert chunk, "end of stream before all data arrived"
            got += chunk
        assert got == sent
        outcome(name, "completed" if run.completed else "cancelled, usable")
        await face.force_close(ours)
    return run


async def receive_answering_pha_case(
    face: Face, contexts: Contexts, transport: str, timing: str, at: int
) -> Run:
    """Our client's receive answers the server's certificate request on its way.

    With *timing* ``buffered`` over a transport that delivers both at once, the
    request and the data after it are decrypted by one step, before the answer is
    sent: if sending the answer is cancelled, that data must still come out of the
    next receive ("data decrypted before is still returned by the next
    ``receive()``", docs/semantics.md).
    """
    pair = face.pair(contexts, transport)
    ours, peer = pair.client, pair.server
    before, after = payload(5000, at), payload(700, at + 1)
    verified: list[Any] = []
    both_sent = anyio.Event()
    name = f"receive {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            await face.request(peer)  # the CertificateRequest leaves first
            await face.send(peer, before)
            both_sent.set()
            verified.append(await face.verify(peer))
            await face.send(peer, after)
            await Collector().run(face, peer)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        if timing == "buffered":
            await both_sent.wait()
        run = await counted(face.receive(ours), at)
        got = bytearray(run.result if run.completed else b"")
        try:
            while len(got) < len(before + after):
                chunk = await face.receive(ours)
                assert chunk, "end of stream before all data arrived"
                got += chunk
        except face.broken:
            # Cancelled while sending the answer: data decrypted before came first.
            assert not run.completed
            if timing == "buffered" and transport != "chopped":
                assert got == before, "data decrypted before the break was lost"
            else:
                assert (before + after).startswith(got)
            outcome(name, "cancelled, broken")
        else:
            assert got == before + after
            assert verified
            assert CLIENT_IDENTITY in verified[0]["subjectAltName"]
            outcome(name, "completed" if run.completed else "cancelled, usable")
        await face.force_close(ours)
    return run


AFTER_TLS = b"plaintext after the closing handshake"


async def unwrap_case(
    face: Face, contexts: Contexts, transport: str, side: str, at: int
) -> Run:
    pair = face.pair(contexts, transport)
    ours, peer = pair.ours(side)
    name = f"unwrap {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            while await face.receive(peer):
                pass
            plain, _ = await face.unwrap(peer)
            await face.transport_send(plain, AFTER_TLS)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        run = await counted(face.unwrap(ours), at)
        result = run.result
        if not run.completed:
            try:  # "cancelled while waiting for the peer: may be called again"
                result = await face.unwrap(ours)
            except face.broken:
                outcome(name, "cancelled, broken")
                await face.force_close(ours)
            else:
                outcome(name, "cancelled, unwrap again completed")
        else:
            outcome(name, "completed")
        if result is not None:
            plain, leftover = result
            data = bytearray(leftover)
            while len(data) < len(AFTER_TLS):
                chunk = await face.transport_receive(plain)
                assert chunk, "the transport ended early"
                data += chunk
            assert data == AFTER_TLS
            with pytest.raises(face.closed):
                await face.send(ours, b"x")
    return run


async def aclose_case(
    face: Face, contexts: Contexts, transport: str, side: str, at: int
) -> Run:
    pair = face.pair(contexts, transport)
    ours, peer = pair.ours(side)
    name = f"aclose {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            await Collector().run(face, peer)
            await face.aclose(peer)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        run = await counted(face.aclose(ours), at)
        # Either way the stream is closed and so is the transport.
        with pytest.raises(face.closed):
            await face.send(ours, b"x")
        await face.assert_raw_closed(pair.raw(side))
        outcome(name, "completed" if run.completed else "cancelled, closed")
    return run


async def verify_case(face: Face, contexts: Contexts, transport: str, at: int) -> Run:
    pair = face.pair(contexts, transport)
    ours, peer = pair.server, pair.client
    before, after = payload(3000, at), payload(500, at + 1)
    go = anyio.Event()
    name = f"verify_client_post_handshake {face.name}"
    async with anyio.create_task_group() as tg:

        async def peer_side() -> None:
            await face.handshake(peer)
            await face.send(peer, before)
            tg.start_soon(Collector().run, face, peer)  # answers the request
            await go.wait()
            await face.send(peer, after)

        tg.start_soon(quietly, face, peer_side())
        await face.handshake(ours)
        run = await counted(face.verify(ours), at)
        cert = run.result
        if not run.completed:
            try:
                cert = await face.verify(ours)
            except face.broken:
                got = await receive_until_broken(face, ours)
                assert before.startswith(got)
                outcome(name, "cancelled, broken")
                await face.force_close(ours)
                go.set()
                return run
            outcome(name, "cancelled, usable")
        else:
            outcome(name, "completed")
        assert cert is not None
        assert CLIENT_IDENTITY in cert["subjectAltName"]
        go.set()
        assert await receive_exactly(face, ours, len(before + after)) == before + after
        await face.force_close(ours)
    return run
