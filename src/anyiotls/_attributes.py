"""Typed attributes of anyiotls's own, beside AnyIO's :class:`TLSAttribute`."""

from __future__ import annotations

__all__ = ("ClientHelloAttribute",)

from anyio import TypedAttributeSet, typed_attribute

from ._clienthello import ClientHello


class ClientHelloAttribute(TypedAttributeSet):
    """What the client offered in its ClientHello, for streams whose listener read it.

    Present on streams accepted by a :class:`~anyiotls.TLSListener` created with
    ``sni_contexts=`` or ``select_context=`` (the listener reads the ClientHello
    before the handshake to choose the context); other streams do not have these
    attributes (``extra()`` raises :exc:`~anyio.TypedAttributeLookupError`, or
    returns its default).
    """

    #: the whole parsed ClientHello
    client_hello: ClientHello = typed_attribute()
    #: the host name the client asked for (SNI), in lower-case IDNA A-labels, or
    #: ``None`` if it sent none
    server_name: str | None = typed_attribute()
    #: the ALPN protocols the client offered, in its order (``()`` if none); the
    #: one agreed on is ``TLSAttribute.alpn_protocol``
    offered_alpn_protocols: tuple[str, ...] = typed_attribute()
