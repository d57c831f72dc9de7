"""The MIE lifecycle at the desk (issue 11 plan §5.3): revocations (``mie desfire revoke``,
``mie fido revoke``) and temporary MIEs (``--temporary`` on ``mie fido register`` and ``mie
desfire enroll``), each recorded in the store's audit chain of node ``cli:<hostname>``.

A revocation is written to the store every node reads at every verification (plan D7): the
badge or key is refused everywhere from the next verification on. Revoking a revoked MIE
changes nothing and exits 0, showing the first revocation. A temporary MIE is a real badge or
key granted to one professional until an expiry (at most 7 days), capped at ``substantial``
(``pvd``) or ``low`` (``unannounced``, unless ``--max-level substantial``); ``--replaces REF
--replaces-reason R`` revokes the MIE it stands in for once the new one is written.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from mie._cli.output import emit_json
from mie._cli.state import UsageError

if TYPE_CHECKING:
    from mie.audit import AuditStamp
    from mie.store.base import MieRef, Revocation, Store, TemporaryGrant

AUDIT_RETRIES = 3
"""Tries of an audit record whose place in the chain another writer took meanwhile."""
REVOCATION_REASONS = ("lost", "stolen", "damaged", "left", "compromised", "other")
"""Why a MIE is revoked (:data:`mie.store.base.REVOCATION_REASONS`)."""
REPLACED_REASONS = ("lost", "stolen", "damaged")
"""Why the MIE a temporary one replaces is revoked."""
_DURATION = re.compile(r"([0-9]{1,7})([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def cli_node() -> str:
    """:return: the audit node (and actor) of this machine's CLI: ``cli:<hostname>``."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()) or "localhost"
    return f"cli:{host}"[:64]


def parse_duration(value: str, option: str = "--expires") -> float:
    """:return: seconds of ``N``, ``Ns``, ``Nm``, ``Nh`` or ``Nd``.

    :raises UsageError: any other form.
    """
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise UsageError(f"{option} {value[:20]!r}: a duration such as 3600, 90m, 12h or 7d")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


def record(store: Store, event: Any) -> AuditStamp:
    """Append ``event`` to the store's chain of :func:`cli_node`, retried when another writer
    of that chain took its place meanwhile.

    :raises AuditUnavailableError: the store failed, or the chain stayed taken.
    """
    from mie.audit import AuditTrail, AuditUnavailableError, StoreSink

    node = cli_node()
    for attempt in range(AUDIT_RETRIES):
        trail = AuditTrail(node, [StoreSink(store, node)])
        before = trail.heads()[0]
        try:
            return trail.append(event)
        except AuditUnavailableError:
            # Another writer of this chain (a second desk on this host) took the place when
            # the head moved meanwhile: read it again and retry. Otherwise the store failed.
            if attempt == AUDIT_RETRIES - 1 or store.audit_head(node) == before:
                raise
    raise AssertionError("Unreachable")  # pragma: no cover


def mie_of(ref: MieRef) -> dict[str, Any]:
    """:return: the ``mie`` member of an audit record about ``ref``."""
    return {
        "kind": "desfire" if ref.kind == "badge" else "fido2",
        "serial": None,
        "credential": str(ref),
        "evidence": None,
    }


@dataclass(frozen=True)
class Revoked:
    """A revocation done (or found): the revocation kept, whether it was there already, where
    it was audited."""

    revocation: Revocation
    already: bool
    audit: AuditStamp

    def to_json(self) -> dict[str, Any]:
        """:return: the service's revocation JSON, ``already_revoked`` and ``audit`` added."""
        import datetime as dt

        from mie.audit import format_time

        revoked = self.revocation
        return {
            "mie": str(revoked.ref),
            "reason": revoked.reason,
            "note": revoked.note,
            "revoked_at": format_time(dt.datetime.fromtimestamp(revoked.revoked_at, dt.UTC)),
            "by": revoked.by,
            "node": cli_node(),
            "already_revoked": self.already,
            "audit": {"node": self.audit.node, "seq": self.audit.seq},
        }


def revoke(store: Store, ref: MieRef, reason: str, note: str | None) -> Revoked:
    """Revoke ``ref`` in ``store`` (idempotent: a revoked MIE keeps its first revocation) and
    audit it.

    :raises CredentialUnknownError: a FIDO2 credential the store does not hold (exit 1).
    :raises StoreInputError: a note of the wrong form (exit 2).
    """
    from mie.audit import AuditEvent
    from mie.store.base import Revocation

    asked = Revocation(ref, reason, note, time.time(), cli_node())
    prior = store.lifecycle(ref)
    kept = store.revoke(asked)
    # The store keeps the first revocation: one there before, or another than the one asked
    # (another desk revoked it meanwhile), means it was revoked already.
    already = (prior is not None and prior.revocation is not None) or (
        (kept.reason, kept.note, kept.by) != (asked.reason, asked.note, asked.by)
        or abs(kept.revoked_at - asked.revoked_at) > 0.001
    )
    event = AuditEvent(
        "revoke",
        client=cli_node(),
        mie=mie_of(ref),
        reasons=(f"revoked ({kept.reason})" + (" already" if already else ""),),
        detail={"reason": kept.reason, "note": kept.note, "already": already},
    )
    return Revoked(kept, already, record(store, event))


def print_revoked(done: Revoked, as_json: bool) -> None:
    """Print a revocation: JSON, or one line."""
    if as_json:
        emit_json(done.to_json())
        return
    shown = done.to_json()
    verb = "Already revoked" if done.already else "Revoked"
    click.echo(
        f"{verb}: {shown['mie']} ({shown['reason']}) at {shown['revoked_at']} by {shown['by']}"
    )


# --temporary


@dataclass(frozen=True)
class TemporaryOptions:
    """What ``--temporary`` and its options asked."""

    reason: str
    expires_in: float
    max_level: str | None
    replaces: str | None
    replaces_reason: str | None

    def grant(self, ref: MieRef, id_nat: str) -> TemporaryGrant:
        """:return: the grant template (the registration or enrolment puts the new MIE's ref).

        :raises StoreInputError: a duration or level out of bounds (exit 2).
        """
        from mie.lifecycle import new_grant

        return new_grant(
            ref,
            id_nat=id_nat,
            reason=self.reason,
            expires_in=self.expires_in,
            max_level=self.max_level,
            replaces=self.replaces,
            by=cli_node(),
            at=time.time(),
        )


def temporary_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a temporary MIE (parameters ``temporary``, ``expires``, ``max_level``,
    ``replaces``, ``replaces_reason``)."""
    options = (
        click.option(
            "--temporary",
            type=click.Choice(("pvd", "unannounced")),
            help="Issue a temporary MIE: a replacement for a lost, stolen or damaged card (pvd) "
            "or for an unannounced arrival; needs --expires.",
        ),
        click.option(
            "--expires",
            metavar="DURATION",
            help="With --temporary: how long it lasts (3600, 90m, 12h, 7d; at most 7 days).",
        ),
        click.option(
            "--max-level",
            type=click.Choice(("low", "substantial")),
            help="With --temporary: its level cap (default: substantial for pvd, low for "
            "unannounced).",
        ),
        click.option(
            "--replaces",
            metavar="REF",
            help="With --temporary: the MIE it replaces (badge:<UID hex> or fido2:<id>).",
        ),
        click.option(
            "--replaces-reason",
            type=click.Choice(REPLACED_REASONS),
            help="With --replaces: revoke the MIE replaced, for this reason.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def parse_temporary(
    temporary: str | None,
    expires: str | None,
    max_level: str | None,
    replaces: str | None,
    replaces_reason: str | None,
    *,
    rp_id: str | None,
) -> TemporaryOptions | None:
    """:return: the temporary MIE asked, or ``None``.

    :raises UsageError: an option without ``--temporary``, no ``--expires``, a bad duration
        or ref, ``--replaces`` and ``--replaces-reason`` not together.
    """
    if temporary is None:
        given = [
            name
            for name, value in (
                ("--expires", expires),
                ("--max-level", max_level),
                ("--replaces", replaces),
                ("--replaces-reason", replaces_reason),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"{given[0]} goes with --temporary pvd|unannounced")
        return None
    if expires is None:
        raise UsageError("--temporary needs --expires DURATION (at most 7d)")
    if (replaces is None) != (replaces_reason is None):
        raise UsageError("--replaces and --replaces-reason go together")
    seconds = parse_duration(expires)
    if seconds > 7 * 86400:
        raise UsageError(f"--expires {expires}: a temporary MIE lasts at most 7 days")
    if replaces is not None:
        from mie.store.base import MieRef
        from mie.store.errors import StoreInputError

        try:
            replaces = str(MieRef.parse(replaces, rp_id=rp_id or "localhost"))
        except StoreInputError as e:
            raise UsageError(f"--replaces: {e}") from e
    return TemporaryOptions(temporary, seconds, max_level, replaces, replaces_reason)


def granted(
    store: Store, grant: TemporaryGrant, options: TemporaryOptions, *, test: bool = False
) -> dict[str, Any]:
    """Audit a temporary MIE written with its grant, then revoke the MIE it replaces (if
    asked). :return: the grant's JSON, with ``replaced`` (the revocation's JSON or ``None``)
    and ``audit``.

    :raises StoreError: the store failed (the grant is written: the desk can revoke the
        replaced MIE by hand).
    """
    from mie.audit import AuditEvent

    event = AuditEvent(
        "temporary",
        client=cli_node(),
        mie=mie_of(grant.ref),
        identity={"id_nat": grant.id_nat, "test": test},
        level=grant.max_level,
        reasons=(f"temporary MIE ({grant.reason}) until {_iso(grant.expires_at)}",),
        detail={"reason": grant.reason, "expires_at": _iso(grant.expires_at),
                "replaces": grant.replaces},
    )  # fmt: skip
    stamp = record(store, event)
    replaced = None
    if options.replaces is not None and options.replaces_reason is not None:
        from mie.store.base import MieRef

        rp_id = grant.ref.rp_id if grant.ref.kind == "fido2" else "localhost"
        old = MieRef.parse(options.replaces, rp_id=rp_id)
        replaced = revoke(store, old, options.replaces_reason, f"replaced by {grant.ref}"[:200])
    return {
        **grant_json(grant),
        "replaced": replaced.to_json() if replaced is not None else None,
        "audit": {"node": stamp.node, "seq": stamp.seq},
    }


def grant_json(grant: TemporaryGrant) -> dict[str, Any]:
    """:return: the service's TemporaryGrant JSON."""
    return {
        "mie": str(grant.ref),
        "id_nat": grant.id_nat,
        "reason": grant.reason,
        "issued_at": _iso(grant.issued_at),
        "expires_at": _iso(grant.expires_at),
        "max_level": grant.max_level,
        "replaces": grant.replaces,
        "by": grant.by,
    }


def _iso(seconds: float) -> str:
    import datetime as dt

    when = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")
