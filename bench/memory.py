"""(e) memory per idle established connection, measured in a fresh process.

``python -m bench.memory BACKEND IMPL CONNECTIONS`` opens CONNECTIONS TLS connections
(both ends live in this process, each with one task waiting in ``receive``), lets
them idle, and prints JSON: the growth of the resident set size (RSS, everything:
Python objects, OpenSSL's SSL structures and buffers, task stacks) and, in a second
batch, the growth of what :mod:`tracemalloc` sees (Python allocations only; OpenSSL
allocates with its own ``malloc`` and is invisible there), both per connection
(client end + server end).
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import sys
import tracemalloc
from typing import Any

import anyio

from .impls import Contexts, End, Impl, impls_for
from .worker import run_backend, settle_malloc


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


async def _idle_batch(
    impl: Impl, contexts: Contexts, connections: int, measure: Any
) -> float:
    server = await impl.server(contexts)
    pairs: list[tuple[End, End]] = []

    async def wait(end: End) -> None:
        with contextlib.suppress(Exception):  # closed at the end of the batch
            await end.receive(65536)

    try:
        # Warm up: code paths, caches, the first arena pages.
        for _ in range(5):
            client, srv = await impl.pair(server)
            await client.close()
            await srv.close()
        async with anyio.create_task_group() as tg:
            gc.collect()
            before = measure()
            for _ in range(connections):
                client, srv = await impl.pair(server)
                pairs.append((client, srv))
                tg.start_soon(wait, client)
                tg.start_soon(wait, srv)
            await anyio.sleep(0.2)
            gc.collect()
            after = measure()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for client, srv in pairs:
                await client.close()
                await srv.close()
            await server.aclose()
    return (after - before) / connections / 1024


async def measure(backend: str, impl_name: str, connections: int) -> dict[str, float]:
    """Both batches for one implementation: KiB per connection, RSS and traced."""
    contexts = Contexts.create()
    impl = next(impl for impl in impls_for(backend) if impl.name == impl_name)
    rss = await _idle_batch(impl, contexts, connections, rss_bytes)
    tracemalloc.start()
    try:
        traced = await _idle_batch(
            impl, contexts, connections, lambda: tracemalloc.get_traced_memory()[0]
        )
    finally:
        tracemalloc.stop()
    return {"rss_kib": rss, "tracemalloc_kib": traced}


def main() -> None:
    backend, impl_name, connections = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _raise_nofile()
    settle_malloc()
    result = run_backend(backend, measure, backend, impl_name, connections)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
