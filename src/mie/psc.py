"""Pro Santé Connect (PSC) claims of a verified authentication, for an IdP federated with PSC
as a third-party identity provider ("FI tiers").

A :class:`PscMapping` (file format ``mie-psc-claims/1``, ``docs/psc-claims.md``) says which
``amr`` values each MIE class (:data:`MIE_CLASSES`: ``cpx`` card, DESFire ``badge``, ``fido2``
key) reports at each level, the ``acr`` of each level, the lowest level that gets claims and
whether TEST identities get any. :func:`psc_claims` turns a valid :class:`~mie.result.AuthResult`
into :class:`PscClaims`, or raises :class:`PscRefusedError` (code ``policy``): PSC only knows
``acr`` ``eidas1`` (substantial), so a ``low`` result never gets claims.

The default mapping is package data (``src/mie/psc-claims.json``, :meth:`PscMapping.default`).
What is sourced and what is assumed in it is in ``docs/psc-claims.md``: the ``amr`` values are
RFC 8176 names standing in for the ANS list, which was not retrievable.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mie.core import strictjson
from mie.core.errors import ErrorCode, JsonFormatError, MieError
from mie.core.files import NotARegularInputError, read_regular_file
from mie.policy import AssuranceLevel, MieKind
from mie.result import AuthResult

PSC_CLAIMS_FORMAT = "mie-psc-claims/1"
MAX_MAPPING_BYTES = 64 * 1024
"""Largest mapping file read (the default one has 400 bytes)."""
MIE_CLASSES = ("cpx", "badge", "fido2")
"""The MIE classes a mapping names: a CPx card, a DESFire badge, a FIDO2 key."""
MIE_KIND_CLASS: Mapping[MieKind, str] = {
    MieKind.CPX_CARD: "cpx",
    MieKind.DESFIRE_BADGE: "badge",
    MieKind.FIDO2_KEY: "fido2",
}
"""The class of each :class:`~mie.policy.MieKind` that can get claims. A certificate checked
on its own (``MieKind.CERTIFICATE``) has none: nothing proves a card and its PIN were used."""
EVIDENCE_CLASS: Mapping[str, str] = {
    "x509-signature": "cpx",
    "desfire-session": "badge",
    "webauthn-assertion": "fido2",
}
"""The MIE class of each evidence type."""
TEST_IDENTITIES = ("refuse", "allow")
_LEVELS = (AssuranceLevel.SUBSTANTIAL, AssuranceLevel.HIGH)
_RANK = {AssuranceLevel.LOW: 0, AssuranceLevel.SUBSTANTIAL: 1, AssuranceLevel.HIGH: 2}
_MEMBERS = ("format", "minimum", "test_identities", "acr", "amr")
# RFC 8176 values are short lower-case tokens; a custom ANS value is assumed to be one too.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_MAX_AMR = 16
_SHOWN = 40

MieClass = Literal["cpx", "badge", "fido2"]


class PscMappingError(MieError, ValueError):
    """A PSC claims mapping that is not of the format ``mie-psc-claims/1``: unreadable, too
    large, not strict JSON, an unknown or missing member, a bad level, value or class. The
    message names the file and the member."""

    code = ErrorCode.USAGE


class PscRefusedError(MieError):
    """A result that gets no PSC claims: not valid, no identity, no level or one below the
    mapping's minimum, a TEST identity the mapping refuses, or no ``amr`` for its MIE class
    and level."""

    code = ErrorCode.POLICY


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _level(value: object, where: str) -> AssuranceLevel:
    try:
        level = AssuranceLevel(value)
    except ValueError:
        raise ValueError(f"{where}: {_shown(value)} is not a level") from None
    if level not in _LEVELS:
        # PSC requires acr eidas1, which is substantial: low never gets claims.
        raise ValueError(f"{where}: low gets no PSC claims (PSC requires eidas1, substantial)")
    return level


@dataclass(frozen=True)
class PscMapping:
    """What claims each MIE class gets at each level.

    :param amr: per MIE class (:data:`MIE_CLASSES`), per level (``substantial`` or ``high``),
        the ``amr`` values (1 to 16 distinct tokens).
    :param acr: the ``acr`` of each level; every level with an ``amr`` row at or above
        ``minimum`` has one.
    :param minimum: the lowest level that gets claims (``substantial`` or ``high``).
    :param test_identities: ``refuse`` (default) or ``allow`` claims for TEST identities.
    :raises ValueError: any of these broken (the message names the member).
    """

    amr: Mapping[str, Mapping[AssuranceLevel, tuple[str, ...]]]
    acr: Mapping[AssuranceLevel, str]
    minimum: AssuranceLevel = AssuranceLevel.SUBSTANTIAL
    test_identities: Literal["refuse", "allow"] = "refuse"

    def __post_init__(self) -> None:
        _level(self.minimum, "minimum")
        if self.test_identities not in TEST_IDENTITIES:
            raise ValueError(
                f"test_identities: {_shown(self.test_identities)} is not refuse or allow"
            )
        for level, value in self.acr.items():
            _level(level, "acr")
            if not isinstance(value, str) or not _TOKEN.fullmatch(value):
                raise ValueError(f"acr.{level.value}: {_shown(value)} is not an acr value")
        if not self.amr:
            raise ValueError("amr: no MIE class")
        for mie, rows in self.amr.items():
            if mie not in MIE_CLASSES:
                raise ValueError(f"amr: {_shown(mie)} is not one of {', '.join(MIE_CLASSES)}")
            if not rows:
                raise ValueError(f"amr.{mie}: no level")
            for key, values in rows.items():
                level = _level(key, f"amr.{mie}")
                where = f"amr.{mie}.{level.value}"
                _check_amr(values, where)
                if _RANK[level] >= _RANK[self.minimum] and level not in self.acr:
                    raise ValueError(f"{where}: acr has no {level.value} value")
        frozen = {m: dict(rows) for m, rows in self.amr.items()}
        object.__setattr__(self, "amr", frozen)
        object.__setattr__(self, "acr", dict(self.acr))

    @classmethod
    def default(cls) -> PscMapping:
        """:return: the packaged mapping (``src/mie/psc-claims.json``)."""
        data = importlib.resources.files("mie").joinpath("psc-claims.json").read_bytes()
        return cls.parse(data, "packaged PSC claims mapping")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PscMapping:
        """Read a mapping file: opened non-blocking, a regular file of at most
        :data:`MAX_MAPPING_BYTES`.

        :param path: the file.
        :return: the mapping.
        :raises PscMappingError: unreadable, or not of the format (naming the member).
        """
        name = f"PSC claims mapping {str(Path(path))!r}"
        try:
            data = read_regular_file(path, MAX_MAPPING_BYTES)
        except NotARegularInputError as e:
            raise PscMappingError(f"Cannot read the {name}: not a regular file") from e
        except FileNotFoundError as e:
            raise PscMappingError(f"No {name}: the file does not exist") from e
        except OSError as e:
            raise PscMappingError(f"Cannot read the {name} ({e.strerror})") from e
        return cls.parse(data, name)

    @classmethod
    def parse(cls, data: bytes, name: str = "PSC claims mapping") -> PscMapping:
        """:return: the mapping in ``data`` (strict JSON, at most :data:`MAX_MAPPING_BYTES`).

        :raises PscMappingError: not of the format (the message names ``name`` and the member).
        """
        try:
            obj = strictjson.loads(data, name, max_bytes=MAX_MAPPING_BYTES)
        except JsonFormatError as e:
            raise PscMappingError(str(e)) from e
        return cls.from_json(obj, name)

    @classmethod
    def from_json(cls, obj: object, name: str = "PSC claims mapping") -> PscMapping:
        """:return: the mapping of a parsed ``mie-psc-claims/1`` object.

        :raises PscMappingError: another shape (the message names ``name`` and the member).
        """
        try:
            return cls._from_json(obj)
        except ValueError as e:
            raise PscMappingError(f"The {name}: {e}") from None

    @classmethod
    def _from_json(cls, obj: object) -> PscMapping:
        fields = _object(obj, "the mapping", _MEMBERS, required=_MEMBERS)
        if fields["format"] != PSC_CLAIMS_FORMAT:
            raise ValueError(f"format: {_shown(fields['format'])} is not {PSC_CLAIMS_FORMAT}")
        minimum = _level(fields["minimum"], "minimum")
        test = fields["test_identities"]
        if test not in TEST_IDENTITIES:
            raise ValueError(f"test_identities: {_shown(test)} is not refuse or allow")
        levels = tuple(level.value for level in AssuranceLevel)
        acr = {
            _level(key, "acr"): value
            for key, value in _object(fields["acr"], "acr", levels).items()
        }
        amr: dict[str, dict[AssuranceLevel, tuple[str, ...]]] = {}
        for mie, rows in _object(fields["amr"], "amr", MIE_CLASSES).items():
            amr[mie] = {}
            for key, values in _object(rows, f"amr.{mie}", levels).items():
                if not isinstance(values, list):
                    raise ValueError(f"amr.{mie}.{key}: not a list of amr values")
                amr[mie][_level(key, f"amr.{mie}")] = tuple(values)
        return cls(amr, acr, minimum, test)

    def to_json(self) -> dict[str, Any]:
        """:return: the ``mie-psc-claims/1`` object (:meth:`from_json` reads it back)."""
        return {
            "format": PSC_CLAIMS_FORMAT,
            "minimum": self.minimum.value,
            "test_identities": self.test_identities,
            "acr": {level.value: value for level, value in self.acr.items()},
            "amr": {
                mie: {level.value: list(values) for level, values in rows.items()}
                for mie, rows in self.amr.items()
            },
        }


def _object(
    obj: object, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is not a JSON object")
    for key in obj:
        if key not in allowed:
            raise ValueError(f"{where}: unknown member {_shown(key)}")
    for key in required:
        if key not in obj:
            raise ValueError(f"{where}: no {key} member")
    return obj


def _check_amr(values: object, where: str) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{where}: not a non-empty list of amr values")
    if len(values) > _MAX_AMR:
        raise ValueError(f"{where}: more than {_MAX_AMR} amr values")
    for value in values:
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise ValueError(f"{where}: {_shown(value)} is not an amr value")
    if len(set(values)) != len(values):
        raise ValueError(f"{where}: an amr value appears twice")


@dataclass(frozen=True)
class PscClaims:
    """The claims an IdP passes to PSC for one authentication (``docs/psc-claims.md``).

    :param subject_name_id: the national identifier (idNat), PSC's ``SubjectNameID``.
    :param given_name: the given name, when the MIE states one (a CPx card does).
    :param family_name: the family name, likewise.
    :param acr: the authentication context class (``eidas1``).
    :param amr: the authentication methods references, in the mapping's order.
    :param auth_time: when the authentication was verified (UTC).
    """

    subject_name_id: str
    given_name: str | None
    family_name: str | None
    acr: str
    amr: tuple[str, ...]
    auth_time: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """:return: ``{"SubjectNameID", "given_name", "family_name", "acr", "amr",
        "auth_time"}``; a name the MIE does not state is left out (OpenID Connect omits an
        unknown claim), ``auth_time`` is in seconds since the epoch (an OIDC NumericDate)."""
        obj: dict[str, Any] = {"SubjectNameID": self.subject_name_id}
        if self.given_name is not None:
            obj["given_name"] = self.given_name
        if self.family_name is not None:
            obj["family_name"] = self.family_name
        obj["acr"] = self.acr
        obj["amr"] = list(self.amr)
        obj["auth_time"] = int(self.auth_time.timestamp())
        return obj


def mie_class(result: AuthResult) -> MieClass:
    """:return: the MIE class of a result, from its evidence type.

    :raises PscRefusedError: no evidence, or evidence of a type no class covers.
    """
    if result.evidence is None:
        raise PscRefusedError("The result carries no evidence: its MIE class is not known")
    found = EVIDENCE_CLASS.get(result.evidence.type)
    if found is None:
        raise PscRefusedError(f"Evidence of type {_shown(result.evidence.type)} has no MIE class")
    return found  # type: ignore[return-value]


def psc_claims(
    result: AuthResult, mapping: PscMapping | None = None, *, auth_time: dt.datetime
) -> PscClaims:
    """The PSC claims of a verified authentication.

    :param result: the verification's result.
    :param mapping: the mapping (default: :meth:`PscMapping.default`).
    :param auth_time: when it was verified (time-zone aware).
    :return: the claims.
    :raises PscRefusedError: the result is not valid, has no identity, no level or one below
        the mapping's minimum, is a TEST identity the mapping refuses, or its MIE class has no
        ``amr`` at its level.
    :raises ValueError: ``auth_time`` has no time zone.
    """
    if auth_time.tzinfo is None:
        raise ValueError("auth_time has a time zone")
    mapping = mapping if mapping is not None else _default()
    if not result.valid:
        raise PscRefusedError("An authentication that failed gets no PSC claims")
    identity = result.identity
    if identity is None:
        raise PscRefusedError("The result names no identity: no PSC claims")
    level = result.level
    if level is None or _RANK[level] < _RANK[mapping.minimum]:
        shown = level.value if level is not None else "no level"
        raise PscRefusedError(
            f"Level {shown} is below the PSC minimum {mapping.minimum.value}: no PSC claims"
        )
    if identity.test_card and mapping.test_identities != "allow":
        raise PscRefusedError(
            f"{identity.id_nat} is a TEST identity: the PSC claims mapping refuses TEST identities"
        )
    mie = mie_class(result)
    amr = mapping.amr.get(mie, {}).get(level)
    acr = mapping.acr.get(level)
    if amr is None or acr is None:
        raise PscRefusedError(f"The PSC claims mapping has no amr for {mie} at {level.value}")
    return PscClaims(
        identity.id_nat,
        identity.given_name,
        identity.family_name,
        acr,
        amr,
        auth_time.astimezone(dt.UTC),
    )


_DEFAULT: list[PscMapping] = []


def _default() -> PscMapping:
    # Read once: the packaged file does not change while the process runs.
    if not _DEFAULT:
        _DEFAULT.append(PscMapping.default())
    return _DEFAULT[0]


__all__ = [
    "EVIDENCE_CLASS",
    "MAX_MAPPING_BYTES",
    "MIE_CLASSES",
    "MIE_KIND_CLASS",
    "PSC_CLAIMS_FORMAT",
    "MieClass",
    "PscClaims",
    "PscMapping",
    "PscMappingError",
    "PscRefusedError",
    "mie_class",
    "psc_claims",
]
