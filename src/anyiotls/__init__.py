"""TLS for structured concurrency: any AnyIO or Trio byte stream, one engine.

``from anyiotls import TLSStream`` is a drop-in for ``anyio.streams.tls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "ClientHello",
    "ClientHelloAttribute",
    "ClientHelloError",
    "PostHandshakeAuthError",
    "TLSAttribute",
    "TLSConnectable",
    "TLSListener",
    "TLSStream",
    "UnrecognizedNameError",
    "load_server_context",
)

from anyio.streams.tls import TLSAttribute as TLSAttribute

from ._anyio import TLSConnectable as TLSConnectable
from ._anyio import TLSListener as TLSListener
from ._anyio import TLSStream as TLSStream
from ._attributes import ClientHelloAttribute as ClientHelloAttribute
from ._clienthello import ClientHello as ClientHello
from ._clienthello import ClientHelloError as ClientHelloError
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._sni import UnrecognizedNameError as UnrecognizedNameError
from ._sni import load_server_context as load_server_context
