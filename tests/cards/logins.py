"""Logins as an application makes them, for card tests: a fresh request, a PIN served once,
:func:`mie.verification.login` with or without a verifier."""

from __future__ import annotations

from mie.auth import Authenticator
from mie.evidence import X509SignatureEvidence
from mie.request import AuthRequest, StaticPin
from mie.result import AuthResult
from mie.trust import Verifier
from mie.verification import login

PIN = "4826"


def log_in(
    authenticator: Authenticator,
    pin: str | bytes | bytearray = PIN,
    *,
    verifier: Verifier | None = None,
    allow_last_try: bool = False,
    request: AuthRequest | None = None,
) -> AuthResult:
    """One login: a new request (unless given), ``pin`` served once, ``verifier`` or none.

    :return: the valid result; every failure raises.
    """
    chosen = request if request is not None else AuthRequest.new(allow_last_try=allow_last_try)
    return login(authenticator, chosen, user=StaticPin(pin), verifier=verifier)


def evidence_of(result: AuthResult) -> X509SignatureEvidence:
    """:return: the result's evidence, which a CPx card makes as an X.509 signature."""
    assert isinstance(result.evidence, X509SignatureEvidence)
    return result.evidence
