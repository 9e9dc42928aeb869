"""The sans-I/O TLS engine, two engines back to back: no event loop, no sockets.

Each test moves bytes by hand (:class:`~tests.engine_pair.EnginePair`), so it can
look at every intermediate state. Tests named ``test_sslobject_*`` drive the raw
:class:`ssl.SSLObject` instead of the engine: each pins the measured SSLObject
behaviour that makes the engine do what the test next to it checks, so a change in
OpenSSL shows up here and not as a mystery in the driver.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiotls._context import default_context
from anyiotls._engine import MAX_RECORD_PLAINTEXT, NEED_DATA, TLSEngine, is_ragged_eof

from .engine_pair import (
    CLIENT_CERT_DER,
    CLIENT_IDENTITY,
    ClientCert,
    EnginePair,
    Version,
    client_context,
    records,
    server_context,
)

VERSIONS: list[Version] = ["1.2", "1.3"]
TLS_VERSION_NAMES = {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}

# A TLS record: 5 bytes of header, at most 16 KiB of plaintext plus AEAD overhead.
RECORD_HEADER = 5
MAX_RECORD_OVERHEAD = 256
# The sizes measured with OpenSSL 3.0 (~99 bytes, ~510 bytes for two tickets), as
# loose bounds: they depend on the OpenSSL version and the certificates.
CERTIFICATE_REQUEST_SIZE = range(50, 200)

# When a property fails, hypothesis' pytest plugin imports black (if installed) to
# write a patch; black's import warns, and filterwarnings = error would turn that into
# an INTERNALERROR that ends the whole session.
hypothesis_report_warning = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

needs_ignore_eof_option = pytest.mark.skipif(
    not hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"),
    reason="this OpenSSL has no OP_IGNORE_UNEXPECTED_EOF (needs OpenSSL 3)",
)


# -- helpers -------------------------------------------------------------------------


def handshaken(
    version: Version = "1.3",
    client_ctx: ssl.SSLContext | None = None,
    server_ctx: ssl.SSLContext | None = None,
) -> EnginePair:
    """A pair after the handshake, the client's session tickets already processed."""
    pair = EnginePair(client_ctx, server_ctx, version=version)
    pair.handshake()
    assert pair.client.read(1) is NEED_DATA  # consumes the TLS 1.3 session tickets
    assert not pair.client.has_data_to_send
    return pair


def pha_pair(
    *,
    cert: ClientCert = "trusted",
    verify_mode: ssl.VerifyMode = ssl.CERT_REQUIRED,
    client_pha: bool = True,
    version: Version = "1.3",
    num_tickets: int | None = None,
) -> EnginePair:
    """A handshaken pair set up for post-handshake client authentication."""
    return handshaken(
        version,
        client_context(version, cert=cert, post_handshake_auth=client_pha),
        server_context(
            version,
            verify_mode=verify_mode,
            post_handshake_auth=True,
            num_tickets=num_tickets,
        ),
    )


def send_certificate_request(pair: EnginePair) -> bytes:
    """The server queues a CertificateRequest and sends it; return the bytes sent."""
    pair.server.request_client_auth()
    assert pair.server.do_handshake() is True
    return pair.pump(pair.server)


def answer_certificate_request(pair: EnginePair) -> bytes:
    """The client reads the request (nothing else) and sends its answer."""
    assert pair.client.read(1024) is NEED_DATA
    return pair.pump(pair.client)


def subject_alt_names(engine: TLSEngine) -> object:
    cert = engine.ssl_object.getpeercert()
    assert cert is not None
    return cert["subjectAltName"]


def has_ticket(engine: TLSEngine) -> bool:
    """``True`` if *engine*'s session can be resumed (a TLS 1.3 ticket arrived)."""
    session = engine.ssl_object.session
    assert session is not None
    return session.has_ticket


def record_sizes(ciphertext: bytes) -> list[int]:
    return [len(record) for _, record in records(ciphertext)]


def raises_ssl(
    step: Callable[..., object], *args: object, reason: str | None = None
) -> ssl.SSLError:
    """Call *step*, which must raise :exc:`ssl.SSLError` (with *reason* if given)."""
    with pytest.raises(ssl.SSLError) as info:
        step(*args)
    if reason is not None:
        assert info.value.reason == reason, info.value
    return info.value


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """*data* split at the sorted offsets *cuts*, without empty chunks."""
    chunks = (data[a:b] for a, b in pairwise([0, *cuts, len(data)]))
    return [chunk for chunk in chunks if chunk]  # b"" would mean EOF


def encrypt(engine: TLSEngine, data: bytes) -> bytes:
    """*engine* encrypts *data*; return the ciphertext (not delivered anywhere)."""
    assert engine.write(data) == len(data)
    return engine.data_to_send()


# -- handshake -----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_handshake_completes_both_sides_with_pinned_version(version: Version) -> None:
    pair = EnginePair(version=version)
    pair.handshake()
    assert pair.client.ssl_object.version() == TLS_VERSION_NAMES[version]
    assert pair.server.ssl_object.version() == TLS_VERSION_NAMES[version]
    assert pair.client.error is None
    assert pair.server.error is None
    assert subject_alt_names(pair.client) == (
        ("DNS", "localhost"),
        ("IP Address", "127.0.0.1"),
    )


def test_handshake_tls13_steps_return_need_data_until_peer_bytes_arrive() -> None:
    pair = EnginePair(version="1.3")
    client, server = pair.client, pair.server
    # A server with no ClientHello yet: nothing to do, nothing written.
    assert server.do_handshake() is NEED_DATA
    assert not server.has_data_to_send
    # The client writes its ClientHello and waits.
    assert client.do_handshake() is NEED_DATA
    hello = pair.pump(client)
    assert [kind for kind, _ in records(hello)] == [22]  # one handshake record
    # Retrying without new bytes changes nothing and writes nothing.
    assert client.do_handshake() is NEED_DATA
    assert not client.has_data_to_send
    # The server answers with its whole flight, then waits for the client Finished.
    assert server.do_handshake() is NEED_DATA
    assert pair.pump(server)
    assert server.do_handshake() is NEED_DATA
    # The client finishes (and writes its Finished), then the server finishes.
    assert client.do_handshake() is True
    assert pair.pump(client)
    assert server.do_handshake() is True


def test_handshake_tls12_steps_return_need_data_until_peer_bytes_arrive() -> None:
    pair = EnginePair(version="1.2")
    client, server = pair.client, pair.server
    assert server.do_handshake() is NEED_DATA
    assert client.do_handshake() is NEED_DATA
    pair.pump(client)
    assert server.do_handshake() is NEED_DATA  # ServerHello ... ServerHelloDone
    pair.pump(server)
    assert client.do_handshake() is NEED_DATA  # ClientKeyExchange, CCS, Finished
    pair.pump(client)
    assert client.do_handshake() is NEED_DATA
    # The TLS 1.2 server finishes and, during the step that returns True, writes the
    # NewSessionTicket, ChangeCipherSpec and Finished the client still needs.
    assert server.do_handshake() is True
    assert server.has_data_to_send
    assert client.do_handshake() is NEED_DATA
    pair.pump(server)
    assert client.do_handshake() is True


def test_handshake_tls13_server_success_step_writes_two_session_tickets() -> None:
    pair = EnginePair(version="1.3")
    assert pair.client.do_handshake() is NEED_DATA
    pair.pump(pair.client)
    assert pair.server.do_handshake() is NEED_DATA
    pair.pump(pair.server)
    assert pair.client.do_handshake() is True
    pair.pump(pair.client)
    # The step returns normally *and* leaves bytes to flush: the session tickets.
    assert pair.server.do_handshake() is True
    tickets = pair.server.data_to_send()
    assert len(list(records(tickets))) == 2
    assert 200 < len(tickets) < 2000


def test_handshake_tls13_server_with_zero_tickets_writes_nothing_on_success() -> None:
    pair = EnginePair(version="1.3", server_ctx=server_context("1.3", num_tickets=0))
    pair.handshake()  # (pumps what each step wrote)
    assert pair.server.do_handshake() is True
    assert not pair.server.has_data_to_send
    assert not pair.client.has_buffered_input


@pytest.mark.parametrize(("at_wrap", "later"), [(2, 0), (0, 2)])
def test_handshake_num_tickets_read_at_wrap_time(at_wrap: int, later: int) -> None:
    server_ctx = server_context("1.3", num_tickets=at_wrap)
    pair = EnginePair(server_ctx=server_ctx)
    server_ctx.num_tickets = later  # too late: wrap_bio() already read it
    pair.handshake()
    assert pair.client.has_buffered_input is (at_wrap > 0)


def test_handshake_tls13_client_processes_session_tickets_only_inside_read() -> None:
    pair = EnginePair(version="1.3")
    pair.handshake()
    client = pair.client
    assert client.has_buffered_input  # the two tickets, unread
    assert not has_ticket(client)
    # Neither a handshake step nor a write looks at incoming bytes.
    assert client.do_handshake() is True
    assert client.write(b"ping") == 4
    assert client.has_buffered_input
    assert not has_ticket(client)
    # read() processes them; they are not application data.
    assert client.read(1024) is NEED_DATA
    assert has_ticket(client)
    assert not client.has_buffered_input


def test_handshake_wrong_hostname_raises_cert_verification_error() -> None:
    pair = EnginePair(hostname="not-the-server.example")
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        pair.handshake()
    assert pair.client.error is info.value
    with pytest.raises(ssl.SSLCertVerificationError) as again:
        pair.client.do_handshake()
    assert again.value is info.value


# -- read ----------------------------------------------------------------------------


def test_read_with_nothing_received_returns_need_data() -> None:
    pair = handshaken()
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.read(1024) is NEED_DATA
    assert not pair.server.has_data_to_send


def test_sslobject_read_returns_at_most_one_record() -> None:
    pair = handshaken()
    for part in (b"one", b"two", b"three"):
        pair.send(pair.client, part)
    assert pair.server.ssl_object.read(1024) == b"one"


def test_sslobject_read_returns_at_most_16_kib_whatever_n() -> None:
    pair = handshaken()
    pair.send(pair.client, bytes(3 * MAX_RECORD_PLAINTEXT))
    assert len(pair.server.ssl_object.read(1 << 20)) == MAX_RECORD_PLAINTEXT


def test_read_drains_several_buffered_records_in_one_call() -> None:
    pair = handshaken()
    parts = [b"record %d;" % i for i in range(50)]
    for part in parts:
        pair.send(pair.client, part)
    assert pair.server.read(1 << 20) == b"".join(parts)
    assert pair.server.read(1 << 20) is NEED_DATA


def test_read_drains_a_large_write_in_one_call() -> None:
    pair = handshaken()
    message = bytes(range(256)) * 200  # 51200 bytes: four records
    pair.send(pair.client, message)
    assert pair.server.read(1 << 20) == message


@pytest.mark.parametrize("max_bytes", [1, 7, 10, 25, 99, 100, 101])
def test_read_never_returns_more_than_max_bytes(max_bytes: int) -> None:
    pair = handshaken()
    parts = [bytes([i]) * 10 for i in range(10)]  # ten records of ten bytes
    for part in parts:
        pair.send(pair.client, part)
    received = bytearray()
    first = pair.server.read(max_bytes)
    assert first is not None
    assert len(first) == min(max_bytes, 100)  # drained across records up to n
    received += first
    while (data := pair.server.read(max_bytes)) is not NEED_DATA:
        assert 0 < len(data) <= max_bytes
        received += data
    assert received == b"".join(parts)


def test_read_partial_record_stays_buffered_until_complete() -> None:
    pair = handshaken()
    first = encrypt(pair.client, b"first")
    second = encrypt(pair.client, b"second")
    pair.server.receive_data(first + second[:7])
    assert pair.server.read(1024) == b"first"
    assert pair.server.read(1024) is NEED_DATA  # nothing until the rest arrives
    assert pair.server.read(1024) is NEED_DATA
    pair.server.receive_data(second[7:])
    assert pair.server.read(1024) == b"second"
    assert not pair.server.has_buffered_input


def test_read_one_byte_at_a_time_delivers_record_once_complete() -> None:
    pair = handshaken()
    ciphertext = encrypt(pair.client, b"drip")
    for byte in ciphertext[:-1]:
        pair.server.receive_data(bytes([byte]))
        assert pair.server.read(1024) is NEED_DATA
    pair.server.receive_data(ciphertext[-1:])
    assert pair.server.read(1024) == b"drip"


def test_read_corruption_in_later_record_delivers_earlier_data_then_raises() -> None:
    pair = handshaken()
    good = encrypt(pair.client, b"good")
    bad = bytearray(encrypt(pair.client, b"bad"))
    bad[-1] ^= 0x01
    pair.server.receive_data(good + bytes(bad))
    assert pair.server.read(1024) == b"good"  # the error waits for the next step
    error = raises_ssl(pair.server.read, 1024)
    assert pair.server.error is error
    assert not is_ragged_eof(error)


# -- write ---------------------------------------------------------------------------


def test_write_empty_returns_zero_and_peer_sees_no_end_of_stream() -> None:
    pair = handshaken()
    assert pair.client.write(b"") == 0
    pair.pump(pair.client)  # whatever an empty write produced (version-dependent)
    # b"" would mean close_notify: an empty write must not look like one.
    assert pair.server.read(1024) is NEED_DATA
    pair.send(pair.client, b"after")
    assert pair.server.read(1024) == b"after"


def test_write_larger_than_one_record_splits_into_records_and_arrives_intact() -> None:
    pair = handshaken()
    message = bytes(range(256)) * 160  # 40960 bytes
    assert pair.client.write(message) == len(message)
    ciphertext = pair.pump(pair.client)
    sizes = record_sizes(ciphertext)
    assert len(sizes) == 3
    assert all(
        size <= RECORD_HEADER + MAX_RECORD_PLAINTEXT + MAX_RECORD_OVERHEAD
        for size in sizes
    )
    assert pair.server.read(1 << 20) == message


def test_write_before_handshake_returns_need_data_then_retry_sends() -> None:
    pair = EnginePair()
    client, server = pair.client, pair.server
    # write() runs the handshake first; the retry rule: same call, same data.
    assert client.write(b"early bird") is NEED_DATA
    pair.pump(client)
    assert server.do_handshake() is NEED_DATA
    pair.pump(server)
    assert client.write(b"early bird") == len(b"early bird")
    pair.pump(client)
    assert server.do_handshake() is True
    assert server.read(1024) == b"early bird"


def test_steps_interleave_write_between_need_data_reads() -> None:
    pair = handshaken()
    assert pair.server.read(1024) is NEED_DATA
    pair.send(pair.server, b"server talks first")  # another step in between
    pair.send(pair.client, b"client answers")
    assert pair.server.read(1024) == b"client answers"
    assert pair.client.read(1024) == b"server talks first"


# -- closing -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_unwrap_first_closer_writes_close_notify_and_returns_need_data(
    version: Version,
) -> None:
    pair = handshaken(version)
    assert pair.client.unwrap() is NEED_DATA
    close_notify = pair.pump(pair.client)
    assert len(list(records(close_notify))) == 1
    assert pair.client.unwrap() is NEED_DATA  # still waiting, writes nothing more
    assert not pair.client.has_data_to_send


@pytest.mark.parametrize("version", VERSIONS)
def test_unwrap_first_closer_returns_true_after_peer_close_notify(
    version: Version,
) -> None:
    pair = handshaken(version)
    assert pair.client.unwrap() is NEED_DATA
    pair.pump(pair.client)
    # The second closer completes at once: it already has our close_notify.
    assert pair.server.unwrap() is True
    pair.pump(pair.server)
    assert pair.client.unwrap() is True
    assert pair.client.leftover() == b""
    assert pair.server.leftover() == b""


@pytest.mark.parametrize("version", VERSIONS)
def test_read_after_peer_close_notify_returns_empty_every_time(
    version: Version,
) -> None:
    pair = handshaken(version)
    pair.client.unwrap()
    pair.pump(pair.client)
    assert pair.server.read(1024) == b""
    assert pair.server.read(1024) == b""
    assert pair.server.read(1) == b""
    assert pair.server.error is None


def test_sslobject_read_after_both_close_notifies_raises_zero_return() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    assert pair.server.ssl_object.read(1024) == b""  # only received: b""
    pair.server.unwrap()
    with pytest.raises(ssl.SSLZeroReturnError):  # ours sent too: an exception
        pair.server.ssl_object.read(1024)


def test_read_after_both_close_notifies_returns_empty() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    assert pair.server.unwrap() is True
    assert pair.server.read(1024) == b""
    assert pair.server.read(1024) == b""
    assert pair.server.error is None


@pytest.mark.parametrize("version", VERSIONS)
def test_write_after_own_unwrap_raises_protocol_is_shutdown(version: Version) -> None:
    pair = handshaken(version)
    pair.client.unwrap()
    raises_ssl(pair.client.write, b"too late", reason="PROTOCOL_IS_SHUTDOWN")
    pair.pump(pair.client)
    assert pair.server.read(1024) == b""  # the peer sees only the close_notify


def test_sslobject_write_after_own_unwrap_leaves_reading_usable() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    raises_ssl(pair.client.ssl_object.write, b"x", reason="PROTOCOL_IS_SHUTDOWN")
    pair.send(pair.server, b"still flowing")
    assert pair.client.ssl_object.read(1024) == b"still flowing"


def test_write_after_own_unwrap_keeps_half_closed_reading_usable() -> None:
    # PROTOCOL_IS_SHUTDOWN is the caller's mistake, not a fatal TLS error: the
    # SSLObject still reads (test above), so the engine must not record it as fatal.
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    raises_ssl(pair.client.write, b"x", reason="PROTOCOL_IS_SHUTDOWN")
    assert pair.client.error is None
    pair.send(pair.server, b"still flowing")
    assert pair.client.read(1024) == b"still flowing"


def test_read_after_own_unwrap_tls13_returns_peer_data() -> None:
    pair = handshaken("1.3")
    assert pair.client.unwrap() is NEED_DATA  # half-close: "send_eof"
    pair.pump(pair.client)
    assert pair.server.read(1024) == b""
    for part in (b"the server ", b"keeps ", b"talking"):
        pair.send(pair.server, part)
    assert pair.client.read(1024) == b"the server keeps talking"
    assert pair.server.unwrap() is True
    pair.pump(pair.server)
    assert pair.client.read(1024) == b""
    assert pair.client.unwrap() is True


def test_read_after_own_unwrap_data_and_close_notify_in_one_chunk_ends_cleanly() -> (
    None
):
    # After our close_notify, SSLObject.read() reports the peer's close_notify as
    # SSLZeroReturnError instead of b"". The engine's drain loop must treat it as
    # the end of the data, not as a fatal error.
    pair = handshaken("1.3")
    pair.client.unwrap()
    pair.pump(pair.client)
    assert pair.server.read(1024) == b""
    pair.server.write(b"last words")
    assert pair.server.unwrap() is True
    pair.pump(pair.server)  # data and close_notify in one chunk
    assert pair.client.read(1024) == b"last words"
    assert pair.client.read(1024) == b""
    assert pair.client.error is None
    assert pair.client.unwrap() is True


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer_closed", [False, True], ids=["data", "data+close"])
def test_sslobject_unwrap_with_unread_application_data_fails_for_good(
    version: Version, peer_closed: bool
) -> None:
    pair = handshaken(version)
    pair.server.write(b"unread")
    if peer_closed:
        pair.server.unwrap()
    pair.pump(pair.server)
    raises_ssl(
        pair.client.ssl_object.unwrap, reason="APPLICATION_DATA_AFTER_CLOSE_NOTIFY"
    )
    raises_ssl(pair.client.ssl_object.unwrap, reason="SHUTDOWN_WHILE_IN_INIT")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer_closed", [False, True], ids=["data", "data+close"])
def test_unwrap_with_unread_application_data_appends_it_to_keep(
    version: Version, peer_closed: bool
) -> None:
    pair = handshaken(version)
    pair.send(pair.server, b"unread ")
    pair.send(pair.server, b"twice")
    if peer_closed:
        pair.server.unwrap()
        pair.pump(pair.server)
    keep = bytearray(b"already: ")
    expected = True if peer_closed else NEED_DATA
    assert pair.client.unwrap(keep) is expected
    assert keep == b"already: unread twice"
    assert pair.client.error is None
    if not peer_closed:
        pair.pump(pair.client)
        assert pair.server.unwrap() is True
        pair.pump(pair.server)
        assert pair.client.unwrap(keep) is True
        assert keep == b"already: unread twice"


def test_unwrap_with_unread_application_data_and_no_keep_discards_it() -> None:
    pair = handshaken()
    pair.send(pair.server, b"discard me")
    pair.server.unwrap()
    pair.pump(pair.server)
    assert pair.client.unwrap(None) is True
    assert pair.client.error is None
    assert pair.client.leftover() == b""
    assert pair.client.read(1024) == b""


def test_unwrap_first_closer_keeps_data_peer_sent_before_its_close_notify() -> None:
    pair = handshaken()
    keep = bytearray()
    assert pair.client.unwrap(keep) is NEED_DATA
    pair.pump(pair.client)
    # The server had more to say before closing (it did not read our close_notify).
    pair.send(pair.server, b"in flight")
    assert pair.client.unwrap(keep) is NEED_DATA
    pair.send(pair.server, b", and more")
    pair.server.unwrap()
    pair.pump(pair.server)
    assert pair.client.unwrap(keep) is True
    assert keep == b"in flight, and more"


def test_unwrap_after_partial_read_keeps_rest_of_record() -> None:
    pair = handshaken()
    pair.send(pair.server, b"0123456789")
    pair.server.unwrap()
    pair.pump(pair.server)
    assert pair.client.read(4) == b"0123"
    keep = bytearray()
    assert pair.client.unwrap(keep) is True
    assert keep == b"456789"


@pytest.mark.parametrize("version", VERSIONS)
def test_leftover_plaintext_after_close_notify_in_same_chunk_returned_exactly(
    version: Version,
) -> None:
    pair = handshaken(version)
    assert pair.client.unwrap() is NEED_DATA  # the STARTTLS client downgrades
    pair.pump(pair.client)
    assert pair.server.read(1024) == b""
    assert pair.server.unwrap() is True
    plaintext = b"220 back to plaintext\r\n"
    pair.client.receive_data(pair.server.data_to_send() + plaintext)
    assert pair.client.unwrap() is True
    assert pair.client.leftover() == plaintext
    assert pair.client.leftover() == b""  # taken once, never duplicated


@pytest.mark.parametrize("version", VERSIONS)
def test_leftover_plaintext_in_later_chunks_returned_exactly(version: Version) -> None:
    pair = handshaken(version)
    pair.client.unwrap()
    pair.pump(pair.client)
    pair.server.unwrap()
    close_notify = pair.server.data_to_send()
    pair.client.receive_data(close_notify[:3])  # even the close_notify is split
    assert pair.client.unwrap() is NEED_DATA
    pair.client.receive_data(close_notify[3:] + b"first ")
    assert pair.client.unwrap() is True
    assert pair.client.leftover() == b"first "
    pair.client.receive_data(b"second")
    pair.client.receive_data(b" third")
    assert pair.client.leftover() == b"second third"


def test_leftover_that_looks_like_a_tls_record_is_not_decrypted() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    pair.server.unwrap()
    fake_record = b"\x17\x03\x03\x00\x05hello" + b"\x15\x03\x03\x00\x02\x02\x28"
    pair.client.receive_data(pair.server.data_to_send() + fake_record)
    assert pair.client.unwrap() is True
    assert pair.client.leftover() == fake_record


def test_leftover_server_side_plaintext_pipelined_after_close_notify() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.server.receive_data(pair.client.data_to_send() + b"QUIT\r\n")
    keep = bytearray()
    assert pair.server.unwrap(keep) is True  # second closer: done at once
    assert keep == b""
    assert pair.server.leftover() == b"QUIT\r\n"


def test_read_after_peer_close_notify_leaves_following_plaintext_for_leftover() -> None:
    pair = handshaken()
    pair.send(pair.server, b"bye")
    pair.server.unwrap()
    pair.client.receive_data(pair.server.data_to_send() + b"PLAIN")
    assert pair.client.read(1024) == b"bye"
    assert pair.client.read(1024) == b""
    assert pair.client.read(1024) == b""
    assert pair.client.unwrap() is True
    assert pair.client.leftover() == b"PLAIN"


def test_unwrap_splits_data_close_notify_and_plaintext_exactly() -> None:
    pair = handshaken()
    pair.send(pair.server, b"encrypted part")
    pair.server.unwrap()
    pair.client.receive_data(pair.server.data_to_send() + b"plaintext part")
    keep = bytearray()
    assert pair.client.unwrap(keep) is True
    assert keep == b"encrypted part"
    assert pair.client.leftover() == b"plaintext part"


# -- EOF -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_read_eof_without_close_notify_raises_ragged_eof(version: Version) -> None:
    pair = handshaken(version)
    pair.server.receive_data(b"")
    error = raises_ssl(pair.server.read, 1024)
    assert isinstance(error, ssl.SSLEOFError)
    assert is_ragged_eof(error)
    assert pair.server.error is error


def test_read_eof_in_the_middle_of_a_record_raises_ragged_eof() -> None:
    pair = handshaken()
    ciphertext = encrypt(pair.client, b"cut short")
    pair.server.receive_data(ciphertext[:-1])
    assert pair.server.read(1024) is NEED_DATA
    pair.server.receive_data(b"")
    assert is_ragged_eof(raises_ssl(pair.server.read, 1024))


def test_read_eof_after_close_notify_returns_empty() -> None:
    pair = handshaken()
    pair.client.unwrap()
    pair.pump(pair.client)
    pair.server.receive_data(b"")
    assert pair.server.read(1024) == b""
    assert pair.server.error is None


@needs_ignore_eof_option
@pytest.mark.parametrize("version", VERSIONS)
def test_read_eof_with_ignore_unexpected_eof_option_looks_like_clean_close(
    version: Version,
) -> None:
    # Why default_context() clears the option: with it, truncation is invisible.
    pair = handshaken(
        version,
        client_context(version, ignore_unexpected_eof=True),
        server_context(version, ignore_unexpected_eof=True),
    )
    pair.server.receive_data(b"")
    assert pair.server.read(1024) == b""
    assert pair.server.read(1024) == b""
    assert pair.server.error is None


@needs_ignore_eof_option
@pytest.mark.parametrize("server_side", [False, True], ids=["client", "server"])
def test_default_context_clears_ignore_unexpected_eof(
    server_side: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some Python/OpenSSL builds set the option in create_default_context(); force
    # that here so the test can fail on any build.
    create = ssl.create_default_context

    def create_with_option(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = create(*args, **kwargs)  # type: ignore[arg-type]
        context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
        return context

    assert not default_context(server_side=server_side).options & (
        ssl.OP_IGNORE_UNEXPECTED_EOF
    )
    monkeypatch.setattr(ssl, "create_default_context", create_with_option)
    context = default_context(server_side=server_side)
    assert not context.options & ssl.OP_IGNORE_UNEXPECTED_EOF


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("victim", ["server", "client"])
def test_handshake_truncated_then_eof_raises_ragged_eof(
    version: Version, victim: str
) -> None:
    pair = EnginePair(version=version)
    pair.client.do_handshake()
    flight = pair.client.data_to_send()
    if victim == "client":
        pair.server.receive_data(flight)
        pair.server.do_handshake()
        flight = pair.server.data_to_send()
    engine = getattr(pair, victim)
    engine.receive_data(flight[: len(flight) // 2])
    assert engine.do_handshake() is NEED_DATA
    engine.receive_data(b"")
    error = raises_ssl(engine.do_handshake)
    assert is_ragged_eof(error)
    assert engine.error is error


def test_handshake_eof_before_any_byte_raises_ragged_eof() -> None:
    pair = EnginePair()
    pair.server.receive_data(b"")
    assert is_ragged_eof(raises_ssl(pair.server.do_handshake))


# -- the first fatal error is kept ---------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_read_corrupted_record_raises_ssl_error_and_writes_alert(
    version: Version,
) -> None:
    pair = handshaken(version)
    ciphertext = bytearray(encrypt(pair.client, b"hello"))
    ciphertext[-3] ^= 0x40
    pair.server.receive_data(bytes(ciphertext))
    error = raises_ssl(pair.server.read, 1024)
    assert not isinstance(error, ssl.SSLEOFError)
    assert not is_ragged_eof(error)
    assert len(list(records(pair.server.data_to_send()))) == 1  # the alert


def corrupted_pair() -> tuple[EnginePair, ssl.SSLError]:
    pair = handshaken()
    ciphertext = bytearray(encrypt(pair.client, b"hello"))
    ciphertext[RECORD_HEADER + 1] ^= 0x01
    pair.server.receive_data(bytes(ciphertext))
    return pair, raises_ssl(pair.server.read, 1024)


def test_steps_after_fatal_error_raise_the_same_exception_object() -> None:
    pair, first = corrupted_pair()
    server = pair.server
    assert server.error is first
    later_steps: list[Callable[[], object]] = [
        lambda: server.read(1024),
        lambda: server.write(b"x"),
        server.do_handshake,
        server.unwrap,
        lambda: server.unwrap(bytearray()),
        server.request_client_auth,
        lambda: server.read(1024),
    ]
    for step in later_steps:
        with pytest.raises(ssl.SSLError) as info:
            step()
        assert info.value is first
    # More bytes or an EOF do not replace it either.
    server.receive_data(b"more")
    server.receive_data(b"")
    with pytest.raises(ssl.SSLError) as info:
        server.read(1024)
    assert info.value is first
    assert server.error is first


def test_sslobject_after_fatal_error_raises_eof_error_that_looks_ragged() -> None:
    # Why the engine keeps the first error: OpenSSL's later answer is an
    # SSLEOFError, which anyone would take for a truncated connection.
    pair, first = corrupted_pair()
    assert not is_ragged_eof(first)
    with pytest.raises(ssl.SSLError) as info:
        pair.server.ssl_object.read(1024)
    assert info.value is not first
    assert isinstance(info.value, ssl.SSLEOFError)
    assert is_ragged_eof(info.value)


def test_engine_fail_keeps_the_first_error() -> None:
    pair = handshaken()
    first, second = ssl.SSLError(1, "first"), ssl.SSLError(1, "second")
    assert pair.client.fail(first) is first
    assert pair.client.fail(second) is first
    assert pair.client.error is first
    with pytest.raises(ssl.SSLError) as info:
        pair.client.write(b"x")
    assert info.value is first


def test_handshake_http_request_instead_of_client_hello_raises_ssl_error() -> None:
    pair = EnginePair()
    pair.server.receive_data(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    error = raises_ssl(pair.server.do_handshake, reason="HTTP_REQUEST")
    assert not is_ragged_eof(error)
    with pytest.raises(ssl.SSLError) as again:
        pair.server.do_handshake()
    assert again.value is error


@pytest.mark.parametrize(
    "garbage",
    [
        b"EHLO mail.example.org\r\n",
        bytes(64),
        bytes(range(256)),
        b"\x16\x03\x01\x00\x05hello",  # a handshake record that is no ClientHello
        b"\x80" * 10,
    ],
    ids=["smtp", "zeros", "all-bytes", "bogus-handshake", "high-bytes"],
)
def test_handshake_garbage_instead_of_client_hello_raises_ssl_error(
    garbage: bytes,
) -> None:
    pair = EnginePair()
    pair.server.receive_data(garbage)
    error = raises_ssl(pair.server.do_handshake)  # not NEED_DATA, not a hang
    assert pair.server.error is error


def test_client_handshake_plaintext_reply_raises_ssl_error() -> None:
    pair = EnginePair()
    pair.client.do_handshake()
    pair.client.receive_data(b"220 mail.example.org ESMTP ready\r\n")
    error = raises_ssl(pair.client.do_handshake)
    assert not is_ragged_eof(error)


# -- is_ragged_eof -------------------------------------------------------------------


def real_ragged_eof() -> ssl.SSLError:
    pair = handshaken()
    pair.server.receive_data(b"")
    return raises_ssl(pair.server.read, 1)


@pytest.mark.parametrize(
    "make",
    [
        real_ragged_eof,
        lambda: ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        lambda: ssl.SSLError(
            1, "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation"
        ),
    ],
    ids=["from-engine", "SSLEOFError", "reason-in-strerror"],
)
def test_is_ragged_eof_true_for_eof_without_close_notify(
    make: Callable[[], BaseException],
) -> None:
    assert is_ragged_eof(make()) is True


@pytest.mark.parametrize(
    "make",
    [
        lambda: None,
        lambda: corrupted_pair()[1],
        lambda: ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"),
        lambda: ssl.SSLCertVerificationError(1, "certificate verify failed"),
        lambda: ssl.SSLError(),
        lambda: ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        lambda: EOFError("UNEXPECTED_EOF_WHILE_READING"),
        lambda: OSError(0, "UNEXPECTED_EOF_WHILE_READING"),
        lambda: ValueError("x"),
    ],
    ids=[
        "None",
        "bad-record-mac",
        "close_notify",
        "verification",
        "no-args",
        "wrong-version",
        "EOFError",
        "OSError",
        "ValueError",
    ],
)
def test_is_ragged_eof_false_for_everything_else(
    make: Callable[[], BaseException | None],
) -> None:
    assert is_ragged_eof(make()) is False


# -- post-handshake client authentication (TLS 1.3) ---------------------------------


def test_client_auth_enabled_initial_handshake_does_not_ask_for_certificate() -> None:
    pair = pha_pair(verify_mode=ssl.CERT_REQUIRED)
    assert pair.server.ssl_object.getpeercert(True) is None
    assert pair.server.client_auth_pending is False


def test_request_client_auth_writes_nothing_by_itself() -> None:
    pair = pha_pair()
    pair.server.request_client_auth()
    assert pair.server.client_auth_pending is True
    assert not pair.server.has_data_to_send
    with pytest.raises(ValueError):  # "handshake not done yet" until it is sent
        pair.server.ssl_object.getpeercert(True)


def test_request_client_auth_next_do_handshake_writes_certificate_request() -> None:
    pair = pha_pair()
    pair.server.request_client_auth()
    assert pair.server.do_handshake() is True
    request = pair.server.data_to_send()
    assert len(list(records(request))) == 1
    assert len(request) in CERTIFICATE_REQUEST_SIZE
    assert pair.server.client_auth_pending is True
    assert pair.server.ssl_object.getpeercert(True) is None


def test_request_client_auth_next_write_sends_request_before_data() -> None:
    pair = pha_pair()
    pair.server.request_client_auth()
    ciphertext = pair.send(pair.server, b"please authenticate")
    sizes = record_sizes(ciphertext)
    assert len(sizes) == 2
    assert sizes[0] in CERTIFICATE_REQUEST_SIZE
    assert pair.client.read(1024) == b"please authenticate"
    pair.pump(pair.client)  # the answer, written by that read
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.client_auth_pending is False
    assert pair.server.ssl_object.getpeercert(True) == CLIENT_CERT_DER


def test_client_do_handshake_and_write_do_not_answer_certificate_request() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    assert pair.client.do_handshake() is True
    assert not pair.client.has_data_to_send
    assert pair.client.write(b"early") == 5
    assert len(list(records(pair.pump(pair.client)))) == 1  # only the data
    assert pair.server.read(1024) == b"early"
    assert pair.server.client_auth_pending is True


def test_client_read_answers_certificate_request_while_returning_need_data() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    assert pair.client.read(1024) is NEED_DATA
    answer = pair.client.data_to_send()
    assert len(answer) > 500  # Certificate, CertificateVerify, Finished
    assert len(list(records(answer))) == 3


def test_client_read_answers_certificate_request_while_returning_data() -> None:
    pair = pha_pair()
    pair.server.request_client_auth()
    pair.server.do_handshake()
    pair.server.write(b"data")
    pair.pump(pair.server)
    assert pair.client.read(1024) == b"data"
    assert len(pair.client.data_to_send()) > 500


def test_server_read_processes_answer_gets_certificate_and_writes_two_tickets() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    answer_certificate_request(pair)
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.client_auth_pending is False
    assert pair.server.ssl_object.getpeercert(True) == CLIENT_CERT_DER
    assert subject_alt_names(pair.server) == (("email", CLIENT_IDENTITY),)
    tickets = pair.server.data_to_send()
    assert len(list(records(tickets))) == 2
    assert pair.server.error is None


def test_server_read_returns_data_client_sent_before_request_first() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    pair.send(pair.client, b"early")  # written before the client saw the request
    answer_certificate_request(pair)
    assert pair.server.read(5) == b"early"  # exactly the data, first
    assert pair.server.client_auth_pending is True  # the answer is not read yet
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.client_auth_pending is False
    assert pair.server.ssl_object.getpeercert(True) == CLIENT_CERT_DER


def test_server_read_returns_data_around_answer_in_order() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    pair.client.write(b"early ")
    assert pair.client.read(1024) is NEED_DATA  # answers
    pair.client.write(b"late")
    pair.pump(pair.client)  # early, answer, late: one chunk
    assert pair.server.read(1024) == b"early late"
    assert pair.server.client_auth_pending is False


def test_request_client_auth_queued_twice_raises_and_sends_one_request() -> None:
    pair = pha_pair()
    pair.server.request_client_auth()
    # OpenSSL says STILL_IN_INIT; the engine's getpeercert() call raises first.
    with pytest.raises((ValueError, ssl.SSLError)):
        pair.server.request_client_auth()
    assert pair.server.client_auth_pending is True
    assert pair.server.error is None
    assert pair.server.do_handshake() is True
    assert len(list(records(pair.server.data_to_send()))) == 1


def test_request_client_auth_while_request_sent_raises_request_sent() -> None:
    pair = pha_pair()
    send_certificate_request(pair)
    raises_ssl(pair.server.request_client_auth, reason="REQUEST_SENT")
    assert pair.server.client_auth_pending is True
    assert not pair.server.has_data_to_send
    answer_certificate_request(pair)
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.client_auth_pending is False


def test_request_client_auth_client_without_pha_raises_extension_not_received() -> None:
    pair = pha_pair(client_pha=False)
    raises_ssl(pair.server.request_client_auth, reason="EXTENSION_NOT_RECEIVED")
    assert pair.server.client_auth_pending is False
    assert not pair.server.has_data_to_send
    assert pair.server.error is None
    # The connection stays usable both ways.
    pair.send(pair.server, b"still")
    pair.send(pair.client, b"fine")
    assert pair.client.read(1024) == b"still"
    assert pair.server.read(1024) == b"fine"


def test_request_client_auth_client_pha_enabled_after_wrap_has_no_effect() -> None:
    client_ctx = client_context("1.3", cert="trusted", post_handshake_auth=False)
    server_ctx = server_context(
        "1.3", verify_mode=ssl.CERT_OPTIONAL, post_handshake_auth=True
    )
    pair = EnginePair(client_ctx, server_ctx)
    client_ctx.post_handshake_auth = True  # too late: read by wrap_bio()
    pair.handshake()
    raises_ssl(pair.server.request_client_auth, reason="EXTENSION_NOT_RECEIVED")


def test_request_client_auth_tls12_raises_wrong_ssl_version() -> None:
    pair = pha_pair(version="1.2")
    raises_ssl(pair.server.request_client_auth, reason="WRONG_SSL_VERSION")
    assert pair.server.client_auth_pending is False
    assert not pair.server.has_data_to_send


def test_request_client_auth_server_cert_none_raises_invalid_config() -> None:
    pair = pha_pair(verify_mode=ssl.CERT_NONE)
    raises_ssl(pair.server.request_client_auth, reason="INVALID_CONFIG")
    assert pair.server.client_auth_pending is False
    assert not pair.server.has_data_to_send


def test_request_client_auth_on_client_raises_not_server() -> None:
    pair = pha_pair()
    raises_ssl(pair.client.request_client_auth, reason="NOT_SERVER")
    assert pair.client.client_auth_pending is False


def test_client_auth_required_without_client_cert_fails_on_both_sides() -> None:
    pair = pha_pair(cert="none", verify_mode=ssl.CERT_REQUIRED)
    send_certificate_request(pair)
    answer_certificate_request(pair)  # an empty Certificate
    error = raises_ssl(
        pair.server.read, 1024, reason="PEER_DID_NOT_RETURN_A_CERTIFICATE"
    )
    assert pair.server.client_auth_pending is False
    assert pair.server.error is error
    alert = pair.pump(pair.server)
    assert len(list(records(alert))) == 1
    raises_ssl(pair.client.read, 1024, reason="TLSV13_ALERT_CERTIFICATE_REQUIRED")


def test_client_auth_untrusted_client_cert_raises_cert_verification_error() -> None:
    pair = pha_pair(cert="untrusted", verify_mode=ssl.CERT_REQUIRED)
    send_certificate_request(pair)
    answer_certificate_request(pair)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        pair.server.read(1024)
    assert pair.server.error is info.value
    assert pair.server.client_auth_pending is False
    pair.pump(pair.server)
    raises_ssl(pair.client.read, 1024, reason="TLSV1_ALERT_UNKNOWN_CA")


def test_client_auth_optional_empty_certificate_detected_by_new_tickets() -> None:
    pair = pha_pair(cert="none", verify_mode=ssl.CERT_OPTIONAL)
    send_certificate_request(pair)
    answer_certificate_request(pair)
    assert pair.server.read(1024) is NEED_DATA
    # Same (absent) certificate before and after: only the tickets tell.
    assert pair.server.ssl_object.getpeercert(True) is None
    assert len(list(records(pair.server.data_to_send()))) == 2
    assert pair.server.client_auth_pending is False


def test_client_auth_several_rounds_with_same_cert_each_completion_detected() -> None:
    pair = pha_pair()
    certs = []
    for _ in range(3):
        send_certificate_request(pair)
        assert pair.server.client_auth_pending is True
        answer_certificate_request(pair)
        assert pair.server.read(1024) is NEED_DATA
        assert pair.server.client_auth_pending is False
        certs.append(pair.server.ssl_object.getpeercert(True))
        pair.pump(pair.server)
        assert pair.client.read(1024) is NEED_DATA  # the new tickets
    assert certs == [CLIENT_CERT_DER] * 3
    pair.send(pair.client, b"still talking")
    assert pair.server.read(1024) == b"still talking"


def test_client_auth_without_tickets_detects_new_certificate() -> None:
    pair = pha_pair(num_tickets=0)
    send_certificate_request(pair)
    answer_certificate_request(pair)
    assert pair.server.read(1024) is NEED_DATA
    assert not pair.server.has_data_to_send  # no tickets: the certificate tells
    assert pair.server.client_auth_pending is False


def test_client_auth_without_tickets_cannot_detect_empty_certificate() -> None:
    # The engine's limit: no new certificate and no tickets, nothing shows that the
    # exchange finished. client_auth_configured() must refuse such a context.
    pair = pha_pair(cert="none", verify_mode=ssl.CERT_OPTIONAL, num_tickets=0)
    send_certificate_request(pair)
    answer_certificate_request(pair)
    assert pair.server.read(1024) is NEED_DATA
    assert pair.server.client_auth_pending is True  # stays True for ever
    pair.send(pair.client, b"more data does not help")
    assert pair.server.read(1024) == b"more data does not help"
    assert pair.server.client_auth_pending is True


def test_client_auth_end_visible_only_where_completion_can_be_detected() -> None:
    # Without session tickets, the end of an exchange shows only as a new
    # certificate: not under CERT_OPTIONAL (the client may send none), and not in
    # a second round (the client may send the same one). The driver refuses those.
    optional = pha_pair(cert="none", verify_mode=ssl.CERT_OPTIONAL, num_tickets=0)
    assert optional.server.client_auth_end_visible is False
    first_round = pha_pair(num_tickets=0)
    assert first_round.server.client_auth_end_visible is True
    with_tickets = pha_pair(cert="none", verify_mode=ssl.CERT_OPTIONAL)
    assert with_tickets.server.client_auth_end_visible is True


def test_unwrap_with_client_auth_pending_puts_server_tickets_into_leftover() -> None:
    # Why the driver finishes a pending request before unwrapping.
    pair = pha_pair()
    send_certificate_request(pair)
    assert pair.server.unwrap() is NEED_DATA
    pair.pump(pair.server)
    assert pair.client.read(1024) == b""  # answers the request, then sees the close
    assert pair.client.unwrap() is True
    pair.pump(pair.client)
    assert pair.server.unwrap() is True  # processes the answer: writes tickets
    pair.pump(pair.server)
    leftover = pair.client.leftover()
    assert len(list(records(leftover))) == 2  # TLS records in the "plaintext"


# -- properties ----------------------------------------------------------------------


@hypothesis_report_warning
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(VERSIONS),
    to_client=st.booleans(),
    sizes=st.lists(st.integers(0, 2 * MAX_RECORD_PLAINTEXT), min_size=1, max_size=6),
    ending=st.sampled_from(["open", "close_notify", "half-close"]),
    data=st.data(),
)
def test_messages_in_random_chunks_arrive_intact_and_in_order(
    version: Version,
    to_client: bool,
    sizes: list[int],
    ending: str,
    data: st.DataObject,
) -> None:
    pair = EnginePair(version=version)
    pair.handshake()  # to the client: its tickets are read along the way
    sender, receiver = pair.server, pair.client
    if not to_client:
        sender, receiver = receiver, sender
    if ending == "half-close":  # the receiver said goodbye first, and still reads
        assert receiver.unwrap() is NEED_DATA
        pair.pump(receiver)
    # Contents from a drawn seed: drawing 100 KB byte by byte would exhaust the
    # entropy hypothesis allows per example.
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    messages = [rng.randbytes(size) for size in sizes]
    ciphertext = bytearray()
    for message in messages:
        assert sender.write(message) == len(message)
        ciphertext += sender.data_to_send()
    if ending != "open":
        assert sender.unwrap() is (True if ending == "half-close" else NEED_DATA)
        ciphertext += sender.data_to_send()
    cuts = data.draw(
        st.lists(
            st.integers(1, max(1, len(ciphertext) - 1)), max_size=12, unique=True
        ).map(sorted),
        label="cuts",
    )
    read_sizes = data.draw(
        st.lists(
            st.one_of(st.integers(1, 64), st.integers(1, 4 * MAX_RECORD_PLAINTEXT)),
            min_size=1,
            max_size=8,
        ),
        label="read sizes",
    )
    received = bytearray()
    reads = 0
    closed = False
    for chunk in split_at(bytes(ciphertext), cuts):
        receiver.receive_data(chunk)
        while not closed:
            max_bytes = read_sizes[reads % len(read_sizes)]
            reads += 1
            got = receiver.read(max_bytes)
            if got is NEED_DATA:
                break
            if got == b"":
                assert ending != "open", "b'' means close_notify, and none was sent"
                closed = True
                break
            assert len(got) <= max_bytes
            received += got
    assert received == b"".join(messages)
    assert closed is (ending != "open")
    # Then: NEED_DATA while open (this also consumes unread tickets), b"" once closed.
    assert receiver.read(1) == (b"" if closed else NEED_DATA)
    assert not receiver.has_buffered_input
    assert receiver.error is None


@hypothesis_report_warning
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(VERSIONS),
    before=st.binary(max_size=3000),
    after=st.binary(max_size=3000),
    data=st.data(),
)
def test_unwrap_random_chunks_keep_and_leftover_exact(
    version: Version, before: bytes, after: bytes, data: st.DataObject
) -> None:
    pair = handshaken(version)
    assert pair.client.unwrap() is NEED_DATA  # the client closes first
    pair.pump(pair.client)
    if before:
        pair.server.write(before)  # the server still had something to say
    assert pair.server.unwrap() is True
    wire = pair.server.data_to_send() + after
    cuts = data.draw(
        st.lists(st.integers(1, len(wire) - 1), max_size=10, unique=True).map(sorted),
        label="cuts",
    )
    keep = bytearray()
    leftover = bytearray()
    done = False
    for chunk in split_at(wire, cuts):
        pair.client.receive_data(chunk)
        if not done:
            done = pair.client.unwrap(keep) is True
        if done:
            leftover += pair.client.leftover()
    assert done
    assert keep == before
    assert leftover == after
