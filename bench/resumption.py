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
over the runs) and the ratios of the resumed
variants to AnyIO's full handshake, per run. ``--instructions`` counts instructions
per reconnect under valgrind's callgrind instead (as ``bench.instructions``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
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


def write_certificates(directory: str, settings: tuple[str, ...] = SETTINGS) -> None:
    """Certificates for *settings*, as PEM files in *directory*: the children
    under callgrind load them, so no child spends instructions on key generation
    (RSA's prime search differs from run to run)."""
    for setting in settings:
        key_type = trustme.KeyType.RSA if "rsa" in setting else trustme.KeyType.ECDSA
        ca = trustme.CA(key_type=key_type)
        cert = ca.issue_cert(HOSTNAME, HOST, key_type=key_type)
        ca.cert_pem.write_to_path(os.path.join(directory, f"{setting}-ca.pem"))
        cert.private_key_and_cert_chain_pem.write_to_path(
            os.path.join(directory, f"{setting}-server.pem")
        )


_own_certificates: dict[str, str] = {}
_keep: list[tempfile.TemporaryDirectory[str]] = []


def contexts(setting: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for *setting* (from ``$BENCH_G_CERTS`` if set,
    else made once per process)."""
    directory = os.environ.get("BENCH_G_CERTS")
    if directory is None:
        if setting not in _own_certificates:
            made = tempfile.TemporaryDirectory(prefix="bench-g-")
            # Kept (and removed) with the process: loaded once per setting.
            _own_certificates[setting] = made.name
            _keep.append(made)
            write_certificates(made.name, (setting,))
        directory = _own_certificates[setting]
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    server.load_cert_chain(os.path.join(directory, f"{setting}-server.pem"))
    client.load_verify_locations(os.path.join(directory, f"{setting}-ca.pem"))
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


#: (small, large) connection counts per child under callgrind
INSTRUCTION_COUNTS = (5, 25)


def count_instructions(
    variant: str, setting: str, connections: int, backend: str, certs: str
) -> dict[str, int]:
    """Instructions per group (bench.instructions' groups) for one child."""
    from .instructions import parse_callgrind

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.resumption",
                "--child",
                variant,
                setting,
                str(connections),
                backend,
            ],
            check=True,
            capture_output=True,
            env={**_child_env(), "PYTHONHASHSEED": "0", "BENCH_G_CERTS": certs},
            timeout=3600,
        )
        with open(out, errors="replace") as file:
            return parse_callgrind(file.read())


def instructions(backends: list[str]) -> None:
    """Print instructions per reconnect (callgrind), per setting and variant."""
    from .instructions import GROUPS, per_operation

    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    small, large = INSTRUCTION_COUNTS
    with tempfile.TemporaryDirectory() as certs:
        write_certificates(certs)
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            jobs = {
                (backend, setting, variant, n): pool.submit(
                    count_instructions, variant, setting, n, backend, certs
                )
                for backend in backends
                for setting in SETTINGS
                for variant in VARIANTS
                for n in (small, large)
            }
            results = {key: job.result() for key, job in jobs.items()}
    print("(g) instructions per reconnect (callgrind; both ends)")
    for backend in backends:
        print(f"\n## {backend}")
        print("| setting | variant | total | Python | OpenSSL | libc | / anyio |")
        print("|-|-|-|-|-|-|-|")
        for setting in SETTINGS:
            figures = {
                v: per_operation(
                    results[(backend, setting, v, small)],
                    results[(backend, setting, v, large)],
                    large - small,
                )
                for v in VARIANTS
            }
            for variant, f in figures.items():
                cells = " | ".join(f"{f[g]:,.0f}" for g in ("total", *GROUPS))
                ratio = figures["anyio"]["total"] / f["total"]
                print(f"| {setting} | {variant} | {cells} | {ratio:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resumption")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--wall", action="store_true", help="wall-clock time")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (valgrind)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CPU_TIME
    CPU_TIME = not args.wall
    if args.child:
        variant, setting, connections, backend = args.child
        settle_malloc()
        run_backend(backend, reconnects, variant, setting, int(connections))
        return
    if args.instructions:
        instructions(args.backends.split(","))
        return
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
