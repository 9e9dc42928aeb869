"""OpenSSL's command-line peers: ``openssl s_server`` and ``openssl s_client``.

How these programs behave (OpenSSL 3.0, measured on this project's machines); the
helpers below are built around each point:

* ``s_server -accept 127.0.0.1:0`` binds a free port and prints
  ``ACCEPT 127.0.0.1:PORT`` once it listens (not under ``-quiet``).  We read the port
  from that line: no port race, and no probe connection, which would count towards
  ``-naccept``.
* In its default mode s_server writes what the client sends to stdout, interleaved
  with status lines (``Read BLOCK``, ``SSL_do_handshake -> 1``, ...), and sends what
  arrives on its stdin to the client.  :meth:`OpenSSLServer.received` strips the
  status lines.
* Commands on s_server's stdin (``c`` post-handshake certificate request, ``k``/``K``
  KeyUpdate, ``r``/``R`` TLS 1.2 renegotiation, ``q``/``Q``) work only in that default
  mode: ``-quiet`` and ``-brief`` turn them off, and ``-rev``/``-www`` never read
  stdin.  s_server looks only at the first byte of each chunk it reads from stdin:
  a command that arrives in one chunk with earlier data is sent as data, and data
  that arrives with a command is dropped.  :meth:`OpenSSLServer.command` therefore
  waits for the command's ``SSL_do_handshake -> N`` line; before sending a command
  after data, wait until the client has seen the data.
* ``q``/``Q`` (and EOF on stdin) close the socket *without* close_notify: the client
  sees a truncated connection.  s_server sends close_notify only in ``-rev`` mode
  after a ``CLOSE`` line, in ``-www`` mode after the page, and in answer to the
  client's close_notify.
* s_client with ``-brief`` prints the connection summary on stderr and only the
  server's data on stdout.  Lines on its stdin go to the server, except that a
  chunk starting with ``Q``, ``R``, ``K`` or ``k`` is a command; EOF on stdin makes
  it send close_notify and exit (we pass ``-no_ign_eof`` to be sure).
* stdout is a pipe, so OpenSSL's stdio would buffer status lines for a long time;
  we run it under ``stdbuf -oL -eL`` (coreutils) so each line arrives whole and at
  once.  ``-msg`` output goes to a file (``-msgfile``) that is complete only after
  the program exited: read :meth:`_Peer.messages` after the ``async with`` block or
  after :meth:`_Peer.wait_exit`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.abc

from . import PemFiles, require_binary

__all__ = (
    "OpenSSLClient",
    "OpenSSLServer",
    "PeerError",
    "TLSVersionName",
    "openssl_client",
    "openssl_server",
)

T = TypeVar("T")

#: Time limit for any single wait on a peer (start-up, a line of output, an exit).
TIMEOUT = 10.0
#: How long a peer may take to exit by itself once its stdin is closed.
EXIT_GRACE = 2.0

TLSVersionName = Literal["1.2", "1.3"]

_ACCEPT_LINE = re.compile(rb"ACCEPT (\S+):(\d+)\n")
# The end of s_server's connection summary in its default mode.
_SUMMARY_END = re.compile(
    rb"Secure Renegotiation IS(?: NOT)? supported\n(?:Renegotiation is DISABLED\n)?"
)
# Status lines s_server prints between the bytes it received (default mode).
_STATUS_LINE = re.compile(
    rb"(?:SSL_do_handshake -> -?\d+|(?:Read|Write) BLOCK(?: \(Async\))?"
    rb"|Failed to initiate request|DONE|ERROR|DELAY)\n"
)
_COMMAND_RESULT = re.compile(
    rb"SSL_do_handshake -> (-?\d+)\n|(Failed to initiate request)\n"
)


class PeerError(AssertionError):
    """A peer program did not do what a test waited for (with its output)."""


class _Peer:
    """One running OpenSSL program, its output so far, and ways to wait on it."""

    def __init__(
        self, name: str, process: anyio.abc.Process, args: Sequence[str], workdir: Path
    ) -> None:
        self.name = name
        self.process = process
        self.args = list(args)
        self.workdir = workdir
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.returncode: int | None = None
        self.exited = anyio.Event()
        self._changed = anyio.Event()
        self._open_streams = 2  # stdout and stderr, until their pumps see EOF
        self.msg_file = workdir / "msg.log"

    # -- output -----------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _pump(self, stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
        try:
            async for chunk in stream:
                into.extend(chunk)
                self._wake()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._open_streams -= 1
            self._wake()

    async def _watch_exit(self) -> None:
        self.returncode = await self.process.wait()
        self.exited.set()
        self._wake()

    def describe(self) -> str:
        def tail(data: bytearray) -> str:
            text = bytes(data[-3000:]).decode(errors="replace")
            return ("[...]" if len(data) > 3000 else "") + text

        return (
            f"{self.name}: {' '.join(self.args)}\n"
            f"returncode: {self.returncode}\n"
            f"--- stdout ---\n{tail(self.stdout)}\n"
            f"--- stderr ---\n{tail(self.stderr)}"
        )

    def messages(self) -> str:
        """The ``-msg`` protocol log (complete once the program has exited)."""
        try:
            return self.msg_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait_for(
        self, check: Callable[[], T | None], what: str, timeout: float = TIMEOUT
    ) -> T:
        """Wait until ``check()`` returns something truthy and return that.

        ``check`` is tried again whenever the program writes output or exits.  Raises
        :class:`PeerError` (with the program's output) after *timeout* seconds, or as
        soon as the program has exited and ``check()`` still fails.
        """
        with anyio.move_on_after(timeout):
            while True:
                changed = self._changed
                result = check()
                if result:
                    return result
                if self.exited.is_set() and self._open_streams == 0:
                    raise PeerError(
                        f"{self.name} exited before {what}\n{self.describe()}"
                    )
                await changed.wait()
        raise PeerError(f"{self.name}: no {what} within {timeout} s\n{self.describe()}")

    async def wait_for_output(
        self,
        pattern: bytes | re.Pattern[bytes],
        *,
        stream: Literal["stdout", "stderr"] = "stdout",
        timeout: float = TIMEOUT,
    ) -> re.Match[bytes]:
        regex = (
            pattern
            if isinstance(pattern, re.Pattern)
            else re.compile(re.escape(pattern))
        )
        buffer = self.stdout if stream == "stdout" else self.stderr
        return await self.wait_for(
            lambda: regex.search(buffer), f"{regex.pattern!r} on {stream}", timeout
        )

    # -- input and lifetime ------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Write *data* to the program's stdin."""
        assert self.process.stdin is not None
        with anyio.fail_after(TIMEOUT):
            await self.process.stdin.send(data)

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        with suppress(anyio.BrokenResourceError, OSError):
            await self.process.stdin.aclose()

    async def wait_exit(self, timeout: float = TIMEOUT) -> int:
        await self.wait_for(self.exited.is_set, "exit", timeout)
        assert self.returncode is not None
        return self.returncode

    async def _stop(self) -> None:
        """Close stdin, then terminate, then kill: never waits unboundedly."""
        if not self.exited.is_set():
            await self.close_stdin()
            with anyio.move_on_after(EXIT_GRACE):
                await self.exited.wait()
        if not self.exited.is_set():
            self.process.terminate()
            with anyio.move_on_after(3):
                await self.exited.wait()
        if not self.exited.is_set():
            self.process.kill()
            with anyio.move_on_after(5):
                await self.exited.wait()


_PeerT = TypeVar("_PeerT", bound=_Peer)


@asynccontextmanager
async def _run(
    peer_class: type[_PeerT], name: str, args: list[str], workdir: Path
) -> AsyncIterator[_PeerT]:
    stdbuf = shutil.which("stdbuf")
    command = [stdbuf, "-oL", "-eL", *args] if stdbuf else args
    process = await anyio.open_process(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(workdir),
    )
    peer = peer_class(name, process, args, workdir)
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            assert process.stderr is not None
            tg.start_soon(peer._pump, process.stdout, peer.stdout)
            tg.start_soon(peer._pump, process.stderr, peer.stderr)
            tg.start_soon(peer._watch_exit)
            try:
                yield peer
            finally:
                with anyio.CancelScope(shield=True):
                    await peer._stop()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await process.aclose()


def _version_args(tls_version: TLSVersionName | None) -> list[str]:
    if tls_version is None:
        return []
    return ["-tls1_2"] if tls_version == "1.2" else ["-tls1_3"]


def _workdir(pem: PemFiles, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=pem.directory))


# -- s_server ------------------------------------------------------------------------


class OpenSSLServer(_Peer):
    """A running ``openssl s_server``; see :func:`openssl_server`."""

    host: str
    port: int
    mode: Literal["echo", "rev", "www"]

    def received(self) -> bytes:
        """What the client sent, so far (default "echo" mode only).

        Status lines are removed, so do not send lines that look like them
        (``DONE``, ``ERROR``, ``Read BLOCK``, ...).
        """
        if self.mode != "echo":
            raise RuntimeError(f"s_server -{self.mode} does not print what it receives")
        output = bytes(self.stdout)
        summary = _SUMMARY_END.search(output)
        if summary is None:
            return b""
        data = output[summary.end() :]
        end = data.find(b"shutting down SSL\n")
        if end >= 0:
            data = data[:end]
        return _STATUS_LINE.sub(b"", data)

    async def wait_received(self, data: bytes, timeout: float = TIMEOUT) -> None:
        """Wait until the client has sent *data* (as a substring of everything)."""
        await self.wait_for(
            lambda: data in self.received(), f"{data[-60:]!r} from the client", timeout
        )

    async def send_line(self, line: bytes) -> None:
        """Make s_server send *line* to the client (it must not look like a command)."""
        if self.mode != "echo":
            raise RuntimeError(f"s_server -{self.mode} does not read its stdin")
        await self.write(line)

    async def command(self, letter: str) -> int:
        """Send a one-letter command and wait until s_server has carried it out.

        Returns N from s_server's ``SSL_do_handshake -> N`` line (1 means the
        KeyUpdate, HelloRequest or CertificateRequest was sent).  For ``q``/``Q`` waits
        for ``DONE`` and returns 0; the connection then ends without close_notify.
        """
        if self.mode != "echo":
            raise RuntimeError(f"s_server -{self.mode} does not read commands")
        if letter not in ("c", "k", "K", "r", "R", "q", "Q"):
            raise ValueError(f"unknown s_server command {letter!r}")
        if letter in ("q", "Q"):
            done = self.stdout.count(b"DONE\n")
            await self.write(letter.encode() + b"\n")
            await self.wait_for(
                lambda: self.stdout.count(b"DONE\n") > done, f"DONE after {letter!r}"
            )
            return 0
        seen = len(_COMMAND_RESULT.findall(self.stdout))

        def result() -> list[re.Match[bytes]] | None:
            matches = list(_COMMAND_RESULT.finditer(self.stdout))
            return matches[seen:] or None

        await self.write(letter.encode() + b"\n")
        match = (await self.wait_for(result, f"the result of command {letter!r}"))[0]
        if match.group(2):
            raise PeerError(f"s_server could not start {letter!r}\n{self.describe()}")
        return int(match.group(1))


@asynccontextmanager
async def openssl_server(
    pem: PemFiles,
    *,
    mode: Literal["echo", "rev", "www"] = "echo",
    tls_version: TLSVersionName | None = None,
    alpn: Sequence[str] = (),
    verify_client: Literal["request", "require"] | None = None,
    num_tickets: int | None = None,
    naccept: int | None = 1,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[OpenSSLServer]:
    """Run ``openssl s_server`` on 127.0.0.1 (a free port) for the ``async with`` body.

    :param mode: ``"echo"`` (default mode: prints what it receives, sends its stdin,
        takes commands), ``"rev"`` (``-rev``: answers each line reversed; a ``CLOSE``
        line makes it send close_notify) or ``"www"`` (``-www``: an HTTP status page,
        then close_notify).
    :param verify_client: ``"request"`` (``-verify 1``) or ``"require"``
        (``-Verify 1``) a client certificate during the handshake.  The test CA is
        always trusted for client certificates, also for post-handshake requests.
    :param naccept: exit after this many connections (``None``: serve until
        stopped).  Nothing here connects to probe the port.
    """
    openssl = require_binary("openssl")
    workdir = _workdir(pem, "s_server-")
    args = [
        openssl,
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-cert",
        str(pem.server),
        "-CAfile",
        str(pem.ca),
        "-msg",
        "-msgfile",
        "msg.log",
        *_version_args(tls_version),
    ]
    if mode != "echo":
        args.append(f"-{mode}")
    if alpn:
        args += ["-alpn", ",".join(alpn)]
    if verify_client == "request":
        args += ["-verify", "1"]
    elif verify_client == "require":
        args += ["-Verify", "1"]
    if num_tickets is not None:
        args += ["-num_tickets", str(num_tickets)]
    if naccept is not None:
        args += ["-naccept", str(naccept)]
    args += extra_args
    async with _run(OpenSSLServer, "s_server", args, workdir) as server:
        server.mode = mode
        accept = await server.wait_for_output(_ACCEPT_LINE)
        server.host = accept.group(1).decode()
        server.port = int(accept.group(2))
        yield server


# -- s_client ------------------------------------------------------------------------


class OpenSSLClient(_Peer):
    """A running ``openssl s_client``; see :func:`openssl_client`."""

    def received(self) -> bytes:
        """What the server sent, so far."""
        return bytes(self.stdout)

    async def wait_received(self, data: bytes, timeout: float = TIMEOUT) -> None:
        await self.wait_for(
            lambda: data in self.stdout, f"{data[-60:]!r} from the server", timeout
        )

    async def wait_connected(self, timeout: float = TIMEOUT) -> None:
        """Wait for the end of s_client's handshake (its ``CONNECTION ESTABLISHED``)."""
        await self.wait_for_output(
            b"CONNECTION ESTABLISHED", stream="stderr", timeout=timeout
        )

    async def send(self, data: bytes) -> None:
        """Make s_client send *data* to the server.

        A chunk that starts with ``Q``, ``R``, ``K`` or ``k`` is a command, not data.
        """
        await self.write(data)

    async def command(self, letter: str) -> None:
        """``K``/``k``: send a KeyUpdate; ``R``: renegotiate (TLS 1.2); ``Q``: close.

        Waits until s_client acknowledged the command on stderr.
        """
        acks = {"K": b"KEYUPDATE\n", "k": b"KEYUPDATE\n", "R": b"RENEGOTIATING\n"}
        acks["Q"] = b"DONE\n"
        if letter not in acks:
            raise ValueError(f"unknown s_client command {letter!r}")
        seen = self.stderr.count(acks[letter])
        await self.write(letter.encode() + b"\n")
        await self.wait_for(
            lambda: self.stderr.count(acks[letter]) > seen,
            f"s_client's acknowledgement of {letter!r}",
        )

    async def close(self) -> int:
        """Close s_client's stdin: it sends close_notify and exits; its exit code."""
        await self.close_stdin()
        return await self.wait_exit()


@asynccontextmanager
async def openssl_client(
    pem: PemFiles,
    port: int,
    *,
    host: str = "127.0.0.1",
    servername: str = "localhost",
    tls_version: TLSVersionName | None = None,
    alpn: Sequence[str] = (),
    cert: bool = False,
    enable_pha: bool = False,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[OpenSSLClient]:
    """Run ``openssl s_client`` against ``host:port`` for the ``async with`` body.

    It verifies the server against the test CA, for the name *servername*, and gives
    up on a verification error.  *cert* presents the client certificate
    (``client@example.org``); *enable_pha* lets the server ask for it after the
    handshake (TLS 1.3).
    """
    openssl = require_binary("openssl")
    workdir = _workdir(pem, "s_client-")
    args = [
        openssl,
        "s_client",
        "-connect",
        f"{host}:{port}",
        "-servername",
        servername,
        "-CAfile",
        str(pem.ca),
        "-verify_return_error",
        "-verify_hostname",
        servername,
        "-brief",
        "-no_ign_eof",
        "-msg",
        "-msgfile",
        "msg.log",
        *_version_args(tls_version),
    ]
    if alpn:
        args += ["-alpn", ",".join(alpn)]
    if cert:
        args += ["-cert", str(pem.client)]
    if enable_pha:
        args.append("-enable_pha")
    args += extra_args
    async with _run(OpenSSLClient, "s_client", args, workdir) as client:
        yield client
