"""The ``anyiotls`` command line: ``demo``, ``connect`` and ``serve``.

Run it as ``anyiotls`` (console script) or ``python -m anyiotls``. It needs the
``cryptography`` package (``pip install 'anyiotls[cli]'``). See ``docs/cli.md``.
"""

from __future__ import annotations

__all__ = ("ExitCode", "main")

import argparse
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence

from ._args import build_parser
from ._exit import CLIError, ExitCode, leaves
from ._stdio import silence_stdout
from ._text import printable

#: Set this environment variable to see the traceback of an unexpected error.
DEBUG_VARIABLE = "ANYIOTLS_DEBUG"


def _require(module: str, why: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise CLIError(
            ExitCode.MISSING_DEPENDENCY,
            f"{why} needs the '{module}' package: pip install {install}",
        )


def _dispatch(args: argparse.Namespace) -> int:
    _require("cryptography", "the anyiotls command line", "'anyiotls[cli]'")
    if args.backend == "trio":
        _require("trio", "--backend trio", "trio")
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(args)
    if args.command == "connect":
        from ._connect import run_connect

        return run_connect(args)
    from ._serve import run_serve

    return run_serve(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default: ``sys.argv[1:]``); the exit code.

    Expected failures print one line on standard error and return their
    :class:`ExitCode`; an unexpected error prints one line too, and its traceback
    only when the ``ANYIOTLS_DEBUG`` environment variable is set.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (printed)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    prog = f"anyiotls {args.command}"
    try:
        return _dispatch(args)
    except BaseException as exc:  # sorted below; re-raised if not expected
        inner = leaves(exc)
        expected = [leaf for leaf in inner if isinstance(leaf, CLIError)]
        if expected:
            print(f"{prog}: {printable(expected[0].message)}", file=sys.stderr)
            return expected[0].code
        if any(isinstance(leaf, BrokenPipeError) for leaf in inner):
            # The reader of our output went away (``| head -1``): an ordinary end,
            # as for other command-line tools. Point stdout at devnull so the
            # interpreter's last flush does not fail again.
            silence_stdout()
            return ExitCode.OK
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in inner):
            # Ctrl-C may strike while the event loop starts a task (Trio delivers
            # it anywhere): that coroutine is dropped with the loop, as intended.
            warnings.filterwarnings(
                "ignore", "coroutine .* was never awaited", RuntimeWarning
            )
            print(f"{prog}: interrupted", file=sys.stderr)
            return ExitCode.INTERRUPTED
        if not isinstance(exc, Exception) or os.environ.get(DEBUG_VARIABLE):
            raise
        leaf = inner[0]
        print(
            f"{prog}: unexpected error: {type(leaf).__name__}: {leaf} "
            f"(set {DEBUG_VARIABLE}=1 to see the traceback)",
            file=sys.stderr,
        )
        return ExitCode.ERROR
