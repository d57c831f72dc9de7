"""``mie auth``: authenticate the professional holding the card in a reader.

``mie auth`` is :func:`mie.verification.login` in one process: the card signs
``SHA-256(origin) ‖ SHA-256(nonce)`` for the ``--nonce`` and ``--origin`` given (a fresh nonce
and :data:`~mie.request.DEFAULT_ORIGIN` by default), and the evidence is verified at once. The
PIN is asked only when the card needs it, after it said how many tries remain.

A DESFire badge (issue 9) authenticates with the badge configuration (``--badge-config``, else
``$MIE_BADGE_CONFIG``, else ``~/.config/mie/badge.json`` when it exists): AES mutual
authentication with its diversified keys, bound to the nonce and origin, then the identity
record and, when the configuration has a second-factor store, the PIN, checked by the verifier.
A badge and no configuration is bad usage (exit 2).

A FIDO2 key over NFC (issue 10: the registry's ``fido`` probe finds its applet) authenticates
with ``--fido-policy F --store URL``: the key signs the nonce bound to the origin, and the
assertion is verified against the credential registered in the store (``mie fido register``).
A key and neither option is bad usage (exit 2); ``mie fido auth`` serves USB keys too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from mie._cli.options import (
    TrustOptions,
    badge_config_option,
    load_badge_config,
    with_fido_options,
    with_trust_options,
)
from mie._cli.output import emit_json, json_option
from mie._cli.state import CliState, UsageError, read_stdin_pin
from mie.auth import Authenticator
from mie.core.errors import (
    ApduError,
    BadResponseError,
    CardRemovedError,
    ErrorCode,
    InvalidPinError,
    JsonFormatError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    PinBlockedError,
    PinFormatError,
    SecureMessagingError,
    SignatureInvalidError,
    UnsupportedCardError,
    VerificationError,
)
from mie.desfire.config import BadgeConfigError
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError
from mie.fido.errors import (
    AttestationInvalidError,
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
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
from mie.keys.base import KeyFileError
from mie.registry import AuthenticatorOptions, authenticator_for
from mie.request import (
    DEFAULT_ORIGIN,
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    AuthRequest,
    UserVerification,
    check_origin,
)
from mie.result import AuthenticatorInfo, AuthResult, ErrorInfo
from mie.trust.login import crl_directory
from mie.verification import login

if TYPE_CHECKING:
    from mie.desfire.verify import BadgeVerifier

# The failures that end ``mie auth`` with exit 1 and their error object; any other error keeps
# the CLI's exit code (1, or 2 for no pcscd, an unknown reader or unreadable input).
_AUTH_FAILED = (
    ApduError,
    BadResponseError,
    CardRemovedError,
    InvalidPinError,
    LastTryRefusedError,
    NoCardError,
    PinBlockedError,
    RecordCopiedError,
    RecordFormatError,
    RecordUntrustedError,
    SecureMessagingError,
    SignatureInvalidError,
    UnsupportedCardError,
    VerificationError,
    # A FIDO2 key over NFC (issue 10): its outcomes, named by their code as mie fido auth does.
    AttestationInvalidError,
    AttestationRefusedError,
    AuthDataFormatError,
    ClientDataFormatError,
    CloneSuspectedError,
    CounterUnsupportedError,
    CredentialUnknownError,
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
# Bad usage or unreadable input (no PIN source, a PIN of the wrong format, a badge and no badge
# configuration; a configuration or key file that cannot be read or parsed, found before any
# card is touched): exit 2, and under --json the error object alone
# (mie._cli.app.run), as for any usage error. The key provider or the store failing (a token,
# a database unreachable or too slow) is not: the AuthResult with its code, exit 1, as a
# reader's failure (mie._cli.app._FAILED).
NOT_A_RESULT = (
    UsageError,
    PinFormatError,
    BadgeConfigError,
    JsonFormatError,
    KeyFileError,
)


class AuthFailedError(MieError):
    """An authentication failed on well-formed input; carries the contract error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.code = ErrorCode(error["code"])
        super().__init__(f"{error['code']}: {error['message']}")


class CliPin(UserVerification):
    """Asks for the PIN when the card needs it: the first line of stdin with ``--pin-stdin``,
    else a prompt on the terminal that says how many tries remain.

    :param from_stdin: read the PIN from standard input.
    """

    def __init__(self, from_stdin: bool) -> None:
        self.from_stdin = from_stdin

    def request_pin(self, tries_left: int | None) -> str:
        """:return: the PIN typed or piped.

        :raises UsageError: no ``--pin-stdin`` and standard input is not a terminal.
        """
        if self.from_stdin:
            return read_stdin_pin()
        if not sys.stdin.isatty():
            raise UsageError("No PIN: pass --pin-stdin and write the PIN on standard input")
        label = "PIN" if tries_left is None else f"PIN ({tries_left} tries left)"
        pin: str = click.prompt(label, hide_input=True, err=True)
        return pin


def parse_nonce(value: str, option: str = "--nonce") -> bytes:
    """:return: the nonce given as hex on the command line.

    :raises UsageError: not hex, or not 16 to 1024 bytes.
    """
    try:
        nonce = bytes.fromhex(value)
    except ValueError as e:
        raise UsageError(f"{option} must be hex") from e
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise UsageError(
            f"{option} must have {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes, not {len(nonce)}"
        )
    return nonce


def parse_origin(value: str) -> str:
    """:return: the ``--origin`` given, unchanged.

    :raises UsageError: not ``https://host[:port]`` or ``http://localhost[:port]``.
    """
    try:
        return check_origin(value)
    except ValueError as e:
        raise UsageError(f"--origin: {e}") from e


def failure_result(error: MieError, authenticator: AuthenticatorInfo | None) -> AuthResult:
    """:return: the failed ``AuthResult`` for ``error`` (an error outside the contract's codes
    is the reader's: ``reader_error``)."""
    if error.code is None:
        return AuthResult(False, ErrorInfo(ErrorCode.READER_ERROR, str(error)), authenticator)
    return AuthResult.failure(error, authenticator)


@click.command()
@click.option(
    "--reader", "-r", help="Reader name or a unique part of it, or nfc:PATH (nfcpy, e.g. nfc:usb)."
)
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@click.option("--allow-last-try", is_flag=True, help="Present the PIN even with one try left.")
@click.option(
    "--nonce",
    "--challenge",
    "nonce_hex",
    help=f"The relying party's nonce, hex, {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes "
    "(default: 32 random bytes); --challenge is another name for it.",
)
@click.option(
    "--origin",
    default=DEFAULT_ORIGIN,
    show_default=True,
    help="The relying party the signature is bound to: https://host[:port].",
)
@with_trust_options(
    "Seconds the revocation step may take in all (every CRL/OCSP download of this login)."
)
@badge_config_option
@with_fido_options("A FIDO2 key")
@json_option("Print the AuthResult as JSON.")
@click.pass_obj
def auth(
    state: CliState,
    reader: str | None,
    pin_stdin: bool,
    allow_last_try: bool,
    nonce_hex: str | None,
    origin: str,
    trust_options: TrustOptions,
    badge_config: str | None,
    fido_policy: str | None,
    store_url: str | None,
    as_json: bool,
) -> int:
    """Authenticate the card holder: PIN, signature of the nonce bound to the origin,
    certificate chain, revocation, identity and level. A DESFire badge: mutual authentication
    with the keys of the badge configuration, its signed identity record, the second-factor
    PIN if the configuration has a store, and the level. A FIDO2 key (NFC): --fido-policy and
    --store."""
    from mie._cli.fido import FIDO_NOT_A_RESULT, fido_verifier_for, load_metadata, load_policy

    # The CRL cache downloads a missing or stale CRL, except in a replay (read-only).
    verifier = trust_options.verifier(state.crl_cache(crl_directory()))
    request = _request(state, nonce_hex, parse_origin(origin), allow_last_try)
    if (fido_policy is None) != (store_url is None):
        raise UsageError("--fido-policy and --store go together (a FIDO2 key)")
    if fido_policy is not None and state.replay is not None:
        raise UsageError("A FIDO2 key session is not replayed (its store would be written)")
    policy = load_policy(fido_policy) if fido_policy is not None else None
    presented: AuthenticatorInfo | None = None
    authenticator: Authenticator | None = None
    try:
        # Opened before any card is touched: a configuration named but unusable is bad usage.
        with (
            open_badge_verifier(badge_config) as badges,
            fido_verifier_for(policy, store_url, load_metadata(policy)) as fido,
            state.open_reader(reader) as connection,
        ):
            presented = AuthenticatorInfo("unknown", None, connection.atr, connection.transport)
            options = AuthenticatorOptions(
                badge=badges.config if badges else None,
                badge_keys=badges.keys if badges else None,
                fido_rp_id=policy.rp_id if policy else None,
            )
            authenticator = authenticator_for(connection, options)
            state.kind = authenticator.info.kind
            if state.kind == "fido2" and fido is None:
                raise UsageError("A FIDO2 key needs --fido-policy and --store (or mie fido auth)")
            result = login(
                authenticator,
                request,
                user=CliPin(pin_stdin),
                verifier=verifier,
                badges=badges,
                fido=fido,
            )
    except (*NOT_A_RESULT, *FIDO_NOT_A_RESULT):
        raise
    except MieError as e:
        # The serial is in the authenticator's info once read, even when the chain failed.
        failure = failure_result(e, authenticator.info if authenticator else presented)
        if as_json:
            emit_json(failure.to_json())
        if not isinstance(e, _AUTH_FAILED):
            raise
        assert failure.error is not None  # noqa: S101 - a failure result has its error
        raise AuthFailedError(failure.error.to_json()) from e
    print_result(result, as_json)
    return 0


@contextlib.contextmanager
def open_badge_verifier(badge_config: str | None) -> Iterator[BadgeVerifier | None]:
    """Open the badge verifier of the badge configuration (``--badge-config``, else
    ``$MIE_BADGE_CONFIG``, else the default file when it exists): its key provider and
    second-factor store, closed at the end of the block.

    :return: the verifier, or ``None`` without a configuration.
    :raises BadgeConfigError: a configuration named but missing or unusable.
    :raises KeyProviderError: its key provider cannot be opened.
    :raises StoreError: its second-factor store cannot be opened.
    """
    config = load_badge_config(badge_config, required=False)
    if config is None:
        yield None
        return
    from mie.desfire.verify import BadgeVerifier

    with BadgeVerifier.open(config) as badges:
        yield badges


def _request(
    state: CliState, nonce_hex: str | None, origin: str, allow_last_try: bool
) -> AuthRequest:
    if nonce_hex is None:
        return AuthRequest.new(origin, rng=state.rng, allow_last_try=allow_last_try)
    return AuthRequest(parse_nonce(nonce_hex), origin, allow_last_try=allow_last_try)


def print_result(result: AuthResult, as_json: bool, verb: str = "Authenticated") -> None:
    """Print a valid ``AuthResult``: the JSON object, or a few lines of text."""
    if as_json:
        emit_json(result.to_json())
        return
    card = result.authenticator
    shown = f"{card.kind} card {card.serial or '(serial not read)'}" if card else "card"
    if card is not None and card.kind == "fido2":
        # A FIDO2 key is no card, and its serial is the credential's name (credential_ref).
        shown = f"fido2 key, credential {card.serial or '(not named)'}"
    click.echo(f"{verb}: {shown}")
    if result.identity is not None:
        identity = result.identity
        names = " ".join(n for n in (identity.given_name, identity.family_name) if n)
        number = f"{identity.id_type} {identity.id}"
        # A badge record names no one: its national identifier alone.
        click.echo(f"  {names} ({number})" if names else f"  {number}")
    click.echo(f"  level: {result.level.value if result.level else 'not established'}")
    for reason in result.reasons:
        click.echo(f"  - {reason}")
