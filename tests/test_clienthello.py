"""The sans-I/O ClientHello parser, without sockets: real and built ClientHellos,
every bound, every malformation, and hypothesis for everything else."""

from __future__ import annotations

import pickle
import ssl
import struct
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiotls import ClientHello, ClientHelloError
from anyiotls._clienthello import (
    MAX_CLIENT_HELLO,
    MAX_RECORDS,
    MAX_WIRE_BYTES,
    NEED_DATA,
    ClientHelloParser,
    alert_record,
)

# -- building ClientHellos -------------------------------------------------------------


def u8(data: bytes) -> bytes:
    return struct.pack("!B", len(data)) + data


def u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def u24(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!H", ext_type) + u16(data)


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    return ext(0, u16(b"".join(bytes([name_type]) + u16(name) for name in names)))


def alpn_ext(*protocols: bytes) -> bytes:
    return ext(16, u16(b"".join(u8(p) for p in protocols)))


def versions_ext(*versions: int) -> bytes:
    return ext(43, u8(b"".join(struct.pack("!H", v) for v in versions)))


def hello_body(
    *,
    extensions: Iterable[bytes] | None = (),
    suites: Sequence[int] = (0x1301, 0xC02F),
    session_id: bytes = b"\x11" * 32,
    compression: bytes = b"\x00",
    legacy_version: int = 0x0303,
) -> bytes:
    body = (
        struct.pack("!H", legacy_version)
        + b"\x42" * 32
        + u8(session_id)
        + u16(b"".join(struct.pack("!H", s) for s in suites))
        + u8(compression)
    )
    if extensions is not None:
        body += u16(b"".join(extensions))
    return body


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return bytes([msg_type]) + u24(body)


def records(message: bytes, size: int = 16384, version: bytes = b"\x03\x01") -> bytes:
    """*message* cut into handshake records of at most *size* bytes."""
    out = bytearray()
    for start in range(0, len(message), size):
        out += b"\x16" + version + u16(message[start : start + size])
    return bytes(out)


def wire(body: bytes, size: int = 16384) -> bytes:
    return records(handshake(body), size)


def python_client_hello(
    server_hostname: str | None = "a.example.org",
    alpn: Sequence[str] = ("h2", "http/1.1"),
) -> bytes:
    """The bytes Python's own client sends first."""
    context = ssl.create_default_context()
    context.check_hostname = server_hostname is not None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def parse(data: bytes, chunk: int | None = None, eof: bool = False) -> object:
    """Feed *data* (in chunks of *chunk* bytes) and return the parser's answer."""
    parser = ClientHelloParser()
    step = chunk or max(len(data), 1)
    event: object = NEED_DATA
    for start in range(0, len(data), step):
        parser.receive_data(data[start : start + step])
        event = parser.next_event()
        if event is not NEED_DATA:
            return event
    if eof:
        parser.receive_data(b"")
        return parser.next_event()
    return event


def error_of(data: bytes, **kwargs: object) -> ClientHelloError:
    with pytest.raises(ClientHelloError) as info:
        parse(data, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- real ClientHellos -----------------------------------------------------------------


def test_python_client_hello_is_parsed() -> None:
    hello = parse(python_client_hello())
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "a.example.org"
    assert hello.alpn_protocols == ("h2", "http/1.1")
    assert ssl.TLSVersion.TLSv1_3 in hello.tls_versions
    assert all(isinstance(v, ssl.TLSVersion) for v in hello.tls_versions)
    assert 0x1301 in hello.cipher_suites  # TLS_AES_128_GCM_SHA256
    assert {0, 16, 43} <= set(hello.extensions)


def test_client_hello_without_sni_or_alpn() -> None:
    hello = parse(python_client_hello(server_hostname=None, alpn=()))
    assert isinstance(hello, ClientHello)
    assert hello.server_name is None
    assert hello.alpn_protocols == ()
    assert 0 not in hello.extensions


def test_server_name_is_lower_cased() -> None:
    hello = parse(wire(hello_body(extensions=[sni_ext(b"A.Example.ORG")])))
    assert isinstance(hello, ClientHello)
    assert hello.server_name == "a.example.org"


@pytest.mark.parametrize("chunk", [1, 2, 5, 6, 100])
def test_any_chunking_gives_the_same_result(chunk: int) -> None:
    data = python_client_hello()
    parser = ClientHelloParser()
    for start in range(0, len(data) - 1, chunk):
        parser.receive_data(data[start : min(start + chunk, len(data) - 1)])
        assert parser.next_event() is NEED_DATA
    parser.receive_data(data[-1:])
    assert parser.next_event() == parse(data)


@pytest.mark.parametrize("record_size", [2, 7, 100, 300])
def test_client_hello_split_into_records(record_size: int) -> None:
    body = hello_body(extensions=[sni_ext(b"b.test"), alpn_ext(b"h2")])
    assert len(handshake(body)) / record_size <= MAX_RECORDS
    assert parse(wire(body, record_size)) == parse(wire(body))


def test_real_client_hello_in_many_small_records() -> None:
    message = python_client_hello()[5:]  # one record: strip its header
    size = -(-len(message) // MAX_RECORDS)  # exactly MAX_RECORDS records
    assert parse(records(message, size)) == parse(records(message))


def test_more_records_than_the_bound_fail() -> None:
    message = python_client_hello()[5:]
    exc = error_of(records(message, 1))
    assert exc.reason == "CLIENT_HELLO_TOO_LONG"


def test_client_hello_without_extensions() -> None:
    hello = parse(wire(hello_body(extensions=None, legacy_version=0x0302)))
    assert hello == ClientHello(
        server_name=None,
        alpn_protocols=(),
        tls_versions=(ssl.TLSVersion.TLSv1_1,),
        cipher_suites=(0x1301, 0xC02F),
        extensions=(),
    )


def test_grease_values_stay_ints() -> None:
    hello = parse(wire(hello_body(extensions=[versions_ext(0x0A0A, 0x0304)])))
    assert isinstance(hello, ClientHello)
    assert hello.tls_versions == (0x0A0A, ssl.TLSVersion.TLSv1_3)
    assert type(hello.tls_versions[0]) is int


def test_alpn_names_that_are_not_utf8_are_kept() -> None:
    hello = parse(wire(hello_body(extensions=[alpn_ext(b"\xff\x00", b"h2")])))
    assert isinstance(hello, ClientHello)
    assert hello.alpn_protocols[0].encode("utf-8", "surrogateescape") == b"\xff\x00"


def test_other_server_name_types_are_ignored() -> None:
    hello = parse(wire(hello_body(extensions=[sni_ext(b"x", name_type=7)])))
    assert isinstance(hello, ClientHello)
    assert hello.server_name is None


def test_result_stays_and_later_bytes_are_ignored() -> None:
    data = python_client_hello()
    parser = ClientHelloParser()
    parser.receive_data(data + b"\x17\x03\x03\x00\x05hello")  # a next record
    first = parser.next_event()
    assert isinstance(first, ClientHello)
    parser.receive_data(b"garbage")
    assert parser.next_event() is first


# -- bounds ----------------------------------------------------------------------------


def _padded_body(size: int) -> bytes:
    """A ClientHello body of exactly *size* bytes (a padding extension, RFC 7685)."""
    base = hello_body(extensions=[])
    padding = size - len(base) - 4  # the padding extension's own header
    return hello_body(extensions=[ext(21, b"\x00" * padding)])


def test_largest_client_hello_is_accepted() -> None:
    body = _padded_body(MAX_CLIENT_HELLO - 4)
    data = wire(body)
    assert len(data) <= MAX_WIRE_BYTES
    assert isinstance(parse(data, chunk=1000), ClientHello)


def test_one_byte_more_is_refused_as_soon_as_the_length_is_seen() -> None:
    data = wire(_padded_body(MAX_CLIENT_HELLO - 3))
    exc = error_of(data[:9])  # record header + handshake header: nothing more
    assert exc.reason == "CLIENT_HELLO_TOO_LONG"


def test_bytes_needed_is_bounded() -> None:
    parser = ClientHelloParser()
    assert parser.bytes_needed == MAX_WIRE_BYTES
    data = wire(_padded_body(MAX_CLIENT_HELLO - 4))
    total = 0
    while parser.next_event() is NEED_DATA:
        chunk = data[total : total + parser.bytes_needed]
        assert chunk, "the parser asked for more than the whole ClientHello"
        total += len(chunk)
        parser.receive_data(chunk)
        assert 1 <= parser.bytes_needed <= MAX_WIRE_BYTES
    assert total == len(data)


# -- not a ClientHello -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "NOT_A_HANDSHAKE"),
        (b"\x80\x2e\x01\x03\x01", "NOT_A_HANDSHAKE"),  # SSL 2.0 ClientHello
        (alert_record(40), "NOT_A_HANDSHAKE"),
        (b"\x16\x02\x00\x00\x01\x01", "NOT_A_HANDSHAKE"),  # record version 2.0
        (records(handshake(b"\x03\x03", msg_type=2)), "NOT_A_HANDSHAKE"),
        (b"\x16\x03\x01\x00\x00", "MALFORMED_CLIENT_HELLO"),  # empty record
        (b"\x16\x03\x01\x40\x01", "MALFORMED_CLIENT_HELLO"),  # record > 16384
    ],
    ids=["http", "sslv2", "alert", "version", "server-hello", "empty", "big-record"],
)
def test_not_a_client_hello(data: bytes, reason: str) -> None:
    exc = error_of(data)
    assert exc.reason == reason
    assert isinstance(exc, ssl.SSLError)
    assert reason in str(exc)


def test_not_tls_is_seen_from_the_first_byte() -> None:
    assert error_of(b"G").reason == "NOT_A_HANDSHAKE"


@pytest.mark.parametrize("cut", [0, 1, 5, 9, 50])
def test_end_of_file_before_the_end(cut: int) -> None:
    exc = error_of(python_client_hello()[:cut], eof=True)
    assert exc.reason == "EOF_BEFORE_CLIENT_HELLO"


# -- malformed ClientHellos ------------------------------------------------------------

_MALFORMED = {
    "session-id-too-long": hello_body(session_id=b"\x00" * 33),
    "odd-suites": hello_body()[:67] + b"\x00\x03\x13\x01\x13" + hello_body()[71:],
    "no-suites": hello_body(suites=()),
    "no-compression": hello_body(compression=b""),
    "truncated-in-random": hello_body()[:20],
    "trailing-bytes": hello_body(extensions=[]) + b"\x00",
    "extension-overruns": hello_body(extensions=[b"\x00\x10\x00\x09\x00"]),
    "duplicate-extension": hello_body(extensions=[alpn_ext(b"h2"), alpn_ext(b"h2")]),
    "sni-empty-list": hello_body(extensions=[ext(0, u16(b""))]),
    "sni-empty-name": hello_body(extensions=[sni_ext(b"")]),
    "sni-two-host-names": hello_body(extensions=[sni_ext(b"a.test", b"b.test")]),
    "sni-not-ascii": hello_body(extensions=[sni_ext("bücher.test".encode())]),
    "sni-nul": hello_body(extensions=[sni_ext(b"a.test\x00.evil")]),
    "sni-trailing": hello_body(extensions=[ext(0, u16(b"\x00" + u16(b"a")) + b"!")]),
    "alpn-empty-list": hello_body(extensions=[ext(16, u16(b""))]),
    "alpn-empty-name": hello_body(extensions=[ext(16, u16(b"\x00\x02h2"))]),
    "alpn-overrun": hello_body(extensions=[ext(16, u16(b"\x09h2"))]),
    "versions-odd": hello_body(extensions=[ext(43, u8(b"\x03\x04\x03"))]),
    "versions-empty": hello_body(extensions=[ext(43, u8(b""))]),
    "versions-trailing": hello_body(extensions=[ext(43, u8(b"\x03\x04") + b"\x00")]),
}


@pytest.mark.parametrize("body", list(_MALFORMED.values()), ids=list(_MALFORMED))
def test_malformed_client_hello(body: bytes) -> None:
    exc = error_of(wire(body))
    assert exc.reason == "MALFORMED_CLIENT_HELLO"


def test_bytes_after_the_client_hello_in_its_record() -> None:
    message = handshake(hello_body()) + handshake(b"", msg_type=20)
    assert error_of(records(message)).reason == "MALFORMED_CLIENT_HELLO"


# -- hypothesis ------------------------------------------------------------------------

_REAL = python_client_hello()

_hostnames = st.from_regex(
    r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{1,10}){0,3}\Z"
)
_protocols = st.binary(min_size=1, max_size=20)


def _never_crashes(data: bytes, chunks: Sequence[int], eof: bool) -> None:
    parser = ClientHelloParser()
    position = 0
    try:
        for size in chunks:
            parser.receive_data(data[position : position + size])
            position += size
            event = parser.next_event()
            assert event is NEED_DATA or isinstance(event, ClientHello)
            if isinstance(event, ClientHello):
                return
        parser.receive_data(data[position:])
        if eof:
            parser.receive_data(b"")
        event = parser.next_event()
        assert (event is NEED_DATA and not eof) or isinstance(event, ClientHello)
    except ClientHelloError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20), st.booleans()
)
def test_random_bytes_never_crash(data: bytes, chunks: list[int], eof: bool) -> None:
    _never_crashes(b"\x16\x03\x01" + data, chunks, eof)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_REAL) - 1), st.integers(0, 255)), max_size=8
    ),
    st.integers(0, len(_REAL)),
    st.lists(st.integers(1, 64), max_size=10),
    st.booleans(),
)
def test_mutated_real_client_hello_never_crashes(
    flips: list[tuple[int, int]], cut: int, chunks: list[int], eof: bool
) -> None:
    data = bytearray(_REAL)
    for position, value in flips:
        data[position] = value
    _never_crashes(bytes(data[:cut]), chunks, eof)


@st.composite
def _extensions(draw: st.DrawFn) -> bytes:
    """One extension, well-formed or with its lengths and contents scrambled."""
    ext_type = draw(st.sampled_from([0, 16, 43, 10, 13, 21, 0xFFFF]))
    payload = draw(
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda n: sni_ext(n)[4:], st.binary(max_size=20)),
            st.builds(lambda p: alpn_ext(*p)[4:], st.lists(_protocols, max_size=4)),
        )
    )
    declared = draw(st.one_of(st.just(len(payload)), st.integers(0, 70)))
    return struct.pack("!HH", ext_type, declared) + payload


@settings(max_examples=300)
@given(st.lists(_extensions(), max_size=6), st.integers(1, 400), st.booleans())
def test_malformed_extensions_never_crash(
    extensions: list[bytes], record_size: int, eof: bool
) -> None:
    data = wire(hello_body(extensions=extensions), record_size)
    _never_crashes(data, [7, 13, 1000], eof)


@settings(max_examples=200)
@given(
    st.one_of(st.none(), _hostnames),
    st.lists(_protocols, min_size=1, max_size=5),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=6),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20),
    st.integers(1, 300),
    st.integers(1, 97),
)
def test_well_formed_client_hellos_round_trip(
    name: str | None,
    protocols: list[bytes],
    versions: list[int],
    suites: list[int],
    record_size: int,
    chunk: int,
) -> None:
    extensions = [alpn_ext(*protocols), versions_ext(*versions)]
    if name is not None:
        extensions.insert(0, sni_ext(name.encode()))
    body = hello_body(extensions=extensions, suites=suites)
    message = handshake(body)
    if -(-len(message) // record_size) > MAX_RECORDS:
        record_size = -(-len(message) // MAX_RECORDS)
    hello = parse(records(message, record_size), chunk=chunk)
    assert isinstance(hello, ClientHello)
    assert hello.server_name == name
    assert hello.alpn_protocols == tuple(
        p.decode("utf-8", "surrogateescape") for p in protocols
    )
    assert hello.tls_versions == tuple(versions)
    assert hello.cipher_suites == tuple(suites)
    assert hello.extensions == ((0,) if name else ()) + (16, 43)


@settings(max_examples=100)
@given(st.integers(MAX_CLIENT_HELLO - 3, 0xFFFFFF))
def test_any_oversized_length_is_refused_from_the_header(length: int) -> None:
    data = b"\x16\x03\x01\x00\x04\x01" + struct.pack("!I", length)[1:]
    assert error_of(data).reason == "CLIENT_HELLO_TOO_LONG"


def test_alert_record_layout() -> None:
    assert alert_record(112) == b"\x15\x03\x03\x00\x02\x02\x70"


def test_error_survives_pickling() -> None:
    exc = error_of(b"GET /")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is ClientHelloError
    assert (copy.reason, str(copy)) == (exc.reason, str(exc))
