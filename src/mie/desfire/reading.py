"""The reader side of a MIE badge session, shared by the live authentication
(:class:`mie.desfire.authenticator.DesfireAuthenticator`) and the verifier's replay
(:mod:`mie.desfire.verify`), issue 9 plan §2.2.

:func:`read_identity` runs these steps on a :class:`~mie.desfire.session.DesfireSession`:

1. ``originality_read`` ``plain`` only (and ``originality`` not ``off``): Read_Sig at PICC
   level, before any authentication, in clear;
2. for ``anticollision``, the reader's UID (``FF CA 00 00 00``, a static 7-byte UID);
3. SelectApplication;
4. the real UID and the record-read key (key 2, diversified from ``UID ‖ AID ‖ system id``):
   ``get-card-uid`` (the default, the only source that works with random UID on) authenticates
   with the shared UID-read key (key 1), sends GetCardUID, then re-authenticates with key 2
   (EV2NonFirst); ``div-file`` reads file ``02`` in plain (:func:`~mie.desfire.record.div_file`)
   then authenticates with key 2 (EV2First); ``anticollision`` authenticates with key 2;
5. ReadData of the 176-byte record file ``01`` in FULL mode;
6. ``originality_read`` ``full`` (the default; ``originality`` not ``off``): Read_Sig last,
   inside the session that read the record, in CommMode.Full.

Why the default is ``full``: the originality signature is static (an ECDSA signature over the
real UID), so read in clear before authenticating, it identifies the badge to any reader,
which random UID is there to prevent. Inside the session it is enciphered under that session's
keys and differs at every activation (the badge's RndB); only a reader holding the
record-read key sees it. What this rests on (the ``ntag424`` crate, which follows NXP's NTAG
424 DNA documents, and proxmark3) and what stays inferred [I] for DESFire EV2/EV3 is in
:data:`mie.desfire.constants.COMMAND_MODES`; a badge that
refuses it inside a session is read with ``plain`` (trackable). Sent last, a ``911C`` from an
EV1 badge (no signature) ends a session that has nothing left to do.

An EV1 badge authenticates with AuthenticateAES instead (EV1 secure messaging). RndA is
:class:`BoundRndA` of the request's challenge (plan D4), so the same steps against the
transcript reproduce the session byte for byte. ``91AE`` to an authentication is diagnosed
with an unauthenticated GetKeySettings: DES/3DES keys raise
:class:`~mie.desfire.errors.LegacyCryptoError` unless the configuration opts in to legacy
crypto (then the authentication runs again in ISO ``1A`` mode, :mod:`mie.hazmat`), AES keys
:class:`~mie.desfire.errors.DesfireAuthenticationError` (``key_mismatch``).

The sequence of commands (plan D5), with the 176-byte record in 4 response frames:

- ``anticollision``: GET DATA (reader), Select, EV2First (2 APDUs), ReadData (4 APDUs);
- ``get-card-uid``: Select, EV2First (2), GetCardUID, EV2NonFirst (2), ReadData (4);
- originality on, ``full``: + Read_Sig last (2 APDUs: 64 enciphered bytes and the 8-byte MAC
  are 72 bytes, two frames of at most 59 [I, the frame size]); ``plain``: + Read_Sig first
  (1 APDU, 56 bytes).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from mie.core.channel import CommMode
from mie.core.errors import BadResponseError, UnsupportedCardError
from mie.desfire import constants as c
from mie.desfire.config import BadgeConfig, Originality, OriginalityRead, UidSource
from mie.desfire.errors import (
    DesfireAuthenticationError,
    DesfireStatusError,
    LegacyCryptoError,
)
from mie.desfire.evidence import (
    MAX_EXCHANGE_BYTES,
    MAX_EXCHANGES,
    BadgeScheme,
    TranscriptExchange,
)
from mie.desfire.record import DIV_FILE_SIZE, RECORD_FILE_SIZE, UID_SIZE, uid_from_div_file
from mie.desfire.session import DesfireSession
from mie.desfire.types import KeyType
from mie.keys.base import KeyProvider
from mie.transport.replay import RecordingConnection

logger = logging.getLogger(__name__)

KEY_UID_READ = 1
"""The application key the shared UID-read key sits in."""
KEY_READ = 2
"""The application key that reads the record."""
RECORD_FILE = 0x01
DIV_FILE = 0x02
RND_A_CONTEXT = b"mie desfire RndA\x00"
CHALLENGE_SIZE = 64
_MAX_RND = 32
EV1_MAJOR = 0x01
RANDOM_UID_PREFIX = 0x08


class BoundRndA:
    """RndA bound to the request (plan D4): the ``i``-th value drawn is
    ``SHA-256(RND_A_CONTEXT ‖ challenge ‖ i)[:n]``, ``i`` counting the authentications of the
    session from 0.

    It ties the badge's answer (``E(TI ‖ RndA' ‖ …)``) to the request's nonce and origin; a
    predictable RndA gains nothing without the key.

    :param challenge: ``SHA-256(origin) ‖ SHA-256(nonce)`` (:attr:`AuthRequest.challenge`).
    :raises ValueError: not 64 bytes.
    """

    def __init__(self, challenge: bytes) -> None:
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_SIZE:
            raise ValueError(f"A bound challenge is {CHALLENGE_SIZE} bytes")
        self._challenge = challenge
        self._index = 0

    def __call__(self, size: int) -> bytes:
        """:return: the next RndA of ``size`` bytes (8 or 16; at most 32).

        :raises ValueError: a size out of range, or a 256th value.
        """
        if not 0 < size <= _MAX_RND:
            raise ValueError(f"RndA of {size} bytes: 1 to {_MAX_RND}")
        if self._index > 0xFF:
            raise ValueError("A badge session draws at most 256 RndA values")
        index = self._index
        self._index += 1
        digest = hashlib.sha256(RND_A_CONTEXT + self._challenge + bytes([index])).digest()
        return digest[:size]

    def __repr__(self) -> str:
        return f"BoundRndA(drawn={self._index})"


@dataclass(frozen=True)
class SessionOutcome:
    """What :func:`read_identity` read from the badge.

    :param scheme: the secure messaging the record was read under.
    :param uid: the real UID, as the session established it.
    :param record: the 176-byte record file.
    :param originality: the originality signature, or ``None`` (not read, or the badge has
        none).
    """

    scheme: BadgeScheme
    uid: bytes
    record: bytes
    originality: bytes | None


def read_identity(
    session: DesfireSession,
    config: BadgeConfig,
    keys: KeyProvider,
    *,
    ev1: bool | None = None,
) -> SessionOutcome:
    """Run the reader side of a badge session (the module docstring's steps). The live
    authentication and the verifier's replay both run exactly this.

    :param session: a fresh session (its ``rng`` a :class:`BoundRndA` of the request).
    :param config: which application, keys, UID source and checks.
    :param keys: diversifies the per-badge keys.
    :param ev1: ``True``: EV1 AuthenticateAES; ``False``: EV2; ``None`` (version unknown): EV2,
        then AuthenticateAES if the badge does not know EV2 (``911C``).
    :return: what was read.
    :raises DesfireAuthenticationError: the badge refused the key (``key_mismatch``).
    :raises LegacyCryptoError: the application has DES/3DES keys and ``config.legacy`` is off.
    :raises UnsupportedCardError: ``config.require_ev2`` and the badge is (or answers as) EV1.
    :raises CardCryptogramError: the badge's answer does not carry RndA'.
    :raises ResponseIntegrityError: a response MAC does not verify (no data returned).
    :raises DesfireStatusError: another status (e.g. no such application).
    :raises BadResponseError: an answer of the wrong size.
    :raises KeyProviderError: the key provider failed.
    """
    return _Reader(session, config, keys, ev1).run()


class _Reader:
    """The steps of :func:`read_identity`, with the scheme it settled on."""

    def __init__(
        self, session: DesfireSession, config: BadgeConfig, keys: KeyProvider, ev1: bool | None
    ) -> None:
        self.session = session
        self.config = config
        self.keys = keys
        self.scheme = BadgeScheme.EV1_AES if ev1 else BadgeScheme.EV2
        self.scheme_known = ev1 is not None

    def run(self) -> SessionOutcome:
        config, session = self.config, self.session
        if self.scheme is not BadgeScheme.EV2 and config.require_ev2:
            raise UnsupportedCardError(
                "The badge version says EV1: the configuration requires EV2 (require_ev2)"
            )
        early = config.originality_read is OriginalityRead.PLAIN
        originality = self.originality() if early else None
        source = config.uid_source
        if source is UidSource.ANTICOLLISION:
            uid = session.reader_uid()
            if len(uid) != UID_SIZE or uid[0] == RANDOM_UID_PREFIX:
                raise BadResponseError(
                    f"The reader gives a {len(uid)}-byte UID starting {uid[0]:02X}: not a static "
                    "7-byte UID (uid_source anticollision needs random UID off)"
                )
        session.select_application(config.aid)
        if source is UidSource.GET_CARD_UID:
            uid_key = self.keys.diversify(config.labels.uid_read, config.uid_read_input())
            self.authenticate(KEY_UID_READ, uid_key, first=True)
            uid = session.get_card_uid()
            self.authenticate(KEY_READ, self.read_key(uid), first=False)
        else:
            if source is UidSource.DIV_FILE:
                data = session.read_data(DIV_FILE, 0, DIV_FILE_SIZE, mode=CommMode.PLAIN)
                uid = uid_from_div_file(data)
            self.authenticate(KEY_READ, self.read_key(uid), first=True)
        record = session.read_data(RECORD_FILE, 0, RECORD_FILE_SIZE, mode=CommMode.FULL)
        if not early:
            originality = self.originality()
        return SessionOutcome(self.scheme, uid, record, originality)

    def read_key(self, uid: bytes) -> bytes:
        return self.keys.diversify(self.config.labels.read, self.config.diversification_input(uid))

    def originality(self) -> bytes | None:
        if self.config.originality is Originality.OFF:
            return None
        plain = self.config.originality_read is OriginalityRead.PLAIN
        mode = CommMode.PLAIN if plain else CommMode.FULL
        try:
            return self.session.read_signature(mode=mode)
        except DesfireStatusError as e:
            # An EV1 badge has no Read_Sig: the verifier decides what a missing one means.
            if e.status is not c.Status.ILLEGAL_COMMAND:
                raise
            logger.info("The badge has no originality signature (Read_Sig refused)")
            return None

    def authenticate(self, key_no: int, key: bytes, *, first: bool) -> None:
        try:
            self._authenticate(key_no, key, first=first)
        except DesfireAuthenticationError as e:
            self.diagnose(e)
            self.scheme = BadgeScheme.LEGACY
            self._authenticate(key_no, key, first=first)
        except DesfireStatusError as e:
            unknown = e.command == c.AUTH_EV2_FIRST and e.status is c.Status.ILLEGAL_COMMAND
            if self.scheme_known or not unknown:
                raise
            if self.config.require_ev2:
                # A relay can answer 911C for an EV2 badge: no silent downgrade to EV1.
                raise UnsupportedCardError(
                    "The badge refused EV2 authentication (911C): the configuration requires "
                    "EV2 (require_ev2)"
                ) from e
            logger.info("The badge does not know EV2 authentication: EV1 AuthenticateAES")
            self.scheme, self.scheme_known = BadgeScheme.EV1_AES, True
            self._authenticate(key_no, key, first=first)

    def _authenticate(self, key_no: int, key: bytes, *, first: bool) -> None:
        if self.scheme is BadgeScheme.LEGACY:
            # Loaded only here: a legacy badge under an explicit opt-in (plan D7).
            from mie.hazmat.desfire_legacy import LEGACY_OPT_IN, authenticate_iso

            authenticate_iso(self.session, key_no, key, opt_in=LEGACY_OPT_IN)
        elif self.scheme is BadgeScheme.EV1_AES:
            self.session.authenticate_aes(key_no, key)
        elif first:
            self.session.authenticate_ev2_first(key_no, key)
        else:
            self.session.authenticate_ev2_non_first(key_no, key)
        self.scheme_known = True

    def diagnose(self, refused: DesfireAuthenticationError) -> None:
        """After ``91AE`` (failure path only): the application's key type decides between
        ``legacy_crypto`` and ``key_mismatch``; returns only for DES/3DES keys under the
        opt-in, when the authentication is to be run again in legacy mode."""
        if self.scheme is BadgeScheme.LEGACY:
            raise refused
        try:
            settings = self.session.get_key_settings()
        except DesfireStatusError:
            raise refused from None
        if settings.key_type is KeyType.AES:
            raise refused
        if not self.config.legacy:
            raise LegacyCryptoError(
                f"The badge application {self.config.aid.hex()} has {settings.key_type.name} "
                "keys: DES/3DES badges are refused unless the configuration sets legacy"
            ) from refused
        logger.warning("Legacy DES/3DES badge accepted under the legacy opt-in (no level)")


def transcript(recorder: RecordingConnection) -> tuple[TranscriptExchange, ...]:
    """:return: the exchanges a recorder saw, as evidence transcript entries.

    :raises BadResponseError: more exchanges than evidence holds, or one too long (a badge
        that answered frames for ever, or too much).
    """
    exchanges = recorder.exchanges
    if len(exchanges) > MAX_EXCHANGES:
        raise BadResponseError(
            f"The badge session took {len(exchanges)} exchanges, evidence holds {MAX_EXCHANGES}"
        )
    entries = []
    for exchange in exchanges:
        try:
            command = bytes.fromhex(exchange.command)
        except ValueError:
            # A masked command (PIN-carrying INS): never one of a badge session.
            raise BadResponseError("A badge session sent a PIN-carrying command") from None
        if len(command) > MAX_EXCHANGE_BYTES or len(exchange.response) > MAX_EXCHANGE_BYTES:
            raise BadResponseError(f"A badge session exchange is over {MAX_EXCHANGE_BYTES} bytes")
        entries.append(TranscriptExchange(command, exchange.response))
    return tuple(entries)


__all__ = [
    "KEY_READ",
    "KEY_UID_READ",
    "BoundRndA",
    "SessionOutcome",
    "read_identity",
    "transcript",
]
