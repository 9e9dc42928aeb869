"""TLS for structured concurrency: any AnyIO or Trio byte stream, one engine.

``from anyiotls import TLSStream`` is a drop-in for ``anyio.streams.tls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "PostHandshakeAuthError",
    "SessionAttribute",
    "SessionCache",
    "TLSAttribute",
    "TLSConnectable",
    "TLSListener",
    "TLSStream",
)

from anyio.streams.tls import TLSAttribute as TLSAttribute

from ._anyio import TLSConnectable as TLSConnectable
from ._anyio import TLSListener as TLSListener
from ._anyio import TLSStream as TLSStream
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._session import SessionAttribute as SessionAttribute
from ._session import SessionCache as SessionCache
