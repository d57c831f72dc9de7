"""The fuzz targets: one per parser of outside bytes and per emulator APDU handler.

A :class:`Target` has seeds (built at run time from the emulators, ``vectors/``, the real ANS
certificates and NIST PKITS in ``../shared/data``, and the TEST PKI) and a ``prepare`` step that
does the expensive setup once and returns the per-input function. The oracle is in
:func:`tests.fuzz.harness.check`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mie.cards import pkcs15 as client_pkcs15
from mie.cards.cpx import PKCS15_AID, PKCS15_CL_AID, detect_family, parse_ef_sn
from mie.cards.demo import DEMO_AID
from mie.cards.iso7816 import file_size_from_fcp
from mie.core.apdu import CommandApdu, split_response
from mie.core.atr import Atr
from mie.core.errors import MieError
from mie.core.log import PIN_CARRYING_INS, redact_command
from mie.core.processors import SmartCardProtocol
from mie.core.tlv import Tlv, parse_tlvs, tlv_dict
from mie.emulation.base import EmulatedConnection
from mie.emulation.cpx import FID_CERT_AUT
from mie.emulation.iso7816 import EF, Iso7816Card
from mie.transport import replay
from tests.fuzz.context import CPX_KINDS, DATA, Context, run_session
from tests.fuzz.ctap2_targets import CTAP2_TARGETS
from tests.fuzz.desfire_targets import DESFIRE_TARGETS
from tests.fuzz.enrol_targets import ENROL_TARGETS
from tests.fuzz.fido_assertion_targets import FIDO_ASSERTION_TARGETS
from tests.fuzz.fido_input_targets import FIDO_INPUT_TARGETS
from tests.fuzz.fido_targets import FIDO_TARGETS
from tests.fuzz.fido_transport_targets import FIDO_TRANSPORT_TARGETS
from tests.fuzz.fido_verifier_targets import FIDO_VERIFIER_TARGETS
from tests.fuzz.harness import (
    FuzzConnection,
    OracleViolation,
    Reader,
    Run,
    Target,
    records,
    scratch,
    swallow,
)
from tests.fuzz.mds_targets import MDS_TARGETS
from tests.fuzz.relay_targets import RELAY_TARGETS
from tests.fuzz.service_body_targets import SERVICE_BODY_TARGETS
from tests.fuzz.service_targets import SERVICE_TARGETS
from tests.fuzz.trust_targets import TRUST_TARGETS

REPO = Path(__file__).resolve().parents[2]
# --- seeds from the emulators ------------------------------------------------------------------


def _files(context: Context) -> list[bytes]:
    """Every EF of every emulated card, and the FCPs they answer to SELECT."""
    found: list[bytes] = []
    for kind in ("demo", "cps3", "cps4"):
        card = context.card(kind)
        for df in card.mf.walk():
            found += [child.data for child in df.children if isinstance(child, EF)]
    for kind in ("cps3", "cps4", "demo"):
        for command, response in context.record_session(kind):
            if command[1:2] == b"\xa4" and len(response) > 2:
                found.append(response[:-2])
    return found


def _commands(context: Context, kind: str) -> list[bytes]:
    return [command for command, _ in context.record_session(kind)]


def _answers(context: Context, kind: str) -> bytes:
    return records([response for _, response in context.record_session(kind)])


# --- core codecs -------------------------------------------------------------------------------


def _tlv_seeds(context: Context) -> list[bytes]:
    return [*_files(context), b"", b"\x5f\x20\x00", b"\x9f\x1f\x81\x80" + bytes(128)]


def _tlv_prepare(context: Context) -> Run:
    def walk(tlv: Tlv, depth: int) -> None:
        if tlv.constructed and depth < 8:
            for child in tlv.children():
                walk(child, depth + 1)

    def run(data: bytes) -> None:
        swallow(lambda: tlv_dict(data))
        swallow(lambda: Tlv.parse(data))
        items = parse_tlvs(data)
        if b"".join(t.encode() for t in items) != data:
            raise OracleViolation("BER-TLV: re-encoding a strict parse changed the bytes")
        for item in items:
            walk(item, 0)

    return run


def _apdu_seeds(context: Context) -> list[bytes]:
    extended = [
        CommandApdu(0, 0xB0, 0, 0, le=65536).encode(),
        CommandApdu(0, 0xD6, 0, 0, bytes(300), 1000).encode(),
    ]
    return [*_commands(context, "cps3"), *_commands(context, "cps4"), *extended, b"\x90\x00"]


def _apdu_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        _check_masked(data)
        swallow(lambda: split_response(data))
        command = CommandApdu.parse(data)
        extended = len(data) > 5 and data[4] == 0
        if command.encode(extended=extended) != data:
            raise OracleViolation("command APDU: re-encoding a strict parse changed the bytes")

    return run


def _check_masked(data: bytes) -> None:
    """The data field of a PIN-carrying command never appears in clear in a log line."""
    mask = redact_command(data)
    if len(data) < 5 or data[1] not in PIN_CARRYING_INS:
        return
    try:
        command = CommandApdu.parse(data)
    except MieError:
        clear = mask[8:]
    else:
        if not command.data:
            return
        start = 5 if data[4] != 0 else 7
        clear = mask[2 * start : 2 * (start + len(command.data))]
    if clear.strip("*"):
        raise OracleViolation("the data field of a PIN-carrying command is written in clear")


def _atr_seeds(context: Context) -> list[bytes]:
    atrs = [context.atr(kind) for kind in ("demo", *CPX_KINDS)]
    for path in sorted((REPO / "vectors").glob("*.json")):
        atr = json.loads(path.read_text()).get("atr")
        if atr:
            atrs.append(bytes.fromhex(atr))
    return [*atrs, bytes.fromhex("3BDC18FF0000122500648000040100900" + "0")]


def _atr_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        swallow(lambda: detect_family(data))
        Atr.parse(data)

    return run


# --- processor stack and card files ------------------------------------------------------------


def _processors_seeds(context: Context) -> list[bytes]:
    seeds = []
    for config, kind in ((0, "cps3"), (1, "cps4"), (2, "cps3"), (3, "demo")):
        seeds.append(bytes([config]) + _answers(context, kind))
    seeds.append(b"\x02" + records([b"\x61\x10", bytes(16) + b"\x90\x00", b"\x6c\x05"]))
    return seeds


def _processors_prepare(context: Context) -> Run:
    pin_command = CommandApdu(0, 0x20, 0, 1, b"1234\xff\xff\xff\xff")

    def run(data: bytes) -> None:
        reader = Reader(data)
        config = reader.byte()
        connection = FuzzConnection(reader, None)
        protocol = SmartCardProtocol(
            connection, extended_length=bool(config & 1), t0=bool(config & 2)
        )
        if config & 4:
            protocol.configure(extended_length=bool(config & 1), max_command_data=16)
        steps: list[Callable[[], object]] = [
            lambda: protocol.select(PKCS15_AID, p2=0x0C),
            lambda: protocol.select(DEMO_AID),
            lambda: protocol.send_apdu(0, 0xB0, 0x9C, 0, le=12),
            lambda: protocol.transmit(CommandApdu(0, 0xB0, 0, 0, le=256)),
            lambda: protocol.transmit(pin_command),
            lambda: protocol.send_apdu(0, 0x88, 0, 0, bytes(300), 256),
            lambda: protocol.transmit(CommandApdu(1, 0xCA, 0, 0, le=65536)),
        ]
        for step in steps:
            swallow(step)
        if connection.sent.count(pin_command.encode()) > 1:
            raise OracleViolation("a command carrying a PIN was sent twice")

    return run


def _card_files_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        swallow(lambda: file_size_from_fcp(data))
        swallow(lambda: client_pkcs15.parse_odf(data))
        swallow(lambda: client_pkcs15.parse_cdf(data))
        parse_ef_sn(data)

    return run


# --- whole card sessions on fuzz answers --------------------------------------------------------


def _session_target(kind: str, also: tuple[str, ...]) -> Target:
    def seeds(context: Context) -> list[bytes]:
        return [_answers(context, k) for k in (kind, *also)]

    def prepare(context: Context) -> Run:
        atr = context.atr(kind)
        transport = context.transport(kind)
        verifier = context.checker if kind != "demo" else None

        def run(data: bytes) -> None:
            connection = FuzzConnection(data, atr, transport)
            run_session(connection, kind, verifier)()

        return run

    covers = {
        "cps3": "a whole CPS3/CPE login (identify, PIN, signature, chain check) on fuzz answers",
        "cps4": "a whole CPS4/PSI login (identify, PIN, signature, chain check) on fuzz answers",
        "cps3-cl": "a contactless CPS3 identification on fuzz answers",
        "demo": "the demo card session (serial, files, PIN status, VERIFY) on fuzz answers",
    }
    return Target(
        f"session-{kind}",
        covers[kind],
        seeds,
        prepare,
        max_len=16384,
    )


def _card_certificate_seeds(context: Context) -> list[bytes]:
    seeds = []
    for selector, kind in enumerate(("cps3", "cps4", "cpe", "psi")):
        der = context.credentials(kind).authentication.certificate.public_bytes(
            serialization.Encoding.DER
        )
        seeds.append(bytes([selector]) + der)
    for path in sorted((DATA / "ans").glob("*.pem")):
        der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        seeds.append(b"\x00" + der)
    return seeds


def _card_certificate_prepare(context: Context) -> Run:
    kinds = ("cps3", "cps4", "cpe", "psi")
    cards: dict[str, tuple[Iso7816Card, EF]] = {}
    for kind in kinds:
        card = context.card(kind)
        ef = next(
            c
            for df in card.mf.walk()
            for c in df.children
            if isinstance(c, EF) and c.fid == FID_CERT_AUT
        )
        cards[kind] = (card, ef)

    def run(data: bytes) -> None:
        if not data:
            return
        kind = kinds[data[0] % len(kinds)]
        card, ef = cards[kind]
        ef.data = data[1:]
        card.power_on()
        run_session(EmulatedConnection(card), kind, context.checker)()

    return run


# --- vectors -----------------------------------------------------------------------------------


def _vector_seeds(context: Context) -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted((REPO / "vectors").glob("*.json"))]
    vector = replay.Vector("fuzz", "emulator", "cps3", context.atr("cps3"))
    seeds.append(json.dumps(vector.to_json()).encode())
    return seeds


def _vector_prepare(context: Context) -> Run:
    directory = scratch("vector")
    path = directory / "vector.json"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        vector = replay.load_vector(path)
        connection = replay.ReplayConnection(vector)
        for exchange in vector.exchanges[:64]:
            command = _command_bytes(exchange.command)
            swallow(functools.partial(connection.send_and_receive, command))
        swallow(connection.assert_complete)

    return run


def _command_bytes(command: str) -> bytes:
    return bytes.fromhex(command.replace("*", "0"))


# --- emulated cards ------------------------------------------------------------------------------

MAX_EMULATOR_COMMANDS = 300


def _emulator_target(kind: str) -> Target:
    aid = {"demo": DEMO_AID, "cps3-cl": PKCS15_CL_AID}.get(kind, PKCS15_AID)
    select = CommandApdu(0, 0xA4, 0x04, 0x0C, aid).encode()

    def seeds(context: Context) -> list[bytes]:
        commands = _commands(context, kind)
        items = [b"\x00" + len(c).to_bytes(2, "big") + c for c in commands]
        chain = b"\x00" + records([b"\x10\x20\x00\x01\xff" + bytes(255)])
        return [b"".join(items), chain, b"\x20" + records([commands[0]])]

    def prepare(context: Context) -> Run:
        card = context.card(kind)

        def answer(command: bytes) -> bytes:
            try:
                response = card.process(command)
            except Exception as e:
                raise OracleViolation(f"the card raised {type(e).__name__}: {e}") from e
            if len(response) < 2 or response[-2] >> 4 not in (0x6, 0x9) or response[-2] == 0x60:
                raise OracleViolation(f"answer {response[-2:].hex()} is not an ISO status word")
            return response

        def run(data: bytes) -> None:
            card.power_on()
            reader = Reader(data)
            sent = 0
            while sent < MAX_EMULATOR_COMMANDS and reader.left:
                count = reader.byte()
                command = reader.record()
                if command is None:
                    break
                repeats = 1 + count if count < 0x80 else 1 + (count - 0x80) * 8
                for _ in range(min(repeats, MAX_EMULATOR_COMMANDS - sent)):
                    answer(command)
                    sent += 1
            # A chain left open may refuse the first SELECT (6883); the second must succeed.
            if answer(select)[-2:] != b"\x90\x00" and answer(select)[-2:] != b"\x90\x00":
                raise OracleViolation("the card stopped serving a valid SELECT")

        return run

    return Target(
        f"emulator-{kind}",
        f"the emulated {kind} card's APDU handler on fuzz command sequences",
        seeds,
        prepare,
        max_len=16384,
    )


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "tlv",
            "BER-TLV parsing and canonical re-encoding (mie.core.tlv)",
            _tlv_seeds,
            _tlv_prepare,
        ),
        Target(
            "apdu",
            "command APDU decoding, re-encoding, PIN masking (mie.core.apdu, log)",
            _apdu_seeds,
            _apdu_prepare,
        ),
        Target(
            "atr",
            "ATR parsing and CPx family detection (mie.core.atr, mie.cards.cpx)",
            _atr_seeds,
            _atr_prepare,
        ),
        Target(
            "processors",
            "the processor stack (61xx, 6Cxx, chaining, SELECT) on fuzz responses",
            _processors_seeds,
            _processors_prepare,
            max_len=16384,
        ),
        Target(
            "card-files",
            "FCP, ODF, CDF and EF.SN decoders (mie.cards)",
            _tlv_seeds,
            _card_files_prepare,
        ),
        _session_target("cps3", ("cpe",)),
        _session_target("cps4", ("psi",)),
        _session_target("cps3-cl", ()),
        _session_target("demo", ()),
        Target(
            "card-certificate",
            "card certificate path (load, identity, signature, chain) served by an emulated card",
            _card_certificate_seeds,
            _card_certificate_prepare,
            max_len=8192,
            uninstrumented=("mie.emulation",),
        ),
        Target(
            "vector",
            "vector files: load_vector on a file, then replay (mie.transport.replay)",
            _vector_seeds,
            _vector_prepare,
            max_len=65536,
        ),
        *TRUST_TARGETS,
        *DESFIRE_TARGETS,
        *ENROL_TARGETS,
        *RELAY_TARGETS,
        *FIDO_TARGETS,
        *CTAP2_TARGETS,
        *MDS_TARGETS,
        *FIDO_ASSERTION_TARGETS,
        *FIDO_TRANSPORT_TARGETS,
        *FIDO_VERIFIER_TARGETS,
        *FIDO_INPUT_TARGETS,
        *SERVICE_TARGETS,
        *SERVICE_BODY_TARGETS,
        _emulator_target("cps3"),
        _emulator_target("cps3-cl"),
        _emulator_target("cps4"),
        _emulator_target("demo"),
    ]
}
