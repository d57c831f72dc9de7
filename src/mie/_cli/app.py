"""The ``mie`` command group, logging and the exit-code contract.

Exit codes: 0 success, 1 verification/authentication failed on well-formed input, 2 bad usage
or unreadable input (one line on stderr, never a traceback), 130 interrupted (Ctrl-C).
:mod:`mie._cli.__main__` is the entry point; it imports this module only once it can catch an
interrupt.
"""

from __future__ import annotations

import logging
import sys

import click

from mie import __version__
from mie._cli.agent import agent
from mie._cli.audit import audit_group
from mie._cli.auth import AuthFailedError, auth
from mie._cli.cards import info, readers
from mie._cli.demo import demo
from mie._cli.desfire import EnrolmentFailedError, desfire_group
from mie._cli.emulate import emulate
from mie._cli.fido import fido_group
from mie._cli.output import emit_json
from mie._cli.serve import serve
from mie._cli.state import CliState, UsageError
from mie._cli.trust import crl_group, trust_group, verify_cert
from mie._cli.vectors import record, replay
from mie._cli.verify_evidence import verify_evidence_command
from mie.core.errors import (
    ApduError,
    BadResponseError,
    CborFormatError,
    ErrorCode,
    EvidenceFormatError,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    NonceMismatchError,
    NoReaderError,
    OriginMismatchError,
    PcscUnavailableError,
    PinBlockedError,
    PinFormatError,
    ReplayMismatchError,
    SecureMessagingError,
    SignatureInvalidError,
    TransportError,
    UnsupportedCardError,
)
from mie.core.log import TRAFFIC, TRAFFIC_WARNING
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError
from mie.fido.errors import (
    AttestationInvalidError,
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    CoseKeyFormatError,
    CtapStatusError,
    MetadataStaleError,
    MetadataStatusError,
    MetadataUntrustedError,
    PinNotSetError,
    RpIdMismatchError,
    UnknownAaguidError,
    UserNotPresentError,
    UserNotVerifiedError,
)
from mie.keys.base import KeyFileError, KeyProviderError
from mie.relay.errors import RelayRefusedError
from mie.store.errors import (
    AlreadyRegisteredError,
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
    MieRevokedError,
    NonceUnknownError,
    StoreError,
    TemporaryExpiredError,
    TemporaryIdentityError,
)
from mie.trust.errors import VerificationError

logger = logging.getLogger("mie")

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT, as shells report it)."""

_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "traffic": TRAFFIC,
}
# A check failed on well-formed input, or the card or reader failed during the session (a card
# removed, reset or silent, a reader held by another process): exit 1. The DESFire codes of issue 9
# (plan D8) are here through their bases: key_mismatch (ApduError), suspected_clone and
# integrity_error (SecureMessagingError), not_genuine (SignatureInvalidError), legacy_crypto
# (UnsupportedCardError); and by name: record_untrusted, record_copied, relay_refused, a record on
# the badge that does not parse (malformed). The key provider or the second-factor store failing
# while the command runs (a token that fails or refuses its PIN, a database unreachable or too slow)
# is an operational failure, as a reader's: exit 1 (codes reader_error and store_unavailable). A
# nonce the store does not hold (nonce_unknown), a revoked MIE and a temporary one outside its grant
# (issue 11: revoked, expired, policy) are failed checks: exit 1. The FIDO2 outcomes of issue 10
# (plan D7) are failed checks too: every class below from mie.fido.errors and the store's four
# credential outcomes; a key's answer or an assertion that does not parse (CBOR, authenticator data,
# client data, COSE key) is a failed check on well-formed input, as a card's bad response is;
# pin_auth_blocked (PinBlockedError) and a touch that never came (TouchTimeoutError, a
# TransportError) through their bases. A FIDO policy, allowlist or metadata file that cannot be read
# (FidoPolicyError, MetadataFormatError) is exit 2.
_FAILED = (
    AuthFailedError,
    EnrolmentFailedError,
    AlreadyRegisteredError,
    ApduError,
    AttestationInvalidError,
    AttestationRefusedError,
    AuthDataFormatError,
    BadResponseError,
    CborFormatError,
    ClientDataFormatError,
    CloneSuspectedError,
    CoseKeyFormatError,
    CounterUnsupportedError,
    CredentialUnknownError,
    CtapStatusError,
    EvidenceFormatError,
    InvalidPinError,
    KeyProviderError,
    LastTryRefusedError,
    MetadataStaleError,
    MetadataStatusError,
    MetadataUntrustedError,
    MieRevokedError,
    NonceMismatchError,
    NonceUnknownError,
    OriginMismatchError,
    PinBlockedError,
    PinNotSetError,
    RecordCopiedError,
    RecordFormatError,
    RecordUntrustedError,
    RelayRefusedError,
    ReplayMismatchError,
    RpIdMismatchError,
    SecureMessagingError,
    SignatureInvalidError,
    StoreError,
    TemporaryExpiredError,
    TemporaryIdentityError,
    TransportError,
    UnknownAaguidError,
    UnsupportedCardError,
    UserNotPresentError,
    UserNotVerifiedError,
)
# What the command line named cannot be used at all: exit 2 (README: unknown reader, no pcscd;
# a PIN the card's format rule refuses; a key file that cannot be read or parsed), whatever the
# command.
_UNUSABLE = (
    UsageError,
    NoReaderError,
    PcscUnavailableError,
    PinFormatError,
    KeyFileError,
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
    verify_evidence_command,
    trust_group,
    crl_group,
    desfire_group,
    fido_group,
    agent,
    serve,
    audit_group,
):
    cli.add_command(_command)


def exit_code_for(error: MieError) -> int:
    """Map an error to the exit-code contract: 1 for a failed check, 2 for everything else."""
    if isinstance(error, _UNUSABLE):
        return 2
    if isinstance(error, VerificationError):
        return 2 if error.is_malformed else 1
    return 1 if isinstance(error, _FAILED) else 2


def one_line(message: str) -> str:
    """:return: ``message`` on one line (the contract: one line on stderr per error)."""
    return " ".join(message.split())


def fail(message: str, code: int) -> int:
    """Print ``mie: error: MESSAGE`` on stderr. :return: ``code``."""
    click.echo(f"mie: error: {one_line(message)}", err=True)
    return code


def _usage_message(error: click.UsageError) -> str:
    ctx = error.ctx
    where = ""
    if ctx is not None and ctx.parent is not None:
        where = ctx.command_path.partition(" ")[2] + ": "
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        path = ctx.command_path if ctx is not None else "mie"
        return f"{where}missing command (see '{path} --help')"
    return where + error.format_message()


def interrupted(error: BaseException | None) -> bool:
    """:return: whether ``error`` comes from Ctrl-C (click wraps it in ``Abort``)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _failure(error: Exception) -> tuple[str, int, ErrorCode]:
    """:return: the message, exit code and contract code of a failed command."""
    if isinstance(error, click.UsageError):
        return _usage_message(error), 2, ErrorCode.USAGE
    if isinstance(error, click.exceptions.Abort):
        return "aborted (end of input)", 2, ErrorCode.USAGE
    if isinstance(error, click.ClickException):
        return error.format_message(), 2, ErrorCode.USAGE
    if isinstance(error, MieError):
        code = exit_code_for(error)
        fallback = ErrorCode.USAGE if code == 2 else ErrorCode.READER_ERROR
        return str(error), code, error.code or fallback
    # A missing extra (ImportError: the message says what to install), a bad value or file.
    if isinstance(error, ImportError | ValueError | OSError):
        return str(error), 2, ErrorCode.USAGE
    logger.debug("Internal error", exc_info=True)
    return f"internal error ({type(error).__name__}): {error}", 2, ErrorCode.USAGE


def _json_requested(state: CliState, argv: list[str]) -> bool:
    # A command refused while its options are parsed never saw its own --json: the arguments
    # say it (including those of a command run by mie record / mie replay).
    return state.output.requested or "--json" in argv


def run(argv: list[str] | None = None, state: CliState | None = None) -> int:
    """Run the CLI and return its exit code (no ``sys.exit``).

    A command given ``--json`` that fails before printing any JSON prints the contract's error
    object, ``{"error": {"code": …, "message": …}}``, on stdout; the message is also the one
    line on stderr.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :param state: how card connections are opened (default: a fresh :class:`CliState`).
    :return: the exit code.
    """
    state = state if state is not None else CliState()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="mie", standalone_mode=False, obj=state)
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as e:
        if isinstance(e, click.exceptions.Abort) and interrupted(e):
            return INTERRUPTED
        message, code, contract_code = _failure(e)
        if _json_requested(state, args) and not state.output.emitted:
            emit_json({"error": {"code": contract_code.value, "message": one_line(message)}})
        return fail(message, code)
    return result if isinstance(result, int) else 0
