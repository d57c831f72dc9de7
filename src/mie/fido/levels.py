"""The level a FIDO2 assertion grants: what was verified, as a :class:`~mie.policy.Proof`.

:func:`fido_proof` turns what the verifier established (attestation, user verification, backup
eligibility) into the proof :func:`mie.policy.decide` reads; the rows of
:data:`mie.policy.DEFAULT_RULES` decide, not this module (plan D8): an attested model, a
verified user and a credential bound to the key give ``substantial``, any other verified
assertion ``low``, and ``high`` is never granted by default. The registration's ``level_cap``
and the assertion verifier use the same function, so they cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mie.policy import ATTESTED_TYPES, Factor, FidoAttestation, MieKind, Proof, Property

if TYPE_CHECKING:
    from mie.fido.policy import FidoPolicy

ATTESTATION_TYPES = frozenset({*ATTESTED_TYPES, "self", "none"})
"""The attestation types a proof may name."""
AAGUID_BYTES = 16


def fido_proof(
    *,
    attested: bool,
    uv: bool,
    backup_eligible: bool,
    policy: FidoPolicy,
    aaguid: bytes,
    certification: str | None,
    test: bool,
    attestation_type: str,
) -> Proof:
    """The proof of a verified FIDO2 assertion (or of the one a registration allows).

    The caller has already refused what the policy refuses (``backup_eligible: "refuse"``, UV
    missing under ``require_uv``, an attestation the policy does not take): this function only
    describes. A backup-eligible credential is device-bound only under
    ``backup_eligible: "allow"``.

    :param attested: the model is proven: full packed attestation verified to a root listed for
        the AAGUID, and the AAGUID allowlisted or in the FIDO metadata with an accepted status.
    :param uv: the authenticator data's UV flag (the key verified its user).
    :param backup_eligible: the credential's BE flag (it may be synced off the key).
    :param policy: the FIDO policy (its ``backup_eligible`` choice is read).
    :param aaguid: the key model (16 bytes).
    :param certification: the model's FIDO certification level, if known.
    :param test: a TEST key.
    :param attestation_type: ``basic``, ``attca``, ``self`` or ``none``.
    :return: the proof for :func:`mie.policy.decide`.
    :raises ValueError: ``attested`` with a ``self`` or ``none`` attestation, an unknown
        attestation type, or an AAGUID that is not 16 bytes.
    :raises TypeError: a flag that is not a bool.
    """
    for name, flag in (
        ("attested", attested),
        ("uv", uv),
        ("backup_eligible", backup_eligible),
        ("test", test),
    ):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, not {type(flag).__name__}")
    if attestation_type not in ATTESTATION_TYPES:
        raise ValueError(f"Unknown attestation type {attestation_type!r:.40}")
    if attested and attestation_type not in ATTESTED_TYPES:
        raise ValueError(f"A {attestation_type} attestation does not prove the key model")
    if not isinstance(aaguid, bytes) or len(aaguid) != AAGUID_BYTES:
        raise ValueError(f"The AAGUID must be {AAGUID_BYTES} bytes")
    factors = {Factor.POSSESSION}
    if uv:
        factors.add(Factor.KNOWLEDGE)
    properties = set()
    if attested:
        properties.add(Property.ATTESTED)
    if not backup_eligible or policy.backup_eligible == "allow":
        properties.add(Property.DEVICE_BOUND)
    return Proof(
        MieKind.FIDO2_KEY,
        frozenset(factors),
        None,
        attestation=FidoAttestation(attestation_type, aaguid, certification, test),
        properties=frozenset(properties),
    )


__all__ = ["ATTESTATION_TYPES", "fido_proof"]
