"""Per-call cost of a TLS stream over a transport that never waits.

``python -m bench.overhead [ROUNDS] [BACKEND]``: anyiotls's and AnyIO's
``TLSStream`` over an in-process stub transport whose ``send`` and ``receive`` return
at once when they can, so the figures are the TLS layer's own Python and OpenSSL
work, without the event loop's or the kernel's. Prints the best of three runs of
*ROUNDS* (default 20,000) 100-byte round trips, sends and receives, in µs per call.
"""

from __future__ import annotations

import collections
import ssl
import sys
import time
from typing import Any

import anyio
import anyio.streams.tls
import trustme
from anyio.abc import ByteStream

import anyiotls


class StubTransport(ByteStream):
    """One end of an in-process byte pipe; waits only when it has nothing."""

    def __init__(self) -> None:
        self.inbox: collections.deque[bytes] = collections.deque()
        self.peer: StubTransport | None = None
        self.arrived: anyio.Event | None = None

    async def send(self, item: bytes) -> None:
        assert self.peer is not None
        self.peer.inbox.append(bytes(item))
        if self.peer.arrived is not None:
            self.peer.arrived.set()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self.inbox:
            self.arrived = anyio.Event()
            await self.arrived.wait()
            self.arrived = None
        data = self.inbox.popleft()
        if len(data) > max_bytes:
            self.inbox.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client, server


async def _pair(
    cls: Any, client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> Any:
    a, b = StubTransport(), StubTransport()
    a.peer, b.peer = b, a
    ends: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:

        async def serve() -> None:
            ends["server"] = await cls.wrap(
                b, server_side=True, ssl_context=server_ctx, standard_compatible=False
            )

        tg.start_soon(serve)
        ends["client"] = await cls.wrap(
            a, hostname="localhost", ssl_context=client_ctx, standard_compatible=False
        )
    return ends["client"], ends["server"]


async def _measure(rounds: int) -> None:
    client_ctx, server_ctx = _contexts()
    payload = b"x" * 100
    best: dict[str, list[float]] = {}
    for _ in range(3):
        for name, cls in (
            ("anyio TLSStream", anyio.streams.tls.TLSStream),
            ("anyiotls.TLSStream", anyiotls.TLSStream),
        ):
            client, server = await _pair(cls, client_ctx, server_ctx)
            await client.send(b"w")  # the server's tickets arrive with its first send
            await server.receive()
            await server.send(b"w")
            await client.receive()
            start = time.perf_counter()
            for _ in range(rounds):
                await client.send(payload)
                await server.receive()
                await server.send(payload)
                await client.receive()
            round_trip = (time.perf_counter() - start) / rounds
            start = time.perf_counter()
            for _ in range(rounds):
                await client.send(payload)
            send = (time.perf_counter() - start) / rounds
            start = time.perf_counter()
            for _ in range(rounds):
                await server.receive(100)
            receive = (time.perf_counter() - start) / rounds
            figures = [round_trip * 1e6, send * 1e6, receive * 1e6]
            previous = best.setdefault(name, figures)
            best[name] = [min(x, y) for x, y in zip(previous, figures, strict=True)]
    for name, (round_trip_us, send_us, receive_us) in best.items():
        print(
            f"{name:20s} round trip {round_trip_us:6.2f} µs   send {send_us:5.2f} µs"
            f"   receive (buffered) {receive_us:5.2f} µs"
        )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    backend = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    print(f"backend: {backend}; best of 3 runs of {rounds} 100-byte calls")
    anyio.run(_measure, rounds, backend=backend)


if __name__ == "__main__":
    main()
