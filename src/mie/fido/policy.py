"""The FIDO2 policy of a relying party: which keys it registers and how it judges assertions.

One strict JSON file (``mie-fido-policy/1``); every member but ``format`` and ``rp_id`` is
optional and has the default shown (the ``substantial`` profile)::

    {"format": "mie-fido-policy/1",
     "rp_id": "iam.chu-exemple.fr",              the relying party id (a lower-case host)
     "attestation": "required",                  or "optional": required takes packed full
                                                 attestation only (self and none refused)
     "allowlist": null,                          "aaguids.json": the AAGUID must be listed
     "metadata": null,                           {"blob": "mds.jwt", "root": "root.pem" | null,
                                                  "required": true,
                                                  "min_certification": "L1" | null,
                                                  "refuse": ["REVOKED", ...],
                                                  "stale": "refuse" | "warn"}
     "attestation_roots": [],                    PEM/DER files: roots for allowlisted models
                                                 without roots of their own
     "crls": [],                                 CRL files for the attestation chains
     "require_uv": true,
     "backup_eligible": "low",                   or "refuse", "allow"
     "counter": "required",                      or "allow-zero" (a key without a counter)
     "algorithms": ["ES256", "EdDSA"]}           of ES256, EdDSA, RS256

Relative paths resolve against the policy file's directory. An attested-only policy
(``attestation: "required"``) needs an allowlist or metadata: a chain to a root says nothing of
the model otherwise. Anything else (an unknown member, a value of the wrong type, size or
choice) raises :class:`~mie.fido.errors.FidoPolicyError` naming the field, and so does a
:class:`FidoPolicy` or :class:`MetadataPolicy` built in code with a choice that is not one of
its strings or a flag that is not a bool (fail closed: ``require_uv="false"`` is refused, not
read as true).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from cryptography import x509

from mie.fido.allowlist import (
    CERTIFICATION_LEVELS,
    AaguidAllowlist,
    FieldReader,
    read_json,
)
from mie.fido.cose import ALGORITHM_NAMES, EDDSA, ES256
from mie.fido.errors import FidoPolicyError

if TYPE_CHECKING:
    from mie.trust.crl import CrlSet

POLICY_FORMAT = "mie-fido-policy/1"
MAX_POLICY_BYTES = 64 * 1024
"""Largest policy file read."""
MAX_ROOT_FILES = 64
MAX_CRL_FILES = 64

# FIDO metadata statuses (MDS3 AuthenticatorStatus) a policy may refuse.
NOT_FIDO_CERTIFIED = "NOT_FIDO_CERTIFIED"
USER_VERIFICATION_BYPASS = "USER_VERIFICATION_BYPASS"
ATTESTATION_KEY_COMPROMISE = "ATTESTATION_KEY_COMPROMISE"
USER_KEY_REMOTE_COMPROMISE = "USER_KEY_REMOTE_COMPROMISE"
USER_KEY_PHYSICAL_COMPROMISE = "USER_KEY_PHYSICAL_COMPROMISE"
UPDATE_AVAILABLE = "UPDATE_AVAILABLE"
RETIRED = "RETIRED"
REVOKED = "REVOKED"
SELF_ASSERTION_SUBMITTED = "SELF_ASSERTION_SUBMITTED"
REFUSABLE_STATUSES = (
    NOT_FIDO_CERTIFIED,
    USER_VERIFICATION_BYPASS,
    ATTESTATION_KEY_COMPROMISE,
    USER_KEY_REMOTE_COMPROMISE,
    USER_KEY_PHYSICAL_COMPROMISE,
    UPDATE_AVAILABLE,
    RETIRED,
    REVOKED,
    SELF_ASSERTION_SUBMITTED,
)
"""The statuses ``metadata.refuse`` may name (the certification ones are levels, not refusals)."""
DEFAULT_REFUSE = frozenset(
    {
        REVOKED,
        ATTESTATION_KEY_COMPROMISE,
        USER_VERIFICATION_BYPASS,
        USER_KEY_REMOTE_COMPROMISE,
        USER_KEY_PHYSICAL_COMPROMISE,
    }
)
"""The statuses refused by default."""

Stale = Literal["refuse", "warn"]
Attestation = Literal["required", "optional"]
BackupEligible = Literal["refuse", "low", "allow"]
Counter = Literal["required", "allow-zero"]
STALE_CHOICES: tuple[str, ...] = get_args(Stale)
ATTESTATION_CHOICES: tuple[str, ...] = get_args(Attestation)
BACKUP_ELIGIBLE_CHOICES: tuple[str, ...] = get_args(BackupEligible)
COUNTER_CHOICES: tuple[str, ...] = get_args(Counter)
DEFAULT_ALGORITHMS = (ES256, EDDSA)
_ALGORITHM_IDS = {name: alg for alg, name in ALGORITHM_NAMES.items()}

_POLICY_MEMBERS = (
    "format",
    "rp_id",
    "attestation",
    "allowlist",
    "metadata",
    "attestation_roots",
    "crls",
    "require_uv",
    "backup_eligible",
    "counter",
    "algorithms",
)
_METADATA_MEMBERS = ("blob", "root", "required", "min_certification", "refuse", "stale")


def _check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    # ``type(...) is str``: a str subclass (an enum member) could compare equal and still be
    # something else to a later ``is`` check.
    if type(value) is not str or value not in choices:
        raise FidoPolicyError(f"{owner}: {name} is not one of {', '.join(choices)}")


def _check_flag(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FidoPolicyError(f"{owner}: {name} is not true or false")


@dataclass(frozen=True)
class MetadataPolicy:
    """How the FIDO metadata (MDS3 blob) is used.

    :param blob: the metadata blob file (read by :mod:`mie.fido.mds`).
    :param root: the root the blob's signer must chain to; ``None``: the bundled MDS root.
    :param required: a model absent from the metadata is refused (``aaguid_unknown``).
    :param min_certification: the lowest FIDO certification level accepted (``L1`` ...
        ``L3plus``), or ``None``.
    :param refuse: the statuses that refuse a model (:data:`REFUSABLE_STATUSES`).
    :param stale: a blob past its ``nextUpdate`` is refused, or only warned about.
    :raises FidoPolicyError: a field of the wrong type or choice.
    """

    blob: Path
    root: Path | None = None
    required: bool = True
    min_certification: str | None = "L1"
    refuse: frozenset[str] = DEFAULT_REFUSE
    stale: Stale = "refuse"

    def __post_init__(self) -> None:
        owner = "FIDO metadata policy"
        for name in ("blob", "root"):
            value = getattr(self, name)
            if value is None and name == "root":
                continue
            if isinstance(value, str):
                value = Path(value)
                object.__setattr__(self, name, value)
            if not isinstance(value, Path):
                raise FidoPolicyError(f"{owner}: {name} is not a file name")
        _check_flag(owner, "required", self.required)
        if self.min_certification is not None:
            _check_choice(owner, "min_certification", self.min_certification, CERTIFICATION_LEVELS)
        refuse = self.refuse
        if isinstance(refuse, str) or not isinstance(refuse, Iterable):
            raise FidoPolicyError(f"{owner}: refuse is not a set of statuses")
        refuse = frozenset(refuse)
        for status in refuse:
            _check_choice(owner, "refuse", status, REFUSABLE_STATUSES)
        object.__setattr__(self, "refuse", refuse)
        _check_choice(owner, "stale", self.stale, STALE_CHOICES)


@dataclass(frozen=True)
class FidoPolicy:
    """A relying party's FIDO2 policy (see the module docstring for the JSON).

    :param rp_id: the relying party id: authenticator data must carry its SHA-256.
    :param attestation: ``required`` (packed full attestation to a root listed for the model)
        or ``optional`` (self and none accepted, at level ``low`` at most).
    :param allowlist: the accepted key models, or ``None``.
    :param metadata: how the FIDO metadata is used, or ``None``.
    :param attestation_roots: roots trusted for allowlisted models that name none of their own.
    :param crls: CRLs for the attestation chains.
    :param require_uv: registrations and assertions without user verification are refused.
    :param backup_eligible: a backup-eligible (syncable) credential is refused, held to
        ``low``, or allowed like a device-bound one.
    :param counter: a key without a signature counter is refused, or allowed.
    :param algorithms: the COSE algorithms accepted for credential keys.
    :raises FidoPolicyError: a field of the wrong type or choice, or an attested-only policy
        with neither allowlist nor metadata.
    """

    rp_id: str
    attestation: Attestation = "required"
    allowlist: AaguidAllowlist | None = None
    metadata: MetadataPolicy | None = None
    attestation_roots: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    require_uv: bool = True
    backup_eligible: BackupEligible = "low"
    counter: Counter = "required"
    algorithms: tuple[int, ...] = DEFAULT_ALGORITHMS

    def __post_init__(self) -> None:
        owner = "FIDO policy"
        from mie.store.base import RP_ID_PATTERN

        if not isinstance(self.rp_id, str) or RP_ID_PATTERN.fullmatch(self.rp_id) is None:
            raise FidoPolicyError(
                f"{owner}: rp_id is not a lower-case host name of 1 to 253 characters"
            )
        _check_choice(owner, "attestation", self.attestation, ATTESTATION_CHOICES)
        if self.allowlist is not None and not isinstance(self.allowlist, AaguidAllowlist):
            raise FidoPolicyError(f"{owner}: allowlist is not an AaguidAllowlist")
        if self.metadata is not None and not isinstance(self.metadata, MetadataPolicy):
            raise FidoPolicyError(f"{owner}: metadata is not a MetadataPolicy")
        self._sequence("attestation_roots", x509.Certificate)
        self._sequence("crls", x509.CertificateRevocationList)
        _check_flag(owner, "require_uv", self.require_uv)
        _check_choice(owner, "backup_eligible", self.backup_eligible, BACKUP_ELIGIBLE_CHOICES)
        _check_choice(owner, "counter", self.counter, COUNTER_CHOICES)
        algorithms = self._sequence("algorithms", int)
        if not algorithms:
            raise FidoPolicyError(f"{owner}: algorithms is empty")
        for alg in algorithms:
            if isinstance(alg, bool) or alg not in ALGORITHM_NAMES:
                raise FidoPolicyError(
                    f"{owner}: algorithm {alg!r} is not one of "
                    + ", ".join(f"{a} ({n})" for a, n in ALGORITHM_NAMES.items())
                )
        if len(set(algorithms)) != len(algorithms):
            raise FidoPolicyError(f"{owner}: algorithms names one twice")
        if self.attestation == "required" and self.allowlist is None and self.metadata is None:
            raise FidoPolicyError(
                f"{owner}: an attested-only policy needs an AAGUID allowlist or FIDO metadata"
            )

    def _sequence(self, name: str, kind: type) -> tuple[Any, ...]:
        value = getattr(self, name)
        if not isinstance(value, list | tuple) or not all(isinstance(v, kind) for v in value):
            raise FidoPolicyError(f"FIDO policy: {name} is not a sequence of {kind.__name__}")
        items = tuple(value)
        object.__setattr__(self, name, items)
        return items

    @property
    def attested_only(self) -> bool:
        """:return: whether only packed full attestation is accepted."""
        return self.attestation == "required"

    def crl_set(self) -> CrlSet:
        """:return: :attr:`crls` as the :class:`~mie.trust.crl.CrlSet` a verifier takes."""
        from mie.trust.crl import CrlIndex, CrlSet

        return CrlSet.of(CrlIndex(crl, "FIDO policy CRL") for crl in self.crls)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FidoPolicy:
        """Read a policy file; the allowlist, roots and CRLs it names are read now (the
        metadata blob is read by whoever loads the metadata).

        :raises FidoPolicyError: a file unreadable, not strict JSON, or not of its format.
        """
        file = Path(path)
        obj = read_json(file, MAX_POLICY_BYTES, "FIDO policy")
        return cls.from_json(obj, base=file.parent, path=file)

    @classmethod
    def from_json(cls, obj: object, *, base: Path, path: Path | None = None) -> FidoPolicy:
        """Read a policy from its parsed JSON (numbers as :class:`strictjson.Number`).

        :param base: the directory relative paths resolve against.
        :param path: the file it came from, for messages.
        :raises FidoPolicyError: not of the format, naming the field.
        """
        title = "FIDO policy" + ("" if path is None else f" {str(path)!r}")
        reader = FieldReader(title, base)
        members = reader.members(obj, "the file", _POLICY_MEMBERS, ("format", "rp_id"))
        if members["format"] != POLICY_FORMAT:
            raise reader.fail(f"format is not {POLICY_FORMAT!r}")
        values: dict[str, Any] = {"rp_id": reader.text(members["rp_id"], "rp_id", 253)}
        if "attestation" in members:
            values["attestation"] = reader.choice(
                members["attestation"], "attestation", ATTESTATION_CHOICES
            )
        allowlist = members.get("allowlist")
        if allowlist is not None:
            values["allowlist"] = AaguidAllowlist.load(reader.path(allowlist, "allowlist"))
        metadata = members.get("metadata")
        if metadata is not None:
            values["metadata"] = _metadata(reader, metadata)
        if "attestation_roots" in members:
            values["attestation_roots"] = reader.certificates(
                members["attestation_roots"], "attestation_roots", MAX_ROOT_FILES
            )
        if "crls" in members:
            values["crls"] = reader.crls(members["crls"], "crls", MAX_CRL_FILES)
        if "require_uv" in members:
            values["require_uv"] = reader.flag(members["require_uv"], "require_uv")
        if "backup_eligible" in members:
            values["backup_eligible"] = reader.choice(
                members["backup_eligible"], "backup_eligible", BACKUP_ELIGIBLE_CHOICES
            )
        if "counter" in members:
            values["counter"] = reader.choice(members["counter"], "counter", COUNTER_CHOICES)
        if "algorithms" in members:
            values["algorithms"] = _algorithms(reader, members["algorithms"])
        try:
            return cls(**values)
        except FidoPolicyError as e:
            raise reader.fail(str(e).removeprefix("FIDO policy: ")) from e


def _metadata(reader: FieldReader, obj: object) -> MetadataPolicy:
    members = reader.members(obj, "metadata", _METADATA_MEMBERS, ("blob",))
    values: dict[str, Any] = {"blob": reader.path(members["blob"], "metadata.blob")}
    root = members.get("root")
    if root is not None:
        values["root"] = reader.path(root, "metadata.root")
    if "required" in members:
        values["required"] = reader.flag(members["required"], "metadata.required")
    if "min_certification" in members:
        level = members["min_certification"]
        values["min_certification"] = (
            None
            if level is None
            else reader.choice(level, "metadata.min_certification", CERTIFICATION_LEVELS)
        )
    if "refuse" in members:
        items = reader.array(members["refuse"], "metadata.refuse", len(REFUSABLE_STATUSES))
        statuses = [reader.choice(s, "metadata.refuse", REFUSABLE_STATUSES) for s in items]
        if len(set(statuses)) != len(statuses):
            raise reader.fail("metadata.refuse names a status twice")
        values["refuse"] = frozenset(statuses)
    if "stale" in members:
        values["stale"] = reader.choice(members["stale"], "metadata.stale", STALE_CHOICES)
    return MetadataPolicy(**values)


def _algorithms(reader: FieldReader, value: object) -> tuple[int, ...]:
    items = reader.array(value, "algorithms", len(_ALGORITHM_IDS))
    if not items:
        raise reader.fail("algorithms is empty")
    names = [reader.choice(item, "algorithms", tuple(_ALGORITHM_IDS)) for item in items]
    if len(set(names)) != len(names):
        raise reader.fail("algorithms names one twice")
    return tuple(_ALGORITHM_IDS[name] for name in names)


__all__ = [
    "ATTESTATION_KEY_COMPROMISE",
    "DEFAULT_REFUSE",
    "MAX_POLICY_BYTES",
    "POLICY_FORMAT",
    "REFUSABLE_STATUSES",
    "REVOKED",
    "USER_KEY_PHYSICAL_COMPROMISE",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_VERIFICATION_BYPASS",
    "FidoPolicy",
    "MetadataPolicy",
]
