"""TLSListener's log of a failed handshake: one ERROR line with the cause.

No logging configured means Python's last-resort handler, which prints whatever a
record carries: a traceback per failed client buried the one useful line. The
traceback is a DEBUG record of its own.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
import textwrap
from contextlib import suppress

import anyio
import pytest
from anyio.abc import SocketAttribute

from anyiotls import TLSListener, TLSStream

pytestmark = pytest.mark.anyio


async def _serve_one_failure(server_context: ssl.SSLContext, data: bytes) -> None:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, server_context)
    port = listener.extra(SocketAttribute.local_port)

    async def handler(stream: TLSStream) -> None:
        await stream.aclose()

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            async with await anyio.connect_tcp("127.0.0.1", port) as plain:
                if data:
                    await plain.send(data)
                else:
                    await plain.send_eof()
                with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    await plain.receive()
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP_REQUEST"),
        (b"", "the client closed the connection"),
    ],
    ids=["plaintext-http", "closed"],
)
async def test_one_error_line_with_the_cause_and_the_traceback_at_debug(
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    cause: str,
) -> None:
    caplog.set_level(logging.DEBUG, "anyiotls")
    await _serve_one_failure(server_context, data)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert message.startswith("Error during TLS handshake: ")
    assert cause in message
    assert "\n" not in message
    assert errors[0].exc_info is None
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(debug) == 1
    assert debug[0].exc_info is not None
    assert isinstance(debug[0].exc_info[1], (ssl.SSLError, anyio.BrokenResourceError))


def test_without_logging_configured_a_failure_prints_one_line() -> None:
    # A separate interpreter: the last-resort handler is what users see by default.
    program = textwrap.dedent(
        """
        import anyio, ssl, sys, trustme
        from anyio.abc import SocketAttribute
        from anyiotls import TLSListener

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)

        async def main():
            inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
            listener = TLSListener(inner, context)
            port = listener.extra(SocketAttribute.local_port)
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, lambda stream: stream.aclose())
                async with await anyio.connect_tcp("127.0.0.1", port) as plain:
                    await plain.send(b"GET / HTTP/1.0\\r\\n\\r\\n")
                    try:
                        await plain.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()

        anyio.run(main)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Error during TLS handshake: " in lines[0]
    assert "HTTP_REQUEST" in lines[0]
