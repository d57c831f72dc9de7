"""Entry point of the ``mie`` command: argument parsing, logging and the exit-code contract.

Exit codes: 0 success, 1 verification/authentication failed on well-formed input, 2 bad usage
or unreadable input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import logging
import sys

import click

from mie import __version__
from mie._cli.auth import AuthFailedError, auth
from mie._cli.cards import info, readers
from mie._cli.demo import demo
from mie._cli.emulate import emulate
from mie._cli.state import CliState, UsageError
from mie._cli.trust import crl_group, trust_group, verify_cert
from mie._cli.vectors import record, replay
from mie.core.errors import (
    ApduError,
    BadResponseError,
    CardRemovedError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    ReplayMismatchError,
    SignatureInvalidError,
    UnsupportedCardError,
)
from mie.core.log import TRAFFIC, TRAFFIC_WARNING
from mie.trust.errors import VerificationError

logger = logging.getLogger("mie")

_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "traffic": TRAFFIC,
}
_FAILED = (
    AuthFailedError,
    ApduError,
    BadResponseError,
    CardRemovedError,
    LastTryRefusedError,
    NoCardError,
    ReplayMismatchError,
    SignatureInvalidError,
    UnsupportedCardError,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mie")
@click.option(
    "--log-level",
    type=click.Choice(list(_LEVELS)),
    default="warning",
    show_default=True,
    help="Logging on stderr; 'traffic' shows APDUs (PINs masked).",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str) -> None:
    """Authenticate health professionals with ANS cards, DESFire badges and FIDO2 keys."""
    if ctx.obj is None:
        ctx.obj = CliState()
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(_LEVELS[log_level])
    if log_level == "traffic":
        click.echo(TRAFFIC_WARNING, err=True)


for _command in (
    readers,
    info,
    auth,
    emulate,
    record,
    replay,
    demo,
    verify_cert,
    trust_group,
    crl_group,
):
    cli.add_command(_command)


def exit_code_for(error: MieError) -> int:
    """Map an error to the exit-code contract: 1 for a failed check, 2 for everything else."""
    if isinstance(error, UsageError):
        return 2
    if isinstance(error, VerificationError):
        return 2 if error.is_malformed else 1
    return 1 if isinstance(error, _FAILED) else 2


def _fail(message: str, code: int) -> int:
    click.echo(f"mie: error: {message}", err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (no ``sys.exit``)."""
    try:
        result = cli.main(args=argv, prog_name="mie", standalone_mode=False)
    except click.exceptions.Abort:
        return _fail("aborted", 2)
    except click.ClickException as e:
        e.show()
        return 2 if e.exit_code not in (0, 1) else e.exit_code
    except MieError as e:
        return _fail(str(e), exit_code_for(e))
    except (ValueError, OSError) as e:
        return _fail(str(e), 2)
    except Exception as e:
        logger.debug("Internal error", exc_info=True)
        return _fail(f"internal error ({type(e).__name__}): {e}", 2)
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
