"""Side-by-side benchmark of anyiotls against anyio's, trio's and asyncio's TLS streams.

Run everything with ``python -m bench`` (``--quick`` for a short run); see
``docs/benchmarks.md``.
"""
