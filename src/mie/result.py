"""What an authentication says: the authenticator, the identity, the level, the evidence, or the
error, as typed immutable objects with the JSON of the contract.

The library, not the CLI, maps an exception to its contract ``error`` object
(:meth:`ErrorInfo.from_exception` reads :attr:`mie.errors.MieError.code`) and builds the failure
result (:meth:`AuthResult.failure`). Each object has a strict ``from_json``: a saved
``mie auth --json`` output reads back into the same object, and anything of another shape raises
:class:`~mie.errors.EvidenceFormatError`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from mie.core.connection import Transport
from mie.core.errors import ErrorCode, EvidenceFormatError, MieError
from mie.core.strictjson import Number
from mie.evidence import Evidence, check_fields, hex_field, shown, str_field
from mie.policy import AssuranceLevel
from mie.trust.crl import RevocationStatus
from mie.trust.identity import CARD_TYPES, Identity

_MAX_SMALL = 255
_SMALL = re.compile(r"0|[1-9][0-9]{0,2}")
_ATR_SIZES = range(1, 34)  # ISO 7816-3: at most 33 bytes
_ID_TYPES = frozenset({"RPPS", "ADELI", "FINESS", "SIRET", "SIREN", "PSI", "LOCAL"})
_IDENTITY_STRINGS = ("id_nat", "id_type", "id")
_IDENTITY_OPTIONAL = ("given_name", "family_name", "profession_code", "card_type")


def _enum_value(enum: type[Any], value: object, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    try:
        return enum(value)
    except ValueError:
        raise EvidenceFormatError(f"{what} {shown(value)} is not a known value") from None


@dataclass(frozen=True)
class AuthenticatorInfo:
    """What was presented: kind, serial, ATR and transport.

    :param kind: ``cps3``, ``cps4``, ``cpe``… (``iso7816`` for the demo card).
    :param serial: the serial, whenever it was read (``None`` otherwise).
    :param atr: the ATR of a smart card, or ``None``.
    :param transport: how it was reached, or ``None`` when not known.
    """

    kind: str
    serial: str | None
    atr: bytes | None
    transport: Transport | None = None

    def to_json(self) -> dict[str, Any]:
        """:return: the ``authenticator`` object of the JSON contract."""
        return {
            "kind": self.kind,
            "serial": self.serial,
            "atr": self.atr.hex() if self.atr else None,
            "transport": self.transport.value if self.transport is not None else None,
        }

    @classmethod
    def from_json(cls, obj: object) -> AuthenticatorInfo:
        """:return: the object :meth:`to_json` gave.

        :raises EvidenceFormatError: another shape.
        """
        what = "authenticator"
        fields = check_fields(obj, what, ("kind", "serial", "atr", "transport"))
        atr = None if fields["atr"] is None else hex_field(fields, "atr", what, sizes=_ATR_SIZES)
        transport = _enum_value(Transport, fields["transport"], "transport", optional=True)
        return cls(
            kind=str_field(fields, "kind", what),
            serial=str_field(fields, "serial", what, optional=True),
            atr=atr,
            transport=transport,
        )


CardInfo = AuthenticatorInfo
"""The former name of :class:`AuthenticatorInfo`."""


@dataclass(frozen=True)
class ErrorInfo:
    """The ``error`` object of a failed result.

    :param code: the contract code.
    :param message: one line naming the problem.
    :param tries_left: PIN tries left, for ``invalid_pin`` only.
    """

    code: ErrorCode
    message: str
    tries_left: int | None = None

    @classmethod
    def from_exception(cls, error: MieError) -> ErrorInfo:
        """The contract error of an exception: its class's (or instance's) ``code``.

        :raises ValueError: ``error`` has no contract code (a bug: every :mod:`mie.errors` class
            has one).
        """
        if error.code is None:
            raise ValueError(f"{type(error).__name__} has no contract error code")
        tries = getattr(error, "tries_left", None) if error.code is ErrorCode.INVALID_PIN else None
        return cls(ErrorCode(error.code), str(error), tries)

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"code", "message"}``, plus ``tries_left`` for ``invalid_pin``."""
        obj: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.code is ErrorCode.INVALID_PIN:
            obj["tries_left"] = self.tries_left
        return obj

    @classmethod
    def from_json(cls, obj: object) -> ErrorInfo:
        """:return: the object :meth:`to_json` gave.

        :raises EvidenceFormatError: another shape.
        """
        what = "error"
        pin = isinstance(obj, dict) and obj.get("code") == ErrorCode.INVALID_PIN.value
        fields = check_fields(obj, what, ("code", "message", *(["tries_left"] if pin else [])))
        tries = _small_int(fields.get("tries_left"), "error.tries_left")
        code = _enum_value(ErrorCode, fields["code"], "error.code")
        return cls(code, str_field(fields, "message", what), tries)


def _small_int(value: object, what: str) -> int | None:
    # Strict JSON (mie.core.strictjson) keeps numbers as text; json.loads gives an int.
    text = value.text if isinstance(value, Number) else value
    if text is None:
        return None
    if type(text) is int and 0 <= text <= _MAX_SMALL:
        return text
    if isinstance(text, str) and _SMALL.fullmatch(text):
        return int(text)
    raise EvidenceFormatError(f"{what} is not a small integer or null")


@dataclass(frozen=True)
class Identification:
    """Who an authenticator belongs to, read without PIN (nothing here is verified).

    :param authenticator: what was presented.
    :param identity: the identity its certificate states, or ``None`` (a badge has none).
    :param certificate: the certificate read, or ``None``.
    """

    authenticator: AuthenticatorInfo
    identity: Identity | None
    certificate: x509.Certificate | None = None

    @property
    def card(self) -> AuthenticatorInfo:
        """Deprecated: :attr:`authenticator`."""
        warnings.warn(
            "Identification.card is deprecated: use .authenticator",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.authenticator

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"authenticator": …, "identity": …}`` as in the JSON contract."""
        return {
            "authenticator": self.authenticator.to_json(),
            "identity": self.identity.to_json() if self.identity is not None else None,
        }


def identity_from_json(obj: object) -> Identity:
    """Read the contract's ``identity`` object (``card_serial`` is not in it: ``None``).

    :raises EvidenceFormatError: another shape.
    """
    what = "identity"
    fields = check_fields(obj, what, (*_IDENTITY_STRINGS, *_IDENTITY_OPTIONAL, "test_card"))
    strings = {k: str_field(fields, k, what) for k in _IDENTITY_STRINGS}
    optional = {k: str_field(fields, k, what, optional=True) for k in _IDENTITY_OPTIONAL}
    if strings["id_type"] not in _ID_TYPES:
        raise EvidenceFormatError(f"identity.id_type {shown(strings['id_type'])} is not known")
    if optional["card_type"] not in (None, *CARD_TYPES.values()):
        raise EvidenceFormatError(f"identity.card_type {shown(optional['card_type'])} is not known")
    if not isinstance(fields["test_card"], bool):
        raise EvidenceFormatError("identity.test_card is not true or false")
    return Identity(**strings, **optional, test_card=fields["test_card"])


_RESULT_KEYS = ("valid", "error", "authenticator", "identity", "level", "reasons", "evidence")


@dataclass(frozen=True)
class AuthResult:
    """The outcome of an authentication or of a verification of evidence.

    :param valid: whether it succeeded (then ``error`` is ``None``; otherwise it is set).
    :param error: why it failed.
    :param authenticator: what was presented, when known (on failures too).
    :param identity: the holder, from the verified certificate.
    :param level: the eIDAS level granted, or ``None``.
    :param reasons: why the level is what it is, in order.
    :param evidence: what the authenticator produced.
    :param revocation: the revocation status found (in the JSON, ``evidence.revocation``);
        ``None`` only without evidence.
    :raises ValueError: ``valid`` and ``error`` disagree, or a revocation without evidence.
    """

    valid: bool
    error: ErrorInfo | None = None
    authenticator: AuthenticatorInfo | None = None
    identity: Identity | None = None
    level: AssuranceLevel | None = None
    reasons: tuple[str, ...] = field(default=())
    evidence: Evidence | None = None
    revocation: RevocationStatus | None = None

    def __post_init__(self) -> None:
        if self.valid is not (self.error is None):
            raise ValueError("A result is valid exactly when it carries no error")
        if self.evidence is None and self.revocation is not None:
            raise ValueError("A revocation status needs evidence to belong to")
        if not isinstance(self.reasons, tuple):
            object.__setattr__(self, "reasons", tuple(self.reasons))

    @classmethod
    def failure(cls, error: MieError, authenticator: AuthenticatorInfo | None = None) -> AuthResult:
        """:return: the failed result for ``error`` (its contract code and message).

        :raises ValueError: ``error`` has no contract code.
        """
        return cls(False, ErrorInfo.from_exception(error), authenticator)

    def to_json(self) -> dict[str, Any]:
        """:return: the ``AuthResult`` object of the JSON contract (absent values are null)."""
        evidence = None
        if self.evidence is not None:
            evidence = self.evidence.to_json()
            evidence["revocation"] = self.revocation.value if self.revocation else None
        return {
            "valid": self.valid,
            "error": self.error.to_json() if self.error is not None else None,
            "authenticator": self.authenticator.to_json() if self.authenticator else None,
            "identity": self.identity.to_json() if self.identity is not None else None,
            "level": self.level.value if self.level is not None else None,
            "reasons": list(self.reasons),
            "evidence": evidence,
        }

    @classmethod
    def from_json(cls, obj: object) -> AuthResult:
        """:return: the result :meth:`to_json` gave (``identity.card_serial`` is ``None``).

        :raises EvidenceFormatError: another shape.
        """
        fields = check_fields(obj, "result", _RESULT_KEYS)
        if not isinstance(fields["valid"], bool):
            raise EvidenceFormatError("result.valid is not true or false")
        reasons = fields["reasons"]
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise EvidenceFormatError("result.reasons is not a list of strings")
        evidence, revocation = _evidence_from_json(fields["evidence"])
        try:
            return cls(
                valid=fields["valid"],
                error=_optional(fields["error"], ErrorInfo.from_json),
                authenticator=_optional(fields["authenticator"], AuthenticatorInfo.from_json),
                identity=_optional(fields["identity"], identity_from_json),
                level=_enum_value(AssuranceLevel, fields["level"], "result.level", optional=True),
                reasons=tuple(reasons),
                evidence=evidence,
                revocation=revocation,
            )
        except ValueError as e:
            raise EvidenceFormatError(f"The result does not hold together: {e}") from e


def _optional(value: object, parse: Any) -> Any:
    return None if value is None else parse(value)


def _evidence_from_json(value: object) -> tuple[Evidence | None, RevocationStatus | None]:
    if value is None:
        return None, None
    evidence = Evidence.from_json(value)
    assert isinstance(value, Mapping)  # noqa: S101 - from_json checked it
    status = value.get("revocation")
    return evidence, _enum_value(RevocationStatus, status, "evidence.revocation", optional=True)


__all__ = [
    "AuthResult",
    "AuthenticatorInfo",
    "CardInfo",
    "ErrorInfo",
    "Identification",
    "identity_from_json",
]
