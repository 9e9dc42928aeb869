"""A small ASGI application for the servers under test.

- ``/echo``: answers with the request body; when it is empty, with the query
  string; when both are, ``ok``
- ``/download?size=N&seed=S``: answers with :func:`payload` (N, S), in chunks
- ``/upload``: reads the body and answers ``<length> <sha256 hex>``
- ``/info``: answers ``<http_version> <scheme>`` as the server saw the request
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qs

__all__ = ("app", "digest", "payload")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHUNK = 64 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """The bytes ``/download`` sends: reproducible, incompressible."""
    return random.Random(seed).randbytes(size)


def digest(data: bytes) -> str:
    """``<length> <sha256 hex>``, as ``/upload`` answers."""
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


async def _respond(send: Send, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    for start in range(0, len(body), CHUNK):
        await send(
            {
                "type": "http.response.body",
                "body": body[start : start + CHUNK],
                "more_body": start + CHUNK < len(body),
            }
        )
    if not body:
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive) -> tuple[int, Any, bytes]:
    """(length, sha256, the first 1 MiB) of the request body."""
    hasher = hashlib.sha256()
    length = 0
    head = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        hasher.update(chunk)
        length += len(chunk)
        if len(head) < 1 << 20:
            head += chunk
        if not message.get("more_body", False):
            return length, hasher, bytes(head)


class _Disconnected(Exception):
    """The client went away before the request's end: nothing to answer."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    with suppress(_Disconnected):
        await _app(scope, receive, send)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        raise RuntimeError(f"unexpected scope {scope['type']!r}")
    path = scope["path"]
    if path == "/echo":
        _, _, body = await _read_body(receive)
        await _respond(send, body or scope["query_string"] or b"ok")
    elif path == "/download":
        await _read_body(receive)
        query = parse_qs(scope["query_string"].decode())
        size = int(query.get("size", ["0"])[0])
        seed = int(query.get("seed", ["0"])[0])
        await _respond(send, payload(size, seed))
    elif path == "/upload":
        length, hasher, _ = await _read_body(receive)
        await _respond(send, f"{length} {hasher.hexdigest()}".encode())
    elif path == "/info":
        await _read_body(receive)
        await _respond(send, f"{scope['http_version']} {scope['scheme']}".encode())
    else:
        await _read_body(receive)
        await _respond(send, b"not found", status=404)
