"""Servers for the integration tests, each in its own thread and event loop.

A server in a thread of its own is independent of the test's event loop (an asyncio
client can talk to a Trio server) and, when it dies, says so: :meth:`Server.
check_alive` fails with the exception that ended it. Every server listens on
127.0.0.1 on a port the system chose, and is stopped when its ``with`` block ends,
however it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config

from .app import app

__all__ = (
    "ConnectProxy",
    "Server",
    "connect_proxy",
    "hypercorn_asyncio",
    "hypercorn_config",
    "hypercorn_trio",
)

#: Seconds a server may take to start or to stop.
SERVER_TIMEOUT = 30.0


def hypercorn_config(certfile: str, **options: Any) -> Config:
    """hypercorn's configuration for TLS with h2 and http/1.1 on 127.0.0.1."""
    config = Config()
    config.certfile = certfile
    config.keyfile = certfile  # the file holds the key and the chain
    config.alpn_protocols = ["h2", "http/1.1"]
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 2.0
    for name, value in options.items():
        setattr(config, name, value)
    return config


@dataclass
class Server:
    """A server that runs in a thread."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None
    #: ends the server; callable from any thread
    stop: Callable[[], None] = field(default=lambda: None)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def check_alive(self) -> None:
        """Fail unless the server still runs."""
        if self.error is not None:
            raise AssertionError(f"{self.name} died: {self.error!r}") from self.error
        assert self.thread is not None
        assert self.thread.is_alive(), f"{self.name} has stopped"

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(SERVER_TIMEOUT)
        assert not self.thread.is_alive(), f"{self.name} did not stop"


def _port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


@contextmanager
def hypercorn_trio(config: Config) -> Iterator[Server]:
    """hypercorn's Trio worker (``hypercorn.trio.serve``) serving :func:`app`.

    It uses whatever ``trio.SSLListener`` is at the time: run it inside the
    redirect to run it on anyiotls.
    """
    import hypercorn.trio

    server = Server("hypercorn's trio worker")
    started = threading.Event()

    async def main() -> None:
        stop = trio.Event()
        token = trio.lowlevel.current_trio_token()
        server.stop = partial(token.run_sync_soon, stop.set)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait)
            )
            server.port = _port_of(binds[0])
            started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            server.error = exc
        finally:
            started.set()

    server.thread = threading.Thread(target=run, name=server.name, daemon=True)
    server.thread.start()
    assert started.wait(SERVER_TIMEOUT), f"{server.name} did not start"
    try:
        server.check_alive()
        yield server
    finally:
        # stop() is thread-safe; after a crash the loop is gone and it raises
        with suppress(RuntimeError):
            server.stop()
        server.join()
    # A crash at the very end counts too, not only one that a test checked for.
    if server.error is not None:
        raise AssertionError(f"{server.name} died: {server.error!r}") from server.error


class _AsyncioThread:
    """An asyncio event loop in a thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name=name, daemon=True
        )
        self.thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(SERVER_TIMEOUT)
        assert not self.thread.is_alive(), "the asyncio thread did not stop"
        self.loop.close()


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextmanager
def hypercorn_asyncio(config: Config) -> Iterator[Server]:
    """hypercorn's asyncio worker serving :func:`app`: TLS by the standard library's
    asyncio, not by anything the redirect patches — an independent peer."""
    import hypercorn.asyncio

    server = Server("hypercorn's asyncio worker")
    sock = _listening_socket()
    server.port = sock.getsockname()[1]
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn takes the descriptor over
    runner = _AsyncioThread(server.name)
    server.thread = runner.thread
    stop = asyncio.Event()
    server.stop = partial(runner.loop.call_soon_threadsafe, stop.set)

    async def main() -> None:
        try:
            await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)
        except BaseException as exc:
            server.error = exc
            raise

    future = runner.submit(main())
    try:
        _wait_listening(server.port, future)
        server.check_alive()
        yield server
    finally:
        server.stop()
        with suppress(BaseException):
            future.result(SERVER_TIMEOUT)
        runner.close()


def _wait_listening(port: int, future: concurrent.futures.Future[Any]) -> None:
    """Wait until the server completes a TLS handshake on *port* (any certificate:
    the tests check it themselves)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = threading.Event()
    for _ in range(int(SERVER_TIMEOUT * 20)):
        if future.done():
            future.result()  # raises what ended the server
            raise AssertionError("the server ended at once")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw),
            ):
                return
        except OSError:
            deadline.wait(0.05)
    raise AssertionError(f"nothing answers TLS on port {port}")


@dataclass
class ConnectProxy:
    """An HTTP CONNECT proxy behind TLS (the standard library's, via asyncio)."""

    port: int = 0
    #: "host:port" of every CONNECT it accepted
    tunnels: list[str] = field(default_factory=list)
    #: bytes relayed client -> target and target -> client
    relayed: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextmanager
def connect_proxy(context: ssl.SSLContext) -> Iterator[ConnectProxy]:
    """Start a TLS CONNECT proxy that tunnels to 127.0.0.1 only."""
    proxy = ConnectProxy()
    runner = _AsyncioThread("CONNECT proxy")

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: int
    ) -> None:
        try:
            while data := await reader.read(65536):
                proxy.relayed[direction] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or host != "127.0.0.1":
                writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                return
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            proxy.tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(pipe(reader, up_writer, 0), pipe(up_reader, writer, 1))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, sock=_listening_socket(), ssl=context)

    asyncio_server = runner.submit(start()).result(SERVER_TIMEOUT)
    proxy.port = asyncio_server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:

        async def stop() -> None:
            asyncio_server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        runner.submit(stop()).result(SERVER_TIMEOUT)
        runner.close()
