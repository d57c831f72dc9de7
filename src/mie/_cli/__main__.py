"""Entry point of the ``mie`` command (console script and ``python -m mie``).

This module imports nothing heavy at load time: the command group (click, cryptography, the
card and trust code) is imported inside :func:`main`, so that a Ctrl-C during those imports,
like one later, exits 130 without a traceback.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would slow every start
INTERRUPTED = 130


if TYPE_CHECKING:
    from mie._cli.state import CliState


def run(argv: list[str] | None = None, state: CliState | None = None) -> int:
    """Run the CLI and return its exit code (no ``sys.exit``); see :func:`mie._cli.app.run`."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["agent"]:
        # The workstation agent must not load key providers or DESFire crypto, which the other
        # commands import: it runs without the command group.
        from mie._cli.agent import main as agent_main

        return agent_main(list(args[1:]), state)
    from mie._cli.app import run as run_cli

    return run_cli(argv, state)


def _quiet_exit(code: int) -> None:
    # A second Ctrl-C while the interpreter shuts down must not print a traceback either.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        code = run()
    except KeyboardInterrupt:
        code = INTERRUPTED
    if code == INTERRUPTED:
        _quiet_exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
