"""Session resumption: :class:`SessionCache`, :class:`SessionAttribute`, and the
small object through which a client stream hands its session to a cache.

When a stream gives its session to the cache
--------------------------------------------
A TLS 1.3 server sends its tickets *after* the handshake; the client processes them
only inside a ``read()`` (a receive, or the close's wait for close_notify). So the
session right after the handshake has no ticket, and the session of a resumed
connection is the one offered (its ticket already used) until new tickets arrive.
The stream therefore offers its session to the cache

* after its first receive, if the session has a ticket and is not the one offered
  (a new session id: OpenSSL names a TLS 1.3 session by its ticket's hash); a TLS
  1.3 server's tickets come before its first data, and
* otherwise at a clean close (our close_notify left, on a stream that never broke),
  whatever it has then (a TLS 1.2 session without tickets, or the tickets the
  close's read picked up).

Once only, because reading ``SSLObject.session`` is expensive (see
:class:`SessionKeeper`).

A connection that broke, or ended without close_notify, takes back what it gave:
OpenSSL marks such a session non-resumable, and offering it would only cost a full
handshake.
"""

from __future__ import annotations

__all__ = ("SessionAttribute", "SessionCache")

import ipaddress
import ssl
import time
from collections import OrderedDict
from typing import Any, Final, NamedTuple

from anyio import TypedAttributeSet, typed_attribute

#: Entries a :class:`SessionCache` keeps unless told otherwise.
DEFAULT_MAXSIZE: Final = 256


class SessionAttribute(TypedAttributeSet):
    """Typed attributes of a TLS stream's session, beside AnyIO's ``TLSAttribute``.

    ``stream.extra(SessionAttribute.session_reused)`` after the handshake.
    """

    #: the stream's current :class:`ssl.SSLSession` (a client's, to resume later);
    #: ``None`` before the handshake
    session: ssl.SSLSession | None = typed_attribute()
    #: ``True`` if the handshake resumed a session instead of doing a full one
    session_reused: bool = typed_attribute()


class _Entry(NamedTuple):
    context: ssl.SSLContext
    session: ssl.SSLSession
    #: ``True`` for a TLS 1.3 session: its ticket is offered once (RFC 8446 C.4)
    single_use: bool


_Key = tuple[int, str, "int | str | None"]


class SessionCache:
    """Client sessions to resume, keyed by SSL context, host name and port.

    Pass one as ``session_cache=`` to :meth:`TLSStream.wrap <anyiotls.TLSStream.wrap>`
    or :class:`~anyiotls.TLSConnectable`. A session is offered only to a connection
    with the *same* :class:`ssl.SSLContext` object (identity, not equality), the
    same host name (as given, case-insensitive) and the same port: never to another
    server or context.

    Bounded: at most *maxsize* entries (default :data:`DEFAULT_MAXSIZE`, 256), the
    least recently used one evicted first; expired sessions (their ``timeout``, for
    TLS 1.3 the ticket's lifetime) are dropped when met. A TLS 1.3 session is handed
    out once (RFC 8446 appendix C.4: a ticket used twice lets observers link the two
    connections); the connection that resumed it hands back its new one. A TLS 1.2
    session stays until replaced, evicted or expired.

    An :class:`ssl.SSLSession` holds a strong reference to its context (CPython's
    ``SSLSession`` keeps it), so no weak reference can let a cached context go: a
    context stays alive while one of its sessions is cached, i.e. at most *maxsize*
    contexts, each until its sessions expire, are evicted, or
    :meth:`discard_context` / :meth:`clear` removes them.

    Resumption lets the server link the connections that share a session (and, in
    TLS 1.2, observers on the path, who see the session id). That is why no cache is
    used unless one is given. Not thread-safe: use it from one event loop.

    :param maxsize: the number of entries kept; at least 1
    :param reuse_tickets: offer a TLS 1.3 session to every connection until it
        expires instead of once. Faster: a resumed connection then need not fetch
        its new session, and reading CPython's ``SSLObject.session`` costs most
        of what TLS 1.3 resumption saves (0.37 ms of CPU with OpenSSL 3.0, of
        0.52 ms saved with a P-256 certificate: it copies the session, certificate
        included, through OpenSSL's serialisation). But the ticket
        travels in clear in every ClientHello, so anyone on the path can link the
        connections that reuse it. The server must accept a ticket more than once
        (OpenSSL's stateless tickets do; with ``OP_NO_TICKET`` it does not).
    :raises ValueError: *maxsize* is less than 1
    """

    def __init__(
        self, maxsize: int = DEFAULT_MAXSIZE, *, reuse_tickets: bool = False
    ) -> None:
        """See the class docstring."""
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self._maxsize = maxsize
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        #: offer a TLS 1.3 session to every connection until it expires
        self.reuse_tickets = bool(reuse_tickets)

    @property
    def maxsize(self) -> int:
        """The most entries kept."""
        return self._maxsize

    def __bool__(self) -> bool:
        """Always ``True``: ``session_cache or default`` must keep an empty cache."""
        return True

    def __len__(self) -> int:
        """The number of sessions cached (expired ones included until met)."""
        return len(self._entries)

    @staticmethod
    def _key(
        ssl_context: ssl.SSLContext, hostname: str, port: int | str | None
    ) -> _Key:
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                "ssl_context must be an ssl.SSLContext, not "
                f"{type(ssl_context).__name__}"
            )
        if not isinstance(hostname, str) or not hostname:
            raise ValueError("hostname must be a non-empty str")
        # The id is safe as a key: the entry holds the context, so the id cannot be
        # reused by another object while the entry exists.
        return (id(ssl_context), hostname.lower(), port)

    def get(
        self, ssl_context: ssl.SSLContext, hostname: str, port: int | str | None
    ) -> ssl.SSLSession | None:
        """The session to offer to *hostname*:*port* with *ssl_context*, or ``None``.

        A TLS 1.3 session is removed as it is handed out.
        """
        key = self._key(ssl_context, hostname, port)
        entry = self._entries.get(key)
        if entry is None or entry.context is not ssl_context:
            return None
        if _expired(entry.session):
            del self._entries[key]
            return None
        if entry.single_use:
            del self._entries[key]
        else:
            self._entries.move_to_end(key)
        return entry.session

    def put(
        self,
        ssl_context: ssl.SSLContext,
        hostname: str,
        port: int | str | None,
        session: ssl.SSLSession,
        *,
        single_use: bool = False,
    ) -> None:
        """Keep *session* for the next connection to *hostname*:*port*.

        Replaces the entry for that key; evicts the least recently used entry when
        full. *single_use*: hand it out only once (TLS 1.3).

        :raises TypeError: *session* is not an :class:`ssl.SSLSession`
        """
        if not isinstance(session, ssl.SSLSession):
            raise TypeError(
                f"session must be an ssl.SSLSession, not {type(session).__name__}"
            )
        key = self._key(ssl_context, hostname, port)
        entries = self._entries
        entries[key] = _Entry(ssl_context, session, single_use)
        entries.move_to_end(key)
        while len(entries) > self._maxsize:
            entries.popitem(last=False)

    def discard(
        self,
        ssl_context: ssl.SSLContext,
        hostname: str,
        port: int | str | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """Forget the entry for this key (only if it holds *session*, when given)."""
        key = self._key(ssl_context, hostname, port)
        entry = self._entries.get(key)
        if entry is not None and (session is None or entry.session is session):
            del self._entries[key]

    def discard_context(self, ssl_context: ssl.SSLContext) -> None:
        """Forget every session of *ssl_context* (which lets it be collected)."""
        for key in [k for k, e in self._entries.items() if e.context is ssl_context]:
            del self._entries[key]

    def clear(self) -> None:
        """Forget every session."""
        self._entries.clear()


def _expired(session: ssl.SSLSession) -> bool:
    return session.time + session.timeout <= time.time()


class SessionKeeper:
    """Hands one client stream's session to a :class:`SessionCache` (see the module
    docstring for when). Internal: the faces and connect helpers make one.

    Reads ``SSLObject.session`` at most once per connection, and not at all when a
    resumed session stays cached: CPython copies the session, certificate
    included, through OpenSSL's serialisation on each read (0.37 ms of CPU here
    with OpenSSL 3.0, 70 % of what a TLS 1.3 resumption with a P-256 certificate
    saves). So the check runs after the first receive only (a TLS 1.3 server's
    tickets come before its first data), and the close looks only if nothing was
    given then.
    """

    __slots__ = (
        "_cache",
        "_context",
        "_finished",
        "_given",
        "_hostname",
        "_offered",
        "_offered_id",
        "_port",
        "waiting_for_ticket",
    )

    def __init__(
        self,
        cache: SessionCache,
        ssl_context: ssl.SSLContext,
        hostname: str,
        port: int | str | None,
        offered: ssl.SSLSession | None,
    ) -> None:
        self._cache = cache
        self._context = ssl_context
        self._hostname = hostname
        self._port = port
        self._offered = offered
        self._offered_id = offered.id if offered is not None else None
        #: the session this stream put into the cache, if any
        self._given: ssl.SSLSession | None = None
        #: the stream closed or failed: nothing more to give
        self._finished = False
        #: ``True`` until the first receive that returned data was looked at
        self.waiting_for_ticket = True

    def _nothing_to_fetch(self, ssl_object: ssl.SSLObject) -> bool:
        # A resumed stream whose offered session stays in the cache (a TLS 1.2
        # session, or a reused ticket) has nothing new to give.
        return ssl_object.session_reused and (
            self._cache.reuse_tickets or ssl_object.version() != "TLSv1.3"
        )

    def after_receive(self, ssl_object: ssl.SSLObject) -> None:
        """After the first receive: give the session if it has a ticket of its own
        (not the one offered)."""
        self.waiting_for_ticket = False
        if self._finished or self._nothing_to_fetch(ssl_object):
            return
        session = ssl_object.session
        if (
            session is not None
            and session.has_ticket
            and session.id != self._offered_id
        ):
            self._give(session, ssl_object)

    def closed_cleanly(self, ssl_object: ssl.SSLObject) -> None:
        """Give the session as it is at a clean close, unless one was given.

        Not a TLS 1.3 session whose ticket is the one offered (no new ticket came).
        """
        if self._finished:
            return
        self._finished = True
        if self._given is not None or self._nothing_to_fetch(ssl_object):
            return
        session = ssl_object.session
        if session is None or not (session.has_ticket or session.id):
            return
        if session.id == self._offered_id and ssl_object.version() == "TLSv1.3":
            return
        self._give(session, ssl_object)

    def failed(self) -> None:
        """Take back what this stream gave, and the session it offered if the cache
        still holds it: its connection broke or ended raggedly.

        Nothing after a clean close (a second ``aclose()`` is not a failure).
        """
        if self._finished:
            return
        self._finished = True
        self.waiting_for_ticket = False
        for session in (self._given, self._offered):
            if session is not None:
                self._cache.discard(self._context, self._hostname, self._port, session)
        self._given = None

    def _give(self, session: ssl.SSLSession, ssl_object: ssl.SSLObject) -> None:
        single_use = ssl_object.version() == "TLSv1.3" and not self._cache.reuse_tickets
        self._cache.put(
            self._context, self._hostname, self._port, session, single_use=single_use
        )
        self._given = session


def certificate_covers(cert: dict[str, Any] | None, hostname: str) -> bool:
    """Whether *cert* (``getpeercert()``'s dict) names *hostname* (an A-label).

    For resumed sessions only, where OpenSSL checks no name: stricter than
    OpenSSL's check as Python configures it (subjectAltName only, never the
    subject's CN; a wildcard only as the whole leftmost label, over one label, with
    at least two labels after it). A stricter answer can only refuse a resumption.
    """
    if not cert:
        return False
    names = cert.get("subjectAltName", ())
    host = hostname.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    for kind, value in names:
        if address is not None:
            if kind == "IP Address":
                try:
                    if ipaddress.ip_address(value.strip()) == address:
                        return True
                except ValueError:
                    continue
            continue
        if kind != "DNS":
            continue
        pattern = value.rstrip(".").lower()
        if pattern == host:
            return True
        if pattern.startswith("*."):
            suffix = pattern[2:]
            first, _, rest = host.partition(".")
            if (
                "*" not in suffix
                and suffix.count(".") >= 1
                and first
                and rest == suffix
            ):
                return True
    return False
