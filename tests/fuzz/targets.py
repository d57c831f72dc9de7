"""The fuzz targets: one per parser of outside bytes and per emulator APDU handler.

A :class:`Target` has seeds (built at run time from the emulators, ``vectors/``, the real ANS
certificates and NIST PKITS in ``../shared/data``, and the TEST PKI) and a ``prepare`` step that
does the expensive setup once and returns the per-input function. The oracle is in
:func:`tests.fuzz.harness.check`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import ocsp

from mie.cards import pkcs15 as client_pkcs15
from mie.cards.cpx import PKCS15_AID, PKCS15_CL_AID, detect_family, parse_ef_sn
from mie.cards.demo import DEMO_AID
from mie.cards.iso7816 import MAX_FILE_SIZE, file_size_from_fcp
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
from mie.trust import CrlCache, CrlIndex, CrlSet, ErrorCode, VerificationError, load_certificates
from mie.trust import cache as crl_cache_module
from mie.trust import ocsp as ocsp_module
from mie.trust.parse import load_crl
from tests.fuzz.context import CPX_KINDS, DATA, Context, run_session
from tests.fuzz.harness import FuzzConnection, OracleViolation, Reader, records

REPO = Path(__file__).resolve().parents[2]
Run = Callable[[bytes], None]


@dataclass(frozen=True)
class Target:
    """One fuzz target.

    :param name: the name used by ``make fuzz`` and in reports.
    :param covers: what it covers (one line, for ``docs/reliability.md``).
    :param seeds: the seed inputs.
    :param prepare: expensive setup, once per process; returns the per-input function.
    :param max_len: the longest input the coverage-guided run generates.
    :param uninstrumented: modules left out of coverage (helpers the target runs, not tests).
    """

    name: str
    covers: str
    seeds: Callable[[Context], Iterable[bytes]]
    prepare: Callable[[Context], Run]
    max_len: int = 4096
    uninstrumented: tuple[str, ...] = ()


def _swallow(step: Callable[[], object]) -> None:
    """Run one step of a target; mie's own exceptions are expected answers to bad input."""
    try:
        step()
    except MieError:
        pass


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
        _swallow(lambda: tlv_dict(data))
        _swallow(lambda: Tlv.parse(data))
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
        _swallow(lambda: split_response(data))
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
        _swallow(lambda: detect_family(data))
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
            _swallow(step)
        if connection.sent.count(pin_command.encode()) > 1:
            raise OracleViolation("a command carrying a PIN was sent twice")

    return run


def _card_files_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        _swallow(lambda: file_size_from_fcp(data))
        _swallow(lambda: client_pkcs15.parse_odf(data))
        _swallow(lambda: client_pkcs15.parse_cdf(data))
        parse_ef_sn(data)

    return run


# --- whole card sessions on fuzz answers --------------------------------------------------------


def _session_target(kind: str, also: tuple[str, ...]) -> Target:
    def seeds(context: Context) -> list[bytes]:
        return [_answers(context, k) for k in (kind, *also)]

    def prepare(context: Context) -> Run:
        atr = context.atr(kind)
        transport = context.transport(kind)
        checker = context.checker if kind != "demo" else None

        def run(data: bytes) -> None:
            connection = FuzzConnection(data, atr, transport)
            run_session(connection, kind, checker)()

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
    directory = _scratch("vector")
    path = directory / "vector.json"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        vector = replay.load_vector(path)
        connection = replay.ReplayConnection(vector)
        for exchange in vector.exchanges[:64]:
            command = _command_bytes(exchange.command)
            _swallow(functools.partial(connection.send_and_receive, command))
        _swallow(connection.assert_complete)

    return run


def _command_bytes(command: str) -> bytes:
    return bytes.fromhex(command.replace("*", "0"))


def _scratch(name: str) -> Path:
    """A directory for the files one target writes per input, in memory when the system has
    /dev/shm (the CRL cache calls fsync). Directories of processes that are gone are removed:
    a fuzz process ends inside libFuzzer, which skips Python's exit handlers."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    for stale in base.glob("mie-fuzz-*-*"):
        pid = stale.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    directory = base / f"mie-fuzz-{os.getpid()}-{name}"
    directory.mkdir(exist_ok=True)
    atexit.register(shutil.rmtree, directory, True)
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- certificates, card certificate path, CRLs, OCSP -------------------------------------------


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _certificate_seeds(context: Context) -> list[bytes]:
    seeds = [path.read_bytes() for path in sorted((DATA / "ans").glob("*.pem"))]
    seeds += [_der(x509.load_pem_x509_certificate(s)) for s in seeds]
    seeds += [path.read_bytes() for path in sorted((DATA / "pkits" / "certs").glob("*.crt"))]
    chain = [
        i.certificate for i in [*context.pki.roots.values(), *context.pki.intermediates.values()]
    ]
    seeds.append(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    seeds.append(pkcs7.serialize_certificates(chain, serialization.Encoding.DER))
    seeds.append(pkcs7.serialize_certificates(chain, serialization.Encoding.PEM))
    leaf = context.credentials("cps3").authentication.certificate
    seeds.append(leaf.public_bytes(serialization.Encoding.PEM))
    return seeds


def _certificate_prepare(context: Context) -> Run:
    def run(data: bytes) -> None:
        load_certificates(data, "fuzz")

    return run


def _leaf_and_issuer(context: Context) -> tuple[x509.Certificate, x509.Certificate]:
    leaf = context.credentials("cps3").authentication.certificate
    issuer = next(
        i.certificate
        for i in context.pki.intermediates.values()
        if i.certificate.subject == leaf.issuer
    )
    return leaf, issuer


def _crl_seeds(context: Context) -> list[bytes]:
    seeds = [crl.public_bytes(serialization.Encoding.DER) for crl in context.crl_list]
    seeds.append(context.crl_list[0].public_bytes(serialization.Encoding.PEM))
    leaf, _ = _leaf_and_issuer(context)
    revoked = context.pki.crl(next(iter(context.pki.intermediates)), [leaf.serial_number, 7, 2**64])
    seeds.append(revoked.public_bytes(serialization.Encoding.DER))
    seeds += [path.read_bytes() for path in sorted((DATA / "pkits" / "crls").glob("*.crl"))]
    return seeds


def _crl_prepare(context: Context) -> Run:
    leaf, issuer = _leaf_and_issuer(context)
    verifier = context.verifier()

    def run(data: bytes) -> None:
        _swallow(lambda: load_crl(data, "fuzz"))
        index = CrlIndex.from_bytes(data, "fuzz")
        index.lookup(leaf.serial_number)
        _swallow(lambda: index.signed_by(issuer))
        with_it = dataclasses.replace(verifier, crls=CrlSet.of([index, *context.crls]))
        _swallow(lambda: with_it.verify(leaf))

    return run


def _distribution_point_seeds(context: Context) -> list[bytes]:
    return [crl.public_bytes(serialization.Encoding.DER) for crl in context.crl_list[:2]]


class _Served:
    """What the patched download function answers (the transport edge of the CRL cache)."""

    body = b""


@contextlib.contextmanager
def _patched(module: Any, name: str, replacement: Callable[..., bytes]) -> Iterator[None]:
    """Replace ``module.name`` (a network call) for the duration of one input."""
    if not hasattr(module, name):
        raise RuntimeError(f"{module.__name__}.{name} is gone: update the fuzz targets")
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _served(*args: Any, **kwargs: Any) -> bytes:
    return _Served.body


def _crl_fetch_prepare(context: Context) -> Run:
    leaf, _ = _leaf_and_issuer(context)
    directory = _scratch("crl")
    cache = CrlCache(directory)
    verifier = context.verifier(crl_cache=cache)
    allowed = {ErrorCode.REVOKED, ErrorCode.REVOCATION_UNKNOWN}

    def run(data: bytes) -> None:
        for leftover in directory.iterdir():
            leftover.unlink()
        _Served.body = data
        try:
            with _patched(crl_cache_module, "fetch_url", _served):
                verifier.verify(leaf)
        except VerificationError as e:
            if e.code not in allowed:
                raise OracleViolation(
                    f"a CRL served at the distribution point gave {e.code.value}, not "
                    "revocation_unknown"
                ) from e

    return run


def _crl_cache_prepare(context: Context) -> Run:
    directory = _scratch("crlcache")
    cache = CrlCache(directory)
    good = context.crl_list[0].public_bytes(serialization.Encoding.DER)
    url = "http://127.0.0.1:8088/crl/fuzz.crl"

    def run(data: bytes) -> None:
        for leftover in directory.iterdir():
            leftover.unlink()
        path = cache.path_for(url)
        path.write_bytes(data)
        _Served.body = good
        try:
            cache.load(url)
        except VerificationError as e:
            if e.code is not ErrorCode.REVOCATION_UNKNOWN:
                raise OracleViolation(f"a damaged cache file gave {e.code.value}") from e
            if path.exists() and path.read_bytes() == data:
                raise OracleViolation("a damaged cache file was not moved aside") from e
        with _patched(crl_cache_module, "fetch_url", _served):
            refreshed = cache.get(url, dt.datetime.now(dt.UTC))
        if refreshed is None:
            raise OracleViolation("the CRL cache returned nothing")

    return run


# OCSP CertIDs hash with SHA-1 in practice (RFC 6960, RFC 5019): they identify, not protect.
_SHA1 = hashes.SHA1()  # noqa: S303


def _ocsp_seeds(context: Context) -> list[bytes]:
    leaf, issuer = _leaf_and_issuer(context)
    issuer_key = next(i.key for i in context.pki.intermediates.values() if i.certificate == issuer)
    now = dt.datetime.now(dt.UTC)
    seeds = []
    for status in (
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ):
        revoked_at = now - dt.timedelta(days=1) if status is ocsp.OCSPCertStatus.REVOKED else None
        builder = ocsp.OCSPResponseBuilder().add_response(
            leaf,
            issuer,
            _SHA1,
            status,
            now - dt.timedelta(minutes=1),
            now + dt.timedelta(days=1),
            revoked_at,
            None,
        )
        for encoding in (ocsp.OCSPResponderEncoding.HASH, ocsp.OCSPResponderEncoding.NAME):
            response = builder.responder_id(encoding, issuer).sign(issuer_key, hashes.SHA256())
            seeds.append(response.public_bytes(serialization.Encoding.DER))
    responder = context.credentials("cpe").authentication
    delegated = (
        ocsp.OCSPResponseBuilder()
        .add_response(leaf, issuer, _SHA1, ocsp.OCSPCertStatus.GOOD, now, now, None, None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
        .certificates([responder.certificate])
        .sign(responder.key, hashes.SHA256())
    )
    seeds.append(delegated.public_bytes(serialization.Encoding.DER))
    unsuccessful = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    seeds.append(unsuccessful.public_bytes(serialization.Encoding.DER))
    return seeds


def _ocsp_prepare(context: Context) -> Run:
    leaf, issuer = _leaf_and_issuer(context)

    def run(data: bytes) -> None:
        def post(*args: Any, **kwargs: Any) -> bytes:
            return data

        with _patched(ocsp_module, "_post", post):
            ocsp_module.ocsp_status(
                leaf, issuer, dt.datetime.now(dt.UTC), url="http://127.0.0.1:9/"
            )

    return run


# --- size and nesting: a unit repeated into a large input ----------------------------------------

MAX_REPEATED = 128 * 1024


def _repeated_seeds(context: Context) -> list[bytes]:
    units = [
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----BEGIN X509 CRL-----\r\n",
        b"-----BEGIN PKCS7-----\nMIIB\n",
        b"[",
        b'{"exchanges":[',
        b"\x30\x80",
        b"\x30\x84\x00\x00\x00\x00",
        b"\x7f\x49\x81\x80",
        b"\x00",
    ]
    return [count + unit for unit in units for count in (b"\x00\x10", b"\x10\x00", b"\xff\xff")]


def _repeated_prepare(context: Context) -> Run:
    directory = _scratch("repeated")
    path = directory / "vector.json"

    def run(data: bytes) -> None:
        if len(data) < 3:
            return
        unit = data[2:]
        count = min(int.from_bytes(data[:2], "big") + 1, MAX_REPEATED // len(unit))
        big = unit * count
        _swallow(lambda: load_certificates(big, "fuzz"))
        _swallow(lambda: CrlIndex.from_bytes(big, "fuzz"))
        # Card files are at most 32 KB (mie.cards.iso7816.MAX_FILE_SIZE).
        _swallow(lambda: parse_tlvs(big[: MAX_FILE_SIZE + 1]))
        path.write_bytes(big)
        replay.load_vector(path)

    return run


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
        Target(
            "certificates",
            "certificates in PEM, DER, PKCS#7 (mie.trust.parse.load_certificates)",
            _certificate_seeds,
            _certificate_prepare,
            max_len=16384,
        ),
        Target(
            "crl",
            "CRLs: load_crl, CrlIndex, and a chain check using them",
            _crl_seeds,
            _crl_prepare,
            max_len=16384,
        ),
        Target(
            "crl-fetch",
            "a CRL served at the distribution point, through CrlCache and the verifier",
            _distribution_point_seeds,
            _crl_fetch_prepare,
            max_len=16384,
        ),
        Target(
            "crl-cache",
            "a damaged CRL cache file (CrlCache.load, then get)",
            _distribution_point_seeds,
            _crl_cache_prepare,
            max_len=16384,
        ),
        Target(
            "ocsp",
            "OCSP answers (mie.trust.ocsp.ocsp_status on a fuzz response)",
            _ocsp_seeds,
            _ocsp_prepare,
        ),
        Target(
            "repeated",
            "a unit repeated to 128 KB into the certificate, CRL, vector (and 32 KB TLV) parsers",
            _repeated_seeds,
            _repeated_prepare,
            max_len=256,
            # A probe of time against size: coverage tracing of 128 KB inputs would be the cost.
            uninstrumented=("mie",),
        ),
        _emulator_target("cps3"),
        _emulator_target("cps3-cl"),
        _emulator_target("cps4"),
        _emulator_target("demo"),
    ]
}
