"""The measured scenarios (a)-(f). Each returns plain numbers; nothing here prints.

Client and server run in the same process and event loop, over loopback TCP; the
timed part excludes connection setup unless the scenario is the setup itself (d).
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .impls import RECEIVE_SIZE, Contexts, End, Impl, Server

MB = 1_000_000


async def _with_server(
    impl: Impl, contexts: Contexts, body: Callable[[Server], Awaitable[Any]]
) -> Any:
    server = await impl.server(contexts)
    try:
        return await body(server)
    finally:
        await server.aclose()


async def _receive_exactly(end: End, size: int) -> None:
    receive = end.receive
    got = 0
    while got < size:
        data = await receive(RECEIVE_SIZE)
        if not data:
            raise RuntimeError("unexpected EOF")
        got += len(data)


async def one_way(impl: Impl, contexts: Contexts, send_size: int, total: int) -> float:
    """(a)/(b): client sends *total* bytes in *send_size* sends; MB/s at the server."""
    payload = os.urandom(send_size)
    count = max(1, total // send_size)
    total = count * send_size

    async def body(server: Server) -> float:
        client, srv = await impl.pair(server)
        try:
            # Warm up: both directions once (the client reads its session tickets).
            await client.send(b"w")
            await _receive_exactly(srv, 1)
            await srv.send(b"w")
            await _receive_exactly(client, 1)
            send = client.send
            gc.collect()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_receive_exactly, srv, total)
                start = time.perf_counter()
                for _ in range(count):
                    await send(payload)
            elapsed = time.perf_counter() - start
        finally:
            await client.close()
            await srv.close()
        return total / elapsed / MB

    result: float = await _with_server(impl, contexts, body)
    return result


async def ping_pong(
    impl: Impl, contexts: Contexts, rounds: int, size: int = 100
) -> float:
    """(c): *size*-byte request, *size*-byte answer, one at a time; round trips/s."""
    payload = os.urandom(size)

    async def echo(end: End) -> None:
        receive, send = end.receive, end.send
        for _ in range(rounds + 1):
            got = 0
            while got < size:
                got += len(await receive(RECEIVE_SIZE))
            await send(payload)

    async def body(server: Server) -> float:
        client, srv = await impl.pair(server)
        try:
            gc.collect()
            async with anyio.create_task_group() as tg:
                tg.start_soon(echo, srv)
                send, receive = client.send, client.receive
                await send(payload)  # warm-up round
                await _receive_exactly(client, size)
                start = time.perf_counter()
                for _ in range(rounds):
                    await send(payload)
                    got = 0
                    while got < size:
                        got += len(await receive(RECEIVE_SIZE))
                elapsed = time.perf_counter() - start
        finally:
            await client.close()
            await srv.close()
        return rounds / elapsed

    result: float = await _with_server(impl, contexts, body)
    return result


async def handshakes(impl: Impl, contexts: Contexts, count: int) -> float:
    """(d): sequential connections; handshakes/s counting TCP connect + full TLS 1.3
    handshake on both ends (no session resumption). Closing is not timed."""

    async def body(server: Server) -> float:
        client, srv = await impl.pair(server)  # warm-up
        await client.close()
        await srv.close()
        elapsed = 0.0
        for _ in range(count):
            start = time.perf_counter()
            client, srv = await impl.pair(server)
            elapsed += time.perf_counter() - start
            await client.close()
            await srv.close()
        return count / elapsed

    result: float = await _with_server(impl, contexts, body)
    return result


def _percentile(values: list[float], fraction: float) -> float:
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]


def echo_sizes(seed: int = 1234, count: int = 4096) -> list[int]:
    """Random message sizes, log-uniform from 16 B to 64 KiB (the same list for all)."""
    rng = random.Random(seed)
    return [int(2 ** rng.uniform(4, 16)) for _ in range(count)]


async def concurrent_echo(
    impl: Impl, contexts: Contexts, connections: int, duration: float
) -> tuple[float, float]:
    """(f): *connections* clients each send a random-size message and wait for its
    echo, in a loop, for *duration* s. Returns (payload MB/s echoed, p99 latency ms).

    MB/s counts each echoed payload byte once (it crossed TLS twice)."""
    sizes = echo_sizes()
    payload = os.urandom(max(sizes))

    async def echo_server(end: End) -> None:
        receive, send = end.receive, end.send
        try:
            while True:
                data = await receive(RECEIVE_SIZE)
                if not data:
                    return
                await send(data)
        except Exception:
            return  # the connection was closed at the end of the run

    async def body(server: Server) -> tuple[float, float]:
        pairs: list[tuple[End, End]] = []
        for _ in range(connections):
            pairs.append(await impl.pair(server))
        gc.collect()
        latencies: list[float] = []
        moved = 0
        stop_at = 0.0

        async def client_loop(index: int, end: End) -> None:
            nonlocal moved
            send, receive = end.send, end.receive
            position = index * 7919
            clock = time.perf_counter
            while True:
                size = sizes[position % len(sizes)]
                position += 1
                start = clock()
                await send(payload[:size])
                got = 0
                while got < size:
                    data = await receive(RECEIVE_SIZE)
                    if not data:
                        raise RuntimeError("unexpected EOF")
                    got += len(data)
                now = clock()
                latencies.append(now - start)
                moved += size
                if now >= stop_at:
                    return

        try:
            async with anyio.create_task_group() as tg:
                for _, srv in pairs:
                    tg.start_soon(echo_server, srv)
                start = time.perf_counter()
                stop_at = start + duration
                async with anyio.create_task_group() as clients:
                    for index, (client, _) in enumerate(pairs):
                        clients.start_soon(client_loop, index, client)
                elapsed = time.perf_counter() - start
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for client, srv in pairs:
                    await client.close()
                    await srv.close()
        return moved / elapsed / MB, _percentile(latencies, 0.99) * 1000

    result: tuple[float, float] = await _with_server(impl, contexts, body)
    return result
