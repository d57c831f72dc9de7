"""``mie auth``: authenticate the professional holding the card in a reader."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import click
from cryptography import x509

from mie._cli.output import emit_json, json_option
from mie._cli.state import CliState, UsageError
from mie._cli.trust import crl_directory, load_trust_inputs, parse_at
from mie.auth import (
    AuthResult,
    ChainChecker,
    ChainReport,
    CpxAuthenticator,
    card_identity,
    chain_checker,
)
from mie.cards.cpx import parse_nos_card_serial
from mie.core.errors import (
    ApduError,
    BadResponseError,
    CardRemovedError,
    ErrorCode,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    NoCardError,
    PinBlockedError,
    SignatureInvalidError,
    UnsupportedCardError,
    VerificationError,
)
from mie.core.pin import check_pin
from mie.trust import (
    CrlCache,
    RevocationMode,
    TrustStore,
    Usage,
    Verifier,
    VerifierBuilder,
)

CHALLENGE_SIZE = 32
REVOCATION_TIMEOUT_S = 10.0

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
    SignatureInvalidError,
    UnsupportedCardError,
    VerificationError,
)


class AuthFailedError(MieError):
    """An authentication failed on well-formed input; carries the contract error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.code = ErrorCode(error["code"])
        super().__init__(f"{error['code']}: {error['message']}")


def error_object(error: MieError) -> dict[str, Any]:
    """:return: the ``error`` object of the contract for ``error`` (its ``code``; an error
    outside the contract is the reader's: ``reader_error``)."""
    code = error.code if error.code is not None else ErrorCode.READER_ERROR
    obj: dict[str, Any] = {"code": code.value, "message": str(error)}
    if isinstance(error, InvalidPinError):
        obj["tries_left"] = error.tries_left
    return obj


def failure_json(error: dict[str, Any], card: dict[str, Any] | None) -> dict[str, Any]:
    """:return: an ``AuthResult`` object for a failed authentication."""
    return {
        "valid": False,
        "error": error,
        "authenticator": card,
        "identity": None,
        "level": None,
        "reasons": [],
        "evidence": None,
    }


def _read_pin(pin_stdin: bool) -> str:
    if pin_stdin:
        line = sys.stdin.readline()
        pin = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        pin = click.prompt("PIN", hide_input=True, err=True)
    else:
        raise UsageError("No PIN: pass --pin-stdin and write the PIN on standard input")
    check_pin(pin)
    return pin


def build_verifier(
    trust: tuple[str, ...],
    intermediates: tuple[str, ...],
    crls: tuple[str, ...],
    revocation: str,
    at: str | None,
    cache: CrlCache,
) -> Verifier:
    """The authentication-certificate verifier: default store (bundled and operator anchors)
    plus ``--trust`` / ``--intermediate`` files, ``--crl`` files, and the CRL cache, which
    downloads a missing or stale CRL from the certificate's distribution point (except in a
    replay: see :meth:`CliState.crl_cache`)."""
    anchors, pool, crl_set = load_trust_inputs(trust, intermediates, crls)
    builder = (
        VerifierBuilder()
        .store(TrustStore.default().with_anchors(anchors, pool))
        .usage(Usage.AUTH)
        .revocation(RevocationMode(revocation))
        .crls(crl_set)
        .crl_cache(cache)
    )
    moment = parse_at(at)
    return builder.time(moment).build() if moment is not None else builder.build()


@click.command()
@click.option("--reader", "-r", help="Reader name or a unique part of it.")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of stdin.")
@click.option("--allow-last-try", is_flag=True, help="Present the PIN even with one try left.")
@click.option("--challenge", help="Challenge to sign, hex (default: 32 random bytes).")
@click.option("--trust", multiple=True, help="Extra trust anchor file (repeat).")
@click.option("--intermediate", multiple=True, help="Extra intermediate CA file (repeat).")
@click.option("--crl", multiple=True, help="CRL or delta CRL file, PEM or DER (repeat).")
@click.option(
    "--revocation",
    type=click.Choice(["hard", "soft"]),
    default="hard",
    show_default=True,
    help="soft: accept an unknown revocation status (reported).",
)
@click.option("--at", "at_text", help="Check the certificate at this ISO 8601 time.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=REVOCATION_TIMEOUT_S,
    show_default=True,
    help="Seconds the revocation step may take in all (every CRL/OCSP download of this login).",
)
@json_option("Print the AuthResult as JSON.")
@click.pass_obj
def auth(
    state: CliState,
    reader: str | None,
    pin_stdin: bool,
    allow_last_try: bool,
    challenge: str | None,
    trust: tuple[str, ...],
    intermediate: tuple[str, ...],
    crl: tuple[str, ...],
    revocation: str,
    at_text: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Authenticate the card holder: PIN, challenge signature, certificate chain, revocation,
    identity and level."""
    cache = replace(state.crl_cache(crl_directory()), budget=timeout)
    verifier = build_verifier(trust, intermediate, crl, revocation, at_text, cache)
    pin = _read_pin(pin_stdin)
    nonce = _challenge(state, challenge)
    card_json: dict[str, Any] | None = None
    try:
        with state.open_reader(reader) as connection:
            card_json = {"kind": None, "serial": None, "atr": (connection.atr or b"").hex()}
            check = _noting_serial(chain_checker(verifier), card_json)
            authenticator = CpxAuthenticator(connection, check_chain=check)
            state.kind = card_json["kind"] = authenticator.family.value
            result = authenticator.authenticate(nonce, pin, allow_last_try)
    except MieError as e:
        error = error_object(e)
        if as_json:
            emit_json(failure_json(error, card_json))
        if not isinstance(e, _AUTH_FAILED):
            raise
        raise AuthFailedError(error) from e
    _print(result, as_json)
    return 0


def _noting_serial(check: ChainChecker, card_json: dict[str, Any]) -> ChainChecker:
    """``check``, noting first in ``card_json`` the card serial the certificate names, so that
    a failed chain still reports which card it was. The authenticator calls the check only once
    the signature verified and EF.SN matched that serial."""

    def noted(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]) -> ChainReport:
        card_serial = card_identity(leaf).card_serial
        if card_serial is not None:
            card_json["serial"] = parse_nos_card_serial(card_serial)
        return check(leaf, intermediates)

    return noted


def _challenge(state: CliState, given: str | None) -> bytes:
    if given is None:
        return state.draw_random("challenge", CHALLENGE_SIZE)
    try:
        value = bytes.fromhex(given)
    except ValueError as e:
        raise UsageError("--challenge must be hex") from e
    if len(value) < 16:
        raise UsageError("--challenge must have at least 16 bytes")
    return value


def _print(result: AuthResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    card = result.authenticator
    click.echo(f"Authenticated: {card.kind} card {card.serial}")
    if result.identity is not None:
        identity = result.identity.to_json()
        names = " ".join(n for n in (identity["given_name"], identity["family_name"]) if n)
        click.echo(f"  {names} ({identity['id_type']} {identity['id']})")
    click.echo(f"  level: {result.level or 'not established'}")
    for reason in result.reasons:
        click.echo(f"  - {reason}")
