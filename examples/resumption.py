"""A client that reconnects and resumes its TLS session (docs/resumption.md).

Self-contained: a throw-away CA and server certificate (needs ``trustme``), a TLS
server on 127.0.0.1, and a client that connects three times through one
:class:`anyiotls.SessionCache`. The first connection does a full handshake; the
next ones resume the session the previous one left in the cache::

    python examples/resumption.py [--backend trio]
"""

from __future__ import annotations

import argparse
import ssl

import anyio
import anyio.abc
import trustme
from anyio.abc import SocketAttribute

from anyiotls import (
    SessionAttribute,
    SessionCache,
    TLSConnectable,
    TLSListener,
    TLSStream,
)


class TCPConnectable:
    """Opens a TCP connection per ``connect()``, as ``anyio.TCPConnectable`` does
    (AnyIO 4.10 and later; spelled out here so the example runs on AnyIO 4.0)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    async def connect(self) -> anyio.abc.SocketStream:
        return await anyio.connect_tcp(self.host, self.port)


async def echo(stream: TLSStream) -> None:
    """Answer each chunk with itself until the client closes."""
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def main() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    # One client context for every connection: a session resumes only with the
    # SSLContext object that made it.
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    cache = SessionCache()  # opt-in: resumed connections can be linked
    connectable = TLSConnectable(
        TCPConnectable("127.0.0.1", port),
        hostname="localhost",
        ssl_context=client_context,
        session_cache=cache,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(TLSListener(tcp, server_context).serve, echo)
        for number in range(1, 4):
            async with await connectable.connect() as stream:
                await stream.send(b"hello")
                await stream.receive()
                reused = stream.extra(SessionAttribute.session_reused)
                print(f"connection {number}: resumed {'yes' if reused else 'no'}")
            # aclose() waited for the server's close_notify: the cache has the
            # session (with the ticket that came after the handshake).
        tg.cancel_scope.cancel()
    await tcp.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    anyio.run(main, backend=parser.parse_args().backend)
