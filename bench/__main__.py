"""Run the whole benchmark and print one table: ``python -m bench [--quick]``.

See ``docs/benchmarks.md`` for the method and the published results.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import importlib.util
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .ceilings import memory_bio_pump, openssl_speed
from .impls import Contexts, impls_for

ROOT = Path(__file__).resolve().parent.parent

BACKENDS = ("asyncio", "uvloop", "trio")
SCENARIOS = ("a", "b", "c", "d", "e", "f")

FULL = {
    "runs": 5,
    "runs_f": 3,
    "memory_connections": 1000,
    "params": {
        "bulk_bytes": 64 * 2**20,
        "small_bytes": 6 * 2**20,
        "rounds": 3000,
        "handshakes": 200,
        "connections": 500,
        "duration": 1.5,
    },
}
QUICK = {
    "runs": 1,
    "runs_f": 1,
    "memory_connections": 200,
    "params": {
        "bulk_bytes": 16 * 2**20,
        "small_bytes": 2 * 2**20,
        "rounds": 1000,
        "handshakes": 50,
        "connections": 100,
        "duration": 0.5,
    },
}

LABELS = {
    "a": "(a) 64 KiB sends, MB/s",
    "b": "(b) 1 KiB sends, MB/s",
    "c": "(c) 100 B ping-pong, round trips/s",
    "d": "(d) TLS 1.3 handshakes/s (ECDSA)",
    "e_rss": "(e) idle connection, RSS KiB ↓",
    "e_tm": "(e) idle connection, tracemalloc KiB ↓",
    "f_mb": "(f) {connections} conns echo, MB/s",
    "f_p99": "(f) {connections} conns echo, p99 ms ↓",
}

#: (numerator, denominator) of the ratio columns, per backend.
RATIOS = {
    "asyncio": [
        ("anyiotls", "anyio"),
        ("anyiotls", "asyncio"),
        ("anyiotls.tcp", "anyio"),
        ("anyiotls.tcp", "asyncio"),
    ],
    "uvloop": [
        ("anyiotls", "anyio"),
        ("anyiotls", "asyncio"),
        ("anyiotls.tcp", "anyio"),
        ("anyiotls.tcp", "asyncio"),
    ],
    "trio": [
        ("anyiotls", "anyio"),
        ("anyiotls", "trio"),
        ("anyiotls.trio", "trio"),
        ("anyiotls.tcp", "anyio"),
        ("anyiotls.tcp", "trio"),
    ],
}

COLUMN_NAMES = {
    "anyiotls": "anyiotls.TLSStream",
    "anyiotls.trio": "anyiotls.trio.SSLStream",
    "anyiotls.tcp": "anyiotls.connect_tcp",
    "anyio": "anyio TLSStream",
    "trio": "trio.SSLStream",
    "asyncio": "asyncio native",
    "tcp": "TCP, no TLS",
}


def machine_description() -> list[str]:
    """Lines describing the machine and the software under test."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in ("anyiotls", "anyio", "trio", "uvloop"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return [
        f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"python: {platform.python_implementation()} {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}",
        "packages: " + ", ".join(versions),
        f"load average at start: {', '.join(f'{x:.2f}' for x in load)}",
    ]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "src")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_worker(backend: str, scenarios: list[str], mode: dict[str, Any]) -> Any:
    config = {
        "backend": backend,
        "scenarios": scenarios,
        "runs": mode["runs"],
        "runs_f": mode["runs_f"],
        "params": mode["params"],
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", json.dumps(config)],
        capture_output=True,
        text=True,
        env=_child_env(),
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"worker for {backend} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def run_memory(backend: str, impl: str, connections: int) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", backend, impl, str(connections)],
        capture_output=True,
        text=True,
        env=_child_env(),
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"memory run {backend}/{impl} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    return f"{_number(min(values))}-{_number(max(values))}"


def collect(
    backends: list[str], scenarios: list[str], mode: dict[str, Any], log: Any
) -> dict[str, Any]:
    """Run everything; return ``{backend: {row: {impl: [values per run]}}}``."""
    table: dict[str, Any] = {}
    timed = [s for s in scenarios if s != "e"]
    for backend in backends:
        rows: dict[str, dict[str, list[float]]] = {}
        if timed:
            started = time.perf_counter()
            raw = run_worker(backend, timed, mode)
            elapsed = time.perf_counter() - started
            log(f"  {backend}: {', '.join(timed)} in {elapsed:.0f} s")
            for scenario, per_impl in raw.items():
                if scenario == "f":
                    rows["f_mb"] = {k: [v[0] for v in vs] for k, vs in per_impl.items()}
                    rows["f_p99"] = {
                        k: [v[1] for v in vs] for k, vs in per_impl.items()
                    }
                else:
                    rows[scenario] = per_impl
        table[backend] = rows
    if "e" in scenarios:
        started = time.perf_counter()
        jobs = [
            (backend, impl.name) for backend in backends for impl in impls_for(backend)
        ]
        # Memory figures do not depend on timing: two at a time is fine.
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {
                job: pool.submit(run_memory, *job, mode["memory_connections"])
                for job in jobs
            }
            for (backend, impl), future in futures.items():
                result = future.result()
                rows = table[backend]
                rows.setdefault("e_rss", {})[impl] = [result["rss_kib"]]
                rows.setdefault("e_tm", {})[impl] = [result["tracemalloc_kib"]]
        log(f"  memory: {time.perf_counter() - started:.0f} s")
    return table


def ratio_median(rows: dict[str, list[float]], num: str, den: str) -> float | None:
    """Median over runs of the per-run ratio *num* / *den* (same run, same backend)."""
    if num not in rows or den not in rows:
        return None
    ratios = [a / b for a, b in zip(rows[num], rows[den], strict=True) if b]
    return _median(ratios) if ratios else None


ROW_ORDER = ("a", "b", "c", "d", "e_rss", "e_tm", "f_mb", "f_p99")


def format_table(table: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The Markdown table: medians, then the median per-run ratios."""
    lines: list[str] = []
    for backend, rows in table.items():
        impls = [i.name for i in impls_for(backend, references=True)]
        ratios = RATIOS[backend]
        header = ["backend: " + backend, *(COLUMN_NAMES[i] for i in impls)]
        header += [f"{n} / {d}" for n, d in ratios]
        body = []
        for row in ROW_ORDER:
            if row not in rows:
                continue
            values = rows[row]
            cells = [LABELS[row].format(**params)]
            for impl in impls:
                vs = values.get(impl)
                cells.append(_number(_median(vs)) if vs else "-")
            for num, den in ratios:
                r = ratio_median(values, num, den)
                cells.append(f"{r:.2f}" if r is not None else "-")
            body.append(cells)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines.append(_markdown_row(header, widths))
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines.extend(_markdown_row(cells, widths) for cells in body)
        lines.append("")
    return lines


def _markdown_row(cells: list[str], widths: list[int]) -> str:
    parts = [cells[0].ljust(widths[0])]
    parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
    return "| " + " | ".join(parts) + " |"


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


#: The targets of issue 7: (row, numerator, denominator, backends, bound, at least?).
TARGETS = [
    ("a", "anyiotls", "anyio", BACKENDS, 1.2, True),
    ("a", "anyiotls", "trio", ("trio",), 1.2, True),
    ("b", "anyiotls", "anyio", BACKENDS, 3.0, True),
    ("c", "anyiotls", "anyio", BACKENDS, 1.2, True),
    ("d", "anyiotls", "anyio", BACKENDS, 1.0, True),
    ("e_rss", "anyiotls", "anyio", BACKENDS, 1.0, False),
    ("e_tm", "anyiotls", "anyio", BACKENDS, 1.0, False),
    # issue 14: anyiotls.connect_tcp / create_tcp_listener (the own TCP transport)
    ("a", "anyiotls.tcp", "anyio", ("asyncio",), 1.5, True),
    ("b", "anyiotls.tcp", "anyio", ("asyncio",), 1.3, True),
    ("c", "anyiotls.tcp", "anyio", ("asyncio",), 1.5, True),
    ("d", "anyiotls.tcp", "anyio", ("asyncio",), 1.0, True),
    ("a", "anyiotls.tcp", "asyncio", ("asyncio",), 1.0, True),
    ("c", "anyiotls.tcp", "asyncio", ("asyncio",), 1.0, True),
    ("a", "anyiotls.tcp", "anyio", ("uvloop",), 1.3, True),
    ("c", "anyiotls.tcp", "anyio", ("uvloop",), 1.1, True),
    ("b", "anyiotls.tcp", "anyio", ("trio",), 1.15, True),
    ("c", "anyiotls.tcp", "anyio", ("trio",), 1.2, True),
    ("e_rss", "anyiotls.tcp", "anyio", BACKENDS, 1.0, False),
]


def format_targets(table: dict[str, Any]) -> list[str]:
    """One line per target and backend: the median per-run ratio, met or not."""
    lines = ["targets (median per-run ratio, same run, same backend):"]
    for row, num, den, backends, bound, at_least in TARGETS:
        for backend in backends:
            rows = table.get(backend, {})
            if row not in rows:
                continue
            ratio = ratio_median(rows[row], num, den)
            if ratio is None:
                continue
            met = ratio >= bound if at_least else ratio <= bound
            sign = ">=" if at_least else "<="
            lines.append(
                f"  {row:6} {backend:8} {num} / {den} = {ratio:.2f} "
                f"(target {sign} {bound}): {'met' if met else 'NOT met'}"
            )
    return lines


def format_spread(table: dict[str, Any]) -> list[str]:
    """Per-run values (min-max), to show the noise."""
    lines = ["min-max over runs:"]
    for backend, rows in table.items():
        for row in ROW_ORDER:
            if row in rows:
                parts = [
                    f"{impl} {_spread(vs)}"
                    for impl, vs in rows[row].items()
                    if len(vs) > 1
                ]
                if parts:
                    lines.append(f"  {backend} {row}: " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--runs", type=int, help="runs per scenario (median reported)")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated: " + ", ".join(BACKENDS),
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated letters a-f"
    )
    parser.add_argument("--no-ceilings", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    mode = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.runs:
        mode["runs"] = mode["runs_f"] = args.runs
    backends = [b for b in args.backends.split(",") if b]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in backends:
        if name not in BACKENDS:
            parser.error(f"unknown backend {name!r}")
    if "uvloop" in backends and importlib.util.find_spec("uvloop") is None:
        print("uvloop is not installed: skipping the uvloop backend", file=sys.stderr)
        backends.remove("uvloop")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    for line in machine_description():
        print(line)
    print(
        f"mode: {'quick' if args.quick else 'full'}; runs: {mode['runs']} "
        f"(f: {mode['runs_f']}); parameters: {json.dumps(mode['params'])}; "
        f"memory: {mode['memory_connections']} connections"
    )
    print()
    log("running ...")
    table = collect(backends, scenarios, mode, log)
    ceilings: dict[str, float | None] = {}
    if not args.no_ceilings:
        contexts = Contexts.create()
        pump_64k = [memory_bio_pump(contexts, 65536, 64 * 2**20) for _ in range(3)]
        pump_1k = [memory_bio_pump(contexts, 1024, 8 * 2**20) for _ in range(3)]
        ceilings["memory BIO pump, 64 KiB writes, MB/s"] = _median(pump_64k)
        ceilings["memory BIO pump, 1 KiB writes, MB/s"] = _median(pump_1k)
        ceilings["openssl speed -evp aes-256-gcm (16 KiB blocks), MB/s"] = (
            openssl_speed()
        )
    for line in format_table(table, mode["params"]):
        print(line)
    if ceilings:
        print("ceilings (no event loop, no sockets):")
        for name, value in ceilings.items():
            print(f"  {name}: {value:.4g}" if value is not None else f"  {name}: n/a")
        print()
    for line in format_targets(table):
        print(line)
    print()
    for line in format_spread(table):
        print(line)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ()
    print(
        f"load average at end: {', '.join(f'{x:.2f}' for x in load)}; "
        f"total time {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"table": table, "ceilings": ceilings}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
