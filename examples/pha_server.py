"""A server that asks for a client certificate only when a request needs one.

The protocol is one line per request and one line per answer. ``GET /public`` is
served to anyone. ``GET /admin`` needs a client certificate whose subject is in
``ADMINS``: the server asks for it on the same connection with TLS 1.3
post-handshake authentication, and only then (see docs/post-handshake-auth.md).

Run it with your own files (PEM; the server's certificate and key in one file, and
the CA certificates trusted to sign client certificates)::

    python examples/pha_server.py --cert server.pem --client-ca clients-ca.pem

and try it with ``openssl s_client -connect 127.0.0.1:8443 -enable_pha -cert
alice.pem`` (then type ``GET /admin``). Or let it check itself with throw-away
certificates (needs ``pip install 'anyiotls[examples]'``)::

    python examples/pha_server.py --self-test [--backend trio]
"""

from __future__ import annotations

import argparse
import ssl
import tempfile
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import PostHandshakeAuthError, TLSAttribute, TLSListener, TLSStream

#: Subjects (commonName) allowed to GET /admin.
ADMINS = {"alice"}
#: How long a client may take to answer a certificate request.
AUTH_TIMEOUT = 10
MAX_LINE = 1024


def make_server_context(cert_file: str, client_ca_file: str) -> ssl.SSLContext:
    """The server's context; anyiotls reads these settings when a stream is made."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    context.load_verify_locations(client_ca_file)  # who may sign client certs
    context.post_handshake_auth = True  # ask after the handshake, not during it
    context.verify_mode = ssl.CERT_OPTIONAL  # no certificate: None, not an error
    # num_tickets keeps its default (2): new session tickets are how anyiotls sees
    # that a client answered without a certificate.
    return context


def common_name(certificate: dict[str, Any]) -> str | None:
    for rdn in certificate["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


async def admin_name(stream: TLSStream) -> str:
    """Who the client is, asking for its certificate if we do not know yet.

    Raises PermissionError with the reason to tell the client.
    """
    certificate = stream.extra(TLSAttribute.peer_certificate)
    if certificate is None:
        try:
            with anyio.fail_after(AUTH_TIMEOUT):
                certificate = await stream.verify_client_post_handshake()
        except PostHandshakeAuthError as exc:
            # TLS 1.2, or a client that cannot be asked: nothing was sent and
            # the connection goes on.
            raise PermissionError(f"cannot ask for a certificate: {exc}") from None
        except TimeoutError:
            # The request stays pending; a late answer shows in the attribute.
            raise PermissionError("no answer to the certificate request") from None
        # An ssl.SSLError (an untrusted certificate) propagates: the connection is
        # broken.
    if certificate is None:
        raise PermissionError("a client certificate is needed")
    name = common_name(certificate)
    if name not in ADMINS:
        raise PermissionError(f"{name} may not")
    return name


async def handle(stream: TLSStream) -> None:
    """Serve one connection; a client that fails ends only its own connection."""
    async with stream:
        try:
            await serve_requests(stream)
        except (anyio.BrokenResourceError, ssl.SSLError) as exc:
            # ssl.SSLError: verify_client_post_handshake() rejected the client's
            # certificate (untrusted); the connection is broken.
            print(f"connection ended: {exc!r} (cause: {exc.__cause__!r})")


async def serve_requests(stream: TLSStream) -> None:
    """One request line at a time."""
    lines = BufferedByteReceiveStream(stream)
    while True:
        try:
            request = await lines.receive_until(b"\n", MAX_LINE)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return
        if request == b"GET /public":
            answer = "200 hello, whoever you are"
        elif request == b"GET /admin":
            try:
                answer = f"200 welcome, {await admin_name(stream)}"
            except PermissionError as exc:
                answer = f"403 {exc}"
        else:
            answer = "400 unknown request"
        await stream.send(answer.encode() + b"\n")


async def serve(context: ssl.SSLContext, host: str, port: int) -> None:
    listener = TLSListener(
        await anyio.create_tcp_listener(local_host=host, local_port=port), context
    )
    print(f"listening on {host}:{port}")
    await listener.serve(handle)


# -- the self-test: a CA, certificates and clients, all made up here ------------------


async def ask(port: int, context: ssl.SSLContext, requests: list[bytes]) -> list[bytes]:
    """A client: send each request and read its answer (it answers certificate
    requests while it reads)."""
    transport = await anyio.connect_tcp("127.0.0.1", port)
    stream = await TLSStream.wrap(transport, hostname="localhost", ssl_context=context)
    async with stream:
        lines = BufferedByteReceiveStream(stream)
        answers = []
        for request in requests:
            await stream.send(request + b"\n")
            answers.append(await lines.receive_until(b"\n", MAX_LINE))
        return answers


def _import_trustme() -> Any:
    """trustme, which makes the throw-away certificates (the ``examples`` extra)."""
    try:
        import trustme
    except ImportError:
        raise SystemExit(
            "this needs trustme (throw-away certificates): "
            "pip install 'anyiotls[examples]'"
        ) from None
    return trustme


async def self_test() -> None:
    trustme = _import_trustme()

    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    with tempfile.TemporaryDirectory() as directory:
        cert_file, ca_file = Path(directory, "server.pem"), Path(directory, "ca.pem")
        server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        ca.cert_pem.write_to_path(str(ca_file))
        server_context = make_server_context(str(cert_file), str(ca_file))

    def client_context(name: str | None, tls12: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.post_handshake_auth = True  # let the server ask after the handshake
        if name is not None:  # the certificate must be loaded before connecting
            ca.issue_cert(f"{name}@example.org", common_name=name).configure_cert(
                context
            )
        if tls12:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    listener = TLSListener(
        await anyio.create_tcp_listener(local_host="127.0.0.1"), server_context
    )
    port = listener.extra(SocketAttribute.local_port)
    public = b"200 hello, whoever you are"
    cases = [  # (client certificate, TLS 1.2 only, the answer to GET /admin)
        ("alice", False, b"200 welcome, alice"),
        (None, False, b"403 a client certificate is needed"),
        ("bob", False, b"403 bob may not"),
        # TLS 1.2: no post-handshake request; CERT_OPTIONAL asks in the handshake.
        (None, True, b"403 cannot ask for a certificate"),
        ("alice", True, b"200 welcome, alice"),
    ]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            for name, tls12, expected in cases:
                answers = await ask(
                    port,
                    client_context(name, tls12),
                    [b"GET /public", b"GET /admin", b"GET /public"],
                )
                print(name, "TLS 1.2" if tls12 else "TLS 1.3", answers)
                assert answers[0] == answers[2] == public, answers
                assert answers[1].startswith(expected), answers
            tg.cancel_scope.cancel()
    print("self-test passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", help="server certificate and key (PEM)")
    parser.add_argument("--client-ca", help="CA certificates for clients (PEM)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        anyio.run(self_test, backend=args.backend)
    elif args.cert and args.client_ca:
        context = make_server_context(args.cert, args.client_ca)
        anyio.run(serve, context, args.host, args.port, backend=args.backend)
    else:
        parser.error("give --cert and --client-ca, or --self-test")


if __name__ == "__main__":
    main()
