"""``python -m anyiotls``: the command line (``demo``, ``connect``, ``serve``)."""

from __future__ import annotations

__all__ = ("main",)

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
