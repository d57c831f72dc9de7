"""Fuzz targets of FIDO2 inputs that come from outside (the browser's registration, the card's
answers), see :mod:`tests.fuzz.targets`.

``webauthn-registration``: the first input byte picks the reader, the rest is strict JSON. Even:
:meth:`mie.fido.registration.RegistrationData.from_json` (what ``mie fido register --json``
prints, and what an IAM stores or is handed back); odd: ``from_webauthn`` (the W3C
``RegistrationResponseJSON`` a browser posts to the IAM) for a fixed request. Oracle: only mie
errors; accepted data round-trips (``from_json(to_json())`` and ``from_webauthn(to_webauthn())``
give it back, and ``to_json`` of what ``from_json`` accepted is the object read).

``ctap-card-answers``: :class:`mie.transport.ctap.SmartCardCtapDevice` on a scripted connection
(the transport edge) whose answers are the input's length-prefixed records (data ‖ SW1 SW2), to
its SELECT, NFCCTAP_MSG (chained for the long command), NFCCTAP_GETRESPONSE polls and GET
RESPONSE reads. The first byte picks what runs after getInfo: bit 0 a 600-byte command (two
chained pieces), bit 1 the call's cancel event set. The user wait is 50 ms, so a poll loop ends
within the oracle's one second. Oracle: only mie errors; an answer returned is at most the
device's response bound plus one GET RESPONSE piece.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from fido2.hid import CTAPHID

from mie.core import cbor, strictjson
from mie.core.connection import Transport
from mie.fido.registration import RegistrationData
from mie.transport.ctap import AID_FIDO, MAX_RESPONSE, SmartCardCtapDevice
from tests.fuzz.context import Context
from tests.fuzz.harness import FuzzConnection, OracleViolation, Reader, Run, Target, records

NONCE = bytes(range(32))
ORIGIN = "https://iam.chu-exemple.fr"
RP_ID = "iam.chu-exemple.fr"
USER_HANDLE = bytes.fromhex("75736572") * 4
_REQUEST: dict[str, Any] = {
    "nonce": NONCE,
    "origin": ORIGIN,
    "rp_id": RP_ID,
    "user_handle": USER_HANDLE,
}
_MAX_JSON = 64 * 1024
_CFG_LONG, _CFG_CANCEL = 0x01, 0x02
USER_WAIT_S = 0.05


def _registration() -> RegistrationData:
    client_data = json.dumps(
        {
            "type": "webauthn.create",
            "challenge": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "origin": ORIGIN,
            "crossOrigin": False,
        },
        separators=(",", ":"),
    ).encode()
    attestation = cbor.encode({"fmt": "none", "attStmt": {}, "authData": bytes(37)})
    return RegistrationData(
        NONCE, ORIGIN, RP_ID, b"\x01" * 16, USER_HANDLE, client_data, attestation, ("nfc", "usb")
    )


def _registration_seeds(context: Context) -> list[bytes]:
    data = _registration()
    webauthn = data.to_webauthn()
    bare = dict(webauthn)
    del bare["clientExtensionResults"], bare["authenticatorAttachment"]
    return [
        b"\x00" + json.dumps(data.to_json()).encode(),
        b"\x00" + json.dumps({**data.to_json(), "transports": []}).encode(),
        b"\x01" + json.dumps(webauthn).encode(),
        b"\x01" + json.dumps(bare, indent=1).encode(),
    ]


def _registration_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        if not data:
            return
        obj: Any = strictjson.loads(data[1:], "registration", max_bytes=_MAX_JSON)
        if data[0] & 1:
            read = RegistrationData.from_webauthn(obj, **_REQUEST)
        else:
            read = RegistrationData.from_json(obj)
            if read.to_json() != obj:
                raise OracleViolation("webauthn-registration: to_json is not the object read")
        if RegistrationData.from_json(json.loads(json.dumps(read.to_json()))) != read:
            raise OracleViolation("webauthn-registration: the JSON round trip changed the data")
        again = RegistrationData.from_webauthn(
            read.to_webauthn(),
            nonce=read.nonce,
            origin=read.origin,
            rp_id=read.rp_id,
            user_handle=read.user_handle,
        )
        if again != read:
            raise OracleViolation("webauthn-registration: the W3C round trip changed the data")

    return run


def _card_seeds(context: Context) -> list[bytes]:
    info = b"\x00" + cbor.encode({1: ["FIDO_2_0"], 3: AID_FIDO + bytes(8)})
    ok = b"\x00\xa0\x90\x00"
    return [
        b"\x00" + records([b"FIDO_2_0\x90\x00", info + b"\x90\x00", ok]),
        b"\x00" + records([b"U2F_V2\x90\x00", b"\x6d\x00"]),
        b"\x00"
        + records(
            [b"FIDO\x61\x04", b"_2_0\x90\x00", info[:8] + b"\x61\x00", info[8:] + b"\x90\x00"]
        ),
        b"\x01" + records([b"FIDO_2_0\x90\x00", info + b"\x90\x00", b"\x90\x00", b"\x90\x00", ok]),
        b"\x00"
        + records([b"FIDO_2_0\x90\x00", info + b"\x90\x00", b"\x01\x91\x00", b"\x02\x91\x00", ok]),
        b"\x02"
        + records(
            [b"FIDO_2_0\x90\x00", info + b"\x90\x00", b"\x01\x91\x00", b"\x91\x00", b"\x27\x90\x00"]
        ),
        b"\x00" + records([b"\x6a\x82"]),
    ]


def _card_prepare(context: Context) -> Run:
    long_command = b"\x02" + cbor.encode(
        {1: RP_ID, 2: bytes(32), 3: [{"id": bytes(560), "type": "public-key"}]}
    )

    def run(data: bytes) -> None:
        reader = Reader(data)
        config = reader.byte()
        connection = FuzzConnection(reader, None, Transport.CONTACTLESS)
        device = SmartCardCtapDevice(connection, name="fuzz card", user_wait=USER_WAIT_S)
        event = threading.Event()
        if config & _CFG_CANCEL:
            event.set()
        command = long_command if config & _CFG_LONG else b"\x04"
        answer = device.call(CTAPHID.CBOR, command, event)
        if len(answer) > MAX_RESPONSE + 256:
            raise OracleViolation(f"ctap-card-answers: an answer of {len(answer)} bytes")

    return run


FIDO_INPUT_TARGETS = [
    Target(
        "webauthn-registration",
        "RegistrationData.from_json and from_webauthn (the W3C RegistrationResponseJSON an IAM "
        "receives) on strict JSON (mie.fido.registration)",
        _registration_seeds,
        _registration_prepare,
        max_len=65536,
    ),
    Target(
        "ctap-card-answers",
        "SmartCardCtapDevice on a scripted card answering fuzz bytes to SELECT, NFCCTAP_MSG, "
        "NFCCTAP_GETRESPONSE and GET RESPONSE (mie.transport.ctap)",
        _card_seeds,
        _card_prepare,
        max_len=16384,
    ),
]
