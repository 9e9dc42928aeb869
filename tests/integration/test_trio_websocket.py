"""trio-websocket, unchanged, on anyiotls.trio: a wss server and client.

trio-websocket opens its TLS with ``trio.open_ssl_over_tcp_listeners`` and
``trio.open_ssl_over_tcp_stream``, which build ``trio.SSLListener`` and
``trio.SSLStream`` by their module attributes: the redirect makes both anyiotls's.
"""

from __future__ import annotations

import hashlib
import ssl
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

import anyiotls.trio

from .app import payload
from .redirect import Redirect

pytestmark = pytest.mark.anyio

EIGHT_MIB = 8 * 1024 * 1024
#: trio-websocket's default maximum is 1 MiB
MAX_MESSAGE = 2 * EIGHT_MIB
TIMEOUT = 60.0


@pytest.fixture
def anyio_backend() -> Any:
    return "trio"


async def _echo(request: WebSocketRequest) -> None:
    connection = await request.accept()
    try:
        while True:
            message = await connection.get_message()
            await connection.send_message(message)
    except ConnectionClosed:
        pass


@pytest.mark.slow
async def test_wss_echo(
    redirect: Redirect,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    big_up = payload(EIGHT_MIB, seed=11)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(
                    serve_websocket,
                    _echo,
                    "127.0.0.1",
                    0,
                    ssl_context=server_context,
                    max_message_size=MAX_MESSAGE,
                )
            )
            url = f"wss://127.0.0.1:{server.port}/echo"
            async with open_websocket_url(
                url, ssl_context=client_context, max_message_size=MAX_MESSAGE
            ) as connection:
                # both ends of this one connection, while it is open
                streams = redirect.assert_used(anyiotls.trio.SSLStream, 2)
                assert sorted(stream.server_side for stream in streams) == [False, True]
                assert [stream.version() for stream in streams] == ["TLSv1.3"] * 2
                for number in range(1_000):
                    message: str | bytes = (
                        f"message {number}"
                        if number % 2
                        else bytes([number % 256]) * 100
                    )
                    await connection.send_message(message)
                    assert await connection.get_message() == message
                await connection.send_message(big_up)
                big_down = await connection.get_message()
                assert isinstance(big_down, bytes)
                assert (
                    hashlib.sha256(big_down).digest() == hashlib.sha256(big_up).digest()
                )
            nursery.cancel_scope.cancel()
    assert len(redirect.instances(anyiotls.trio.SSLStream)) == 2
    redirect.assert_used(anyiotls.trio.SSLListener)
