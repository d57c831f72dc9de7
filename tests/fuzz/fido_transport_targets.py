"""Fuzz targets of the emulated key's transports (mie.emulation.fido_applet), see
:mod:`tests.fuzz.targets`.

``fido-applet``: the first input byte picks the key (bit 0: a PIN set; bit 1: the user never
touches, each wait ending in ``USER_ACTION_TIMEOUT`` after 10 ms; bit 2: the harness selects
the applet first), then each length-prefixed record is one APDU to
:meth:`EmulatedFidoApplet.process` (a 1-byte ``FF`` record: a power cycle). Oracle: every answer
ends with a status word the applet can give (``9000``, ``9100``, ``61xx``, ``6700``, ``6985``,
``6A82``, ``6A86``, ``6D00``, ``6E00``), never ``6F00`` (an internal failure); an NFCCTAP answer
that completes starts with a CTAP status that is not ``ERR_OTHER`` (the engine failed);
``process`` raises nothing (no pull is configured, so :class:`CardGone` is a finding too).
"""

from __future__ import annotations

import functools

from fido2.ctap import CtapError

from mie.core import cbor
from mie.emulation.base import CardGone
from mie.emulation.ctap2 import EmulatedAuthenticator, Touch
from mie.emulation.fido_applet import AID_FIDO, EmulatedFidoApplet
from mie.emulation.fido_pki import TestAttestationPki
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records

PIN = "1234"
MAX_APDUS = 24
POWER_CYCLE = b"\xff"
SELECT = bytes.fromhex("00A4040008") + AID_FIDO
_CFG_PIN, _CFG_NEVER, _CFG_SELECT = 0x01, 0x02, 0x04
_SW1 = frozenset({0x90, 0x91, 0x61})
_SW = frozenset({0x6700, 0x6985, 0x6A82, 0x6A86, 0x6D00, 0x6E00})


@functools.cache
def _pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


def _msg(payload: bytes, *, p1: int = 0x80, le: bytes = b"\x00") -> bytes:
    return bytes([0x80, 0x10, p1, 0x00, len(payload)]) + payload + le


def _applet_seeds(context: Context) -> list[bytes]:
    rp = {"id": "example.com", "name": "Example"}
    user = {"id": b"user-0001", "name": "alice"}
    make = b"\x01" + cbor.encode(
        {1: bytes(32), 2: rp, 3: user, 4: [{"type": "public-key", "alg": -7}]}
    )
    get = b"\x02" + cbor.encode({1: "example.com", 2: bytes(32)})
    chained = bytes([0x90, 0x10, 0x80, 0x00, 100]) + make[:100]
    rest = make[100:]
    key_agreement = _msg(b"\x06" + cbor.encode({1: 2, 2: 2}))
    return [
        bytes([_CFG_SELECT]) + records([_msg(b"\x04")]),
        bytes([0]) + records([SELECT + b"\x00", _msg(b"\x04"), bytes.fromhex("00C0000000")]),
        bytes([_CFG_SELECT]) + records([_msg(make), bytes.fromhex("00C0000000"), _msg(get)]),
        bytes([_CFG_SELECT | _CFG_PIN]) + records([chained, _msg(rest), key_agreement]),
        bytes([_CFG_SELECT | _CFG_NEVER])
        + records([_msg(b"\x0b"), bytes.fromhex("8011000000"), bytes.fromhex("8011110000")]),
        bytes([_CFG_SELECT]) + records([_msg(b"\x04", p1=0x00), POWER_CYCLE, SELECT]),
        bytes([_CFG_SELECT]) + records([bytes.fromhex("0001000000"), bytes.fromhex("8410000000")]),
    ]


def _applet_prepare(context: Context) -> Run:
    pki = _pki()

    def run(data: bytes) -> None:
        reader = Reader(data)
        config = reader.byte()
        touch = Touch.never() if config & _CFG_NEVER else Touch.auto()
        engine = EmulatedAuthenticator(
            PIN if config & _CFG_PIN else None, pki=pki, touch=touch, touch_timeout=0.01
        )
        applet = EmulatedFidoApplet(engine)
        applet.power_on()
        apdus = list(reader.records())[:MAX_APDUS]
        if config & _CFG_SELECT:
            apdus.insert(0, SELECT)
        try:
            for apdu in apdus:
                if apdu == POWER_CYCLE:
                    applet.reset()
                    continue
                try:
                    answer = applet.process(apdu)
                except CardGone as e:
                    raise OracleViolation(f"fido-applet: the key left the field: {e}") from e
                _judge(apdu, answer)
        finally:
            applet.power_off()

    return run


def _judge(apdu: bytes, answer: bytes) -> None:
    if len(answer) < 2:
        raise OracleViolation(f"fido-applet: an answer of {len(answer)} bytes, no status word")
    sw = int.from_bytes(answer[-2:], "big")
    if sw >> 8 not in _SW1 and sw not in _SW:
        raise OracleViolation(f"fido-applet: status word {sw:04X}")
    if sw == 0x9100 and len(answer) != 3:
        raise OracleViolation(f"fido-applet: 9100 with {len(answer) - 2} status bytes")
    nfcctap = len(apdu) >= 2 and apdu[0] in (0x80, 0x90) and apdu[1] in (0x10, 0x11)
    completes = sw == 0x9000 or sw >> 8 == 0x61
    if nfcctap and apdu[0] == 0x80 and completes:
        if len(answer) < 3:
            raise OracleViolation("fido-applet: an NFCCTAP answer without its CTAP status")
        if answer[0] == CtapError.ERR.OTHER:
            raise OracleViolation("fido-applet: the CTAP engine failed (ERR_OTHER)")


FIDO_TRANSPORT_TARGETS = [
    Target(
        "fido-applet",
        "the emulated key's FIDO applet (NFCCTAP) on APDU sequences: SELECT, NFCCTAP_MSG with "
        "chaining, 9100 polling and cancel, 61xx GET RESPONSE, power cycles "
        "(mie.emulation.fido_applet)",
        _applet_seeds,
        _applet_prepare,
        max_len=8192,
    ),
]
