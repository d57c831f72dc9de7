"""Fuzz targets of the emulated CTAP 2.1 key (mie.emulation.ctap2) and its state file
(mie.emulation.ctap2_state), see :mod:`tests.fuzz.targets`.

``ctap2-emulator``: the first input byte picks the key (PIN set, a PIN token obtained first,
counter mode, attestation, algorithms, a state file), then each length-prefixed record is one
command: its first byte the command (high bit set: the harness adds a valid pinUvAuthParam when
the payload is a CBOR map; ``0x7F``: a power cycle; ``0x7E``: the harness gets a new PIN token,
bound to the relying party with mc/ga/cm when the next byte is odd, else cm only), the rest the
CBOR parameters. Oracle: every
answer is one status byte, a known CTAP status and never ``ERR_OTHER``, followed on success by
nothing or one canonical CBOR map; ``handle`` raises nothing; the state file still decodes and
holds what the key holds.

``fido-state``: a ``mie-fido-state/1`` document. Oracle: what decodes encodes to a document
that decodes to the same encoding; the key built from it answers getInfo, and each credential
signs a pre-flight assertion.
"""

from __future__ import annotations

import functools
import hashlib
import random
import threading
from typing import Any

from fido2.ctap import CtapError
from fido2.ctap2.pin import PinProtocolV2

from mie.core import cbor
from mie.core.errors import CborFormatError, MieError
from mie.emulation import ctap2_state
from mie.emulation.ctap2 import EmulatedAuthenticator, Touch
from mie.emulation.fido_pki import TestAttestationPki
from tests.fuzz.context import Context
from tests.fuzz.harness import OracleViolation, Reader, Run, Target, records, scratch

PIN = "1234"
RP_ID = "example.com"
CDH = hashlib.sha256(b"mie fuzz client data").digest()
MAX_COMMANDS = 48
POWER_CYCLE = 0x7F
NEW_TOKEN = 0x7E
AUTHENTICATE = 0x80
# The parameter key of pinUvAuthParam and of pinUvAuthProtocol, per command.
_AUTH_KEYS = {0x01: (8, 9), 0x02: (6, 7), 0x0A: (4, 3)}
_STATUSES = frozenset(int(code) for code in CtapError.ERR) - {int(CtapError.ERR.OTHER)}
_NEVER = threading.Event()

_CFG_PIN, _CFG_TOKEN, _CFG_RP_TOKEN, _CFG_STATE = 0x01, 0x02, 0x04, 0x08
_COUNTERS = ("per-credential", "global", "zero", "per-credential")
_ATTESTATIONS = ("packed", "self", "none", "packed")


@functools.cache
def _pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


class _Clock:
    """A clock the harness moves one second per command (the 10 s reset window)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _no_keepalive(status: int) -> None:
    del status


def _build(config: int, state: Any = None) -> tuple[EmulatedAuthenticator, _Clock]:
    clock = _Clock()
    rng = random.Random(config).randbytes  # noqa: S311 (reproducible fuzz runs, not secrets)
    engine = EmulatedAuthenticator(
        PIN if config & _CFG_PIN else None,
        attestation=_ATTESTATIONS[(config >> 4) & 3],  # type: ignore[arg-type]
        counter=_COUNTERS[(config >> 6) & 3],  # type: ignore[arg-type]
        algorithms=(-8, -7) if config & 0x20 and config & 0x10 else (-7, -8),
        backup_eligible=bool(config & 0x40 and config & 0x01),
        touch=Touch.auto(),
        pki=_pki(),
        rng=rng,
        clock=clock,
        state=state,
    )
    return engine, clock


def _token(engine: EmulatedAuthenticator, rp_token: bool) -> bytes | None:
    """A pinUvAuthToken obtained through python-fido2's ClientPin (mc, ga, cm)."""
    from fido2.ctap2.base import Ctap2
    from fido2.ctap2.pin import ClientPin

    permissions = ClientPin.PERMISSION.CREDENTIAL_MGMT
    if rp_token:
        permissions |= ClientPin.PERMISSION.MAKE_CREDENTIAL | ClientPin.PERMISSION.GET_ASSERTION
    try:
        return ClientPin(Ctap2(engine)).get_pin_token(PIN, permissions, RP_ID if rp_token else None)
    except CtapError as e:
        raise OracleViolation(f"the fuzz harness got no PIN token: {e}") from e


def _authenticated(cmd: int, payload: bytes, token: bytes | None) -> bytes:
    """``payload`` with a valid pinUvAuthParam, when it is a CBOR map and a token exists."""
    keys = _AUTH_KEYS.get(cmd)
    if token is None or keys is None:
        return payload
    try:
        params = cbor.decode(payload, canonical=True)
    except CborFormatError:
        return payload
    if not isinstance(params, dict):
        return payload
    if cmd == 0x0A:
        sub = params.get(1)
        sub_params = params.get(2)
        message = bytes([sub if type(sub) is int and 0 <= sub < 256 else 0])
        if sub_params is not None:
            message += cbor.encode(sub_params)
    else:
        hashed = params.get(1 if cmd == 0x01 else 2)
        message = hashed if isinstance(hashed, bytes) else b""
    param_key, protocol_key = keys
    params[param_key] = PinProtocolV2().authenticate(token, message)
    params[protocol_key] = 2
    return cbor.encode(params)


def _check_answer(cmd: int, answer: object) -> None:
    if not isinstance(answer, bytes) or not answer:
        raise OracleViolation(f"command 0x{cmd:02x}: an answer that is not a status byte")
    status, body = answer[0], answer[1:]
    if status != 0:
        if body:
            raise OracleViolation(f"command 0x{cmd:02x}: status 0x{status:02x} with data")
        if status not in _STATUSES:
            raise OracleViolation(f"command 0x{cmd:02x}: status 0x{status:02x} unknown or OTHER")
        return
    if not body:
        return
    try:
        value = cbor.decode(body, canonical=True)
    except CborFormatError as e:
        raise OracleViolation(f"command 0x{cmd:02x}: a response that is not canonical") from e
    if not isinstance(value, dict):
        raise OracleViolation(f"command 0x{cmd:02x}: a response that is not a map")


def _check_state(engine: EmulatedAuthenticator, path: Any) -> None:
    data = path.read_bytes()
    try:
        state = ctap2_state.decode_state(data)
    except MieError as e:
        raise OracleViolation(f"the state file no longer decodes: {e}") from e
    if [c.id for c in state.credentials] != [c.id for c in engine.credentials]:
        raise OracleViolation("the state file does not hold the key's credentials")
    if ctap2_state.encode_state(state) != data:
        raise OracleViolation("the state file does not encode back to itself")


def _ctap2_prepare(context: Context) -> Run:
    directory = scratch("ctap2-emulator")
    path = directory / "state.json"
    _pki()

    def run(data: bytes) -> None:
        reader = Reader(data)
        config = reader.byte()
        state = None
        if config & _CFG_STATE:
            path.unlink(missing_ok=True)
            state = path
        engine, clock = _build(config, state)
        token = None
        if config & _CFG_PIN and config & _CFG_TOKEN:
            token = _token(engine, bool(config & _CFG_RP_TOKEN))
        for count, item in enumerate(reader.records()):
            if count >= MAX_COMMANDS or not item:
                break
            clock.now += 1.0
            cmd = item[0]
            if cmd == POWER_CYCLE:
                engine.power_cycle()
                continue
            if cmd == NEW_TOKEN:
                if config & _CFG_PIN:
                    token = _token(engine, bool(item[1:2]) and item[1] & 1 == 1)
                continue
            payload = item[1:]
            if cmd & AUTHENTICATE:
                cmd &= ~AUTHENTICATE
                payload = _authenticated(cmd, payload, token)
            try:
                answer = engine.handle(cmd, payload, keepalive=_no_keepalive, cancelled=_NEVER)
            except MieError as e:
                raise OracleViolation(f"handle() raised {type(e).__name__}") from e
            _check_answer(cmd, answer)
        if state is not None:
            _check_state(engine, path)

    return run


def _ctap2_seeds(context: Context) -> list[bytes]:
    del context
    user_a = {"id": b"user-a", "name": "alice", "displayName": "Alice"}
    user_b = {"id": b"user-b", "name": "bob"}
    es256 = [{"type": "public-key", "alg": -7}]
    both = [{"type": "public-key", "alg": -8}, {"type": "public-key", "alg": -7}]
    rp = {"id": RP_ID, "name": "Example"}
    rp_hash = hashlib.sha256(RP_ID.encode()).digest()
    unknown = {"type": "public-key", "id": bytes(48)}

    def c(cmd: int, params: Any = None) -> bytes:
        return bytes([cmd]) + (b"" if params is None else cbor.encode(params))

    plain = [
        c(0x04),
        c(0x01, {1: CDH, 2: rp, 3: user_a, 4: es256, 7: {"rk": True}}),
        c(0x01, {1: CDH, 2: rp, 3: user_b, 4: both, 7: {"rk": True}}),
        c(0x02, {1: RP_ID, 2: CDH}),
        c(0x08),
        c(0x08),
        c(0x01, {1: CDH, 2: rp, 3: user_a, 4: es256, 5: [unknown]}),
        c(0x02, {1: RP_ID, 2: CDH, 3: [unknown], 5: {"up": False}}),
        c(0x0B),
        c(0x06, {1: 2, 2: 1}),
        c(0x06, {1: 1, 2: 2}),
        c(0x07),
        c(0x02, {1: RP_ID, 2: CDH}),
    ]
    authenticated = [
        bytes([NEW_TOKEN, 1]),
        c(0x81, {1: CDH, 2: rp, 3: user_a, 4: es256, 7: {"rk": True}}),
        bytes([NEW_TOKEN, 1]),
        c(0x81, {1: CDH, 2: rp, 3: user_b, 4: both, 7: {"rk": True}}),
        bytes([NEW_TOKEN, 0]),
        c(0x8A, {1: 1}),
        c(0x8A, {1: 2}),
        c(0x0A, {1: 3}),
        c(0x8A, {1: 4, 2: {1: rp_hash}}),
        c(0x0A, {1: 5}),
        c(0x8A, {1: 6, 2: {2: unknown}}),
        c(0x8A, {1: 7, 2: {2: unknown, 3: user_b}}),
        c(0x82, {1: RP_ID, 2: CDH, 5: {"uv": True}}),
        bytes([NEW_TOKEN, 1]),
        c(0x82, {1: RP_ID, 2: CDH}),
        c(0x08),
        c(0x06, {1: 2, 2: 1}),
        c(POWER_CYCLE),
        c(0x06, {1: 2, 2: 0x42}),
    ]
    with_rp_token = [
        c(0x81, {1: CDH, 2: rp, 3: user_b, 4: both}),
        c(0x81, {1: CDH, 2: rp, 3: user_a, 4: es256, 7: {"rk": True}}),
        c(0x82, {1: RP_ID, 2: CDH}),
        c(0x8A, {1: 4, 2: {1: rp_hash}}),
        c(0x0A, {1: 5}),
        bytes([NEW_TOKEN, 1]),
        c(0x8A, {1: 4, 2: {1: rp_hash}}),
        c(0x0A, {1: 5}),
    ]
    bad = [c(0x01, {1: CDH}), c(0x02, [1, 2]), bytes([0x06]) + b"\xbf\x01\xff", c(0x42)]
    return [
        bytes([0x00]) + records(plain),
        bytes([_CFG_STATE | 0x50]) + records(plain),
        bytes([0x80 | 0x20]) + records(plain),
        bytes([_CFG_PIN | _CFG_TOKEN]) + records(authenticated),
        bytes([_CFG_PIN | _CFG_TOKEN | _CFG_STATE]) + records(authenticated),
        bytes([_CFG_PIN | _CFG_TOKEN | _CFG_RP_TOKEN | _CFG_STATE]) + records(with_rp_token),
        bytes([_CFG_PIN | _CFG_TOKEN | _CFG_RP_TOKEN | 0x60]) + records(with_rp_token),
        bytes([_CFG_PIN]) + records(plain + bad),
    ]


# --- fido-state ----------------------------------------------------------------------------------


def _state_seeds(context: Context) -> list[bytes]:
    del context
    seeds = []
    directory = scratch("fido-state-seeds")
    for config in (0x00, _CFG_PIN | _CFG_TOKEN, 0x40 | 0x20 | 0x10, 0x80 | _CFG_PIN):
        path = directory / f"seed-{config}.json"
        path.unlink(missing_ok=True)
        engine, _ = _build(config, path)
        rp = {"id": RP_ID, "name": "Example"}
        token = _token(engine, True) if config & _CFG_TOKEN else None
        for index, alg in enumerate((-7, -8)):
            params = {
                1: CDH,
                2: rp,
                3: {"id": bytes([index + 1]) * 8, "name": f"user {index}", "displayName": "é"},
                4: [{"type": "public-key", "alg": alg}],
                7: {"rk": index == 0},
            }
            payload = _authenticated(0x01, cbor.encode(params), token)
            engine.handle(0x01, payload, keepalive=_no_keepalive, cancelled=_NEVER)
            token = _token(engine, True) if token is not None else None
        engine.handle(
            0x02, cbor.encode({1: RP_ID, 2: CDH}), keepalive=_no_keepalive, cancelled=_NEVER
        )
        seeds.append(path.read_bytes())
    return seeds


def _state_prepare(context: Context) -> Run:
    path = scratch("fido-state") / "state.json"
    _pki()

    def run(data: bytes) -> None:
        state = ctap2_state.decode_state(data)
        encoded = ctap2_state.encode_state(state)
        again = ctap2_state.decode_state(encoded)
        if ctap2_state.encode_state(again) != encoded:
            raise OracleViolation("a decoded state does not encode the same twice")
        ctap2_state.save_state(path, encoded)
        engine = EmulatedAuthenticator(
            aaguid=state.aaguid,
            counter=state.counter_mode,  # type: ignore[arg-type]
            backup_eligible=state.backup_eligible,
            pki=_pki(),
            state=path,
        )
        _check_answer(0x04, engine.handle(0x04, b"", keepalive=_no_keepalive, cancelled=_NEVER))
        for credential in state.credentials[:4]:
            request = {
                1: credential.rp_id,
                2: CDH,
                3: [{"type": "public-key", "id": credential.id}],
                5: {"up": False},
            }
            answer = engine.handle(
                0x02, cbor.encode(request), keepalive=_no_keepalive, cancelled=_NEVER
            )
            _check_answer(0x02, answer)
            if answer[0] != 0:
                raise OracleViolation(f"a stored credential does not sign: 0x{answer[0]:02x}")

    return run


CTAP2_TARGETS = [
    Target(
        "ctap2-emulator",
        "the emulated CTAP 2.1 key's engine on command sequences, with a PIN token and a state "
        "file (mie.emulation.ctap2, ctap2_pin, ctap2_state)",
        _ctap2_seeds,
        _ctap2_prepare,
        max_len=8192,
    ),
    Target(
        "fido-state",
        "mie-fido-state/1 documents: strict reader, round trip, the key built from one signs "
        "(mie.emulation.ctap2_state)",
        _state_seeds,
        _state_prepare,
        max_len=16384,
    ),
]
