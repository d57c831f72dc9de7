"""An emulated CTAP 2.1 security key: a ``fido2.ctap.CtapDevice`` python-fido2 drives in process.

:class:`EmulatedAuthenticator` is one CTAP engine, :meth:`~EmulatedAuthenticator.handle`
(command byte and CBOR parameters in, status byte and CBOR out), with
:meth:`~EmulatedAuthenticator.call` as its ``CtapDevice`` face. It answers authenticatorGetInfo,
authenticatorMakeCredential (ES256 or EdDSA; packed attestation with the TEST batch key and its
``x5c``, self attestation, or none), authenticatorGetAssertion and authenticatorGetNextAssertion
(allowList or discoverable credentials, UP/UV flags, signature counters),
authenticatorClientPIN (protocols 2 and 1, :mod:`mie.emulation.ctap2_pin`), authenticatorReset
(within 10 s of power-up, with a touch), authenticatorCredentialManagement (metadata, enumerate
relying parties and credentials, delete, update the user) and authenticatorSelection.

Requests are read with :func:`mie.core.cbor.decode` in canonical mode: anything else is
``INVALID_CBOR``, a parameter of the wrong type ``CBOR_UNEXPECTED_TYPE``, a missing one
``MISSING_PARAMETER``. Responses are canonical CBOR.

User presence follows :class:`Touch`: at once, after a delay, or never. While the user is
awaited the engine calls ``keepalive(STATUS.UPNEEDED)`` every 100 ms; a set ``cancelled`` event
ends the command with ``KEEPALIVE_CANCEL``, and no touch before ``touch_timeout`` with
``USER_ACTION_TIMEOUT``. :attr:`EmulatedAuthenticator.faults` (:class:`Faults`) holds the test
hooks that make a key misbehave: cleared flags, another relying party's hash, a broken
signature, a key pulled after N commands.

TEST only: the attestation key is the public TEST batch key of :mod:`mie.emulation.fido_pki`.
No repr shows a PIN, a token or a key; nothing logs one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

from mie.core import cbor
from mie.core.errors import CborFormatError
from mie.emulation import ctap2_state
from mie.emulation.ctap2_pin import (
    PERMISSION_CM,
    PERMISSION_GA,
    PERMISSION_MC,
    ClientPin,
    PinState,
    pin_hash,
)
from mie.emulation.ctap2_state import (
    ALGORITHMS,
    MAX_COUNTER,
    MAX_CREDENTIALS,
    MAX_DISCOVERABLE,
    MAX_RP_ID_BYTES,
    KeyState,
    StoredCredential,
    generate_key,
    sign,
)
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki

__all__ = ["EmulatedAuthenticator", "Faults", "StoredCredential", "Touch"]

log = logging.getLogger(__name__)
ERR = CtapError.ERR

Attestation = Literal["packed", "self", "none"]
CounterMode = Literal["per-credential", "global", "zero"]

CMD_MAKE_CREDENTIAL = 0x01
CMD_GET_ASSERTION = 0x02
CMD_GET_INFO = 0x04
CMD_CLIENT_PIN = 0x06
CMD_RESET = 0x07
CMD_GET_NEXT_ASSERTION = 0x08
CMD_CREDENTIAL_MANAGEMENT = 0x0A
CMD_SELECTION = 0x0B

CM_GET_METADATA = 0x01
CM_RPS_BEGIN = 0x02
CM_RPS_NEXT = 0x03
CM_CREDS_BEGIN = 0x04
CM_CREDS_NEXT = 0x05
CM_DELETE = 0x06
CM_UPDATE_USER = 0x07

MAX_MSG_SIZE = 1200
MAX_CREDS_IN_LIST = 8
MAX_CRED_ID_LENGTH = 128
CREDENTIAL_ID_SIZE = 48
MAX_USER_ID = 64
MAX_STRING = 64
NEXT_ASSERTION_WINDOW_S = 30.0
RESET_WINDOW_S = 10.0
"""authenticatorReset is allowed only this long after power-up (CTAP 2.1 §6.6)."""
TOUCH_TIMEOUT_S = 30.0
"""How long a command waits for the user's touch before ``USER_ACTION_TIMEOUT``."""
KEEPALIVE_INTERVAL_S = 0.1
OTHER_RP_ID = "other.example"
"""The relying party whose hash :attr:`Faults.other_rp` ``= True`` puts in authData."""

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_AT = 0x01, 0x04, 0x08, 0x40

_MAP, _BYTES, _TEXT, _INT, _LIST = dict, bytes, str, int, list
_MC_SCHEMA = {1: _BYTES, 2: _MAP, 3: _MAP, 4: _LIST, 5: _LIST, 6: _MAP, 7: _MAP, 8: _BYTES, 9: _INT}
_GA_SCHEMA = {1: _TEXT, 2: _BYTES, 3: _LIST, 4: _MAP, 5: _MAP, 6: _BYTES, 7: _INT}
_PIN_SCHEMA = {1: _INT, 2: _INT, 3: _MAP, 4: _BYTES, 5: _BYTES, 6: _BYTES, 9: _INT, 10: _TEXT}
_CM_SCHEMA = {1: _INT, 2: _MAP, 3: _INT, 4: _BYTES}


@dataclass(frozen=True)
class Touch:
    """When the emulated user touches the key: :meth:`auto`, :meth:`after` or :meth:`never`.

    :param delay: seconds from the start of the wait to the touch; ``None`` never touches.
    """

    delay: float | None = 0.0

    def __post_init__(self) -> None:
        if self.delay is not None and (
            isinstance(self.delay, bool)
            or not isinstance(self.delay, int | float)
            or not 0 <= self.delay < float("inf")
        ):
            raise ValueError(
                f"A touch delay is a finite number of seconds >= 0, not {self.delay!r}"
            )

    @classmethod
    def auto(cls) -> Touch:
        """:return: the user touches at once (no keepalive)."""
        return cls(0.0)

    @classmethod
    def after(cls, seconds: float) -> Touch:
        """:param seconds: the delay before each touch.
        :return: the user touches ``seconds`` after each wait starts.
        :raises ValueError: a negative or non-finite delay."""
        return cls(float(seconds) if type(seconds) is int else seconds)

    @classmethod
    def never(cls) -> Touch:
        """:return: the user never touches: waits end in ``USER_ACTION_TIMEOUT`` or a cancel."""
        return cls(None)


@dataclass
class Faults:
    """Hidden test hooks, off by default; each stays in force until set back.

    :param flags_mask: flag bits (UP 0x01, UV 0x04, BE 0x08) cleared in every authData the
        key returns, which is still signed as sent.
    :param other_rp: put SHA-256 of this relying party id (``True``: ``other.example``) in
        authData instead of the real rpIdHash.
    :param bad_signature: flip one bit of every signature (assertion, self or packed
        attestation).
    :param fail_after: answer this many more commands, then raise ``OSError`` for every
        command (the key pulled); the command that meets the pull is not run.
    """

    flags_mask: int = 0
    other_rp: str | bool | None = None
    bad_signature: bool = False
    fail_after: int | None = None


@dataclass
class _Pending:
    """The credentials a getAssertion left for getNextAssertion."""

    credentials: list[StoredCredential]
    client_data_hash: bytes
    flags: int
    uv: bool
    deadline: float


class EmulatedAuthenticator(CtapDevice):
    """A CTAP 2.1 security key in process; ``EmulatedAuthenticator(pin="1234")`` is a key with
    that PIN set and packed attestation.

    :param pin: the PIN set at construction (4 to 63 UTF-8 bytes), ``None`` for none.
    :param attestation: ``packed`` (TEST batch key, ``x5c``), ``self`` or ``none``.
    :param algorithms: the COSE algorithms offered, by preference (ES256 -7, EdDSA -8).
    :param aaguid: the AAGUID in getInfo and in attested credential data.
    :param counter: ``per-credential`` counters, one ``global`` counter, or ``zero`` (a
        counterless key).
    :param backup_eligible: set the BE flag (a syncable credential).
    :param touch: when the user touches (:meth:`Touch.auto` by default).
    :param touch_timeout: seconds a command waits for a touch before ``USER_ACTION_TIMEOUT``.
    :param pki: the attestation PKI (default: the TEST one of today).
    :param rng: random bytes (credential ids, tokens, IVs).
    :param transports: getInfo's transports.
    :param clock: the monotonic clock of power-up, the reset window and the getNextAssertion
        window (tests move it).
    :param state: the ``mie-fido-state/1`` file: read when it exists (the key's AAGUID, counter
        mode and BE setting must be the ones given, a ``pin`` given must be its PIN), else
        created; every change is written to it, atomically and mode 0600, before the answer
        leaves. A copy of the file makes a clone of the key.
    :raises ValueError: an option out of range, or one the state file contradicts.
    :raises JsonFormatError: the state file is not a valid ``mie-fido-state/1`` document.
    :raises OSError: the state file cannot be created.
    """

    def __init__(
        self,
        pin: str | None = None,
        *,
        attestation: Attestation = "packed",
        algorithms: Sequence[int] = ALGORITHMS,
        aaguid: bytes = EMULATOR_AAGUID,
        counter: CounterMode = "per-credential",
        backup_eligible: bool = False,
        touch: Touch | None = None,
        touch_timeout: float = TOUCH_TIMEOUT_S,
        pki: TestAttestationPki | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        transports: Sequence[str] = ("usb",),
        clock: Callable[[], float] = time.monotonic,
        state: str | os.PathLike[str] | None = None,
    ) -> None:
        if attestation not in ("packed", "self", "none"):
            raise ValueError(f"Unknown attestation {attestation!r}: packed, self or none")
        if counter not in ("per-credential", "global", "zero"):
            raise ValueError(f"Unknown counter mode {counter!r}: per-credential, global or zero")
        if not algorithms or any(alg not in ALGORITHMS for alg in algorithms):
            raise ValueError(f"Algorithms must be among {ALGORITHMS}")
        if len(aaguid) != 16:
            raise ValueError(f"An AAGUID is 16 bytes, got {len(aaguid)}")
        if touch is not None and not isinstance(touch, Touch):
            raise ValueError(f"The touch option must be a Touch, not {touch!r}")
        if isinstance(touch_timeout, bool) or not 0 < touch_timeout < float("inf"):
            raise ValueError(
                f"touch_timeout must be a positive number of seconds, not {touch_timeout!r}"
            )
        if not isinstance(backup_eligible, bool):
            raise ValueError(f"backup_eligible must be a bool, not {backup_eligible!r}")
        self.attestation = attestation
        self.algorithms = tuple(algorithms)
        self.aaguid = bytes(aaguid)
        self.counter = counter
        self.backup_eligible = backup_eligible
        self.touch = touch if touch is not None else Touch.auto()
        self.touch_timeout = float(touch_timeout)
        self.faults = Faults()
        self.transports = tuple(transports)
        self._pki = pki
        self._rng = rng
        self._pin = ClientPin(PinState(), rng)
        if pin is not None:
            if len(pin) < 4 or len(pin.encode("utf-8")) > 63:
                raise ValueError("A FIDO2 PIN has 4 to 63 UTF-8 bytes")
            self._pin.state.set(pin_hash(pin))
        self._credentials: list[StoredCredential] = []
        self._sequence = 0
        self._global_counter = 0
        self._pending: _Pending | None = None
        self._listing: tuple[int, list[dict[int, Any]]] | None = None
        self._clock = clock
        self._powered_up = clock()
        self._lock = threading.Lock()
        self._state_file = None if state is None else os.fspath(state)
        self._saved = b""
        if self._state_file is not None:
            self._open_state(self._state_file, pin)

    def __repr__(self) -> str:
        return (
            f"EmulatedAuthenticator(attestation={self.attestation!r}, counter={self.counter!r},"
            f" pin_set={self._pin.state.is_set}, credentials={len(self._credentials)})"
        )

    # The state file

    def _key_state(self) -> KeyState:
        return KeyState(
            aaguid=self.aaguid,
            counter_mode=self.counter,
            global_counter=self._global_counter,
            backup_eligible=self.backup_eligible,
            pin_hash=self._pin.state.hash16,
            pin_retries=self._pin.state.retries,
            credentials=self._credentials,
        )

    def _restore(self, state: KeyState) -> None:
        self._global_counter = state.global_counter
        self._pin.state.hash16 = state.pin_hash
        self._pin.state.retries = state.pin_retries
        self._credentials = list(state.credentials)
        self._sequence = len(self._credentials)
        self._pending = None
        self._listing = None

    def _open_state(self, path: str, pin: str | None) -> None:
        if not os.path.lexists(path):
            self._saved = ctap2_state.encode_state(self._key_state())
            ctap2_state.save_state(path, self._saved)
            return
        state, self._saved = ctap2_state.load_state(path)
        for name, given, saved in (
            ("AAGUID", self.aaguid.hex(), state.aaguid.hex()),
            ("counter mode", self.counter, state.counter_mode),
            ("backup_eligible", self.backup_eligible, state.backup_eligible),
        ):
            if given != saved:
                raise ValueError(f"The state file {path!r} has {name} {saved!r}, not {given!r}")
        if pin is not None and (
            state.pin_hash is None or not hmac.compare_digest(pin_hash(pin), state.pin_hash)
        ):
            raise ValueError(f"The PIN given is not the one of the state file {path!r}")
        self._restore(state)

    def _persist(self) -> None:
        """Write the state file if the command changed the key; on a failed write, go back to
        what the file holds and raise (no answer leaves)."""
        if self._state_file is None:
            return
        data = ctap2_state.encode_state(self._key_state())
        if data == self._saved:
            return
        try:
            ctap2_state.save_state(self._state_file, data)
        except OSError:
            log.debug("FIDO key state not written: the command is undone")
            self._restore(ctap2_state.decode_state(self._saved))
            raise
        self._saved = data

    @property
    def capabilities(self) -> int:
        """:return: CBOR, WINK and NMSG (no CTAP1: MSG is refused)."""
        return int(CAPABILITY.CBOR | CAPABILITY.WINK | CAPABILITY.NMSG)

    @property
    def credentials(self) -> tuple[StoredCredential, ...]:
        """:return: the credentials on the key (for tests)."""
        return tuple(self._credentials)

    @property
    def pki(self) -> TestAttestationPki:
        """:return: the attestation PKI (built on first use)."""
        if self._pki is None:
            self._pki = TestAttestationPki.generate()
        return self._pki

    @classmethod
    def list_devices(cls) -> Iterator[EmulatedAuthenticator]:
        """:return: nothing: an emulator is handed over, never discovered."""
        return iter(())

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        """The ``CtapDevice`` face: CTAPHID CBOR goes to :meth:`handle`, PING echoes, WINK
        answers nothing.

        :raises CtapError: ``INVALID_COMMAND`` for MSG (no CTAP1) and any other command.
        """
        if cmd in (CTAPHID.PING, CTAPHID.WINK):
            with self._lock:
                self._check_pulled()
            return bytes(data) if cmd == CTAPHID.PING else b""
        if cmd != CTAPHID.CBOR:
            raise CtapError(ERR.INVALID_COMMAND)
        if not data:
            return bytes([ERR.INVALID_LENGTH])

        def keepalive(status: int) -> None:
            if on_keepalive is not None:
                on_keepalive(STATUS(status))

        cancelled = event if event is not None else threading.Event()
        return self.handle(data[0], bytes(data[1:]), keepalive=keepalive, cancelled=cancelled)

    def handle(
        self,
        cmd: int,
        payload: bytes,
        *,
        keepalive: Callable[[int], None],
        cancelled: threading.Event,
    ) -> bytes:
        """Run one CTAP2 command.

        :param cmd: the CTAP2 command byte (makeCredential 0x01, …).
        :param payload: its CBOR parameters (empty when it has none).
        :param keepalive: called with a keepalive status while the user is awaited.
        :param cancelled: set by the host to cancel a command waiting for the user.
        :return: the status byte, then the canonical CBOR response map if any.
        :raises OSError: the key was pulled (:attr:`Faults.fail_after`), or the state file
            could not be written (the command is undone, nothing answered).
        """
        with self._lock:
            self._check_pulled()
            if cmd not in (CMD_GET_ASSERTION, CMD_GET_NEXT_ASSERTION):
                self._pending = None
            if cmd != CMD_CREDENTIAL_MANAGEMENT:
                self._listing = None
            try:
                response = self._dispatch(cmd, payload, keepalive, cancelled)
            except CtapError as e:
                log.debug("CTAP2 command 0x%02x refused: %s", cmd, e.code)
                # A refusal can change the key too (a wrong PIN costs a try).
                self._persist()
                return bytes([int(e.code)])
            self._persist()
        return b"\x00" + (cbor.encode(response) if response is not None else b"")

    def _check_pulled(self) -> None:
        remaining = self.faults.fail_after
        if remaining is None:
            return
        if remaining <= 0:
            raise OSError("The emulated key was pulled (faults.fail_after)")
        self.faults.fail_after = remaining - 1

    def power_cycle(self) -> None:
        """Unplug and plug the key: the PIN mismatch streak, the token, the key agreement
        keys and a pending getNextAssertion are forgotten; the retries counter stays."""
        with self._lock:
            self._pin.power_cycle()
            self._pending = None
            self._listing = None
            self._powered_up = self._clock()

    def _dispatch(
        self,
        cmd: int,
        payload: bytes,
        keepalive: Callable[[int], None],
        cancelled: threading.Event,
    ) -> dict[int, Any] | None:
        if len(payload) + 1 > MAX_MSG_SIZE:
            raise CtapError(ERR.REQUEST_TOO_LARGE)

        def presence() -> None:
            self._user_presence(keepalive, cancelled)

        if cmd == CMD_GET_INFO:
            if payload:
                raise CtapError(ERR.INVALID_LENGTH)
            return self._get_info()
        if cmd == CMD_MAKE_CREDENTIAL:
            return self._make_credential(_parse(payload, _MC_SCHEMA), presence)
        if cmd == CMD_GET_ASSERTION:
            self._pending = None
            return self._get_assertion(_parse(payload, _GA_SCHEMA), presence)
        if cmd == CMD_GET_NEXT_ASSERTION:
            if payload:
                raise CtapError(ERR.INVALID_LENGTH)
            return self._get_next_assertion()
        if cmd == CMD_CLIENT_PIN:
            return self._pin.handle(_parse(payload, _PIN_SCHEMA))
        if cmd == CMD_SELECTION:
            if payload:
                raise CtapError(ERR.INVALID_LENGTH)
            presence()
            return None
        if cmd == CMD_RESET:
            if payload:
                raise CtapError(ERR.INVALID_LENGTH)
            self._reset(presence)
            return None
        if cmd == CMD_CREDENTIAL_MANAGEMENT:
            return self._credential_management(_parse(payload, _CM_SCHEMA))
        raise CtapError(ERR.INVALID_COMMAND)

    # reset (CTAP 2.1 §6.6)

    def _reset(self, presence: Callable[[], None]) -> None:
        if self._clock() - self._powered_up > RESET_WINDOW_S:
            raise CtapError(ERR.NOT_ALLOWED)
        presence()
        self._credentials = []
        self._global_counter = 0
        self._pin.reset()

    # credentialManagement (CTAP 2.1 §6.8)

    def _credential_management(self, params: Mapping[int, Any]) -> dict[int, Any]:
        sub = _required(params, 1)
        if sub in (CM_RPS_NEXT, CM_CREDS_NEXT):
            return self._listing_next(sub)
        self._listing = None
        if sub not in (CM_GET_METADATA, CM_RPS_BEGIN, CM_CREDS_BEGIN, CM_DELETE, CM_UPDATE_USER):
            raise CtapError(ERR.INVALID_SUBCOMMAND)
        sub_params = params.get(2)
        if 4 not in params:
            raise CtapError(ERR.PUAT_REQUIRED)
        message = bytes([sub]) + (cbor.encode(sub_params) if sub_params is not None else b"")
        token = self._pin.use_token(params.get(3), params[4], message, PERMISSION_CM)
        token_rp = (
            hashlib.sha256(token.rp_id.encode()).digest() if token.rp_id is not None else None
        )
        discoverable = [c for c in self._credentials if c.discoverable]
        if sub == CM_GET_METADATA:
            if token_rp is not None:
                raise CtapError(ERR.PIN_AUTH_INVALID)
            return {1: len(discoverable), 2: MAX_DISCOVERABLE - len(discoverable)}
        if sub == CM_RPS_BEGIN:
            if token_rp is not None:
                raise CtapError(ERR.PIN_AUTH_INVALID)
            rps = list(dict.fromkeys((c.rp_id, c.rp_id_hash) for c in discoverable))
            items = [{3: {"id": rp_id}, 4: rp_hash} for rp_id, rp_hash in rps]
            return self._listing_begin(CM_RPS_NEXT, items, 5)
        entries = _map(_required(params, 2))
        if sub == CM_CREDS_BEGIN:
            rp_hash = entries.get(1)
            if rp_hash is None:
                raise CtapError(ERR.MISSING_PARAMETER)
            if not isinstance(rp_hash, bytes):
                raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
            if token_rp is not None and not hmac.compare_digest(token_rp, rp_hash):
                raise CtapError(ERR.PIN_AUTH_INVALID)
            found = sorted(
                (c for c in discoverable if c.rp_id_hash == rp_hash), key=lambda c: c.created
            )
            listed = [
                {6: dict(c.user), 7: {"id": c.id, "type": "public-key"}, 8: c.cose_key}
                for c in found
            ]
            return self._listing_begin(CM_CREDS_NEXT, listed, 9)
        ids = _descriptors([_required(entries, 2)])
        target = next((c for c in discoverable if ids and c.id == ids[0]), None)
        if target is None:
            raise CtapError(ERR.NO_CREDENTIALS)
        if token_rp is not None and not hmac.compare_digest(token_rp, target.rp_id_hash):
            raise CtapError(ERR.PIN_AUTH_INVALID)
        if sub == CM_DELETE:
            self._credentials = [c for c in self._credentials if c is not target]
            return {}
        user = _user(_map(_required(entries, 3)))
        if not hmac.compare_digest(user["id"], target.user["id"]):
            raise CtapError(ERR.INVALID_PARAMETER)
        target.user = user
        return {}

    def _listing_begin(
        self, next_sub: int, items: list[dict[int, Any]], total_key: int
    ) -> dict[int, Any]:
        if not items:
            raise CtapError(ERR.NO_CREDENTIALS)
        first = {**items[0], total_key: len(items)}
        self._listing = (next_sub, items[1:])
        return first

    def _listing_next(self, sub: int) -> dict[int, Any]:
        listing = self._listing
        if listing is None or listing[0] != sub or not listing[1]:
            self._listing = None
            raise CtapError(ERR.NOT_ALLOWED)
        return listing[1].pop(0)

    def _get_info(self) -> dict[int, Any]:
        options = {
            "rk": True,
            "up": True,
            "clientPin": self._pin.state.is_set,
            "pinUvAuthToken": True,
            "credMgmt": True,
        }
        discoverable = sum(c.discoverable for c in self._credentials)
        return {
            1: ["FIDO_2_0", "FIDO_2_1"],
            3: self.aaguid,
            4: options,
            5: MAX_MSG_SIZE,
            6: self._pin.versions,
            7: MAX_CREDS_IN_LIST,
            8: MAX_CRED_ID_LENGTH,
            9: list(self.transports),
            10: [{"alg": alg, "type": "public-key"} for alg in self.algorithms],
            13: 4,
            14: 1,
            20: MAX_DISCOVERABLE - discoverable,
        }

    # makeCredential (CTAP 2.1 §6.1.2)

    def _make_credential(
        self, params: Mapping[int, Any], presence: Callable[[], None]
    ) -> dict[int, Any]:
        client_data_hash = _required(params, 1)
        rp_id = _text(_required(params, 2), "id", required=True)
        if not 1 <= len(rp_id.encode("utf-8")) <= MAX_RP_ID_BYTES:
            raise CtapError(ERR.INVALID_PARAMETER)
        user = _user(_required(params, 3))
        alg = self._choose_algorithm(_required(params, 4))
        options = _options(params.get(7), ("rk", "up", "uv"))
        _empty_pin_auth(params.get(8), self._pin.state.is_set, presence)
        if options.get("up") is False or (options.get("uv") is True and 8 not in params):
            raise CtapError(ERR.INVALID_OPTION)
        uv = self._verify_user(params.get(9), params.get(8), client_data_hash, PERMISSION_MC, rp_id)
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        excluded = self._find(rp_id, _descriptors(params.get(5)))
        presence()
        self._spend_token(8 in params)
        if excluded:
            raise CtapError(ERR.CREDENTIAL_EXCLUDED)
        credential = self._new_credential(rp_id, rp_id_hash, user, alg, options.get("rk", False))
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if uv else 0) | self._backup_flag()
        auth_data = self._auth_data(rp_id_hash, flags, credential.sign_count) + self._attested(
            credential
        )
        fmt, statement = self._attest(credential, auth_data + client_data_hash)
        return {1: fmt, 2: auth_data, 3: statement}

    def _choose_algorithm(self, params: list[Any]) -> int:
        offered = []
        for entry in params:
            if not isinstance(entry, dict):
                raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
            kind, alg = entry.get("type"), entry.get("alg")
            if not isinstance(kind, str) or type(alg) is not int:
                raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
            if kind == "public-key":
                offered.append(alg)
        for alg in offered:
            if alg in self.algorithms:
                return alg
        raise CtapError(ERR.UNSUPPORTED_ALGORITHM)

    def _new_credential(
        self, rp_id: str, rp_id_hash: bytes, user: dict[str, Any], alg: int, discoverable: bool
    ) -> StoredCredential:
        if discoverable:
            self._credentials = [
                c
                for c in self._credentials
                if not (c.discoverable and c.rp_id == rp_id and c.user["id"] == user["id"])
            ]
            if sum(c.discoverable for c in self._credentials) >= MAX_DISCOVERABLE:
                raise CtapError(ERR.KEY_STORE_FULL)
        if len(self._credentials) >= MAX_CREDENTIALS:
            raise CtapError(ERR.KEY_STORE_FULL)
        self._sequence += 1
        credential = StoredCredential(
            id=self._rng(CREDENTIAL_ID_SIZE),
            rp_id=rp_id,
            rp_id_hash=rp_id_hash,
            user=user,
            alg=alg,
            private_key=generate_key(alg),
            discoverable=discoverable,
            created=self._sequence,
        )
        self._credentials.append(credential)
        return credential

    def _attested(self, credential: StoredCredential) -> bytes:
        return (
            self.aaguid
            + len(credential.id).to_bytes(2, "big")
            + credential.id
            + cbor.encode(credential.cose_key)
        )

    def _attest(self, credential: StoredCredential, signed: bytes) -> tuple[str, dict[str, Any]]:
        if self.attestation == "none":
            return "none", {}
        if self.attestation == "self":
            return "packed", {"alg": credential.alg, "sig": self._sig(credential.sign(signed))}
        pki = self.pki
        return "packed", {"alg": -7, "sig": self._sig(sign(pki.leaf_key, signed)), "x5c": pki.x5c}

    # getAssertion (CTAP 2.1 §6.2.2) and getNextAssertion (§6.3)

    def _get_assertion(
        self, params: Mapping[int, Any], presence: Callable[[], None]
    ) -> dict[int, Any]:
        rp_id = _required(params, 1)
        client_data_hash = _required(params, 2)
        allow = _descriptors(params.get(3))
        options = _options(params.get(5), ("rk", "up", "uv"))
        _empty_pin_auth(params.get(6), self._pin.state.is_set, presence)
        if "rk" in options:
            raise CtapError(ERR.UNSUPPORTED_OPTION)
        if options.get("uv") is True and 6 not in params:
            raise CtapError(ERR.INVALID_OPTION)
        uv = self._verify_user(params.get(7), params.get(6), client_data_hash, PERMISSION_GA, rp_id)
        if allow is not None:
            found = self._find(rp_id, allow)[:1]
        else:
            found = sorted(
                (c for c in self._credentials if c.discoverable and c.rp_id == rp_id),
                key=lambda c: -c.created,
            )
        if not found:
            raise CtapError(ERR.NO_CREDENTIALS)
        up = options.get("up", True)
        if up:
            presence()
            self._spend_token(6 in params)
        flags = (FLAG_UP if up else 0) | (FLAG_UV if uv else 0) | self._backup_flag()
        response = self._assert(found[0], client_data_hash, flags, uv, allow is None)
        if len(found) > 1:
            response[5] = len(found)
            deadline = self._clock() + NEXT_ASSERTION_WINDOW_S
            self._pending = _Pending(found[1:], client_data_hash, flags, uv, deadline)
        return response

    def _get_next_assertion(self) -> dict[int, Any]:
        pending = self._pending
        now = self._clock()
        if pending is None or not pending.credentials or now > pending.deadline:
            self._pending = None
            raise CtapError(ERR.NOT_ALLOWED)
        # CTAP 2.1 §6.3: 30 s from the last getAssertion or getNextAssertion (the timer restarts).
        pending.deadline = now + NEXT_ASSERTION_WINDOW_S
        credential = pending.credentials.pop(0)
        return self._assert(credential, pending.client_data_hash, pending.flags, pending.uv, True)

    def _assert(
        self,
        credential: StoredCredential,
        client_data_hash: bytes,
        flags: int,
        uv: bool,
        with_user: bool,
    ) -> dict[int, Any]:
        count = self._next_count(credential) if flags & FLAG_UP else self._current(credential)
        auth_data = self._auth_data(credential.rp_id_hash, flags, count)
        response: dict[int, Any] = {
            1: {"id": credential.id, "type": "public-key"},
            2: auth_data,
            3: self._sig(credential.sign(auth_data + client_data_hash)),
        }
        if with_user:
            user = credential.user if uv else {"id": credential.user["id"]}
            response[4] = dict(user)
        return response

    # Shared steps

    def _verify_user(
        self, version: object, param: object, message: bytes, permission: int, rp_id: str
    ) -> bool:
        """:return: whether the user is verified (a valid pinUvAuthParam).
        :raises CtapError: ``PUAT_REQUIRED`` (a PIN is set and no parameter came),
            ``PIN_AUTH_INVALID`` (a wrong parameter, permission or relying party)."""
        if param is None:
            if permission == PERMISSION_MC and self._pin.state.is_set:
                raise CtapError(ERR.PUAT_REQUIRED)
            return False
        token = self._pin.use_token(version, param, message, permission)
        if token.rp_id is None:
            token.rp_id = rp_id
        elif token.rp_id != rp_id:
            raise CtapError(ERR.PIN_AUTH_INVALID)
        return True

    def _spend_token(self, used: bool) -> None:
        # After a command with user presence the token keeps no permission (CTAP 2.1 §6.1.2
        # step 13): the next operation needs a new PIN entry.
        token = self._pin.token
        if used and token is not None:
            token.permissions = 0

    def _find(self, rp_id: str, ids: list[bytes] | None) -> list[StoredCredential]:
        if not ids:
            return []
        by_id = {c.id: c for c in self._credentials if c.rp_id == rp_id}
        return [by_id[i] for i in ids if i in by_id]

    def _backup_flag(self) -> int:
        return FLAG_BE if self.backup_eligible else 0

    def _auth_data(self, rp_id_hash: bytes, flags: int, count: int) -> bytes:
        faults = self.faults
        if faults.other_rp:
            other = faults.other_rp if isinstance(faults.other_rp, str) else OTHER_RP_ID
            rp_id_hash = hashlib.sha256(other.encode()).digest()
        flags &= ~faults.flags_mask & 0xFF
        return rp_id_hash + bytes([flags]) + count.to_bytes(4, "big")

    def _sig(self, signature: bytes) -> bytes:
        if not self.faults.bad_signature:
            return signature
        return signature[:-1] + bytes([signature[-1] ^ 0x01])

    def _user_presence(self, keepalive: Callable[[int], None], cancelled: threading.Event) -> None:
        """Wait for the touch :attr:`touch` describes, calling ``keepalive(UPNEEDED)`` every
        100 ms.

        :raises CtapError: ``KEEPALIVE_CANCEL`` (``cancelled`` set) or ``USER_ACTION_TIMEOUT``
            (no touch within :attr:`touch_timeout`).
        """
        if cancelled.is_set():
            raise CtapError(ERR.KEEPALIVE_CANCEL)
        delay = self.touch.delay
        if delay == 0:
            return
        start = time.monotonic()
        deadline = start + self.touch_timeout
        touched = start + delay if delay is not None else float("inf")
        while True:
            keepalive(int(STATUS.UPNEEDED))
            now = time.monotonic()
            if now >= touched:
                return
            if now >= deadline:
                raise CtapError(ERR.USER_ACTION_TIMEOUT)
            if cancelled.wait(min(KEEPALIVE_INTERVAL_S, touched - now, deadline - now)):
                raise CtapError(ERR.KEEPALIVE_CANCEL)

    def _current(self, credential: StoredCredential) -> int:
        if self.counter == "zero":
            return 0
        return self._global_counter if self.counter == "global" else credential.sign_count

    def _next_count(self, credential: StoredCredential) -> int:
        # The counter moves before the signature is made, so no two signatures share a value.
        # At 2**32 - 1 it stays there: a verifier then sees a repeat (a clone), never a wrap.
        if self.counter == "global":
            self._global_counter = min(self._global_counter + 1, MAX_COUNTER)
        elif self.counter == "per-credential":
            credential.sign_count = min(credential.sign_count + 1, MAX_COUNTER)
        return self._current(credential)


def _parse(payload: bytes, schema: Mapping[int, type]) -> dict[int, Any]:
    """Decode a request map strictly and check the type of every known parameter.

    :raises CtapError: ``INVALID_CBOR`` (not strict canonical CBOR), ``CBOR_UNEXPECTED_TYPE``
        (not a map with integer keys, or a parameter of the wrong type).
    """
    if not payload:
        return {}
    try:
        params = cbor.decode(payload, canonical=True)
    except CborFormatError as e:
        raise CtapError(ERR.INVALID_CBOR) from e
    if not isinstance(params, dict) or any(type(key) is not int for key in params):
        raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
    for key, kind in schema.items():
        if key in params and not _is(params[key], kind):
            raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
    return params


def _is(value: object, kind: type) -> bool:
    # bool is an int subclass: an integer parameter must be a CBOR integer, not true/false.
    return type(value) is int if kind is int else isinstance(value, kind)


def _required(params: Mapping[int, Any], key: int) -> Any:
    if key not in params:
        raise CtapError(ERR.MISSING_PARAMETER)
    return params[key]


def _text(entity: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = entity.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise CtapError(ERR.MISSING_PARAMETER if value is None else ERR.CBOR_UNEXPECTED_TYPE)
    return value


def _map(value: object) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
    return value


def _user(entity: Mapping[str, Any]) -> dict[str, Any]:
    user_id = entity.get("id")
    if user_id is None:
        raise CtapError(ERR.MISSING_PARAMETER)
    if not isinstance(user_id, bytes):
        raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise CtapError(ERR.INVALID_PARAMETER)
    user: dict[str, Any] = {"id": user_id}
    for name in ("name", "displayName"):
        value = _text(entity, name)
        if value:
            user[name] = value.encode()[:MAX_STRING].decode("utf-8", "ignore")
    return user


def _options(options: Mapping[str, Any] | None, known: Sequence[str]) -> dict[str, bool]:
    if options is None:
        return {}
    result = {}
    for name, value in options.items():
        if not isinstance(name, str) or not isinstance(value, bool):
            raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
        if name in known:
            result[name] = value
    return result


def _descriptors(entries: list[Any] | None) -> list[bytes] | None:
    """:return: the credential ids of a list of public-key descriptors (``None``: no list)."""
    if entries is None:
        return None
    if len(entries) > MAX_CREDS_IN_LIST:
        raise CtapError(ERR.LIMIT_EXCEEDED)
    ids = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
        kind, credential_id = entry.get("type"), entry.get("id")
        if not isinstance(kind, str) or not isinstance(credential_id, bytes):
            raise CtapError(ERR.CBOR_UNEXPECTED_TYPE)
        if kind == "public-key":
            ids.append(credential_id)
    return ids


def _empty_pin_auth(param: bytes | None, pin_set: bool, presence: Callable[[], None]) -> None:
    """A zero-length pinUvAuthParam asks for a touch, then whether a PIN is set (CTAP 2.1
    §6.1.2 step 1, the platform's device selection)."""
    if param is not None and not param:
        presence()
        raise CtapError(ERR.PIN_INVALID if pin_set else ERR.PIN_NOT_SET)
