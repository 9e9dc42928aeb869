"""One backend's throughput scenarios, in a fresh process.

``python -m bench.worker CONFIG_JSON`` runs every requested scenario for every
implementation available on the backend, *runs* times, rotating the order of the
implementations from run to run so that a burst of noise on this shared machine
does not always hit the same one, and prints JSON::

    {"a": {"anyiotls": [run1, run2, ...], "anyio": [...], ...}, ...}
"""

from __future__ import annotations

import gc
import json
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from . import scenarios
from .impls import Contexts, impls_for


def settle_malloc() -> None:
    """Put glibc's allocator in the same state for every implementation.

    glibc serves allocations above a *dynamic* threshold (128 KiB at start) with
    ``mmap`` and raises the threshold the first time such a block is freed. asyncio
    allocates a 256 KiB buffer per socket read, so a process runs 30-50 % faster on
    asyncio once any large block has been freed: whichever implementation first does
    so would speed up all the others measured after it. Freeing a 4 MiB block first
    gives every implementation the raised threshold (as in a long-running server).
    """
    block = bytearray(4 * 2**20)
    del block


#: Scenarios that also measure the plain-TCP reference.
REFERENCE_SCENARIOS = ("a", "b", "c")


def run_backend(backend: str, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``anyio.run`` on *backend*: ``asyncio``, ``uvloop`` (asyncio + uvloop) or
    ``trio``."""
    if backend == "trio":
        return anyio.run(func, *args, backend="trio")
    options = {"use_uvloop": backend == "uvloop"}
    return anyio.run(func, *args, backend="asyncio", backend_options=options)


async def measure_one(
    scenario: str, impl: Any, contexts: Contexts, params: dict[str, Any]
) -> Any:
    """Run one scenario once for one implementation."""
    if scenario == "a":
        return await scenarios.one_way(impl, contexts, 65536, params["bulk_bytes"])
    if scenario == "b":
        return await scenarios.one_way(impl, contexts, 1024, params["small_bytes"])
    if scenario == "c":
        return await scenarios.ping_pong(impl, contexts, params["rounds"])
    if scenario == "d":
        return await scenarios.handshakes(impl, contexts, params["handshakes"])
    if scenario == "f":
        return list(
            await scenarios.concurrent_echo(
                impl, contexts, params["connections"], params["duration"]
            )
        )
    raise ValueError(f"unknown scenario {scenario!r}")


async def run_all(config: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    backend = config["backend"]
    contexts = Contexts.create()
    results: dict[str, dict[str, list[Any]]] = {}
    for scenario in config["scenarios"]:
        # The TCP reference has no handshake and no connection-level state to show.
        impls = impls_for(backend, references=scenario in REFERENCE_SCENARIOS)
        results[scenario] = {impl.name: [] for impl in impls}
        runs = config["runs_f"] if scenario == "f" else config["runs"]
        for run in range(runs):
            shift = run % len(impls)
            for impl in impls[shift:] + impls[:shift]:
                gc.collect()
                value = await measure_one(scenario, impl, contexts, config["params"])
                results[scenario][impl.name].append(value)
    return results


def main() -> None:
    config = json.loads(sys.argv[1])
    settle_malloc()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(run_backend(config["backend"], run_all, config)))


if __name__ == "__main__":
    main()
