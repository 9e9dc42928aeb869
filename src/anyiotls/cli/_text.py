"""Text that came from a peer, made safe to print on a terminal."""

from __future__ import annotations

__all__ = ("printable",)


def printable(text: object) -> str:
    r"""*text* as one printable line: control characters become escapes (``\x1b``).

    Certificate names, server replies and SNI names are chosen by the peer; printed
    raw, they could move the cursor, recolour or forge lines of our output.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
