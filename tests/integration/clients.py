"""Clients for the integration tests: curl, a raw TLS socket, httpx."""

from __future__ import annotations

import re
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import trio

import anyiotls.trio

from ..peers import require_binary
from .redirect import Redirect
from .servers import Server

__all__ = (
    "CurlResult",
    "RawClient",
    "Transfer",
    "assert_serving",
    "curl",
    "curl_many",
    "httpx_client",
    "request_bytes",
    "wait_server_closed",
)

#: Seconds any one client exchange may take.
CLIENT_TIMEOUT = 30.0


@dataclass
class CurlResult:
    status: int
    body: bytes
    #: "TLSv1.2", "TLSv1.3", from curl's verbose output
    tls_version: str
    #: "h2" or "http/1.1", what the server accepted
    alpn: str
    stderr: str


async def curl(
    server: Server,
    cafile: Path,
    path: str = "/echo",
    *,
    tls12: bool = False,
    http2: bool = False,
    close: bool = False,
    data: bytes | None = None,
) -> CurlResult:
    """One request with curl; fails unless curl succeeded."""
    command = [
        require_binary("curl"),
        "--silent",
        "--show-error",
        "--verbose",
        "--cacert",
        str(cafile),
        "--max-time",
        str(CLIENT_TIMEOUT),
        "--http2" if http2 else "--http1.1",
        "--write-out",
        "\n%{http_code}",
    ]
    if tls12:
        command += ["--tlsv1.2", "--tls-max", "1.2"]
    else:
        command += ["--tlsv1.3"]
    if close:
        command += ["--header", "Connection: close"]
    if data is not None:
        command += ["--data-binary", "@-"]
    command.append(server.url + path)
    with anyio.fail_after(CLIENT_TIMEOUT + 5):
        result = await anyio.run_process(command, input=data, check=False)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"curl failed ({result.returncode}):\n{stderr}"
    body, _, status = result.stdout.rpartition(b"\n")
    version = re.search(r"SSL connection using (TLSv1\.[23])", stderr)
    alpn = re.search(r"ALPN: server accepted (\S+)", stderr)
    assert version, f"curl's output lacks the TLS version:\n{stderr}"
    assert alpn, f"curl's output lacks the ALPN result:\n{stderr}"
    return CurlResult(int(status), body, version[1], alpn[1], stderr)


@dataclass
class Transfer:
    status: int
    body: bytes
    #: connections curl opened for this transfer (0: it reused one)
    connects: int


async def curl_many(
    server: Server,
    cafile: Path,
    paths: list[str],
    *,
    tls12: bool = False,
    close: bool = False,
) -> list[Transfer]:
    """GET every path in one curl process: one after the other, on one kept-alive
    connection unless *close* (``Connection: close``) makes them one each."""
    command = [
        require_binary("curl"),
        "--silent",
        "--show-error",
        "--http1.1",
        "--cacert",
        str(cafile),
        "--max-time",
        str(CLIENT_TIMEOUT),
        "--write-out",
        "\n@@ %{http_code} %{num_connects}\n",
    ]
    command += ["--tlsv1.2", "--tls-max", "1.2"] if tls12 else ["--tlsv1.3"]
    if close:
        command += ["--header", "Connection: close"]
    command += [server.url + path for path in paths]
    with anyio.fail_after(CLIENT_TIMEOUT * 2):
        result = await anyio.run_process(command, check=False)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"curl failed ({result.returncode}):\n{stderr}"
    transfers = []
    lines = result.stdout.removesuffix(b"\n").split(b"\n")
    assert len(lines) == 2 * len(paths), f"curl's output: {result.stdout!r}"
    for body, summary in zip(lines[0::2], lines[1::2], strict=True):
        marker, status, connects = summary.split(b" ")
        assert marker == b"@@", f"unexpected curl output: {result.stdout!r}"
        transfers.append(Transfer(int(status), body, int(connects)))
    return transfers


async def assert_serving(server: Server, cafile: Path) -> None:
    """The server is alive and answers a new connection (TLS 1.3, HTTP/1.1)."""
    server.check_alive()
    result = await curl(server, cafile, "/echo", data=b"still there?")
    assert (result.status, result.body) == (200, b"still there?")
    server.check_alive()


async def wait_server_closed(
    server: Server, redirect: Redirect, already: int = 0
) -> list[anyiotls.trio.SSLStream[Any]]:
    """Wait until hypercorn has finished every connection it accepted (after the
    first *already*): its ``TCPServer`` closed the stream's socket in ``_close``.

    A connection that the server finishes after the client is done would otherwise
    crash the server only after the next check.
    """
    with anyio.fail_after(CLIENT_TIMEOUT):
        while True:
            server.check_alive()
            streams = redirect.instances(anyiotls.trio.SSLStream)[already:]
            server_side = [s for s in streams if s.server_side]
            if all(_socket_closed(s) for s in server_side):
                return server_side
            await anyio.sleep(0.01)


def _socket_closed(stream: anyiotls.trio.SSLStream[Any]) -> bool:
    transport = stream.transport_stream
    assert isinstance(transport, trio.SocketStream)
    return transport.socket.fileno() == -1


class RawClient:
    """A blocking client on the standard library's ``ssl`` that ends the connection
    the way a test says, close_notify or not (run it in a worker thread)."""

    def __init__(self, server: Server, context: ssl.SSLContext) -> None:
        raw = socket.create_connection((server.host, server.port), CLIENT_TIMEOUT)
        self.tls = context.wrap_socket(raw, server_hostname="localhost")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.tls.close()  # a no-op once the test closed it its own way

    def version(self) -> str | None:
        return self.tls.version()

    def request(self, request: bytes) -> bytes:
        """Send *request* (HTTP/1.1, keep-alive) and read one response with a
        ``content-length``."""
        self.tls.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.tls.recv(65536)
            assert chunk, f"the server closed after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length_header = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length_header, f"no content-length in {head!r}"
        length = int(length_header[1])
        while len(body) < length:
            chunk = self.tls.recv(65536)
            assert chunk, "the server closed mid-body"
            body += chunk
        return head + b"\r\n\r\n" + body

    def send(self, data: bytes) -> None:
        self.tls.sendall(data)

    def close_ragged(self) -> None:
        """Close TCP without close_notify: the socket's FIN, no TLS alert."""
        # SSLSocket.shutdown() shuts the socket down below TLS; no SSL_shutdown.
        self.tls.shutdown(socket.SHUT_RDWR)
        self.tls.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST (no FIN, no close_notify)."""
        self.tls.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.tls.close()

    def close_clean(self) -> None:
        """close_notify, then close.

        The answer may be a plain EOF: an ``https_compatible`` server (hypercorn's)
        need not answer close_notify with its own (trio's SSLStream does not).
        """
        try:
            self.tls.unwrap().close()
        except ssl.SSLEOFError:
            self.tls.close()


def request_bytes(path: str = "/echo", body: bytes = b"", close: bool = False) -> bytes:
    headers = [
        f"POST {path} HTTP/1.1",
        "Host: localhost",
        f"Content-Length: {len(body)}",
    ]
    if close:
        headers.append("Connection: close")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def httpx_client(
    context: ssl.SSLContext, *, http2: bool = False, **options: Any
) -> httpx.AsyncClient:
    """An httpx client for HTTP/1.1 only, or for h2 only (so that ALPN decides
    nothing behind the test's back)."""
    options.setdefault("timeout", CLIENT_TIMEOUT)
    return httpx.AsyncClient(verify=context, http1=not http2, http2=http2, **options)
