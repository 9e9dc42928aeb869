"""Test sessions: ``nox -s tests`` (every Python x lowest/latest deps), ``lint``,
``typecheck``.

Run a single combination with ``nox -s "tests-3.12(deps='lowest')"`` and pass pytest
arguments after ``--``: ``nox -s tests -- -m interop -x``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

# The oldest releases we promise to work with.  ANYIO_LOWEST must equal the lower
# bound of the anyio requirement in pyproject.toml (the "lowest" runs check this).
ANYIO_LOWEST = "4.0.0"
TRIO_LOWEST = "0.23.0"
# Where a newer Python needs a newer trio: trio < 0.25.0 does not even import on
# Python 3.13 (``TypeError: ('parser', <class 'module'>)``).
TRIO_LOWEST_FOR_PYTHON = {"3.13": "0.25.0"}

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

# The third-party software that tests/integration runs unchanged on anyiotls, pinned
# so that a new release of one cannot turn a green tree red overnight (bump them on
# purpose). The same pins serve the "lowest" runs: none of them asks for a newer
# anyio or trio (httpx wants any anyio, trio-websocket trio>=0.11), and they all
# ran with anyio 4.0.0 and trio 0.23.0 (Python 3.10, 3.11) / 0.25.0 (3.13).
INTEGRATION = [
    "hypercorn==0.18.0",
    "httpx==0.29.0",
    "httpcore==1.0.9",
    "h2==4.4.1",
    "trio-websocket==0.12.2",
]

# Linters are pinned so that a new release cannot turn a green tree red overnight;
# bump them on purpose.
RUFF = "ruff==0.17.5"
MYPY = "mypy==2.4.1"  # also pinned in pyproject.toml's test extra: keep them equal

ROOT = Path(__file__).parent

# In CI a missing interpreter is an error; on a laptop it is a skipped session.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
nox.options.error_on_missing_interpreters = IN_CI
# uv makes a fresh virtualenv + install in about a second; fall back to venv.
nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["tests", "lint", "typecheck"]


def _add_pyenv_interpreters_to_path() -> None:
    """Let nox find pyenv's interpreters.

    pyenv's shims answer ``python3.12`` with "command not found" unless that version
    is selected, so nox would take the shim for an interpreter and then fail.  Put
    the newest installed patch release of every version we test in front of PATH.
    """
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False
        ).stdout.strip()
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    if not versions.is_dir():
        return
    found = []
    for python in PYTHONS:
        candidates = [
            path
            for path in versions.glob(f"{python}.*")
            if re.fullmatch(rf"{re.escape(python)}\.\d+", path.name)
            and (path / "bin" / f"python{python}").exists()
        ]
        if candidates:
            newest = max(candidates, key=lambda p: int(p.name.rsplit(".", 1)[1]))
            found.append(str(newest / "bin"))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_interpreters_to_path()

# One line, because nox echoes the command: Python, its OpenSSL, anyio, trio.
PRINT_VERSIONS = (
    'import importlib.metadata as m, ssl, sys; print("python", sys.version); '
    'print("ssl", ssl.OPENSSL_VERSION); '
    '[print(n, m.version(n)) for n in ("anyio", "trio", "pytest")]'
)


def _release(version: str) -> tuple[int, ...]:
    """``"4.10.0"`` -> ``(4, 10)``: compare versions without trailing zeros."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _declared_anyio_lowest() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"anyio>=([^",;\s]+)', text)
    if not match:
        raise RuntimeError("pyproject.toml has no 'anyio>=X' requirement")
    return match.group(1)


def tests_impl(session: nox.Session, anyio_spec: str, trio_spec: str) -> None:
    session.install("-e", ".[test]", anyio_spec, trio_spec, *INTEGRATION)
    session.run("python", "-c", PRINT_VERSIONS)
    if shutil.which("openssl"):  # the interop tests' peer
        session.run("openssl", "version", external=True)
    # Two pytest workers: the suite mostly waits on handshakes and external peers,
    # so a second worker on CI's two cores about halves each session's time.
    session.run("pytest", *(session.posargs or ["-n", "2", "tests/"]))


@nox.session(python=PYTHONS)
@nox.parametrize("deps", ["lowest", "latest"])
def tests(session: nox.Session, deps: str) -> None:
    if deps == "lowest":
        declared = _declared_anyio_lowest()
        if _release(declared) != _release(ANYIO_LOWEST):
            session.error(
                f"pyproject.toml says anyio>={declared} but noxfile.py tests "
                f"ANYIO_LOWEST={ANYIO_LOWEST}: make them agree"
            )
        trio_lowest = TRIO_LOWEST_FOR_PYTHON.get(str(session.python), TRIO_LOWEST)
        tests_impl(session, f"anyio=={ANYIO_LOWEST}", f"trio=={trio_lowest}")
    else:
        tests_impl(session, "anyio", "trio")


@nox.session
def lint(session: nox.Session) -> None:
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", MYPY)
    session.run("mypy", "--strict", "src/")


@nox.session(python="3.11")
def reliability(session: nox.Session) -> None:
    """The heavy form of tests/reliability (ANYIOTLS_RELIABILITY=full)."""
    session.install("-e", ".[test]")
    session.run("python", "-c", PRINT_VERSIONS)
    session.run(
        "pytest",
        *(session.posargs or ["tests/reliability"]),
        env={"ANYIOTLS_RELIABILITY": "full"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark (docs/benchmarks.md); ``-- --quick``: short."""
    session.install("-e", ".", "trio", "trustme", "uvloop; sys_platform != 'win32'")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python="3.11")
def instructions(session: nox.Session) -> None:
    """Instructions per 64 KiB send, round trip and handshake against anyio's
    TLSStream, with valgrind (``bench/instructions.py``); ``-- --check``: fail on a
    regression.

    AnyIO and trio are pinned: the guard compares counts, and a new release of either
    moves them (update the pins on purpose, with ``docs/benchmarks.md``).
    """
    session.install("-e", ".", "anyio==4.16.0", "trio==0.35.0", "trustme")
    session.run("python", "-m", "bench.instructions", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation; any warning fails the build."""
    session.install("-e", ".[cli,trio]", "-r", "docs/requirements.txt")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )
