"""The MIE badge authenticator: a DESFire badge on the common :class:`~mie.auth.Authenticator`
model (issue 9 plan §2.2).

:meth:`DesfireAuthenticator.authenticate` drives the badge where the keys are (this process, or
the IAM over a relay: :class:`mie.relay` hands it a connection like any other) and returns
:class:`~mie.desfire.evidence.DesfireSessionEvidence`, the transcript of the session (plan D3):
:func:`~mie.desfire.reading.read_identity` over a recording connection, RndA bound to the
request (:class:`~mie.desfire.reading.BoundRndA`). The checks of the record, the copy, the
originality and the second factor are the verifier's (:mod:`mie.desfire.verify`), which runs the
same session again against the transcript.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

from mie.auth import Authenticator
from mie.core.connection import SmartCardConnection
from mie.core.errors import BadResponseError
from mie.desfire.config import BadgeConfig, BadgeConfigError, open_keys
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence
from mie.desfire.reading import (
    EV1_MAJOR,
    KEY_READ,
    KEY_UID_READ,
    RANDOM_UID_PREFIX,
    BoundRndA,
    SessionOutcome,
    read_identity,
    transcript,
)
from mie.desfire.record import UID_SIZE
from mie.desfire.session import DesfireSession
from mie.desfire.types import ChipVersion, Version
from mie.keys.base import KeyProvider
from mie.request import AuthRequest, UserVerification
from mie.result import AuthenticatorInfo, Identification
from mie.transport.replay import RecordingConnection

logger = logging.getLogger(__name__)


def _kind(version: ChipVersion | None) -> str:
    if version is None:
        return "desfire"
    product = Version(version, version, None, bytes(5), 0, 0).product
    return "desfire" if product == "unknown" else "desfire-" + product.lower().replace(" ", "-")


class DesfireAuthenticator(Authenticator):
    """Authenticates with a MIE DESFire badge (see the module docstring).

    :param connection: the badge connection (PC/SC contactless, NFC, relay, emulated).
    :param config: the badge configuration; ``None`` (no configuration found) identifies, and
        refuses to authenticate.
    :param keys: the key provider; ``None``: :func:`~mie.desfire.config.open_keys` of
        ``config`` for each authentication (opened and closed by it). A provider given here
        stays the caller's to close.
    :param version: what GetVersion answered (the whole :class:`~mie.desfire.types.Version`,
        or the hardware frame the registry probe read); ``None``: not known, EV2 is tried
        first.
    """

    connection: SmartCardConnection

    def __init__(
        self,
        connection: SmartCardConnection,
        config: BadgeConfig | None,
        *,
        keys: KeyProvider | None = None,
        version: Version | ChipVersion | None = None,
    ) -> None:
        self.connection = connection
        self.config = config
        self.keys = keys
        self.hardware = version.hw if isinstance(version, Version) else version
        self._info = AuthenticatorInfo(
            _kind(self.hardware), None, connection.atr, connection.transport
        )

    @property
    def info(self) -> AuthenticatorInfo:
        """What was presented: ``desfire-ev3`` / ``-ev2`` / ``-ev1`` (``desfire`` when the
        version is not known), and the real UID in hex once an authentication read it."""
        return self._info

    def identify(self) -> Identification:
        """Ask the reader for the anticollision UID; no key is used and nothing is verified.

        :return: the badge, with its serial when the UID is a static 7-byte one (a random UID
            identifies nothing), and no identity (only an authentication reads the record).
        """
        try:
            with self.connection.transaction():
                uid = DesfireSession(self.connection).reader_uid()
        except BadResponseError:
            uid = b""
        static = len(uid) == UID_SIZE and uid[0] != RANDOM_UID_PREFIX
        if static:
            self._info = dataclasses.replace(self._info, serial=uid.hex())
        return Identification(self._info, None)

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> DesfireSessionEvidence:
        """Run the badge session for ``request`` and return its transcript.

        The second factor is not asked here: the verifier asks for it
        (:func:`mie.verification.verify_evidence` with ``user=``), so ``user`` and
        ``request.user_verification`` are not consulted.

        :param request: the relying party's nonce and origin (RndA is bound to them).
        :param user: not used (see above).
        :return: the evidence; :attr:`info` then carries the real UID.
        :raises TypeError: ``request`` is not an :class:`~mie.request.AuthRequest`.
        :raises BadgeConfigError: no badge configuration, or it names no key provider.
        :raises DesfireAuthenticationError: the badge refused the key (``key_mismatch``).
        :raises LegacyCryptoError: a DES/3DES application without the legacy opt-in.
        :raises MieError: see :func:`read_identity`.
        """
        if not isinstance(request, AuthRequest):
            raise TypeError(f"authenticate() takes an AuthRequest, not a {type(request).__name__}")
        config = self.config
        if config is None:
            raise BadgeConfigError("No badge configuration: a DESFire badge needs one")
        ev1 = None if self.hardware is None else self.hardware.major == EV1_MAJOR
        recorder = RecordingConnection(self.connection)
        session = DesfireSession(recorder, rng=BoundRndA(request.challenge))
        with _provider(self.keys, config) as keys, self.connection.transaction():
            outcome = read_identity(session, config, keys, ev1=ev1)
        evidence = DesfireSessionEvidence(
            nonce=request.nonce,
            origin=request.origin,
            scheme=outcome.scheme,
            aid=config.aid,
            uid=outcome.uid,
            uid_source=config.uid_source,
            record=outcome.record,
            originality=outcome.originality,
            transcript=transcript(recorder),
        )
        kind = self._info.kind
        if self.hardware is None and outcome.scheme is BadgeScheme.EV1_AES:
            kind = "desfire-ev1"  # only an EV1 badge refuses EV2 authentication
        self._info = dataclasses.replace(self._info, kind=kind, serial=outcome.uid.hex())
        logger.info("DESFire badge session: %d exchanges", len(evidence.transcript))
        return evidence


@contextlib.contextmanager
def _provider(keys: KeyProvider | None, config: BadgeConfig) -> Iterator[KeyProvider]:
    """The given provider (left open), or one opened from the configuration (closed after)."""
    if keys is not None:
        yield keys
        return
    opened = open_keys(config)
    try:
        yield opened
    finally:
        opened.close()


__all__ = [
    "KEY_READ",
    "KEY_UID_READ",
    "BoundRndA",
    "DesfireAuthenticator",
    "SessionOutcome",
    "read_identity",
    "transcript",
]
