"""Emulated MIE badges for the authenticator and verifier tests: keys, configurations and
badges personalised with :func:`mie.emulation.desfire_state.personalise` as an enrolment leaves
them (plan §2.3 layout), and a connection that counts what is sent."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection, SmartCardConnectionWrapper
from mie.desfire.config import BadgeConfig, Originality, UidSource
from mie.desfire.record import AuthorityKey, IdentityRecord, div_file
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import (
    FREE,
    BadgeKey,
    BadgeState,
    DataFile,
    FileAccess,
    KeyType,
    personalise,
)
from mie.keys import SoftwareKeyProvider
from mie.request import AuthRequest

h = bytes.fromhex
UID = h("04958caa5c5e80")
OTHER_UID = h("04112233445566")
RPPS = "810001234565"
ISSUER = "CH Test"
NONCE = bytes(range(32))
ORIGIN = "https://iam.chu-exemple.fr"
AUTHORITY_KEY = ec.derive_private_key(0x1D5A_7E57_0001, ec.SECP256R1())
OUTSIDER_KEY = ec.derive_private_key(0x0BAD_0002, ec.SECP256R1())
AUTHORITY = AuthorityKey.of(AUTHORITY_KEY.public_key(), ISSUER, test=True)
LABELS = ("mie-picc", "mie-app", "mie-uid", "mie-read")


def provider(
    seed: int = 0x10, signer: ec.EllipticCurvePrivateKey = AUTHORITY_KEY
) -> SoftwareKeyProvider:
    """:return: master keys ``seed``, ``seed + 1``... under the config's labels, and ``signer``
    as the authority key."""
    masters = {label: bytes([seed + i]) * 16 for i, label in enumerate(LABELS)}
    return SoftwareKeyProvider(masters, {"mie-authority": signer})


KEYS = provider()
OTHER_KEYS = provider(0x60)
OUTSIDER_KEYS = provider(signer=OUTSIDER_KEY)


def config(**change: Any) -> BadgeConfig:
    """:return: the tests' configuration: TEST authority, the emulator's originality key."""
    values: dict[str, Any] = {
        "authorities": (AUTHORITY,),
        "issuer": ISSUER,
        "originality_keys": ("mie-test",),
    }
    if change.get("uid_source") is UidSource.ANTICOLLISION:
        values["random_uid"] = False
    values.update(change)
    return BadgeConfig(**values)


def application_keys(uid: bytes, cfg: BadgeConfig, keys: SoftwareKeyProvider = KEYS) -> list[bytes]:
    """:return: the 5 application keys of the plan's layout for badge ``uid``."""
    labels = cfg.labels
    app = keys.diversify(labels.app, cfg.diversification_input(uid))
    uid_read = keys.diversify(labels.uid_read, cfg.uid_read_input())
    read = keys.diversify(labels.read, cfg.diversification_input(uid))
    return [app, uid_read, read, app, app]


def record(
    uid: bytes = UID,
    cfg: BadgeConfig | None = None,
    *,
    signer: SoftwareKeyProvider = KEYS,
    id_nat: str = RPPS,
) -> bytes:
    """:return: the signed 176-byte record file of badge ``uid``; the same bytes on every call
    (ECDSA signatures are random: the badge name in the store is the file's hash)."""
    cfg = cfg or config()
    cache_key = (uid, cfg.aid, id(signer), id_nat)
    if cache_key not in _RECORDS:
        key_id = AuthorityKey.of(signer.public_key("mie-authority"), "signer").key_id
        fields = IdentityRecord(uid, cfg.aid, id_nat, ISSUER, dt.date(2026, 12, 1), key_id)
        _RECORDS[cache_key] = fields.sign(signer, "mie-authority")
    return _RECORDS[cache_key]


_RECORDS: dict[tuple[bytes, bytes, int, str], bytes] = {}


def badge_state(
    uid: bytes = UID,
    cfg: BadgeConfig | None = None,
    *,
    keys: SoftwareKeyProvider = KEYS,
    file: bytes | None = None,
    random_uid: bool | None = None,
    key_type: KeyType = KeyType.AES,
) -> BadgeState:
    """:return: a badge enrolled for ``cfg`` under ``keys`` (its record ``file``, by default
    its own), with file ``02`` for ``div-file`` and keys of ``key_type``."""
    cfg = cfg or config()
    state = BadgeState(uid, BadgeKey(keys.diversify("mie-picc", cfg.picc_input(uid)), 1))
    personalise(
        state,
        aid=cfg.aid,
        keys=application_keys(uid, cfg, keys),
        record=file if file is not None else record(uid, cfg),
        random_uid=cfg.random_uid if random_uid is None else random_uid,
    )
    application = state.applications[cfg.aid]
    if cfg.uid_source is UidSource.DIV_FILE:
        access = FileAccess(read=FREE, write=0, read_write=0, change=0)
        application.files[2] = DataFile(CommMode.PLAIN, access, bytearray(div_file(uid)))
    if key_type is not KeyType.AES:
        application.keys = [dataclasses.replace(k, key_type=key_type) for k in application.keys]
    return state


def counter_rng(seed: int = 0) -> Callable[[int], bytes]:
    """:return: a deterministic rng for a badge (RndB, TI, random UID)."""
    state = [seed]

    def draw(size: int) -> bytes:
        state[0] += 1
        return bytes((state[0] * 7 + i) & 0xFF for i in range(size))

    return draw


def badge(
    state: BadgeState | None = None,
    *,
    product: str = "ev3",
    rng: Callable[[int], bytes] | None = None,
    **kwargs: Any,
) -> EmulatedDesfire:
    """:return: an emulated badge on ``state`` (by default :func:`badge_state`)."""
    extra: dict[str, Any] = {} if rng is None else {"rng": rng}
    return EmulatedDesfire(state or badge_state(), product=product, **extra, **kwargs)


class Counting(SmartCardConnectionWrapper):
    """Records every APDU sent."""

    def __init__(self, inner: SmartCardConnection) -> None:
        super().__init__(inner)
        self.sent: list[bytes] = []

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(bytes(apdu))
        return super().send_and_receive(apdu)

    @property
    def commands(self) -> list[int]:
        """The INS byte of each APDU sent."""
        return [apdu[1] for apdu in self.sent]


def connect(card: EmulatedDesfire) -> Counting:
    """:return: a counting connection to ``card``, in process."""
    return Counting(EmulatedConnection(card))


def request(**change: Any) -> AuthRequest:
    """:return: the tests' request (possession only unless ``user_verification``)."""
    values: dict[str, Any] = {"nonce": NONCE, "origin": ORIGIN, "user_verification": True}
    values.update(change)
    return AuthRequest(**values)


__all__ = [
    "AUTHORITY",
    "KEYS",
    "OTHER_KEYS",
    "OUTSIDER_KEYS",
    "Counting",
    "Originality",
    "UidSource",
    "application_keys",
    "badge",
    "badge_state",
    "config",
    "connect",
    "counter_rng",
    "record",
    "request",
]
