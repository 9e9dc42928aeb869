"""TLS for structured concurrency: any AnyIO or Trio byte stream, one engine.

``from anyiotls import TLSStream`` is a drop-in for ``anyio.streams.tls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "PostHandshakeAuthError",
    "TCPListener",
    "TLSAttribute",
    "TLSConnectable",
    "TLSListener",
    "TLSStream",
    "connect_tcp",
    "create_tcp_listener",
)

from anyio.streams.tls import TLSAttribute as TLSAttribute

from ._anyio import TLSConnectable as TLSConnectable
from ._anyio import TLSListener as TLSListener
from ._anyio import TLSStream as TLSStream
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._tcp import TCPListener as TCPListener
from ._tcp import connect_tcp as connect_tcp
from ._tcp import create_tcp_listener as create_tcp_listener
