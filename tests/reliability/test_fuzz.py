"""Fuzzed input from the peer: only documented exceptions, no hangs, bounded memory.

Hypothesis generates the input; every example runs in a fresh event loop (one of
asyncio, asyncio+uvloop, trio) under ``fail_after``. Inputs:

* random bytes (raw, or behind a plausible record header) instead of the peer's
  first flight, and after a real handshake, then the end of the transport;
* a real session between our client and our server, with one byte flipped at a
  random position of either direction (``wire.flip``);
* a real session with every record split at every byte boundary, and with every
  item split in two at each offset;
* record headers with absurd lengths followed by an endless flood.

Documented on the AnyIO face: a handshake raises :exc:`ssl.SSLError` or
:exc:`anyio.BrokenResourceError` and closes the transport; ``receive``/``send``
raise ``BrokenResourceError`` (``__cause__``: the ``ssl.SSLError`` or the transport's
error) or ``EndOfStream``, except that the transport's own exception leaves the call
in which the transport raised it unchanged. On the Trio face:
:exc:`trio.BrokenResourceError`.
Whenever both sides report success, the bytes they exchanged must be exactly the
bytes sent: a flipped byte may never come out as plaintext.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import ssl
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiotls import TLSStream
from anyiotls.trio import AnyIOStreamAsTrio, SSLStream

from .harness import FULL, Metered, memory_pair, record, scale
from .wire import Mangler, Wire, bytewise, flip, split_items_at

pytestmark = pytest.mark.slow

#: Upper bound for one example; none gets near it.
EXAMPLE_TIMEOUT = 10

# Every example runs on each of these (anyio's backend name and options).
_UVLOOP = importlib.util.find_spec("uvloop") is not None or bool(os.environ.get("CI"))
BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="asyncio+uvloop",
        marks=pytest.mark.skipif(not _UVLOOP, reason="uvloop is not installed"),
    ),
    pytest.param(("trio", {}), id="trio"),
]


def fuzz_settings(default: int, full: int) -> Any:
    """Hypothesis settings: *default* examples (derandomized, so CI runs the same
    inputs every time), or *full* random ones with ``ANYIOTLS_RELIABILITY=full``."""
    return settings(
        max_examples=scale(default, full),
        derandomize=not FULL,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def run(backend: tuple[str, dict[str, Any]], main: Callable[[], Awaitable[Any]]) -> Any:
    name, options = backend

    async def bounded() -> Any:
        with anyio.fail_after(EXAMPLE_TIMEOUT):
            return await main()

    return anyio.run(bounded, backend=name, backend_options=options)


# -- contexts (module scope: hypothesis reruns a test body many times) ---------------

_CA = trustme.CA()
_SERVER_CERT = _CA.issue_cert("localhost", "127.0.0.1")


@functools.cache  # a context is reusable, and making one costs ~20 ms (CA store)
def client_context(version: str = "1.3") -> ssl.SSLContext:
    context = ssl.create_default_context()
    _CA.configure_trust(context)
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@functools.cache
def server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _SERVER_CERT.configure_cert(context)
    return context


#: What may break a stream here: a TLS error (an EOF without close_notify is
#: ``ssl.SSLError``), or the memory transport refusing a send after the wire
#: was cut or the peer closed.
CAUSES = (ssl.SSLError, anyio.ClosedResourceError, anyio.BrokenResourceError)


def is_transports_own(exc: BaseException, wire: Wire | None) -> bool:
    """Whether *exc* is the very exception *wire*'s memory transport raised: it
    leaves the call in which the transport raised it unchanged (as with
    ``anyio.streams.tls``), so it has no ``__cause__`` of ours."""
    return (
        wire is not None
        and isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError))
        and any(exc is raised for raised in wire.raised)
    )


def check_handshake_error(exc: BaseException, wire: Wire | None = None) -> None:
    """What the AnyIO face's handshake may raise."""
    if is_transports_own(exc, wire):
        return
    assert isinstance(exc, (ssl.SSLError, anyio.BrokenResourceError)), repr(exc)
    if isinstance(exc, anyio.BrokenResourceError):
        assert isinstance(exc.__cause__, CAUSES), repr(exc.__cause__)


def check_stream_error(exc: BaseException, wire: Wire | None = None) -> None:
    """What the AnyIO face's send/receive may raise for a bad peer."""
    if is_transports_own(exc, wire):
        return
    assert isinstance(exc, (anyio.BrokenResourceError, anyio.EndOfStream)), repr(exc)
    if isinstance(exc, anyio.BrokenResourceError):
        assert isinstance(exc.__cause__, CAUSES), repr(exc.__cause__)


# -- strategies ------------------------------------------------------------------------


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """A record header that looks plausible (so parsing gets past the first byte),
    a random body, maybe more such records."""
    records = []
    for _ in range(draw(st.integers(1, 4))):
        content_type = draw(st.sampled_from([20, 21, 22, 23, 24, 0, 255]))
        version = draw(
            st.sampled_from([b"\x03\x01", b"\x03\x03", b"\x03\x04", b"\xfe\xfd"])
        )
        body = draw(st.binary(max_size=600))
        length = draw(
            st.one_of(st.just(len(body)), st.integers(0, 0xFFFF)),
        )
        records.append(
            bytes([content_type]) + version + length.to_bytes(2, "big") + body
        )
    return b"".join(records)


garbage = st.one_of(st.binary(min_size=1, max_size=3000), record_like())


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def failure_of(operation: Awaitable[Any]) -> Exception:
    """The exception *operation* raises (it must raise one)."""
    try:
        await operation
    except Exception as exc:
        return exc
    raise AssertionError("no error")


async def receive_forever(stream: TLSStream) -> None:
    while True:
        await stream.receive()


# -- random bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("backend", BACKENDS)
@fuzz_settings(40, 1000)
@given(data=garbage, cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_random_bytes_instead_of_a_handshake(
    backend: tuple[str, dict[str, Any]], side: str, data: bytes, cuts: list[int]
) -> None:
    async def main() -> None:
        ours_transport, peer_transport = memory_pair()
        for chunk in chunks(data, cuts):
            await peer_transport.send(chunk)
        await peer_transport.send_eof()  # and then the end
        if side == "client":
            stream = TLSStream(
                ours_transport, hostname="localhost", ssl_context=client_context()
            )
        else:
            stream = TLSStream(
                ours_transport, server_side=True, ssl_context=server_context()
            )
        check_handshake_error(await failure_of(stream.do_handshake()))
        with pytest.raises(anyio.ClosedResourceError):  # the transport was closed
            await ours_transport.send(b"x")

    run(backend, main)
    record("fuzz: random inputs instead of a handshake")
    record("fuzz: random bytes fed", len(data))


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("backend", BACKENDS)
@fuzz_settings(30, 1000)
@given(data=garbage, cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_random_bytes_after_the_handshake(
    backend: tuple[str, dict[str, Any]], side: str, data: bytes, cuts: list[int]
) -> None:
    async def main() -> None:
        client_t, server_t = memory_pair()
        client = TLSStream(client_t, hostname="localhost", ssl_context=client_context())
        server = TLSStream(server_t, server_side=True, ssl_context=server_context())
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.do_handshake)
            await client.do_handshake()
        ours, peer_transport = (
            (client, server_t) if side == "client" else (server, client_t)
        )
        await peer_transport.send(b"")  # an empty item must be harmless too
        for chunk in chunks(data, cuts):
            await peer_transport.send(chunk)
        await peer_transport.send_eof()
        error = await failure_of(receive_forever(ours))
        check_stream_error(error)
        # Broken for good, with the same error every time.
        if isinstance(error, anyio.BrokenResourceError):
            with pytest.raises(anyio.BrokenResourceError) as again:
                await ours.receive()
            assert again.value.__cause__ is error.__cause__
            with pytest.raises(anyio.BrokenResourceError):
                await ours.send(b"x")
        await ours.aclose()  # never raises

    run(backend, main)
    record("fuzz: random inputs after a handshake")
    record("fuzz: random bytes fed", len(data))


@pytest.mark.parametrize("side", ["client", "server"])
@fuzz_settings(30, 1000)
@given(data=garbage, cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_random_bytes_on_the_trio_face(side: str, data: bytes, cuts: list[int]) -> None:
    async def main() -> None:
        ours_transport, peer_transport = memory_pair()
        for chunk in chunks(data, cuts):
            await peer_transport.send(chunk)
        await peer_transport.send_eof()
        transport = AnyIOStreamAsTrio(ours_transport)
        if side == "client":
            stream = SSLStream(transport, client_context(), server_hostname="localhost")
        else:
            stream = SSLStream(transport, server_context(), server_side=True)
        with pytest.raises(trio.BrokenResourceError) as info:
            await stream.do_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLError), info.value.__cause__
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        await stream.aclose()

    run(("trio", {}), main)
    record("fuzz: random inputs instead of a handshake")
    record("fuzz: random bytes fed", len(data))


# -- a real session, mangled on the wire ---------------------------------------------

MESSAGES = [b"x", os.urandom(1000), os.urandom(5000)]


async def session(
    wire: Wire, version: str = "1.3", messages: list[bytes] = MESSAGES
) -> dict[str, Any]:
    """Client sends *messages*, the server echoes them, both close: the outcome."""
    outcome: dict[str, Any] = {}

    async def client_side() -> None:
        try:
            client = await TLSStream.wrap(
                wire.client, hostname="localhost", ssl_context=client_context(version)
            )
        except BaseException as exc:
            check_handshake_error(exc, wire)
            outcome["client"] = exc
            return
        try:
            echoed = []
            for message in messages:
                await client.send(message)
                data = bytearray()
                while len(data) < len(message):
                    data += await client.receive()
                echoed.append(bytes(data))
            outcome["echoed"] = echoed
            outcome["client"] = "ok"
        except Exception as exc:
            check_stream_error(exc, wire)
            outcome["client"] = exc
        finally:
            await client.aclose()  # never raises

    async def server_side() -> None:
        try:
            server = await TLSStream.wrap(
                wire.server, server_side=True, ssl_context=server_context()
            )
        except BaseException as exc:
            check_handshake_error(exc, wire)
            outcome["server"] = exc
            return
        try:
            while True:
                await server.send(await server.receive())
        except anyio.EndOfStream:
            outcome["server"] = "ok"
        except Exception as exc:
            check_stream_error(exc, wire)
            outcome["server"] = exc
        finally:
            await server.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server_side)
        tg.start_soon(client_side)
    wire.close()
    if outcome["client"] == "ok":
        # Whatever was flipped, no altered byte came out as plaintext.
        assert outcome["echoed"] == messages
    return outcome


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("backend", BACKENDS)
@fuzz_settings(60, 2000)
@given(
    direction=st.sampled_from(["client", "server"]),
    position=st.integers(0, 3500),
    mask=st.integers(1, 255),
)
def test_one_flipped_byte_in_a_real_session(
    backend: tuple[str, dict[str, Any]],
    version: str,
    direction: str,
    position: int,
    mask: int,
) -> None:
    mangle = flip(position, mask)
    wire = (
        Wire(client_to_server=mangle)
        if direction == "client"
        else Wire(server_to_client=mangle)
    )
    outcome = run(backend, lambda: session(wire, version))
    sent = wire.client.sent if direction == "client" else wire.server.sent
    if position < sent:
        record("fuzz: sessions with a flipped byte")
        # The flip lands in a record the peer reads; every TLS byte is covered by
        # the transcript hash or a record MAC, so the session cannot succeed --
        # except a few record-header bytes that OpenSSL does not check.
        if outcome["client"] == "ok" and outcome["server"] == "ok":
            record("fuzz: flipped bytes that changed nothing (not checked by TLS)")
    if wire.was_cut:
        record("fuzz: stalled sessions cut by the wire")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_record_split_at_every_byte_boundary(
    backend: tuple[str, dict[str, Any]], version: str
) -> None:
    # Each byte on its own, both ways: every possible boundary at once.
    wire = Wire(client_to_server=bytewise, server_to_client=bytewise)
    outcome = run(backend, lambda: session(wire, version))
    assert outcome["client"] == "ok", outcome
    assert outcome["server"] == "ok", outcome
    assert not wire.was_cut
    record("fuzz: bytes delivered one at a time", wire.client.sent + wire.server.sent)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_item_split_in_two_at_each_offset(
    backend: tuple[str, dict[str, Any]], version: str
) -> None:
    # Every transport item cut in two at offset 1, 2, ... (a stride in the default
    # form): the first flights, the records, close_notify, all split everywhere.
    longest = 0
    for cut in range(1, 1800, scale(97, 2)):
        mangle: Mangler = split_items_at(cut)
        wire = Wire(client_to_server=mangle, server_to_client=mangle)
        outcome = run(backend, functools.partial(session, wire, version, MESSAGES[:2]))
        assert outcome["client"] == "ok", (cut, outcome)
        assert outcome["server"] == "ok", (cut, outcome)
        record("fuzz: sessions with every item split in two")
        longest = cut
    assert longest > 1000


# -- absurd lengths and endless floods -----------------------------------------------

ABSURD_HEADERS = [
    bytes([content_type]) + version + length.to_bytes(2, "big")
    for content_type in (22, 23, 21, 20, 99)
    for version in (b"\x03\x03", b"\x03\x01", b"\x7f\x7f")
    for length in (0, 1, 0x3FFF, 0x4000, 0x4001, 0x4100, 0x4800, 0x4801, 0xFFFF)
]

#: The largest record a peer may send: 2**14 + 2048 bytes of ciphertext + header.
MAX_RECORD = 2**14 + 2048 + 5
FLOOD_ITEM = 1024


async def flood(transport: Any, first: bytes) -> None:
    """Send *first*, then zeros forever, until the receiver goes away."""
    try:
        await transport.send(first)
        filler = bytes(FLOOD_ITEM)
        while True:
            await transport.send(filler)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


@pytest.mark.parametrize("phase", ["handshake", "established"])
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_absurd_record_lengths_then_an_endless_flood(
    backend: tuple[str, dict[str, Any]], side: str, phase: str
) -> None:
    headers = ABSURD_HEADERS if FULL else ABSURD_HEADERS[::5]

    async def one(header: bytes) -> int:
        # The flood direction holds one item: the flood goes only as fast as we
        # read, so what we read is what the engine asked for.
        ours_raw, peer_raw = memory_pair(max_buffer=1)
        ours_transport = Metered(ours_raw)
        if side == "client":
            ours = TLSStream(
                ours_transport, hostname="localhost", ssl_context=client_context()
            )
            peer = TLSStream(peer_raw, server_side=True, ssl_context=server_context())
        else:
            ours = TLSStream(
                ours_transport, server_side=True, ssl_context=server_context()
            )
            peer = TLSStream(
                peer_raw, hostname="localhost", ssl_context=client_context()
            )
        async with anyio.create_task_group() as tg:

            async def drain() -> None:  # the peer reads what we send, unparsed
                try:
                    async for _ in peer_raw:
                        pass
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass

            if phase == "established":

                async def handshake_then_drain() -> None:
                    await peer.do_handshake()
                    await drain()

                tg.start_soon(handshake_then_drain)
                await ours.do_handshake()
                await ours.send(b"hello")
            else:
                tg.start_soon(drain)
            tg.start_soon(flood, peer_raw, header)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            if phase == "handshake":
                check_handshake_error(await failure_of(ours.do_handshake()))
            else:
                check_stream_error(await failure_of(receive_forever(ours)))
            peak = tracemalloc.get_traced_memory()[1] - before
            await anyio.aclose_forcefully(ours_raw)
            await anyio.aclose_forcefully(peer_raw)
        # Nothing was read beyond what one maximal record needs, plus one item.
        assert ours_transport.received <= MAX_RECORD + FLOOD_ITEM + 5, (
            header.hex(),
            ours_transport.received,
        )
        # ... and nothing piled up in memory (Python's own allocations).
        assert peak < 1_000_000, (header.hex(), peak)
        return ours_transport.received

    async def main() -> None:
        for header in headers:
            received = await one(header)
            record("fuzz: absurd record headers tried")
            record("fuzz: bytes read from endless floods", received)

    tracemalloc.start()
    try:
        run(backend, main)
    finally:
        tracemalloc.stop()


def test_the_wire_cuts_a_stalled_session() -> None:
    # The harness itself: a session that can only stall (the server's first
    # flight claims a longer record than it is) ends by a cut, not by the timeout.
    def lengthen(offset: int, item: bytes) -> list[bytes]:
        if offset == 0:  # the first record claims the largest length allowed
            return [item[:3] + (0x3FFF).to_bytes(2, "big") + item[5:]]
        return [item]

    wire = Wire(server_to_client=lengthen)
    outcome = run(("asyncio", {}), lambda: session(wire))
    assert wire.was_cut
    assert isinstance(outcome["client"], anyio.BrokenResourceError)
    assert isinstance(outcome["server"], (anyio.BrokenResourceError, ssl.SSLError))


# -- the atheris target (fuzz/fuzz_engine.py), run without atheris -----------------


def test_the_engine_fuzz_target_runs_without_atheris() -> None:
    path = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_engine.py"
    spec = importlib.util.spec_from_file_location("fuzz_engine", path)
    assert spec is not None
    assert spec.loader is not None
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    count = scale(300, 20_000)
    target.smoke(count, seed=0 if not FULL else int.from_bytes(os.urandom(4), "big"))
    record("fuzz: engine inputs (fuzz/fuzz_engine.py, no event loop)", count)
