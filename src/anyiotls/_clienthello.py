"""A sans-I/O reader for the TLS ClientHello: bytes in, a :class:`ClientHello` out.

A listener that picks a certificate per host name (or asks an async hook which
:class:`ssl.SSLContext` to use) must see the client's first handshake message
*before* it builds the :class:`ssl.SSLObject`: the context is fixed at
``wrap_bio()`` time (ALPN, client authentication and most other settings are read
there). So the listener reads the first bytes itself, feeds them to
:class:`ClientHelloParser` until it says the message is complete, and then hands
*every byte it read*, unchanged, to the engine's incoming BIO. OpenSSL then parses
the same ClientHello again, from the same bytes; this module never decides anything
OpenSSL would decide differently, it only extracts what the selection needs.

Nothing here does I/O, awaits or keeps more than the bounds below allow:

* The ClientHello (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2) may span
  several TLS records, and each record several transport reads; the parser
  reassembles both.
* At most :data:`MAX_CLIENT_HELLO` bytes of handshake message (its 4-byte header
  included) and at most :data:`MAX_RECORDS` records are accepted, so at most
  :data:`MAX_WIRE_BYTES` bytes are ever needed. More is a :exc:`ClientHelloError`.
  (Real ClientHellos are 200 bytes to 2 KiB, a little more with post-quantum key
  shares; OpenSSL itself accepts 16 KiB + a little for a ClientHello.)
* Every length field is checked against its container; anything malformed,
  truncated, oversized, a record that is not a handshake record, an SSL 2.0
  ClientHello, or a transport that ends first raises :exc:`ClientHelloError`. No
  other exception comes out of :meth:`ClientHelloParser.receive_data` or
  :meth:`ClientHelloParser.next_event` for any input: anything else is a bug.
"""

from __future__ import annotations

__all__ = (
    "MAX_CLIENT_HELLO",
    "MAX_RECORDS",
    "MAX_WIRE_BYTES",
    "NEED_DATA",
    "ClientHello",
    "ClientHelloError",
    "ClientHelloParser",
    "alert_record",
)

import ssl
from dataclasses import dataclass
from typing import Final, Literal

#: Largest ClientHello handshake message accepted, its 4-byte header included.
MAX_CLIENT_HELLO: Final = 16384 + 4
#: Most TLS records the ClientHello may be split into.
MAX_RECORDS: Final = 64
#: Size of a TLS record header (type, version, length).
RECORD_HEADER: Final = 5
#: The most bytes the parser ever needs: the message plus one header per record.
MAX_WIRE_BYTES: Final = MAX_CLIENT_HELLO + MAX_RECORDS * RECORD_HEADER

#: Returned by :meth:`ClientHelloParser.next_event` until the message is complete.
NEED_DATA: Final = "NEED_DATA"

_HANDSHAKE_RECORD = 22
_ALERT_RECORD = 21
_CLIENT_HELLO = 1
#: Largest record payload a client may send in plaintext (RFC 8446 section 5.1).
_MAX_RECORD_PAYLOAD = 16384

_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43

# TLS alert descriptions (RFC 8446 section 6) this library sends itself.
ALERT_HANDSHAKE_FAILURE: Final = 40
ALERT_DECODE_ERROR: Final = 50
ALERT_UNRECOGNIZED_NAME: Final = 112

_KNOWN_VERSIONS = {int(version): version for version in ssl.TLSVersion if version > 0}


class ClientHelloError(ssl.SSLError):
    """The connection did not start with a well-formed TLS ClientHello.

    Raised before any handshake began: the bytes were malformed, truncated, larger
    than the bounds of ``anyiotls._clienthello`` (:data:`MAX_CLIENT_HELLO` bytes
    of message in at most :data:`MAX_RECORDS` records), not TLS at all, or the
    transport ended before the ClientHello was complete. A subclass of
    :exc:`ssl.SSLError`, so handshake error handling treats it as a failed
    handshake. ``reason`` says what was wrong, in capitals as OpenSSL's do
    (``MALFORMED_CLIENT_HELLO``, ``CLIENT_HELLO_TOO_LONG``, ``NOT_A_HANDSHAKE``,
    ``EOF_BEFORE_CLIENT_HELLO``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.library = "anyiotls"

    def __str__(self) -> str:
        return f"[{self.reason}] {self.args[0]}"

    def __reduce__(self) -> tuple[type[ClientHelloError], tuple[str, str]]:
        return type(self), (self.reason, self.args[0])


@dataclass(frozen=True)
class ClientHello:
    """What a client offered in its ClientHello, as far as choosing a context needs.

    Don't construct these yourself except in tests: the listener makes them.
    """

    #: the host name from the server_name extension (SNI), lower-cased, as the
    #: client sent it (international names arrive as IDNA A-labels,
    #: ``xn--...``); ``None`` if the client sent none
    server_name: str | None
    #: the ALPN protocol names offered, in the client's order (``()`` if none);
    #: bytes that are not UTF-8 are kept as surrogate escapes
    alpn_protocols: tuple[str, ...]
    #: the TLS versions offered, in the client's order: from the
    #: supported_versions extension, or else the ClientHello's legacy version.
    #: Known versions are :class:`ssl.TLSVersion` members; others (GREASE values,
    #: RFC 8701) plain ints
    tls_versions: tuple[int, ...]
    #: the cipher suites offered, as their IANA numbers, in the client's order
    cipher_suites: tuple[int, ...]
    #: the extension types present, in the client's order
    extensions: tuple[int, ...]


def _fail(message: str) -> ClientHelloError:
    return ClientHelloError("MALFORMED_CLIENT_HELLO", message)


class _Reader:
    """Reads big-endian fields from a bytes object; every overrun is an error."""

    __slots__ = ("_data", "_end", "_pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._end = len(data)
        #: what the bytes are, for error messages
        self.what = what

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def take(self, size: int) -> bytes:
        if size > self.remaining:
            raise _fail(f"{self.what} is truncated")
        start = self._pos
        self._pos += size
        return self._data[start : self._pos]

    def take_all(self) -> bytes:
        return self.take(self.remaining)

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int, what: str, *, minimum: int = 0) -> _Reader:
        length = self.uint(length_size)
        if length < minimum:
            raise _fail(f"{what} is shorter than {minimum} bytes")
        return _Reader(self.take(length), what)

    def expect_end(self) -> None:
        if self.remaining:
            raise _fail(f"{self.what} has {self.remaining} bytes after its end")


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse a ClientHello message body (without its 4-byte handshake header)."""
    reader = _Reader(body, "the ClientHello")
    legacy_version = reader.uint(2)
    reader.take(32)  # random
    session_id = reader.vector(1, "the legacy session id")
    if session_id.remaining > 32:
        raise _fail("the legacy session id is longer than 32 bytes")
    suites = reader.vector(2, "the cipher suite list", minimum=2)
    if suites.remaining % 2:
        raise _fail("the cipher suite list has an odd length")
    cipher_suites = tuple(suites.uint(2) for _ in range(suites.remaining // 2))
    compression = reader.vector(1, "the compression method list", minimum=1)
    del compression
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = (legacy_version,)
    types: list[int] = []
    if reader.remaining:  # TLS 1.2 allows a ClientHello without extensions
        extensions = reader.vector(2, "the extension list")
        while extensions.remaining:
            ext_type = extensions.uint(2)
            data = extensions.vector(2, f"extension {ext_type}")
            if ext_type in types:
                raise _fail(f"extension {ext_type} appears twice")
            types.append(ext_type)
            if ext_type == _EXT_SERVER_NAME:
                server_name = _server_name(data)
            elif ext_type == _EXT_ALPN:
                alpn = _alpn(data)
            elif ext_type == _EXT_SUPPORTED_VERSIONS:
                versions = _supported_versions(data)
    reader.expect_end()
    return ClientHello(
        server_name=server_name,
        alpn_protocols=alpn,
        tls_versions=tuple(_KNOWN_VERSIONS.get(v, v) for v in versions),
        cipher_suites=cipher_suites,
        extensions=tuple(types),
    )


def _server_name(data: _Reader) -> str | None:
    # RFC 6066 section 3: a list of (type, name); at most one host_name (type 0).
    # A client may send an empty extension only in a ServerHello, not here.
    names = data.vector(2, "the server name list", minimum=1)
    data.expect_end()
    host_name: str | None = None
    while names.remaining:
        name_type = names.uint(1)
        name = names.vector(2, "a server name", minimum=1).take_all()
        if name_type != 0:
            continue  # no other type is defined; OpenSSL ignores them too
        if host_name is not None:
            raise _fail("the server name list has two host names")
        if b"\x00" in name or not name.isascii():
            raise _fail("the server name is not an ASCII host name")
        host_name = name.decode("ascii").lower()
    return host_name


def _alpn(data: _Reader) -> tuple[str, ...]:
    # RFC 7301 section 3.1: ProtocolNameList <2..2^16-1>, ProtocolName <1..2^8-1>
    names = data.vector(2, "the ALPN protocol list", minimum=2)
    data.expect_end()
    protocols: list[str] = []
    while names.remaining:
        name = names.vector(1, "an ALPN protocol name", minimum=1).take_all()
        protocols.append(name.decode("utf-8", "surrogateescape"))
    return tuple(protocols)


def _supported_versions(data: _Reader) -> tuple[int, ...]:
    # RFC 8446 section 4.2.1: ProtocolVersion versions <2..254>
    versions = data.vector(1, "the supported versions list", minimum=2)
    data.expect_end()
    if versions.remaining % 2:
        raise _fail("the supported versions list has an odd length")
    return tuple(versions.uint(2) for _ in range(versions.remaining // 2))


class ClientHelloParser:
    """Reassembles and parses the ClientHello from the connection's first bytes.

    Feed transport bytes with :meth:`receive_data` (``b""`` for end of file); ask
    :meth:`next_event` for :data:`NEED_DATA` or the :class:`ClientHello`. The bytes
    themselves are the caller's to keep and hand on: the parser copies only what
    it needs and never more than :data:`MAX_WIRE_BYTES`.
    """

    __slots__ = ("_buffer", "_eof", "_message", "_records", "_result", "_wire")

    def __init__(self) -> None:
        #: bytes received and not yet taken apart into records
        self._buffer = bytearray()
        #: the handshake message reassembled so far from the record payloads
        self._message = bytearray()
        self._records = 0
        #: bytes consumed as records so far (headers included)
        self._wire = 0
        self._eof = False
        self._result: ClientHello | None = None

    @property
    def bytes_needed(self) -> int:
        """How many more bytes could still be needed (never more than the bound).

        A reader asks the transport for at most this much per receive.
        """
        return max(1, MAX_WIRE_BYTES - self._wire - len(self._buffer))

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the transport; ``b""`` means it reached end of file."""
        if not data:
            self._eof = True
            return
        if self._result is None:
            # Keep no more than the bound; beyond it next_event() fails anyway.
            room = MAX_WIRE_BYTES - self._wire - len(self._buffer)
            self._buffer += bytes(data[: max(room, 0)])

    def next_event(self) -> ClientHello | Literal["NEED_DATA"]:
        """The parsed :class:`ClientHello`, or :data:`NEED_DATA` to get more bytes.

        :raises ClientHelloError: the bytes are not a well-formed ClientHello
            within the bounds, or end of file came first
        """
        if self._result is not None:
            return self._result
        buffer = self._buffer
        while True:
            if len(buffer) >= 1 and buffer[0] & 0x80 and not self._wire:
                raise ClientHelloError(
                    "NOT_A_HANDSHAKE",
                    "an SSL 2.0 ClientHello (or not TLS at all): not supported",
                )
            if len(buffer) >= 1 and buffer[0] != _HANDSHAKE_RECORD:
                kind = "an alert" if buffer[0] == _ALERT_RECORD else "not TLS"
                raise ClientHelloError(
                    "NOT_A_HANDSHAKE",
                    f"expected a TLS handshake record, got record type {buffer[0]} "
                    f"({kind})",
                )
            if len(buffer) >= 3 and buffer[1] != 3:
                raise ClientHelloError(
                    "NOT_A_HANDSHAKE",
                    f"record version {buffer[1]}.{buffer[2]} is not TLS (3.x)",
                )
            if len(buffer) < RECORD_HEADER:
                break
            length = int.from_bytes(buffer[3:5], "big")
            if length == 0:
                raise _fail("an empty handshake record")
            if length > _MAX_RECORD_PAYLOAD:
                raise _fail(f"a record of {length} bytes (more than 16384)")
            if self._records >= MAX_RECORDS:
                raise ClientHelloError(
                    "CLIENT_HELLO_TOO_LONG",
                    f"the ClientHello is split into more than {MAX_RECORDS} records",
                )
            if len(buffer) < RECORD_HEADER + length:
                # Refuse a wrong or oversized message before its bytes arrive.
                self._check_header(
                    self._message + buffer[RECORD_HEADER : RECORD_HEADER + 4]
                )
                break
            self._message += buffer[RECORD_HEADER : RECORD_HEADER + length]
            del buffer[: RECORD_HEADER + length]
            self._records += 1
            self._wire += RECORD_HEADER + length
            result = self._check_message()
            if result is not None:
                self._result = result
                self._buffer = bytearray()  # bytes after it are not ours to parse
                self._message = bytearray()
                return result
        if self._eof:
            raise ClientHelloError(
                "EOF_BEFORE_CLIENT_HELLO",
                "the connection ended before a complete ClientHello",
            )
        return NEED_DATA

    @staticmethod
    def _check_header(message: bytes | bytearray) -> int | None:
        """The message's length, once its 4-byte header is in; raise if it is wrong."""
        if message and message[0] != _CLIENT_HELLO:
            raise ClientHelloError(
                "NOT_A_HANDSHAKE",
                f"expected a ClientHello (handshake type 1), got type {message[0]}",
            )
        if len(message) < 4:
            return None
        length = int.from_bytes(message[1:4], "big")
        if length + 4 > MAX_CLIENT_HELLO:
            raise ClientHelloError(
                "CLIENT_HELLO_TOO_LONG",
                f"a ClientHello of {length} bytes (at most {MAX_CLIENT_HELLO - 4})",
            )
        return length

    def _check_message(self) -> ClientHello | None:
        message = self._message
        length = self._check_header(message)
        if length is None or len(message) < length + 4:
            return None
        if len(message) > length + 4:
            # Another handshake message in the same record: a client must wait
            # for the ServerHello before sending any.
            raise _fail("bytes follow the ClientHello in its record")
        return parse_client_hello(bytes(message[4:]))


def alert_record(description: int, legacy_version: int = 0x0303) -> bytes:
    """A plaintext fatal alert record, for refusing a client before any handshake."""
    return (
        bytes([_ALERT_RECORD])
        + legacy_version.to_bytes(2, "big")
        + (bytes([0, 2, 2, description]))
    )
