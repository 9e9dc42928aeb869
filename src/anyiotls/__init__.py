"""TLS for structured concurrency: any AnyIO or Trio byte stream, one engine.

``from anyiotls import TLSStream`` is a drop-in for ``anyio.streams.tls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "CertificateAttribute",
    "ChannelBindingError",
    "CloseTimeoutError",
    "PeerVerificationError",
    "PinMismatchError",
    "PostHandshakeAuthError",
    "ReadAheadLimitError",
    "TLSAttribute",
    "TLSConnectable",
    "TLSListener",
    "TLSStream",
    "channel_binding",
    "pin_sha256",
    "spki_sha256",
    "tls_server_end_point",
    "verify_in_thread",
    "x509_certificates",
)

from anyio.streams.tls import TLSAttribute as TLSAttribute

from ._anyio import TLSConnectable as TLSConnectable
from ._anyio import TLSListener as TLSListener
from ._anyio import TLSStream as TLSStream
from ._certs import CertificateAttribute as CertificateAttribute
from ._certs import channel_binding as channel_binding
from ._certs import pin_sha256 as pin_sha256
from ._certs import spki_sha256 as spki_sha256
from ._certs import tls_server_end_point as tls_server_end_point
from ._certs import verify_in_thread as verify_in_thread
from ._certs import x509_certificates as x509_certificates
from ._exceptions import ChannelBindingError as ChannelBindingError
from ._exceptions import CloseTimeoutError as CloseTimeoutError
from ._exceptions import PeerVerificationError as PeerVerificationError
from ._exceptions import PinMismatchError as PinMismatchError
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._exceptions import ReadAheadLimitError as ReadAheadLimitError
