"""GnuTLS's command-line peers: ``gnutls-serv`` and ``gnutls-cli`` (gnutls-bin).

A TLS stack that is not OpenSSL, so the interop tests do not only prove that
OpenSSL agrees with itself. How these programs behave (GnuTLS 3.7, measured on
this project's machines); the helpers below are built around each point:

* ``gnutls-serv`` has no option to choose the address: it listens on every IPv4
  and IPv6 address (``0.0.0.0`` and ``::``). Connect to 127.0.0.1. ``-p 0`` makes it
  bind a free port, but it prints (on stderr) ``listening on IPv4 0.0.0.0 port
  0...done``; the real port is read from
  ``/proc/net/tcp`` (the listening socket whose inode is one of the process' file
  descriptors): no port race, no probe connection.
* ``gnutls-serv`` asks every client for a certificate unless ``--disable-client-cert``
  is given (``--verify-client-cert`` checks one that is sent, ``-r`` requires one).
  ``--echo`` sends back whatever the client sends, except that it turns CRLF into
  LF (``--crlf`` keeps it); it answers close_notify with its own and goes on
  serving other connections. Per connection it prints the handshake's details on
  stdout (``- Client Signature: ...`` once a client certificate was verified).
  It does not exit on EOF of its stdin: it is stopped with SIGTERM.
* ``gnutls-cli`` prints status lines and the server's data on stdout, all mixed;
  ``- Handshake was completed`` and then ``- Simple Client Mode:`` mark the end of
  the handshake. Lines on its stdin go to the server. EOF on stdin makes it send
  close_notify and exit. On the server's close_notify it prints ``- Peer has closed
  the GnuTLS connection`` and exits *without* answering close_notify.
* ``gnutls-cli --post-handshake-auth`` with a certificate answers a TLS 1.3
  CertificateRequest at any time (``*** Re-auth was performed.``);
  ``--starttls-proto=smtp|imap|...`` runs the plaintext dialogue first (client side:
  it waits for the server's go-ahead before its ClientHello).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Literal

import anyio

from . import PemFiles, require_binary
from .openssl import TIMEOUT, PeerError, _Peer, _run

__all__ = (
    "GnuTLSClient",
    "GnuTLSServer",
    "PeerError",
    "gnutls_client",
    "gnutls_server",
)

TLSVersion = Literal["1.2", "1.3"]

_HANDSHAKE_DONE = b"- Simple Client Mode:\n\n"


def _priority_args(tls_version: TLSVersion | None) -> list[str]:
    if tls_version is None:
        return []
    return [f"--priority=NORMAL:-VERS-ALL:+VERS-TLS{tls_version}"]


def listening_port(pid: int) -> int | None:
    """The TCP port process *pid* listens on over IPv4, from ``/proc``."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
            match = re.fullmatch(r"socket:\[(\d+)\]", with_target)
            if match:
                inodes.add(match.group(1))
    except OSError:  # the process is gone, or an fd closed while we looked
        return None
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].split(":")[1], 16)
    return None


# -- gnutls-serv ---------------------------------------------------------------------


class GnuTLSServer(_Peer):
    """A running ``gnutls-serv --echo``; see :func:`gnutls_server`."""

    host = "127.0.0.1"
    port: int

    def connections(self) -> int:
        """How many handshakes the server has completed so far."""
        return (self.stdout + self.stderr).count(b"- Description:")

    async def _stop(self) -> None:
        # gnutls-serv ignores EOF on stdin: terminate at once, kill if need be.
        if not self.exited.is_set():
            with suppress(ProcessLookupError):  # it may have just exited
                self.process.terminate()
            with anyio.move_on_after(3):
                await self.exited.wait()
        if not self.exited.is_set():
            with suppress(ProcessLookupError):
                self.process.kill()
            with anyio.move_on_after(5):
                await self.exited.wait()


@asynccontextmanager
async def gnutls_server(
    pem: PemFiles,
    *,
    tls_version: TLSVersion | None = None,
    alpn: Sequence[str] = (),
    verify_client: Literal["request", "require"] | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[GnuTLSServer]:
    """Run ``gnutls-serv --echo`` on a free port for the ``async with`` body.

    :param verify_client: ``None`` (no certificate request), ``"request"`` (ask,
        verify one that is sent) or ``"require"``; the test CA is trusted.
    """
    binary = require_binary("gnutls-serv")
    workdir = Path(tempfile.mkdtemp(prefix="gnutls-serv-", dir=pem.directory))
    args = [
        binary,
        "--echo",
        "-p",
        "0",
        "--x509certfile",
        str(pem.server),
        "--x509keyfile",
        str(pem.server),
        "--x509cafile",
        str(pem.ca),
        *_priority_args(tls_version),
    ]
    args += [f"--alpn={protocol}" for protocol in alpn]
    if verify_client is None:
        args.append("--disable-client-cert")
    elif verify_client == "request":
        args.append("--verify-client-cert")
    else:
        args.append("--require-client-cert")
    args += extra_args
    async with _run(GnuTLSServer, "gnutls-serv", args, workdir) as server:
        await server.wait_for_output(
            re.compile(rb"listening on IPv4[^\n]*done"), stream="stderr"
        )
        server.port = await server.wait_for(
            lambda: listening_port(server.process.pid), "a listening socket in /proc"
        )
        yield server


# -- gnutls-cli ----------------------------------------------------------------------


class GnuTLSClient(_Peer):
    """A running ``gnutls-cli``; see :func:`gnutls_client`."""

    def received(self) -> bytes:
        """Everything printed after the handshake: the server's data, mixed with
        the occasional status line (``*** Re-auth was performed.``, ...)."""
        output = bytes(self.stdout)
        start = output.find(_HANDSHAKE_DONE)
        return b"" if start < 0 else output[start + len(_HANDSHAKE_DONE) :]

    async def wait_connected(self, timeout: float = TIMEOUT) -> None:
        await self.wait_for_output(_HANDSHAKE_DONE, timeout=timeout)

    async def wait_received(self, data: bytes, timeout: float = TIMEOUT) -> None:
        await self.wait_for(
            lambda: data in self.received(), f"{data[-60:]!r} from the server", timeout
        )

    async def send(self, data: bytes) -> None:
        """Make gnutls-cli send *data* (it reads its stdin line by line)."""
        await self.write(data)

    async def close(self) -> int:
        """Close its stdin: it sends close_notify and exits; its exit code."""
        await self.close_stdin()
        return await self.wait_exit()


@asynccontextmanager
async def gnutls_client(
    pem: PemFiles,
    port: int,
    *,
    host: str = "127.0.0.1",
    servername: str = "localhost",
    tls_version: TLSVersion | None = None,
    alpn: Sequence[str] = (),
    cert: bool = False,
    post_handshake_auth: bool = False,
    starttls_proto: str | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[GnuTLSClient]:
    """Run ``gnutls-cli`` against ``host:port`` for the ``async with`` body.

    It verifies the server against the test CA for *servername* (also its SNI) and
    gives up on a verification error. *cert* presents the client certificate
    (``client@example.org``); *post_handshake_auth* lets the server ask for it
    after the handshake (TLS 1.3).
    """
    binary = require_binary("gnutls-cli")
    workdir = Path(tempfile.mkdtemp(prefix="gnutls-cli-", dir=pem.directory))
    args = [
        binary,
        "--x509cafile",
        str(pem.ca),
        "-p",
        str(port),
        host,
        "--verify-hostname",
        servername,
        "--sni-hostname",
        servername,
        *_priority_args(tls_version),
    ]
    args += [f"--alpn={protocol}" for protocol in alpn]
    if cert:
        args += ["--x509certfile", str(pem.client), "--x509keyfile", str(pem.client)]
    if post_handshake_auth:
        args.append("--post-handshake-auth")
    if starttls_proto is not None:
        args.append(f"--starttls-proto={starttls_proto}")
    args += extra_args
    async with _run(GnuTLSClient, "gnutls-cli", args, workdir) as client:
        yield client
