"""Instructions executed per operation, counted by valgrind's callgrind.

``python -m bench.instructions [--backends B,...] [--scenarios c,d] [--check]``

On a shared machine, wall-clock ratios move by several percent from one run to the
next, so differences of 1-3 % (handshakes (d), ping-pong (c)) cannot be resolved by
timing. callgrind counts the instructions a process executes, whatever else the
machine is doing: the same program with the same inputs gives the same count to
within about 0.1 % per operation here. Instructions are not time (an instruction
of the interpreter costs more than one of AES-GCM), but where two implementations
run the same OpenSSL calls, the difference in counts is the difference in work.

Each implementation runs each scenario in a child process under callgrind twice,
with a small and a large number of operations; the difference in instructions
divided by the difference in operations is the count per operation, with start-up,
certificate generation, the server's set-up and the warm-up cancelled out. Split by
where they run: the interpreter and extension modules (``Python``), OpenSSL
(``libssl``/``libcrypto``) and the C library.

* (c) one 100-byte round trip (the client's send and receive, the echo's receive
  and send), as in :func:`bench.scenarios.ping_pong`; also for AnyIO's socket
  stream without TLS, the floor under every TLS stream on top of it;
* (d) a TCP connect and a full TLS 1.3 handshake on both ends, as in
  :func:`bench.scenarios.handshakes`; the TLS streams are not closed (their
  transports are), as closing is not timed there either.

Needs ``valgrind``; takes about 3 minutes per backend on two cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio

from . import scenarios
from .impls import (
    AnyIOStreamsTLS,
    AnyIOTLS,
    AnyIOTLSFastTCP,
    AnyIOTLSTrioFace,
    Contexts,
    Impl,
    PlainTCP,
    TrioSSL,
)
from .worker import run_backend, settle_malloc

#: (small, large) operation counts per scenario, and what one operation is.
SCENARIOS: dict[str, tuple[int, int, str]] = {
    "a": (40, 200, "64 KiB send, received in full"),
    "c": (300, 1300, "100 B ping-pong round trip"),
    "d": (10, 50, "TCP connect + TLS 1.3 handshake, both ends"),
}

#: The same for ``--check`` (CI): fewer operations, the same differences. Counts
#: repeat to within 0.05 %, so a difference over 400 round trips (20 handshakes)
#: resolves the guards' limits as well as one over 1,000 (40), in half the time.
CHECK_SCENARIOS: dict[str, tuple[int, int, str]] = {
    "a": (20, 100, SCENARIOS["a"][2]),
    "c": (200, 600, SCENARIOS["c"][2]),
    "d": (10, 30, SCENARIOS["d"][2]),
}

#: The implementations compared per backend: anyiotls's first, then its reference.
PAIRS: dict[str, list[tuple[Impl, Impl]]] = {
    "asyncio": [
        (AnyIOTLS(), AnyIOStreamsTLS()),
        (AnyIOTLSFastTCP(), AnyIOStreamsTLS()),
    ],
    "uvloop": [
        (AnyIOTLS(), AnyIOStreamsTLS()),
        (AnyIOTLSFastTCP(), AnyIOStreamsTLS()),
    ],
    "trio": [
        (AnyIOTLS(), AnyIOStreamsTLS()),
        (AnyIOTLSFastTCP(), AnyIOStreamsTLS()),
        (AnyIOTLSTrioFace(), TrioSSL()),
    ],
}

#: Measured after the first pair in (c): AnyIO's socket stream without TLS, the floor
#: under any TLS stream on top of it.
FLOOR = PlainTCP()

IMPLS = {impl.name: impl for pairs in PAIRS.values() for p in pairs for impl in p}
IMPLS[FLOOR.name] = FLOOR


def compared(
    backend: str, scenario: str, guarded_only: bool = False
) -> list[tuple[Impl, ...]]:
    """Rows per table section: anyiotls's implementation first, then the others.

    *guarded_only* (``--check``): just the pairs a guard limits, without the floor,
    so that CI counts nothing it does not compare.
    """
    groups: list[tuple[Impl, ...]] = list(PAIRS[backend])
    if guarded_only:
        return [g for g in groups if scenario in GUARDS.get(g[0].name, {})]
    if scenario == "c":
        groups[0] = (*groups[0], FLOOR)
    return groups


GROUPS = ("Python", "OpenSSL", "libc")

#: ``--check`` (CI): the most instructions anyiotls's ``TLSStream`` may execute per
#: operation, as a multiple of AnyIO's ``TLSStream`` in the same run. Counts repeat
#: to within 0.05 % (AnyIO's stream on Trio within 1.5 %), so these limits can sit
#: close to today's ratios ((a) 0.94 on asyncio; (c) 1.04; (d) 1.005) and still
#: never fail by chance: an extra trip through the event loop per call, a copy of
#: every 64 KiB send (+65 k instructions in (a), libc's ``memcpy``), or a second
#: SSLObject call per step crosses them. (a) on Trio moves by up to 2.5 % between
#: runs (how much a ``recv()`` finds depends on when the receiver runs, so the
#: number of wake-ups varies; 1.06-1.07 today): there the limit only catches gross
#: regressions, asyncio's catches a copy.
GUARD = {"a": 1.15, "a:asyncio": 1.00, "c": 1.10, "d": 1.02}

#: ``--check`` for ``anyiotls.connect_tcp`` (the own TCP transport), also as a
#: multiple of AnyIO's ``TLSStream`` over ``anyio.connect_tcp``: (c) must stay
#: clearly cheaper (measured 0.77 on asyncio, 0.85 on Trio), (d) no dearer (1.00),
#: (a) within a copy of today on asyncio (0.98), grossly on Trio (1.03-1.05).
#: ``"c:uvloop"``: a backend's own limit; on uvloop, where pausing and resuming
#: reading are cheap C calls, (c) counts the same instructions (1.00).
GUARD_TCP = {"a": 1.15, "a:asyncio": 1.06, "c": 0.90, "c:uvloop": 1.05, "d": 1.02}

#: The guarded implementation, per guard.
GUARDS = {"anyiotls": GUARD, "anyiotls.tcp": GUARD_TCP}


async def _handshakes_only(impl: Impl, contexts: Contexts, count: int) -> None:
    server = await impl.server(contexts)
    try:
        for _ in range(count):
            client, srv = await impl.pair(server)
            # The transports, not the TLS streams: closing is not what (d) measures.
            await anyio.aclose_forcefully(client.obj.transport_stream)
            await anyio.aclose_forcefully(srv.obj.transport_stream)
    finally:
        await server.aclose()


async def _child(impl_name: str, scenario: str, count: int) -> None:
    impl = IMPLS[impl_name]
    contexts = Contexts.create()
    if scenario == "a":
        await scenarios.one_way(impl, contexts, 65536, count * 65536)
    elif scenario == "c":
        await scenarios.ping_pong(impl, contexts, count)
    else:
        await _handshakes_only(impl, contexts, count)


def group_of(obj: str) -> str:
    """The group an object file's instructions count towards."""
    name = obj.rsplit("/", 1)[-1]
    if name.startswith(("libcrypto", "libssl")):
        return "OpenSSL"
    if name.startswith(("libc.so", "libc-", "ld-linux", "libm.so")):
        return "libc"
    return "Python"


def parse_callgrind(text: str) -> dict[str, int]:
    """Instructions per group from a callgrind output file: the self cost of every
    function, summed by the object file (``ob=``) it belongs to.

    Object names are compressed (``ob=(3) /path`` once, ``ob=(3)`` after; also in
    ``cob=`` lines), and the cost line after a ``calls=`` line is the inclusive
    cost of that call, counted in the callee already.
    """
    names: dict[str, str] = {}
    current = ""
    after_call = False
    totals = dict.fromkeys(GROUPS, 0)
    for line in text.splitlines():
        if line.startswith(("ob=", "cob=")):
            match = re.match(r"c?ob=\((\d+)\)(?: (.*))?$", line)
            if match is None:
                name = line.split("=", 1)[1].strip()
            else:
                if match.group(2) is not None:
                    names[match.group(1)] = match.group(2)
                name = names[match.group(1)]
            if line.startswith("ob="):
                current = group_of(name)
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in ("+", "-", "*"):
            if after_call:
                after_call = False
                continue
            fields = line.split()
            if len(fields) >= 2:
                totals[current] += int(fields[1])
    return totals


def count(impl: Impl, scenario: str, operations: int, backend: str) -> dict[str, int]:
    """Instructions per group for one child run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                impl.name,
                scenario,
                str(operations),
                backend,
            ],
            check=True,
            capture_output=True,
            # Same dict layouts in every run.
            env={**os.environ, "PYTHONHASHSEED": "0"},
            timeout=1800,
        )
        return parse_callgrind(out.read_text(errors="replace"))


def per_operation(
    small: dict[str, int], large: dict[str, int], operations: int
) -> dict[str, float]:
    """(large - small) / operations, per group and in total."""
    result = {g: (large[g] - small[g]) / operations for g in GROUPS}
    result["total"] = sum(result[g] for g in GROUPS)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--scenarios", default="a,c,d")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if anyiotls / anyio exceeds GUARD on any backend (CI)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl_name, scenario, operations, backend = args.child
        settle_malloc()
        run_backend(backend, _child, impl_name, scenario, int(operations))
        return
    if shutil.which("valgrind") is None:
        sys.exit("bench.instructions needs valgrind (apt-get install valgrind)")

    counts = CHECK_SCENARIOS if args.check else SCENARIOS
    jobs: dict[tuple[str, str, str, int], Any] = {}
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for backend in args.backends.split(","):
            for scenario in args.scenarios.split(","):
                for group in compared(backend, scenario, args.check):
                    for impl in group:
                        for operations in counts[scenario][:2]:
                            key = (backend, scenario, impl.name, operations)
                            if key in jobs:  # a reference shared by two pairs
                                continue
                            jobs[key] = pool.submit(
                                count, impl, scenario, operations, backend
                            )
    checks: dict[str, list[tuple[str, str, float]]] = {}
    versions = ", ".join(f"{n} {metadata.version(n)}" for n in ("anyio", "trio"))
    print(
        f"python {sys.version.split()[0]}, {versions}, {ssl.OPENSSL_VERSION}; "
        "instructions per operation (callgrind)"
    )
    for backend in args.backends.split(","):
        print(f"\nbackend: {backend}")
        print(
            "| scenario | implementation | total | Python | OpenSSL | libc "
            "| this / anyiotls |"
        )
        print("|-|-|-|-|-|-|-|")
        for scenario in args.scenarios.split(","):
            small, large, what = counts[scenario]
            for group in compared(backend, scenario, args.check):
                figures_per_impl = [
                    per_operation(
                        jobs[(backend, scenario, impl.name, small)].result(),
                        jobs[(backend, scenario, impl.name, large)].result(),
                        large - small,
                    )
                    for impl in group
                ]
                for impl, figures in zip(group, figures_per_impl, strict=True):
                    cells = " | ".join(f"{figures[g]:,.0f}" for g in ("total", *GROUPS))
                    ratio = figures["total"] / figures_per_impl[0]["total"]
                    last = "" if impl is group[0] else f"{ratio:.3f}"
                    print(f"| ({scenario}) {what} | {impl.name} | {cells} | {last} |")
                guarded = group[0].name
                if scenario in GUARDS.get(guarded, {}):
                    checks.setdefault(guarded, []).append(
                        (
                            backend,
                            scenario,
                            figures_per_impl[0]["total"] / figures_per_impl[1]["total"],
                        )
                    )
    if args.check:
        passed = True
        for guarded, found in checks.items():
            print(f"\nguard ({guarded} / anyio instructions, same run):")
            lines, ok = check_guard(found, GUARDS[guarded])
            print("\n".join(lines))
            passed &= ok
        sys.exit(0 if passed else 1)


def check_guard(
    checks: list[tuple[str, str, float]], guard: dict[str, float] = GUARD
) -> tuple[list[str], bool]:
    """One line per (backend, scenario, ratio to anyio) against *guard* (default
    :data:`GUARD`), and whether all of them are within it."""
    lines = []
    passed = True
    for backend, scenario, ratio in checks:
        limit = guard.get(f"{scenario}:{backend}", guard[scenario])
        ok = ratio <= limit
        passed &= ok
        verdict = "ok" if ok else "REGRESSION"
        lines.append(f"  ({scenario}) {backend}: {ratio:.3f} <= {limit}: {verdict}")
    return lines, passed


if __name__ == "__main__":
    main()
