"""Run ``anyiotls`` as a subprocess: one-shot commands and a running ``serve``.

The subprocess imports the same ``anyiotls`` as the tests (its source directory is
put first on ``PYTHONPATH``). Every wait has a time limit, and a ``serve`` is always
stopped (SIGTERM, then SIGKILL) when its ``async with`` block ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import pytest

import anyiotls

from ..peers import in_ci

#: Seconds one CLI command may run before the test fails.
TIMEOUT = 30.0
#: Seconds ``serve`` may take to start listening or to stop.
SERVE_TIMEOUT = 15.0

SRC = Path(anyiotls.__file__).resolve().parent.parent


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(SRC), env.get("PYTHONPATH")) if part
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("ANYIOTLS_DEBUG", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "anyiotls", *args]


def console_script() -> str:
    """The ``anyiotls`` command that ``pip install`` put next to this Python."""
    script = Path(sysconfig.get_path("scripts")) / "anyiotls"
    if not script.exists():
        if in_ci():
            pytest.fail(f"no console script {script}: in CI nothing may skip")
        pytest.skip(f"no console script {script} (pip install -e .)")
    return str(script)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"returncode {self.returncode}\n--- stdout ---\n{self.stdout}\n"
            f"--- stderr ---\n{self.stderr}"
        )


def run_cli(
    *args: str,
    input: bytes = b"",
    timeout: float = TIMEOUT,
    python: str = "",
    script: bool = False,
) -> Result:
    """Run ``anyiotls ARGS`` (or ``python -c PYTHON``) with *input* on stdin.

    *script*: run the console script, as a user types it, not ``python -m``.
    """
    if python:
        command = [sys.executable, "-c", python]
    elif script:
        command = [console_script(), *args]
    else:
        command = cli_command(*args)
    completed = subprocess.run(
        command,
        input=input,
        capture_output=True,
        env=cli_env(),
        timeout=timeout,
        check=False,
    )
    return Result(
        completed.returncode,
        completed.stdout.decode(errors="replace"),
        completed.stderr.decode(errors="replace"),
    )


async def run_cli_async(
    *args: str, input: bytes = b"", timeout: float = TIMEOUT, script: bool = False
) -> Result:
    """:func:`run_cli` in a thread, so that peers in this event loop keep running."""
    return await anyio.to_thread.run_sync(
        partial(run_cli, *args, input=input, timeout=timeout, script=script)
    )


def assert_one_line_error(result: Result, code: int, *fragments: str) -> str:
    """The command failed with *code* and one line on stderr holding *fragments*."""
    assert result.returncode == code, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    for fragment in fragments:
        assert fragment in lines[0], result.describe()
    return lines[0]


class ServeProcess:
    """A running ``anyiotls serve``, its output so far, and what it printed."""

    port: int
    ca_file: Path | None
    client_file: Path | None

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.output = bytearray()
        self.errors = bytearray()
        self.returncode: int | None = None
        self._changed = anyio.Event()

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def describe(self) -> str:
        return (
            f"serve returncode {self.returncode}\n--- stdout ---\n{self.text}\n"
            f"--- stderr ---\n{self.errors.decode(errors='replace')}"
        )

    async def _pump(self, stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
        try:
            async for chunk in stream:
                into += chunk
                self._changed.set()
                self._changed = anyio.Event()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def wait_for(
        self, check: Callable[[], object], what: str, timeout: float = SERVE_TIMEOUT
    ) -> None:
        with anyio.move_on_after(timeout):
            while not check():
                if self.process.returncode is not None:
                    break
                with anyio.move_on_after(0.2):  # also notice an exit
                    await self._changed.wait()
            if check():
                return
        raise AssertionError(f"serve: no {what} within {timeout} s\n{self.describe()}")

    async def wait_output(self, text: str) -> None:
        await self.wait_for(lambda: text in self.text, repr(text))

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send *signum*, wait for the exit (SIGKILL if it takes too long)."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
            with anyio.move_on_after(SERVE_TIMEOUT):
                self.returncode = await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            with anyio.move_on_after(5):
                await self.process.wait()
            raise AssertionError(f"serve ignored signal {signum}\n{self.describe()}")
        self.returncode = self.process.returncode
        # Let the pumps collect the last lines.
        with anyio.move_on_after(2):
            while not self.text.endswith("stopped\n") and self.returncode == 0:
                await self._changed.wait()
        return self.returncode


_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_CA_FILE = re.compile(r"CA certificate\s+(\S+)")
_CLIENT_FILE = re.compile(r"client cert\+key\s+(\S+)")


@asynccontextmanager
async def anyiotls_serve(
    *args: str, backend: str = "asyncio", script: bool = False
) -> AsyncIterator[ServeProcess]:
    """Run ``anyiotls serve --port 0 ARGS`` for the ``async with`` body.

    *script*: the console script, as a user types it, not ``python -m``.
    """
    serve_args = ("serve", "--port", "0", "--backend", backend, *args)
    process = await anyio.open_process(
        [console_script(), *serve_args] if script else cli_command(*serve_args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    serve = ServeProcess(process)
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            assert process.stderr is not None
            tg.start_soon(serve._pump, process.stdout, serve.output)
            tg.start_soon(serve._pump, process.stderr, serve.errors)
            try:
                await serve.wait_for(lambda: _LISTENING.search(serve.text), "listening")
                match = _LISTENING.search(serve.text)
                assert match is not None
                serve.port = int(match.group(1))
                ca_match = _CA_FILE.search(serve.text)
                client_match = _CLIENT_FILE.search(serve.text)
                serve.ca_file = Path(ca_match.group(1)) if ca_match else None
                serve.client_file = (
                    Path(client_match.group(1)) if client_match else None
                )
                yield serve
            finally:
                with anyio.CancelScope(shield=True):
                    await serve.stop()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await process.aclose()
