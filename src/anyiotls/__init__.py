"""TLS for structured concurrency: any AnyIO or Trio byte stream, one engine.

``from anyiotls import TLSStream`` is a drop-in for ``anyio.streams.tls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "CertificateAttribute",
    "ChannelBindingError",
    "ClientHello",
    "ClientHelloAttribute",
    "ClientHelloError",
    "CloseTimeoutError",
    "PeerVerificationError",
    "PinMismatchError",
    "PostHandshakeAuthError",
    "ReadAheadLimitError",
    "SessionAttribute",
    "SessionCache",
    "TCPListener",
    "TLSAttribute",
    "TLSConnectable",
    "TLSListener",
    "TLSStream",
    "UnrecognizedNameError",
    "channel_binding",
    "connect_tcp",
    "create_tcp_listener",
    "load_server_context",
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
from ._attributes import ClientHelloAttribute as ClientHelloAttribute
from ._certs import CertificateAttribute as CertificateAttribute
from ._certs import channel_binding as channel_binding
from ._certs import pin_sha256 as pin_sha256
from ._certs import spki_sha256 as spki_sha256
from ._certs import tls_server_end_point as tls_server_end_point
from ._certs import verify_in_thread as verify_in_thread
from ._certs import x509_certificates as x509_certificates
from ._clienthello import ClientHello as ClientHello
from ._clienthello import ClientHelloError as ClientHelloError
from ._exceptions import ChannelBindingError as ChannelBindingError
from ._exceptions import CloseTimeoutError as CloseTimeoutError
from ._exceptions import PeerVerificationError as PeerVerificationError
from ._exceptions import PinMismatchError as PinMismatchError
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._exceptions import ReadAheadLimitError as ReadAheadLimitError
from ._session import SessionAttribute as SessionAttribute
from ._session import SessionCache as SessionCache
from ._sni import UnrecognizedNameError as UnrecognizedNameError
from ._sni import load_server_context as load_server_context
from ._tcp import TCPListener as TCPListener
from ._tcp import connect_tcp as connect_tcp
from ._tcp import create_tcp_listener as create_tcp_listener
