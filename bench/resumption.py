"""(g) A reconnecting client: full vs resumed handshakes.

``python -m bench.resumption [--quick] [--backends asyncio,trio] [--runs N]``

One operation is what a client that reconnects does (connection pools, retries,
short requests): TCP connect, TLS handshake, 100 bytes each way, and a clean close
on both ends (close_notify both ways), timed from the connect to the end of the
close. Client and server run in one process and event loop over loopback TCP, both
ends the same implementation:

* ``anyio``: ``anyio.streams.tls.TLSStream`` (it cannot resume: every handshake full)
* ``anyiotls full``: ``anyiotls.TLSStream`` without a session cache
* ``anyiotls resumed``: ``anyiotls.TLSStream`` with a :class:`anyiotls.SessionCache`
  (TLS 1.3 tickets used once: each connection fetches its new session)
* ``anyiotls reuse``: the same with ``SessionCache(reuse_tickets=True)``

for three settings: TLS 1.3 with a P-256 (ECDSA) certificate, TLS 1.3 with an
RSA-2048 one, and TLS 1.2 (P-256). Each backend runs in its own process; the order
of the variants rotates from run to run. Prints connections/s (one over the median
connection's CPU time, ``time.process_time``, user + system of the one process
that runs both ends; ``--wall`` for wall-clock time instead; median and range
over the runs) and the ratio of resumed
anyiotls to AnyIO's full handshake, per run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import trustme
from anyio.abc import SocketAttribute

from .__main__ import _child_env, machine_description
from .impls import HOST, HOSTNAME
from .worker import run_backend, settle_malloc

PAYLOAD = b"x" * 100
#: measure CPU time (``time.process_time``) rather than wall-clock time
CPU_TIME = True
SETTINGS = ("tls13-p256", "tls13-rsa2048", "tls12-p256")
VARIANTS = ("anyio", "anyiotls full", "anyiotls resumed", "anyiotls reuse")


def contexts(setting: str) -> tuple[Any, Any]:
    """(server, client) contexts for *setting*."""
    import ssl

    key_type = trustme.KeyType.RSA if "rsa" in setting else trustme.KeyType.ECDSA
    ca = trustme.CA(key_type=key_type)
    cert = ca.issue_cert(HOSTNAME, HOST, key_type=key_type)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    cert.configure_cert(server)
    ca.configure_trust(client)
    version = ssl.TLSVersion.TLSv1_2 if "tls12" in setting else ssl.TLSVersion.TLSv1_3
    for context in (server, client):
        context.minimum_version = context.maximum_version = version
    return server, client


async def _exchange(receive: Callable[[], Awaitable[bytes]]) -> None:
    got = 0
    while got < len(PAYLOAD):
        got += len(await receive())


async def reconnects(variant: str, setting: str, count: int) -> float:
    """Connections/s for *count* sequential reconnects (after one warm-up)."""
    if variant == "anyio":
        from anyio.streams.tls import TLSStream as cls
    else:
        from anyiotls import SessionCache
        from anyiotls import TLSStream as cls
    server_context, client_context = contexts(setting)
    extra: dict[str, Any] = {}
    if variant in ("anyiotls resumed", "anyiotls reuse"):
        extra["session_cache"] = SessionCache(reuse_tickets=variant == "anyiotls reuse")
    resumed = [0]
    listener = (await anyio.create_tcp_listener(local_host=HOST)).listeners[0]
    port = listener.extra(SocketAttribute.local_port)

    async def serve_one() -> None:
        sock = await listener.accept()
        stream = await cls.wrap(sock, server_side=True, ssl_context=server_context)
        await _exchange(stream.receive)
        await stream.send(PAYLOAD)
        with contextlib.suppress(anyio.EndOfStream):
            await stream.receive()
        await stream.aclose()

    async def connect_one() -> None:
        sock = await anyio.connect_tcp(HOST, port)
        stream = await cls.wrap(
            sock, hostname=HOSTNAME, ssl_context=client_context, **extra
        )
        if extra:
            from anyiotls import SessionAttribute

            resumed[0] += stream.extra(SessionAttribute.session_reused)
        await stream.send(PAYLOAD)
        await _exchange(stream.receive)
        await stream.aclose()

    async def one() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_one)
            await connect_one()

    times = []
    # CPU time of this process (user + system; both ends run here): the machine
    # is shared, and wall-clock time there measures the neighbours as much.
    clock = time.process_time if CPU_TIME else time.perf_counter
    try:
        await one()  # warm-up (and the first, full handshake of the resumed run)
        gc.collect()
        for _ in range(count):
            start = clock()
            await one()
            times.append(clock() - start)
    finally:
        await listener.aclose()
    if extra and resumed[0] != count:  # the figure would not mean what it says
        raise RuntimeError(f"only {resumed[0]} of {count} connections resumed")
    # The median connection, not the mean: on a shared machine a burst of other
    # work lands on a few connections and would otherwise decide the figure.
    return 1 / statistics.median(times)


def worker(backend: str, runs: int, count: int) -> dict[str, dict[str, list[float]]]:
    """Every setting and variant, *runs* times, in this process."""
    settle_malloc()
    results: dict[str, dict[str, list[float]]] = {
        s: {v: [] for v in VARIANTS} for s in SETTINGS
    }
    for run in range(runs):
        shift = run % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        for setting in SETTINGS:
            for variant in order:
                results[setting][variant].append(
                    run_backend(backend, reconnects, variant, setting, count)
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resumption")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--wall", action="store_true", help="wall-clock time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = not args.wall
    runs = args.runs or (1 if args.quick else 5)
    count = args.count or (50 if args.quick else 300)
    if args.worker:
        print(json.dumps(worker(args.worker, runs, count)))
        return
    for line in machine_description():
        print(line)
    clock = "wall-clock" if args.wall else "CPU"
    print(
        f"(g) reconnects: {runs} runs x {count} connections, "
        f"connections per {clock} second\n"
    )
    for backend in args.backends.split(","):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.resumption",
                "--worker",
                backend,
                "--runs",
                str(runs),
                "--count",
                str(count),
                *(["--wall"] if args.wall else []),
            ],
            capture_output=True,
            text=True,
            env=_child_env(),
            check=False,
        )
        if out.returncode:
            raise SystemExit(f"worker {backend} failed:\n{out.stderr}")
        results = json.loads(out.stdout)
        print(f"## {backend}")
        print(
            "| setting | "
            + " | ".join(VARIANTS)
            + " | resumed / anyio | reuse / anyio |"
        )
        print("|---" * (len(VARIANTS) + 3) + "|")
        for setting in SETTINGS:
            row = results[setting]
            cells = []
            for variant in VARIANTS:
                values = row[variant]
                median = statistics.median(values)
                spread = (
                    f" ({min(values):.0f}-{max(values):.0f})" if len(values) > 1 else ""
                )
                cells.append(f"{median:.0f}{spread}")
            ratio_cells = []
            for variant in ("anyiotls resumed", "anyiotls reuse"):
                ratios = [
                    r / a for r, a in zip(row[variant], row["anyio"], strict=True)
                ]
                ratio = statistics.median(ratios)
                spread = (
                    f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
                )
                ratio_cells.append(f"{ratio:.2f}{spread}")
            print(f"| {setting} | " + " | ".join(cells + ratio_cells) + " |")
        print()


if __name__ == "__main__":
    main()
