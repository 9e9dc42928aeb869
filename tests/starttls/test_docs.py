"""The code in docs/starttls.md runs: against Postfix, Dovecot and a fake NNTP server.

Every ``python`` block is compiled; the complete programs are executed (with
``__name__`` other than ``"__main__"``) and their functions called here.
"""

from __future__ import annotations

import ast
import re
import ssl
from pathlib import Path
from typing import Any

import anyio
import pytest

from anyiotls import starttls

from .conftest import MAIL_HOSTNAME, DovecotServer, PostfixServer
from .helpers import TIMEOUT, ServerPeer, serve_one

pytestmark = pytest.mark.anyio

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "starttls.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", GUIDE.read_text(), re.M | re.S)


def _programs() -> dict[str, Any]:
    """The functions defined by the guide's complete programs, by name."""
    functions: dict[str, Any] = {}
    for block in _blocks():
        try:
            code = compile(block, str(GUIDE), "exec")
        except SyntaxError:
            continue  # a fragment with a top-level await: see the test below
        namespace: dict[str, Any] = {"__name__": "starttls_guide"}
        exec(code, namespace)
        functions.update(
            (name, value)
            for name, value in namespace.items()
            if getattr(value, "__module__", None) == "starttls_guide"
        )
    return functions


PROGRAMS = _programs()


def test_every_block_compiles_and_the_programs_are_there() -> None:
    blocks = _blocks()
    assert len(blocks) >= 6
    for block in blocks:
        compile(block, str(GUIDE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert {"send_mail", "imap_login", "nntp_starttls", "main"} <= set(PROGRAMS)


async def test_guide_sends_a_mail_through_postfix(
    postfix: PostfixServer, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        queued = await PROGRAMS["send_mail"](
            "127.0.0.1", postfix.port, MAIL_HOSTNAME, client_context
        )
    assert queued.startswith("250 2.0.0 Ok: queued as ")


async def test_guide_logs_into_dovecot_over_imap(
    dovecot: DovecotServer, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        selected = await PROGRAMS["imap_login"](
            dovecot.address,
            dovecot.imap_port,
            MAIL_HOSTNAME,
            "guide",
            dovecot.password,
            client_context,
        )
    assert selected[-1].startswith("a2 OK")
    assert "* 0 EXISTS" in selected


def nntp_server(context: ssl.SSLContext, injected: bytes = b"") -> Any:
    async def handler(peer: ServerPeer) -> None:
        await peer.send(b"200 news.test ready\r\n")
        assert await peer.line() == "CAPABILITIES"
        await peer.send(b"101 list\r\nVERSION 2\r\nREADER\r\nSTARTTLS\r\n.\r\n")
        assert await peer.line() == "STARTTLS"
        await peer.send(b"382 Continue with TLS negotiation\r\n" + injected)
        if injected:
            assert await peer.rest() == b""
            return
        await peer.starttls(context)
        assert await peer.line() == "CAPABILITIES"
        await peer.send(b"101 list\r\nVERSION 2\r\nREADER\r\nPOST\r\n.\r\n")
        await peer.rest()

    return handler


async def test_guide_nntp_with_the_primitive(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with serve_one(nntp_server(mail_server_context)) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            tls, capabilities = await PROGRAMS["nntp_starttls"](
                stream, MAIL_HOSTNAME, client_context
            )
            await tls.aclose()
    assert capabilities == {"VERSION", "READER", "POST"}


async def test_guide_nntp_refuses_injected_lines(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    injected = b"101 list\r\nAUTHINFO\r\n.\r\n"
    async with serve_one(nntp_server(mail_server_context, injected)) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            with pytest.raises(starttls.InjectedDataError):
                await PROGRAMS["nntp_starttls"](stream, MAIL_HOSTNAME, client_context)
