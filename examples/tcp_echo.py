"""A TLS echo server and client on 127.0.0.1: connect_tcp and create_tcp_listener.

Self-contained: makes throw-away certificates in memory (needs ``trustme``), serves on
a free loopback port, connects, echoes, and closes::

    python examples/tcp_echo.py [--backend asyncio|trio] [--uvloop]
"""

from __future__ import annotations

import argparse
import ssl

import anyio
import trustme
from anyio.abc import SocketAttribute

import anyiotls
from anyiotls import TLSAttribute, TLSStream


def make_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context (certificate for 127.0.0.1) and a client context trusting it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    return server_context, client_context


async def echo(stream: TLSStream) -> None:
    """Send back what arrives until the client closes."""
    async with stream:
        try:
            async for chunk in stream:
                await stream.send(chunk)
        except anyio.BrokenResourceError:
            pass  # the client vanished: drop it


async def main() -> None:
    server_context, client_context = make_contexts()
    listener = await anyiotls.create_tcp_listener(
        local_host="127.0.0.1", ssl_context=server_context
    )
    port: int = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        # the host name checked against the certificate is remote_host by default
        async with await anyiotls.connect_tcp(
            "127.0.0.1", port, ssl_context=client_context
        ) as stream:
            await stream.send(b"hello over TLS")
            reply = await stream.receive()
            print(
                f"{reply!r} from {stream.extra(SocketAttribute.remote_address)} "
                f"over {stream.extra(TLSAttribute.tls_version)}"
            )
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--uvloop", action="store_true", help="asyncio with uvloop")
    args = parser.parse_args()
    options = {"use_uvloop": True} if args.uvloop else {}
    anyio.run(main, backend=args.backend, backend_options=options)
