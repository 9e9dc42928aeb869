"""STARTTLS: upgrade a plaintext SMTP, LMTP, IMAP or POP3 connection to TLS.

Client dialogues that fail closed (:func:`smtp`, :func:`lmtp`, :func:`imap`,
:func:`pop3`), and the primitive they are built on (:func:`upgrade`) for other
protocols. Both faces: an AnyIO byte stream is upgraded to an
:class:`anyiotls.TLSStream`, a Trio stream to an ``anyiotls.trio.SSLStream``.

The rule behind all of it (the buffered-plaintext rule): bytes the client has
buffered past the server's go-ahead were never protected by TLS; they are refused
(:exc:`InjectedDataError`) and never delivered as if they came over TLS. And a
reply other than the go-ahead raises: never continue in plaintext.
"""

from __future__ import annotations

__all__ = (
    "ConnectionClosedError",
    "HasBuffer",
    "IMAPResponse",
    "IMAPResult",
    "InjectedDataError",
    "LineBuffer",
    "MalformedReplyError",
    "NotOfferedError",
    "POP3Result",
    "RefusedError",
    "ReplyError",
    "SMTPReply",
    "SMTPResult",
    "StartTLSError",
    "WrapFunction",
    "imap",
    "lmtp",
    "pop3",
    "smtp",
    "upgrade",
    "wrap_anyio",
    "wrap_trio",
)

from ._exceptions import ConnectionClosedError as ConnectionClosedError
from ._exceptions import InjectedDataError as InjectedDataError
from ._exceptions import MalformedReplyError as MalformedReplyError
from ._exceptions import NotOfferedError as NotOfferedError
from ._exceptions import RefusedError as RefusedError
from ._exceptions import ReplyError as ReplyError
from ._exceptions import StartTLSError as StartTLSError
from ._imap import IMAPResult as IMAPResult
from ._imap import imap as imap
from ._lines import IMAPResponse as IMAPResponse
from ._lines import LineBuffer as LineBuffer
from ._lines import SMTPReply as SMTPReply
from ._pop3 import POP3Result as POP3Result
from ._pop3 import pop3 as pop3
from ._smtp import SMTPResult as SMTPResult
from ._smtp import lmtp as lmtp
from ._smtp import smtp as smtp
from ._upgrade import HasBuffer as HasBuffer
from ._upgrade import WrapFunction as WrapFunction
from ._upgrade import upgrade as upgrade
from ._upgrade import wrap_anyio as wrap_anyio
from ._upgrade import wrap_trio as wrap_trio
