"""Fuzz targets of the DESFire badge data: the identity record file, the badge configuration,
``desfire-session`` evidence, the session and the emulated badge on fuzz bytes, and the badge's
NFC link (see :mod:`tests.fuzz.targets` for the registry).

The enrolment authority is a fixed P-256 scalar, so the runner that makes the seeds and the
processes that judge them agree on it without sharing files.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import itertools
import json
import operator
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core import strictjson
from mie.core.channel import CommMode
from mie.core.connection import SmartCardConnection, Transport
from mie.core.errors import MieError
from mie.desfire import crypto
from mie.desfire.config import BadgeConfig, UidSource
from mie.desfire.evidence import BadgeScheme, DesfireSessionEvidence, TranscriptExchange
from mie.desfire.record import AuthorityKey, IdentityRecord, check_binding, verify
from mie.desfire.session import DesfireSession
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeState, decode_state, encode_state, personalise
from mie.emulation.nfc_target import ATS, MAX_INF, TypeALink
from mie.evidence import MAX_EVIDENCE_BYTES, Evidence
from mie.hazmat import desfire_legacy as legacy
from mie.keys import SoftwareKeyProvider
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records, scratch, swallow

_AUTHORITY = ec.derive_private_key(0x1D5A_7E57_F022, ec.SECP256R1())
_LABEL = "mie-authority"
_UID = bytes.fromhex("04a1b2c3d4e5f6")
_AID = bytes.fromhex("494df0")
_PSI = "0f8fad5b-d9cb-469f-a165-70867728950e"


@functools.cache
def _authority() -> AuthorityKey:
    return AuthorityKey.of(_AUTHORITY.public_key(), "fuzz authority")


def _records() -> list[bytes]:
    provider = SoftwareKeyProvider(signing_keys={_LABEL: _AUTHORITY})
    key_id = _authority().key_id
    records = [
        IdentityRecord(_UID, _AID, "810001234565", "CH Exemple", dt.date(2026, 12, 1), key_id),
        IdentityRecord(_UID, _AID, _PSI, "é" * 15, dt.date(2000, 2, 29), key_id),
        IdentityRecord(bytes(7), bytes(3), "810001234565", "x", dt.date(9999, 12, 31), key_id),
    ]
    return [r.sign(provider, _LABEL) for r in records]


# --- the identity record ---------------------------------------------------------------------


def _record_seeds(context: Context) -> list[bytes]:
    return [*_records(), bytes(176), b""]


def _record_prepare(context: Context) -> Run:
    authority = _authority()

    def run(data: bytes) -> None:
        signed = IdentityRecord.parse(data)
        if signed.record.encode_body() != signed.body:
            raise OracleViolation("identity record: re-encoding a strict parse changed the body")
        if signed.file != data:
            raise OracleViolation("identity record: the parsed file is not the input")
        swallow(lambda: verify(signed, [authority]))
        swallow(lambda: check_binding(signed.record, uid=_UID, aid=_AID))

    return run


# --- the badge configuration -----------------------------------------------------------------


def _config_objects() -> list[dict[str, Any]]:
    full = {
        "format": "mie-badge/1",
        "aid": "494df0",
        "system_id": "4d49452d485350",
        "keys": {"provider": "software", "file": "keys.json"},
        "labels": {"picc": "p", "app": "a", "uid_read": "u", "read": "r", "authority": "k"},
        "authorities": [{"name": "CH", "pem": "authority.pem", "test": True}],
        "issuer": "CH Exemple",
        "uid_source": "div-file",
        "random_uid": True,
        "originality": "optional",
        "originality_keys": ["nxp", "mie-test"],
        "originality_read": "plain",
        "second_factor": {"store": "sqlite:mie.db", "max_failures": 5},
        "legacy": False,
    }
    pkcs11 = {
        "format": "mie-badge/1",
        "keys": {"provider": "pkcs11", "module": "m.so", "token": "mie", "pin_env": "PIN"},
        "uid_source": "anticollision",
        "random_uid": False,
        "second_factor": {"store": "postgresql://127.0.0.1/mie"},
    }
    return [{"format": "mie-badge/1"}, full, pkcs11]


def _config_seeds(context: Context) -> list[bytes]:
    objects = _config_objects()
    return [*(json.dumps(o).encode() for o in objects), json.dumps(objects[1], indent=1).encode()]


def _paths(value: object) -> bool:
    """:return: whether a parsed value holds a string that could leave the scratch directory."""
    if isinstance(value, str):
        return value.startswith("/") or ".." in value or "sqlite://" in value
    if isinstance(value, dict):
        return any(_paths(v) for v in value.values())
    if isinstance(value, list):
        return any(_paths(v) for v in value)
    return False


def _config_prepare(context: Context) -> Run:
    directory = scratch("badge-config")
    (directory / "authority.pem").write_bytes(
        _AUTHORITY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def run(data: bytes) -> None:
        obj = strictjson.loads(data, "fuzz", max_bytes=64 * 1024)
        if _paths(obj):
            return  # the file system outside the scratch directory is not the parser's input
        config = BadgeConfig.from_json(obj, base=directory)
        if len(config.diversification_input(_UID)) not in range(16, 32):
            raise OracleViolation("badge configuration: a diversification input out of 16..31")

    return run


# --- desfire-session evidence ----------------------------------------------------------------


def _evidence_seeds(context: Context) -> list[bytes]:
    transcript = (
        TranscriptExchange(bytes.fromhex("ffca000000"), _UID + bytes.fromhex("9000")),
        TranscriptExchange(bytes.fromhex("905a000003494df000"), bytes.fromhex("9100")),
        TranscriptExchange(bytes.fromhex("9071000002020000"), bytes(16) + bytes.fromhex("91af")),
    )
    record = _records()[0]
    seeds = []
    for originality, scheme in ((bytes(56), BadgeScheme.EV2), (None, BadgeScheme.EV1_AES)):
        evidence = DesfireSessionEvidence(
            bytes(range(32)),
            "https://iam.example.org",
            scheme,
            _AID,
            _UID,
            UidSource.GET_CARD_UID,
            record,
            originality,
            transcript,
        )
        seeds.append(json.dumps(evidence.to_json()).encode())
    return seeds


def _evidence_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        obj = strictjson.loads(data, "fuzz", max_bytes=MAX_EVIDENCE_BYTES)
        evidence = Evidence.from_json(obj)
        if Evidence.from_json(json.loads(json.dumps(evidence.to_json()))) != evidence:
            raise OracleViolation("desfire-session evidence does not round-trip through JSON")
        if isinstance(evidence, DesfireSessionEvidence):
            swallow(lambda: IdentityRecord.parse(evidence.record))

    return run


# --- the session on a badge's answers ---------------------------------------------------------

_KEY = bytes(16)
_SESSION_CALLS = (
    lambda s: s.get_version(),
    lambda s: s.read_signature(),
    lambda s: s.select_application(_AID),
    lambda s: s.authenticate_ev2_first(1, _KEY),
    lambda s: s.get_card_uid(),
    lambda s: s.authenticate_ev2_non_first(2, _KEY),
    lambda s: s.read_data(1, mode=CommMode.FULL),
    lambda s: s.get_file_settings(1),
    lambda s: s.authenticate_aes(0, _KEY),
    lambda s: s.read_data(1, 0, 16, mode=CommMode.MAC),
    lambda s: s.write_data(1, b"x" * 70, mode=CommMode.FULL),
    lambda s: s.get_key_settings(),
    lambda s: s.get_application_ids(),
    lambda s: legacy.authenticate_iso(s, 0, bytes(16), opt_in=legacy.LEGACY_OPT_IN),
    lambda s: s.get_key_version(0),
    lambda s: legacy.change_key_from_legacy(s, 0, _KEY, version=1, opt_in=legacy.LEGACY_OPT_IN),
)


class _Answers(SmartCardConnection):
    """A badge (or relay, or replay file) answering with the input: records of data + SW."""

    def __init__(self, data: bytes) -> None:
        self.reader = Reader(data)

    @property
    def transport(self) -> Transport:
        return Transport.CONTACTLESS

    @property
    def atr(self) -> bytes | None:
        return None

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        answer = self.reader.record()
        if answer is None or len(answer) < 2:
            return b"", 0x91AE
        return answer[:-2], int.from_bytes(answer[-2:], "big")


def _session_seeds(context: Context) -> list[bytes]:
    version = [
        bytes.fromhex("04010133001a0591af"),
        bytes.fromhex("04010103001a0591af"),
        bytes(14) + b"\x91\x00",
    ]
    return [records(version), records([b"\x91\x00"] * 8), records([bytes(17) + b"\x91\xaf"])]


def _session_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        session = DesfireSession(_Answers(data), rng=lambda n: bytes(range(n)))
        for call in _SESSION_CALLS:
            try:
                call(session)
            except MieError:
                pass
            except ValueError as e:
                # Only the refusals made before anything is sent ("needs a session").
                if "session" not in str(e) and "before authenticating" not in str(e):
                    raise

    return run


# --- the emulated badge and its state file ------------------------------------------------------

MAX_BADGE_COMMANDS = 64


def _badge_state() -> BadgeState:
    state = BadgeState.blank(_UID)
    keys = [bytes([i]) * 16 for i in range(5)]
    personalise(state, aid=_AID, keys=keys, record=_records()[0])
    return state


def _badge_seeds(context: Context) -> list[bytes]:
    commands = [
        "9060000000",
        "90af000000",
        "905a000003494df000",
        "90bd0000070100000000000000",
        "9071000002010000",
        "90f5000001010000",
        "903c0000010000",
        "ffca000000",
        "00a4040c07d276000085010100",
    ]
    return [
        records([bytes.fromhex(c) for c in commands]),
        records([bytes.fromhex(commands[0])]),
        records(_legacy_commands()),
    ]


def _legacy_commands() -> list[bytes]:
    """The legacy ISO authentication to the DES PICC key of zeros, then GetKeyVersion and a
    ChangeKey to AES under it: the right bytes for the target's all-zero badge rng and RndA."""
    zero8, key, new = bytes(8), bytes(16), bytes(range(16))
    e_rnd_b = legacy.tdes_cbc_encrypt(key, zero8, zero8)  # RndB = 00…: the badge's rng
    token = legacy.tdes_cbc_encrypt(key, e_rnd_b, zero8 + zero8)  # RndA ‖ RndB', all zeros
    session_key = bytes(16)  # RndA[0:4] ‖ RndB[0:4], twice (single DES)
    iv = legacy.tdes_cmac(session_key, b"\x64\x00")  # GetKeyVersion's CMAC, not sent
    iv = legacy.tdes_cmac(session_key, b"\x00\x00", iv)  # its answer's (version 00, status 00)
    plain = new + b"\x01" + crypto.crc32(b"\xc4\x80" + new + b"\x01")
    cryptogram = legacy.tdes_cbc_encrypt(session_key, iv, plain + bytes(-len(plain) % 8))

    def native(cmd: int, data: bytes) -> bytes:
        return bytes([0x90, cmd, 0, 0, len(data)]) + data + b"\x00"

    return [
        native(0x1A, b"\x00"),
        native(0xAF, token),
        native(0x64, b"\x00"),
        native(0xC4, b"\x80" + cryptogram),
        bytes.fromhex("9071000002000000"),
    ]


def _badge_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        card = EmulatedDesfire(_badge_state(), rng=lambda n: bytes(n))
        card.power_on()
        for count, command in enumerate(Reader(data).records()):
            if count >= MAX_BADGE_COMMANDS:
                break
            try:
                answer = card.process(command)
            except Exception as e:
                raise OracleViolation(f"the badge raised {type(e).__name__}: {e}") from e
            if len(answer) < 2:
                raise OracleViolation(f"answer {answer.hex()} has no status word")

    return run


def _state_seeds(context: Context) -> list[bytes]:
    return [encode_state(_badge_state()), encode_state(BadgeState.blank(_UID))]


def _state_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        swallow(lambda: decode_state(data))

    return run


# --- the NFC target's datagrams (nfcpy's udp link) --------------------------------------------

MAX_DATAGRAMS = 64
_RANDOM_UID_RECORD = b"random-uid"
# The largest frame the link may send: an I-block of MAX_INF bytes and its PCB.
_MAX_FRAME = 1 + MAX_INF
_ISO_DEP_PCBS = frozenset({0x02, 0x03, 0x12, 0x13, 0xA2, 0xA3, 0xC2})


def _datagram(frame: str) -> bytes:
    return b"106A " + frame.encode()


def _activation(uid: bytes) -> list[bytes]:
    def bcc(part: bytes) -> str:
        return (part + bytes([functools.reduce(operator.xor, part, 0)])).hex()

    frames = ["26"]
    if len(uid) == 7:
        cl1, cl2 = b"\x88" + uid[:3], uid[3:]
        frames += ["9320", "9370" + bcc(cl1), "9520", "9570" + bcc(cl2)]
    else:
        frames += ["9320", "9370" + bcc(uid)]
    return [_datagram(f) for f in [*frames, "e080"]]


def _udp_seeds(context: Context) -> list[bytes]:
    session = [
        _datagram("02" + "9060000000"),
        _datagram("03" + "90af000000"),
        _datagram("b2"),
        _datagram("02" + "90af000000"),
        _datagram("13" + "905a000003"),  # a command chained over two I-blocks
        _datagram("02" + "494df000"),
        _datagram("a3"),
        _datagram("03" + "ffca000000"),
        _datagram("c2"),
        _datagram("26"),  # halted: no answer
        _datagram("52"),
        b"RFOFF",
    ]
    static = _activation(_UID)
    # The random UID drawn from the badge's all-zero rng: 08 00 00 00.
    random = [_RANDOM_UID_RECORD, *_activation(b"\x08\x00\x00\x00")]
    long_chain = [*static, *(_datagram("12" + "00" * 250) for _ in range(17))]
    return [
        records([*static, *session]),
        records([*random, *session[:4], b"RFOFF", *random[1:]]),
        records(long_chain),
        records([_datagram("e080"), _datagram("029060000000"), b"106A zz", b"212F 0600ffff0100"]),
    ]


class _WatchedBadge(EmulatedDesfire):
    """The badge, telling the run which APDUs reached it."""

    def __init__(self, state: BadgeState, reached: list[bytes]) -> None:
        super().__init__(state, rng=lambda n: bytes(n))
        self.reached = reached

    def process(self, apdu: bytes) -> bytes:
        self.reached.append(bytes(apdu))
        return super().process(apdu)


def _udp_prepare(context: Context) -> Run:
    state = _badge_state()
    random_state = _badge_state()
    random_state.random_uid = True

    def run(data: bytes) -> None:
        items = list(itertools.islice(Reader(data).records(), MAX_DATAGRAMS))
        random_uid = bool(items) and items[0] == _RANDOM_UID_RECORD
        reached: list[bytes] = []
        badge = _WatchedBadge(copy.deepcopy(random_state if random_uid else state), reached)
        link = TypeALink(badge)
        protocol = False  # an ATS was sent since the last RFOFF or DESELECT
        for datagram in items:
            seen = len(reached)
            try:
                answer = link.answer(datagram)
            except Exception as e:
                # The serving thread would die on it: the card leaves the air for every reader.
                raise OracleViolation(f"the NFC link raised {type(e).__name__}: {e}") from e
            if len(reached) > seen and not protocol:
                raise OracleViolation("an APDU reached the badge before RATS was answered")
            if datagram.startswith(b"RFOFF"):
                if answer is not None:
                    raise OracleViolation("the link answered RFOFF")
                protocol = False
                continue
            if answer is None:
                continue
            if len(answer) > _MAX_FRAME:
                raise OracleViolation(f"a {len(answer)}-byte frame exceeds the reader's FSD")
            if answer == ATS and not protocol:
                protocol = True
            elif protocol and answer[0] not in _ISO_DEP_PCBS:
                raise OracleViolation(f"ISO-DEP answer with PCB {answer[0]:02x}")
            if protocol and answer == b"\xc2":
                protocol = False

    return run


DESFIRE_TARGETS = [
    Target(
        "desfire-record",
        "badge identity record files (IdentityRecord.parse, verify, check_binding)",
        _record_seeds,
        _record_prepare,
        max_len=512,
    ),
    Target(
        "badge-config",
        "badge configuration JSON (BadgeConfig.from_json, authority PEM files read)",
        _config_seeds,
        _config_prepare,
        max_len=8192,
    ),
    Target(
        "desfire-evidence",
        "desfire-session evidence JSON (Evidence.from_json, then the record it carries)",
        _evidence_seeds,
        _evidence_prepare,
        max_len=16384,
    ),
    Target(
        "desfire-session",
        "DesfireSession's whole command set on fuzz answers (stack, channels, types parsers)",
        _session_seeds,
        _session_prepare,
        max_len=4096,
    ),
    Target(
        "desfire-badge",
        "the emulated DESFire badge's APDU handler on fuzz command sequences",
        _badge_seeds,
        _badge_prepare,
        max_len=4096,
    ),
    Target(
        "desfire-nfc-link",
        "the emulated badge's ISO 14443-3/-4 link for nfcpy's udp driver (TypeALink datagrams)",
        _udp_seeds,
        _udp_prepare,
        max_len=8192,
    ),
    Target(
        "badge-state",
        "emulated badge state files (decode_state, mie-badge-state/1)",
        _state_seeds,
        _state_prepare,
        max_len=16384,
    ),
]
