"""Certificates per host name, context selection and reloads: both faces, our client.

Interop with OpenSSL's and GnuTLS's clients is in ``test_sni_interop.py``; the
ClientHello parser alone in ``test_clienthello.py``.
"""

from __future__ import annotations

import pickle
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import AnyByteStream, ByteStream, Listener, SocketAttribute, TaskGroup

from anyiotls import (
    ClientHello,
    ClientHelloAttribute,
    ClientHelloError,
    TLSAttribute,
    TLSListener,
    TLSStream,
    UnrecognizedNameError,
    load_server_context,
)
from anyiotls._sni import ServerNames

from .sni_helpers import EXPECTED, Certificates, common_name, sni_table
from .test_clienthello import hello_body, wire

pytestmark = pytest.mark.anyio

#: Upper bound for one whole test: nothing here may hang.
TIMEOUT = 20


@pytest.fixture(scope="session")
def certs() -> Certificates:
    return Certificates(trustme.CA())


# -- serving and connecting (AnyIO face) -----------------------------------------------


@dataclass
class Seen:
    """What the server's handler saw, per connection, and the handshake errors."""

    hellos: list[ClientHello] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    error_seen: anyio.Event = field(default_factory=anyio.Event)


class RecordingListener(TLSListener):
    """Keeps the handshake errors it handles (and closes those connections)."""

    seen: Seen

    async def handle_handshake_error(  # type: ignore[override]
        self, exc: BaseException, stream: AnyByteStream
    ) -> None:
        self.seen.errors.append(exc)
        self.seen.error_seen.set()
        await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception):
            raise exc


async def echo_hello(stream: TLSStream, seen: Seen) -> None:
    """Note the ClientHello, then echo until the client closes."""
    seen.hellos.append(stream.extra(ClientHelloAttribute.client_hello))
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


@asynccontextmanager
async def serving(
    listener: Listener[Any], handler: Callable[[TLSStream], Awaitable[None]]
) -> AsyncIterator[int]:
    port = int(listener.extra(SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield port
        tg.cancel_scope.cancel()


async def make_listener(
    certs: Certificates,
    *,
    listener_class: type[TLSListener] = RecordingListener,
    **kwargs: Any,
) -> RecordingListener:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    kwargs.setdefault("sni_contexts", sni_table(certs))
    listener = listener_class(inner, certs.context("default.test"), **kwargs)
    assert isinstance(listener, RecordingListener)
    listener.seen = Seen()
    return listener


async def connect(
    certs: Certificates,
    port: int,
    server_name: str | None,
    *,
    alpn: list[str] | None = None,
) -> TLSStream:
    context = certs.client_context(server_name)
    if alpn:
        context.set_alpn_protocols(alpn)
    return await TLSStream.wrap(
        await anyio.connect_tcp("127.0.0.1", port),
        server_side=False,
        hostname=server_name,
        ssl_context=context,
    )


async def certificate_seen(certs: Certificates, port: int, name: str | None) -> str:
    """The common name of the certificate a client asking for *name* gets."""
    stream = await connect(certs, port, name)
    async with stream:
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
        return common_name(stream.extra(TLSAttribute.peer_certificate))


# -- the name table, without sockets ---------------------------------------------------


def test_server_names_normalise_and_match(certs: Certificates) -> None:
    table = sni_table(certs)
    names = ServerNames(table)
    assert set(names) == {"a.test", "b.test", "*.wild.test", "xn--bcher-kva.test"}
    assert len(names) == 4
    assert names["A.TEST"] is table["a.test"]
    assert names["*.WILD.test"] is table["*.wild.test"]
    assert names["xn--bcher-kva.test"] is table["bücher.test"]
    assert names.lookup("b.test") is table["B.TEST"]
    assert names.lookup("B.test.") is table["B.TEST"]
    assert names.lookup("q.wild.test") is table["*.wild.test"]
    for name in ["wild.test", "a.b.wild.test", "c.test", "", None]:
        assert names.lookup(name) is None, name


def test_exact_name_wins_over_wildcard(certs: Certificates) -> None:
    exact, wild = certs.context("a.test"), certs.context("*.wild.test")
    names = ServerNames({"*.wild.test": wild, "a.wild.test": exact})
    assert names.lookup("a.wild.test") is exact
    assert names.lookup("b.wild.test") is wild


@pytest.mark.parametrize(
    "key",
    [
        "",
        "*",
        "*.",
        "a..b",
        "a*.test",
        "a.*.test",
        "*.*.test",
        "x" * 64 + ".test",
        "a b.test",
        "a/b",
    ],
)
def test_bad_names_are_refused(key: str, certs: Certificates) -> None:
    with pytest.raises(ValueError, match="host name"):
        ServerNames({key: certs.context("a.test")})


def test_duplicate_names_are_refused(certs: Certificates) -> None:
    context = certs.context("a.test")
    with pytest.raises(ValueError, match="twice"):
        ServerNames({"bücher.test": context, "XN--BCHER-KVA.test": context})


def test_values_must_be_contexts(certs: Certificates) -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        ServerNames({"a.test": "a.pem"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="str"):
        ServerNames({b"a.test": certs.context("a.test")})  # type: ignore[dict-item]


def test_client_contexts_are_refused(certs: Certificates) -> None:
    with pytest.raises(ValueError, match="client context"):
        ServerNames({"a.test": ssl.create_default_context()})


def test_listener_validates_its_table_at_once(certs: Certificates) -> None:
    with pytest.raises(ValueError, match="host name"):
        TLSListener(
            None,  # type: ignore[arg-type]
            certs.context("default.test"),
            sni_contexts={"a*.test": certs.context("a.test")},
        )


# -- choosing by name ------------------------------------------------------------------


async def test_certificate_chosen_by_server_name(certs: Certificates) -> None:
    listener = await make_listener(certs)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            for name, expected in EXPECTED.items():
                assert await certificate_seen(certs, port, name) == expected, name
    sent = [hello.server_name for hello in listener.seen.hellos]
    assert sent == [
        None if name is None else name.lower().replace("bücher", "xn--bcher-kva")
        for name in EXPECTED
    ]
    assert listener.seen.errors == []


async def test_plain_listener_reads_nothing_ahead(certs: Certificates) -> None:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, certs.context("default.test"))
    assert listener.sni_contexts == {}
    done = anyio.Event()
    extras: list[object] = []

    async def handler(stream: TLSStream) -> None:
        extras.append(stream.extra(ClientHelloAttribute.server_name, "absent"))
        extras.append(type(stream))
        done.set()
        async with stream:
            await stream.send(b"x")

    with anyio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            context = certs.client_context(None)  # no host name check
            client = await TLSStream.wrap(
                await anyio.connect_tcp("127.0.0.1", port),
                server_side=False,
                hostname="a.test",  # sent, and ignored by a plain listener
                ssl_context=context,
            )
            assert common_name(client.extra(TLSAttribute.peer_certificate)) == (
                "default.test"
            )
            await done.wait()
            assert await client.receive() == b"x"
            await client.aclose()
    assert extras == ["absent", TLSStream]


async def test_assigning_a_table_later_turns_selection_on(certs: Certificates) -> None:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = RecordingListener(inner, certs.context("default.test"))
    listener.seen = Seen()
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            listener.sni_contexts = {"a.test": certs.context("a.test")}
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            assert await certificate_seen(certs, port, "b.test") == "default.test"
    assert [hello.server_name for hello in listener.seen.hellos] == [
        "a.test",
        "b.test",
    ]


async def test_attributes_show_the_client_hello(certs: Certificates) -> None:
    listener = await make_listener(certs)
    attributes: dict[str, Any] = {}

    async def handler(stream: TLSStream) -> None:
        attributes["hello"] = stream.extra(ClientHelloAttribute.client_hello)
        attributes["name"] = stream.extra(ClientHelloAttribute.server_name)
        attributes["alpn"] = stream.extra(ClientHelloAttribute.offered_alpn_protocols)
        attributes["transport"] = stream.transport_stream
        attributes["local_port"] = stream.extra(SocketAttribute.local_port)
        await echo_hello(stream, listener.seen)

    with anyio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            client = await connect(certs, port, "a.test", alpn=["h2", "http/1.1"])
            await client.send(b"x")
            await client.receive()
            await client.aclose()
    hello = attributes["hello"]
    assert attributes["name"] == hello.server_name == "a.test"
    assert attributes["alpn"] == hello.alpn_protocols == ("h2", "http/1.1")
    assert ssl.TLSVersion.TLSv1_3 in hello.tls_versions
    assert hello.cipher_suites
    # the transport is the real socket stream, not something that replays bytes
    assert isinstance(attributes["transport"], anyio.abc.SocketStream)
    assert attributes["local_port"] == port


async def test_alpn_comes_from_the_chosen_context(certs: Certificates) -> None:
    table = {"a.test": certs.context("a.test", alpn=["h2"])}
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(
        inner, certs.context("default.test", alpn=["http/1.1"]), sni_contexts=table
    )

    async def handler(stream: TLSStream) -> None:
        async with stream:
            await stream.send(b"x")

    with anyio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            for name, expected in [("a.test", "h2"), ("other.test", "http/1.1")]:
                client = await connect(certs, port, name, alpn=["h2", "http/1.1"])
                assert client.extra(TLSAttribute.alpn_protocol) == expected
                await client.aclose()


async def test_client_auth_comes_from_the_chosen_context(certs: Certificates) -> None:
    strict = certs.context("a.test")
    strict.verify_mode = ssl.CERT_REQUIRED
    certs.ca.configure_trust(strict)
    listener = await make_listener(certs, sni_contexts={"a.test": strict})
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            # no client certificate: the default accepts it, a.test does not
            assert await certificate_seen(certs, port, "other.test") == "default.test"
            stream = await connect(certs, port, "a.test")

            async def ping() -> None:  # TLS 1.3: the refusal comes after Finished
                await stream.send(b"ping")
                await stream.receive()

            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)):
                await ping()
            await stream.aclose()
            await listener.seen.error_seen.wait()
    assert isinstance(listener.seen.errors[0], ssl.SSLError)


async def test_unknown_names_refused_when_asked(certs: Certificates) -> None:
    listener = await make_listener(certs, refuse_unknown_names=True)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            assert await certificate_seen(certs, port, None) == "default.test"
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                await connect(certs, port, "unknown.test")
            await listener.seen.error_seen.wait()
    [error] = listener.seen.errors
    assert isinstance(error, UnrecognizedNameError)
    assert error.server_name == "unknown.test"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.server_name, str(copy)) == ("unknown.test", str(error))


async def test_garbage_fails_with_client_hello_error(certs: Certificates) -> None:
    listener = await make_listener(certs)
    malformed = wire(hello_body(session_id=b"\x00" * 33))  # at most 32 bytes
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("no handshake")) as port:
            for data, alert in [(b"GET / HTTP/1.0\r\n\r\n", b""), (malformed, b"\x32")]:
                raw = await anyio.connect_tcp("127.0.0.1", port)
                await raw.send(data)
                received = b""
                try:
                    while True:
                        received += await raw.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
                await raw.aclose()
                # a decode_error alert for a malformed ClientHello, none for HTTP
                assert received == (
                    b"\x15\x03\x03\x00\x02\x02" + alert if alert else b""
                )
    errors = listener.seen.errors
    assert [type(e) for e in errors] == [ClientHelloError, ClientHelloError]
    assert [e.reason for e in errors if isinstance(e, ClientHelloError)] == [
        "NOT_A_HANDSHAKE",
        "MALFORMED_CLIENT_HELLO",
    ]


# -- the ClientHello in 1-byte pieces --------------------------------------------------


class Trickle(ByteStream):
    """A socket stream that hands over one byte per receive."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.receives = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self.buffer:
            self.buffer = await self.stream.receive()
        self.receives += 1
        data, self.buffer = self.buffer[:1], self.buffer[1:]
        return data

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class TrickleListener(Listener[Trickle]):
    def __init__(self, inner: Listener[anyio.abc.SocketStream]) -> None:
        self.inner = inner
        self.streams: list[Trickle] = []

    async def serve(
        self,
        handler: Callable[[Trickle], Any],
        task_group: TaskGroup | None = None,
    ) -> None:
        async def wrap(stream: anyio.abc.SocketStream) -> None:
            trickle = Trickle(stream)
            self.streams.append(trickle)
            await handler(trickle)

        await self.inner.serve(wrap, task_group)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


async def test_client_hello_in_one_byte_receives(certs: Certificates) -> None:
    trickle = TrickleListener(await anyio.create_tcp_listener(local_host="127.0.0.1"))
    listener = RecordingListener(
        trickle, certs.context("default.test"), sni_contexts=sni_table(certs)
    )
    listener.seen = Seen()
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            assert await certificate_seen(certs, port, "x.wild.test") == "*.wild.test"
    [hello] = listener.seen.hellos
    assert hello.server_name == "x.wild.test"
    # the whole ClientHello came one byte per receive
    assert trickle.streams[0].receives > 200


# -- asynchronous selection ------------------------------------------------------------


async def test_select_context_may_await(certs: Certificates) -> None:
    asked: list[ClientHello] = []
    special = certs.context("b.test")

    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        asked.append(hello)
        await anyio.sleep(0.05)  # a database, an ACME client...
        return special if hello.server_name == "looked-up.test" else None

    listener = await make_listener(certs, select_context=select)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            assert await certificate_seen(certs, port, "looked-up.test") == "b.test"
            # None: the table, then the default
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            assert await certificate_seen(certs, port, "other.test") == "default.test"
    assert [hello.server_name for hello in asked] == [
        "looked-up.test",
        "a.test",
        "other.test",
    ]
    assert asked[0] == listener.seen.hellos[0]


async def test_select_context_alone(certs: Certificates) -> None:
    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        return certs.context("a.test") if hello.alpn_protocols == ("a",) else None

    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, certs.context("default.test"), select_context=select)
    assert listener.sni_contexts == {}

    async def handler(stream: TLSStream) -> None:
        async with stream:
            await stream.send(b"x")

    with anyio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            for alpn, expected in [(["a"], "a.test"), (["b"], "default.test")]:
                client = await connect(certs, port, None, alpn=alpn)
                cert = client.extra(TLSAttribute.peer_certificate)
                assert common_name(cert) == expected
                await client.aclose()


class Refused(Exception):
    pass


async def test_select_context_raising_refuses(certs: Certificates) -> None:
    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        raise Refused(hello.server_name)

    listener = await make_listener(certs, select_context=select)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("refused")) as port:
            with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
                await connect(certs, port, "a.test")
            await listener.seen.error_seen.wait()
    [error] = listener.seen.errors
    assert isinstance(error, Refused)
    assert error.args == ("a.test",)


async def test_select_context_returning_junk_refuses(certs: Certificates) -> None:
    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        return "a.pem"  # type: ignore[return-value]

    listener = await make_listener(certs, select_context=select)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("refused")) as port:
            with pytest.raises(ssl.SSLError):
                await connect(certs, port, "a.test")
            await listener.seen.error_seen.wait()
    [error] = listener.seen.errors
    assert isinstance(error, TypeError)
    assert "select_context must return" in str(error)


async def test_select_context_returning_a_client_context_refuses(
    certs: Certificates,
) -> None:
    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        return ssl.create_default_context()  # Purpose.SERVER_AUTH: a client's

    listener = await make_listener(certs, select_context=select)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("refused")) as port:
            with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
                await connect(certs, port, "a.test")
            await listener.seen.error_seen.wait()
    [error] = listener.seen.errors
    assert isinstance(error, ValueError)
    assert "client context" in str(error)


async def test_hanging_select_context_is_cut_by_the_handshake_timeout(
    certs: Certificates,
) -> None:
    started = anyio.Event()

    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    listener = await make_listener(certs, select_context=select, handshake_timeout=0.5)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("refused")) as port:
            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)):
                await connect(certs, port, "a.test")
            await listener.seen.error_seen.wait()
    assert started.is_set()
    [error] = listener.seen.errors
    assert isinstance(error, TimeoutError)


async def test_silent_client_is_cut_by_the_handshake_timeout(
    certs: Certificates,
) -> None:
    listener = await make_listener(certs, handshake_timeout=0.3)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: pytest.fail("refused")) as port:
            raw = await anyio.connect_tcp("127.0.0.1", port)
            await raw.send(b"\x16\x03\x01")  # the start of a record, then silence
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await raw.receive()
            await raw.aclose()
            await listener.seen.error_seen.wait()
    assert [type(e) for e in listener.seen.errors] == [TimeoutError]


# -- reloading -------------------------------------------------------------------------


async def test_new_context_applies_to_later_connections_only(
    certs: Certificates, tmp_path: Path
) -> None:
    listener = await make_listener(certs)
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            old_default = await connect(certs, port, None)
            old_a = await connect(certs, port, "a.test")

            # the default, by assignment
            listener.ssl_context = certs.context("renewed-default.test")
            # a.test, from files, into a new context
            cert, key = certs.write(tmp_path, "a.test")
            before = listener.sni_contexts["a.test"]
            new_a = listener.reload_certificate(cert, key, server_name="a.test")
            assert new_a is not before
            assert listener.sni_contexts["a.test"] is new_a
            # a name that was not there is added
            cert, key = certs.write(tmp_path, "c.test")
            listener.reload_certificate(cert, key, server_name="c.test")

            assert await certificate_seen(certs, port, None) == "renewed-default.test"
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            assert await certificate_seen(certs, port, "c.test") == "c.test"
            assert await certificate_seen(certs, port, "b.test") == "b.test"
            # the connections made before still work, with what they had
            for stream, expected in [(old_default, "default.test"), (old_a, "a.test")]:
                await stream.send(b"still here")
                assert await stream.receive() == b"still here"
                cert_seen = stream.extra(TLSAttribute.peer_certificate)
                assert common_name(cert_seen) == expected
                await stream.aclose()
    # the a.test connection made after the reload used the new context
    assert listener.seen.errors == []


async def test_bad_files_leave_the_old_context(
    certs: Certificates, tmp_path: Path
) -> None:
    listener = await make_listener(certs)
    default, table = listener.ssl_context, dict(listener.sni_contexts)
    cert, key = certs.write(tmp_path, "a.test")
    other_cert, other_key = certs.write(tmp_path, "b.test")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for args in [
        (tmp_path / "missing.pem", key),  # no such file
        (garbage, key),  # not PEM
        (cert, other_key),  # a key that does not match
        (cert, garbage),
    ]:
        with pytest.raises((OSError, ssl.SSLError)):
            listener.reload_certificate(*args)
        with pytest.raises((OSError, ssl.SSLError)):
            listener.reload_certificate(*args, server_name="a.test")
        assert listener.ssl_context is default
        assert dict(listener.sni_contexts) == table
    with anyio.fail_after(TIMEOUT):
        async with serving(listener, lambda s: echo_hello(s, listener.seen)) as port:
            assert await certificate_seen(certs, port, None) == "default.test"
            assert await certificate_seen(certs, port, "a.test") == "a.test"
    del other_cert


def test_load_server_context_uses_make_context(
    certs: Certificates, tmp_path: Path
) -> None:
    cert, key = certs.write(tmp_path, "a.test")

    def make() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context

    context = load_server_context(cert, key, make_context=make)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_3
    default = load_server_context(cert, key)
    assert not default.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    with pytest.raises(TypeError, match="make_context"):
        load_server_context(cert, key, make_context=lambda: None)  # type: ignore[arg-type,return-value]
