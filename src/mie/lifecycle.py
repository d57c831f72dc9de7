"""The MIE lifecycle a verifier applies: revocations and temporary grants (issue 11 plan §5).

A badge or a FIDO2 key (a MIE, named by :class:`~mie.store.base.MieRef`) can be revoked, or
carry a :class:`~mie.store.base.TemporaryGrant`: a spare MIE handed to a professional whose card
was lost, stolen or damaged (``pvd``), or who arrived unannounced (``unannounced``). Both are
rows of the store every node reads at every verification (plan D7): nothing here caches one.

The functions are pure: the verifiers read the row, :func:`check_lifecycle` refuses a revoked
MIE, an expired grant or a grant of another professional, and :func:`cap_level` lowers the level
the MIE's factors gave to the grant's ceiling (``high`` never). No public RIE text fixes a
temporary MIE's lifetime or level: :data:`MAX_TEMPORARY_S` (7 days) and :data:`DEFAULT_CAP`
(``pvd`` at ``substantial``, ``unannounced`` at ``low``: the identity was not checked against a
card at the desk) are mie's decisions.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from mie.policy import AssuranceLevel
from mie.store import base
from mie.store.errors import (
    MieRevokedError,
    StoreInputError,
    TemporaryExpiredError,
    TemporaryIdentityError,
)

if TYPE_CHECKING:
    from mie.store.base import LifecycleRecord, MieRef, Revocation, TemporaryGrant

#: The longest a temporary grant lasts, in seconds (the store's bound).
MAX_TEMPORARY_S = base.MAX_TEMPORARY_S
#: The level a temporary MIE is capped at when the operator names none, per reason.
DEFAULT_CAP: Mapping[str, AssuranceLevel] = MappingProxyType(
    {"pvd": AssuranceLevel.SUBSTANTIAL, "unannounced": AssuranceLevel.LOW}
)
#: The levels a grant may cap at (``high`` is never granted to a temporary MIE).
GRANT_LEVELS = (AssuranceLevel.LOW, AssuranceLevel.SUBSTANTIAL)
_ORDER = {AssuranceLevel.LOW: 0, AssuranceLevel.SUBSTANTIAL: 1, AssuranceLevel.HIGH: 2}


def check_lifecycle(
    record: LifecycleRecord | None, *, id_nat: str, at: float
) -> TemporaryGrant | None:
    """Refuse a revoked MIE, or a temporary one that expired or is another professional's.

    :param record: the MIE's lifecycle row (``None``: none, a permanent MIE not revoked).
    :param id_nat: the national identifier the MIE presents (its record's, its credential's).
    :param at: now, in seconds since the epoch.
    :return: the grant the level must be capped by (:func:`cap_level`), ``None`` for a
        permanent MIE.
    :raises MieRevokedError: the MIE is revoked (``revoked``).
    :raises TemporaryExpiredError: its temporary grant expired (``expired``).
    :raises TemporaryIdentityError: its grant is for another idNat (``policy``).
    """
    if record is None:
        return None
    if record.revocation is not None:
        raise revoked_error(record.revocation)
    return check_temporary(record.temporary, id_nat=id_nat, at=at)


def check_temporary(
    grant: TemporaryGrant | None, *, id_nat: str, at: float
) -> TemporaryGrant | None:
    """:func:`check_lifecycle` of a grant alone (a credential's, read with it).

    :return: ``grant``.
    :raises TemporaryExpiredError: ``at`` is at or after its expiry.
    :raises TemporaryIdentityError: it is for another idNat than ``id_nat``.
    """
    if grant is None:
        return None
    if not at < grant.expires_at:
        raise TemporaryExpiredError(
            f"Temporary {grant.ref} ({grant.reason}) expired at {_iso(grant.expires_at)}"
        )
    # Constant time, as every identity compare of a verifier.
    if not hmac.compare_digest(grant.id_nat.encode(), id_nat.encode()):
        raise TemporaryIdentityError(
            f"Temporary {grant.ref} was granted to another professional than {id_nat[:64]}"
        )
    return grant


def revoked_error(revocation: Revocation) -> MieRevokedError:
    """:return: the refusal of a revoked MIE: "badge 04a1… revoked (lost) at …"."""
    return MieRevokedError(
        f"{revocation.ref} revoked ({revocation.reason}) at {_iso(revocation.revoked_at)}",
        revocation=revocation,
    )


def cap_level(
    level: AssuranceLevel | None, grant: TemporaryGrant | None
) -> tuple[AssuranceLevel | None, tuple[str, ...]]:
    """Lower ``level`` to the grant's ceiling.

    :param level: the level the MIE's factors gave (``None``: none).
    :param grant: what :func:`check_lifecycle` returned.
    :return: the level (never above the grant's ``max_level``, never ``high`` under a grant)
        and why, e.g. ``temporary MIE (pvd, replaces badge:04…) until 2026-12-05T10:00:00Z:
        level capped at substantial``.
    """
    if grant is None:
        return level, ()
    cap = grant_level(grant.max_level)
    what = grant.reason if grant.replaces is None else f"{grant.reason}, replaces {grant.replaces}"
    head = f"temporary MIE ({what}) until {_iso(grant.expires_at)}"
    if level is None:
        return None, (f"{head}: no level",)
    if _ORDER[level] <= _ORDER[cap]:
        return level, (f"{head}: level {level.value} within its cap {cap.value}",)
    return cap, (f"{head}: level capped at {cap.value}",)


def grant_level(value: AssuranceLevel | str) -> AssuranceLevel:
    """:return: a grant's ceiling as a level.

    :raises StoreInputError: not ``low`` or ``substantial``.
    """
    try:
        level = value if isinstance(value, AssuranceLevel) else AssuranceLevel(value)
    except ValueError:
        level = None
    if level not in GRANT_LEVELS:
        raise StoreInputError("A temporary MIE's level cap must be 'low' or 'substantial'")
    assert level is not None  # noqa: S101 (GRANT_LEVELS holds no None)
    return level


def new_grant(
    ref: MieRef,
    *,
    id_nat: str,
    reason: str,
    expires_in: float,
    max_level: AssuranceLevel | str | None = None,
    replaces: str | None = None,
    by: str,
    at: float,
) -> TemporaryGrant:
    """:return: a temporary grant for ``ref`` issued ``at``, checked (the store checks it again).

    :param ref: the spare MIE (a template's ref is replaced by the registration or enrolment
        with the verified credential's or the badge's).
    :param id_nat: the professional it is bound to.
    :param reason: ``pvd`` or ``unannounced``.
    :param expires_in: seconds until it expires, above 0 and at most :data:`MAX_TEMPORARY_S`.
    :param max_level: its ceiling; ``None``: :data:`DEFAULT_CAP` of the reason.
    :param replaces: the lost MIE's ref (``badge:…``, ``fido2:…``), if any.
    :param by: who granted it (an operator, an API client).
    :param at: now, seconds since the epoch.
    :raises StoreInputError: a reason, duration or level out of these bounds, or a bad
        ref, idNat, ``replaces`` or ``by`` (:func:`mie.store.base.check_grant`).
    """
    cap = DEFAULT_CAP.get(reason) if isinstance(reason, str) else None
    if cap is None:
        raise StoreInputError(
            f"A temporary MIE's reason must be one of {', '.join(sorted(DEFAULT_CAP))}"
        )
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not (math.isfinite(expires_in) and 0 < expires_in <= MAX_TEMPORARY_S)
    ):
        raise StoreInputError(
            f"A temporary MIE must expire in more than 0 and at most {MAX_TEMPORARY_S} s (7 days)"
        )
    level = cap if max_level is None else grant_level(max_level)
    return base.check_grant(
        base.TemporaryGrant(
            ref=ref,
            id_nat=id_nat,
            reason=reason,
            issued_at=float(at),
            expires_at=float(at) + float(expires_in),
            max_level=level.value,
            replaces=replaces,
            by=by,
        )
    )


def _iso(seconds: float) -> str:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


__all__ = [
    "DEFAULT_CAP",
    "GRANT_LEVELS",
    "MAX_TEMPORARY_S",
    "cap_level",
    "check_lifecycle",
    "check_temporary",
    "grant_level",
    "new_grant",
    "revoked_error",
]
