"""The redirect itself: it patches, records, catches the anchors, and restores."""

from __future__ import annotations

import ssl

import anyio._core._sockets
import anyio.streams.tls
import pytest
import trio
import trio.testing

import anyiotls
import anyiotls.trio

from .redirect import redirected

ANCHORS = {
    "trio.SSLStream": trio.SSLStream,
    "trio.SSLListener": trio.SSLListener,
    "anyio.streams.tls.TLSStream": anyio.streams.tls.TLSStream,
    "anyio.streams.tls.TLSListener": anyio.streams.tls.TLSListener,
    "anyio._core._sockets.TLSStream": anyio._core._sockets.TLSStream,
}


def _current() -> dict[str, type]:
    return {
        "trio.SSLStream": trio.SSLStream,
        "trio.SSLListener": trio.SSLListener,
        "anyio.streams.tls.TLSStream": anyio.streams.tls.TLSStream,
        "anyio.streams.tls.TLSListener": anyio.streams.tls.TLSListener,
        "anyio._core._sockets.TLSStream": anyio._core._sockets.TLSStream,
    }


def test_patches_and_restores() -> None:
    inits = {name: cls.__init__ for name, cls in ANCHORS.items()}
    with redirected() as redirect:
        assert _current() == {
            "trio.SSLStream": anyiotls.trio.SSLStream,
            "trio.SSLListener": anyiotls.trio.SSLListener,
            "anyio.streams.tls.TLSStream": anyiotls.TLSStream,
            "anyio.streams.tls.TLSListener": anyiotls.TLSListener,
            "anyio._core._sockets.TLSStream": anyiotls.TLSStream,
        }
        assert ("anyio._core._sockets", "TLSStream") in redirect.patched
    assert _current() == ANCHORS
    assert {name: cls.__init__ for name, cls in ANCHORS.items()} == inits


def test_records_ours(client_context: ssl.SSLContext) -> None:
    transport, _ = trio.testing.memory_stream_pair()
    with redirected() as redirect:
        with pytest.raises(AssertionError, match="did not run on anyiotls"):
            redirect.assert_used(anyiotls.trio.SSLStream)
        stream = trio.SSLStream(transport, client_context, server_hostname="localhost")
        assert redirect.assert_used(anyiotls.trio.SSLStream) == [stream]
        assert type(stream) is anyiotls.trio.SSLStream


def test_catches_the_anchor(client_context: ssl.SSLContext) -> None:
    transport, _ = trio.testing.memory_stream_pair()
    with redirected() as redirect:
        # what a library that kept a reference from before the redirect would build
        ANCHORS["trio.SSLStream"](
            transport, client_context, server_hostname="localhost"
        )
        with pytest.raises(AssertionError, match="the anchors' classes were used"):
            redirect.assert_used(anyiotls.trio.SSLStream, minimum=0)
