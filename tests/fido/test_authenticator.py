"""The FIDO2 client :class:`mie.fido.authenticator.Fido2Authenticator` on the emulated key, in
process (``EmulatedAuthenticator`` is a ``CtapDevice``) and through python-fido2's own CTAPHID
code over an in-memory HID connection. py_webauthn, an independent WebAuthn verifier, checks the
registrations and assertions it produces."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import webauthn
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.hid import CAPABILITY, CTAPHID, CtapHidDevice

import mie.fido
from mie.core import cbor
from mie.core.connection import Transport
from mie.core.errors import (
    CardRemovedError,
    ErrorCode,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    PinAuthBlockedError,
    PinBlockedError,
    UnsupportedCardError,
)
from mie.emulation.ctap2 import EmulatedAuthenticator, Touch
from mie.emulation.ctap2_pin import pin_hash
from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection, hid_descriptor
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido.allowlist import AaguidAllowlist, AllowedKey
from mie.fido.assertion import FidoVerifier
from mie.fido.authenticator import Fido2Authenticator, credential_ref
from mie.fido.errors import (
    AlreadyRegisteredError,
    CredentialUnknownError,
    PinNotSetError,
    RpIdMismatchError,
    TouchTimeoutError,
    UserNotVerifiedError,
)
from mie.fido.policy import FidoPolicy
from mie.fido.registration import verify_registration
from mie.policy import AssuranceLevel
from mie.request import AuthRequest, StaticPin, UserVerification
from mie.store.memory import MemoryStore
from mie.trust.identity import Identity, parse_id_nat
from mie.verification import login

PIN = "1234"
WRONG = "9999"
ORIGIN = "https://iam.chu-exemple.fr"
RP_ID = "iam.chu-exemple.fr"
ID_NAT = "810100099877"
GET_RETRIES = (0x06, 0x01)  # authenticatorClientPIN, getPINRetries


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


class _Recorder(CtapDevice):
    """A ``CtapDevice`` in front of another one, recording each CBOR command and its
    clientPIN subcommand (``(0x06, sub)``), or ``(cmd, None)``."""

    def __init__(self, inner: CtapDevice) -> None:
        self.inner = inner
        self.sent: list[tuple[int, int | None]] = []

    @property
    def capabilities(self) -> int:
        return int(self.inner.capabilities)

    def call(
        self, cmd: int, data: bytes = b"", event: Any = None, on_keepalive: Any = None
    ) -> bytes:
        if cmd == CTAPHID.CBOR and data:
            sub = None
            if data[0] == 0x06:
                sub = cbor.decode(bytes(data[1:]), canonical=True)[2]
            self.sent.append((data[0], sub))
        return bytes(self.inner.call(cmd, data, event, on_keepalive))

    def close(self) -> None:
        self.inner.close()

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


class _Pullable(InMemoryHidConnection):
    """In-memory HID whose key is pulled as the host sends the ``nth`` request of CTAP command
    ``pull_on``: that request never reaches the key, every later report fails."""

    pull_on: int | None = None
    nth = 1

    def write_packet(self, data: bytes) -> None:
        if self.pull_on is not None and data[4] == 0x80 | CTAPHID.CBOR and data[7] == self.pull_on:
            self.nth -= 1
            if self.nth == 0:
                self.close()
        super().write_packet(data)


@dataclass
class Key:
    """An emulated key and the device a client talks to."""

    engine: EmulatedAuthenticator
    device: _Recorder
    connection: _Pullable | None = None

    def authenticator(self, **kwargs: Any) -> Fido2Authenticator:
        return Fido2Authenticator(self.device, **kwargs)

    def retries(self) -> tuple[int, Any]:
        """The key's PIN tries as python-fido2 reads them (independent of mie)."""
        return ClientPin(Ctap2(self.engine)).get_pin_retries()


Build = Callable[..., Key]


@pytest.fixture(params=["process", "hid"])
def build(request: pytest.FixtureRequest, pki: TestAttestationPki) -> Build:
    def make(pin: str | None = PIN, **options: Any) -> Key:
        engine = EmulatedAuthenticator(pin, pki=pki, **options)
        if request.param == "process":
            return Key(engine, _Recorder(engine))
        connection = _Pullable(CtapHidFraming(engine))
        return Key(engine, _Recorder(CtapHidDevice(hid_descriptor(), connection)), connection)

    return make


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _register(
    key: Key, *, pin: str = PIN, resident_key: bool = False, **kwargs: Any
) -> tuple[Any, Any]:
    request = AuthRequest.new(ORIGIN)
    data = key.authenticator().register(
        request,
        user=StaticPin(pin),
        user_name="dr.martin",
        display_name="Dr Martin",
        resident_key=resident_key,
        **kwargs,
    )
    verified = webauthn.verify_registration_response(
        credential={
            "id": _b64(data.credential_id),
            "rawId": _b64(data.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(data.client_data_json),
                "attestationObject": _b64(data.attestation_object),
            },
        },
        expected_challenge=request.nonce,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    return data, verified


def _verify_assertion(evidence: Any, verified: Any, *, uv: bool = True, count: int = 0) -> Any:
    return webauthn.verify_authentication_response(
        credential={
            "id": _b64(evidence.credential_id),
            "rawId": _b64(evidence.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(evidence.client_data_json),
                "authenticatorData": _b64(evidence.authenticator_data),
                "signature": _b64(evidence.signature),
                "userHandle": _b64(evidence.user_handle) if evidence.user_handle else None,
            },
        },
        expected_challenge=evidence.nonce,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=count,
        require_user_verification=uv,
    )


def _spend_tries(key: Key, wrong: int) -> None:
    """Present ``wrong`` wrong PINs with python-fido2 directly, power-cycling the key before
    the third in a row (so the streak never blocks)."""
    for n in range(wrong):
        if n % 2 == 0:
            key.engine.power_cycle()
        with pytest.raises(CtapError):
            ClientPin(Ctap2(key.engine)).get_pin_token(WRONG)
    key.engine.power_cycle()


# Register and authenticate


def test_register_then_authenticate_verify_with_py_webauthn(build: Build) -> None:
    key = build()
    data, verified = _register(key)
    assert data.rp_id == RP_ID and data.origin == ORIGIN
    assert verified.user_verified and verified.fmt == "packed"
    assert "usb" in data.transports
    authenticator = key.authenticator(credentials=[data.credential_id])
    assert authenticator.info.serial is None
    request = AuthRequest.new(ORIGIN)
    evidence = authenticator.authenticate(request, user=StaticPin(PIN))
    assert evidence.nonce == request.nonce and evidence.credential_id == data.credential_id
    checked = _verify_assertion(evidence, verified)
    assert checked.new_sign_count == 1 and checked.user_verified
    assert authenticator.info.serial == credential_ref(data.credential_id)
    assert len(credential_ref(data.credential_id)) == 32


def test_client_data_is_webauthns_with_the_nonce_and_the_origin(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    assert json.loads(data.client_data_json)["type"] == "webauthn.create"
    request = AuthRequest.new(ORIGIN, size=48)
    authenticator = key.authenticator(credentials=[data.credential_id])
    evidence = authenticator.authenticate(request, user=StaticPin(PIN))
    client_data = json.loads(evidence.client_data_json)
    assert client_data == {
        "type": "webauthn.get",
        "challenge": _b64(request.nonce),
        "origin": ORIGIN,
        "crossOrigin": False,
    }


def test_discoverable_credential_is_found_without_an_allow_list(build: Build) -> None:
    key = build()
    _register(key, resident_key=True)
    newest, verified = _register(key, resident_key=True)
    evidence = key.authenticator().authenticate(AuthRequest.new(ORIGIN), user=StaticPin(PIN))
    assert evidence.credential_id == newest.credential_id
    assert evidence.user_handle == newest.user_handle and len(newest.user_handle) == 16
    _verify_assertion(evidence, verified)


def test_each_registration_has_a_fresh_random_user_handle(build: Build) -> None:
    key = build()
    _register(key, resident_key=True)
    _register(key, resident_key=True)
    third, _ = _register(key)
    assert key.engine.credentials[-1].user["id"] == third.user_handle
    handles = {c.user["id"] for c in key.engine.credentials}
    assert len(handles) == 3 and all(len(h) == 16 for h in handles)
    names = {c.user.get("name") for c in key.engine.credentials}
    assert names == {"dr.martin"}


def test_eddsa_when_asked_first(build: Build) -> None:
    key = build()
    _, verified = _register(key, algorithms=(-8, -7))
    assert cbor.decode(verified.credential_public_key, canonical=False)[3] == -8


def test_without_user_verification_no_pin_is_asked_and_uv_is_clear(build: Build) -> None:
    key = build(pin=None)
    request = AuthRequest.new(ORIGIN, user_verification=False)
    data = key.authenticator().register(
        request, user=None, user_name="dr.martin", display_name="Dr Martin"
    )
    evidence = key.authenticator(credentials=[data.credential_id]).authenticate(
        AuthRequest.new(ORIGIN, user_verification=False)
    )
    assert evidence.authenticator_data[32] & 0x05 == 0x01  # UP, not UV


def test_hid_key_reports_usb_and_the_emulator_in_process_no_transport(build: Build) -> None:
    key = build()
    authenticator = key.authenticator()
    assert authenticator.info.kind == "fido2"
    # The recorder hides the device type: the transport is what the caller says.
    assert authenticator.info.transport is None
    assert key.authenticator(transport=Transport.USB).info.transport is Transport.USB
    identification = authenticator.identify()
    assert identification.identity is None and identification.certificate is None
    if key.connection is not None:
        hid = CtapHidDevice(hid_descriptor(), InMemoryHidConnection(CtapHidFraming(key.engine)))
        assert Fido2Authenticator(hid).info.transport is Transport.USB


def test_mies_own_verifier_registers_then_logs_in_at_substantial(build: Build) -> None:
    """The client end to end with mie's verifier: verify_registration stores the credential,
    login() with the FidoVerifier checks the assertion (counter moved) and decides the level."""
    key = build()
    policy = FidoPolicy(
        rp_id=RP_ID,
        allowlist=AaguidAllowlist((AllowedKey(EMULATOR_AAGUID, "emulator", test=True),)),
        attestation_roots=(key.engine.pki.root.certificate,),
    )
    store = MemoryStore()
    request = AuthRequest.new(ORIGIN)
    data = key.authenticator().register(
        request, user=StaticPin(PIN), user_name="dr.martin", display_name="Dr Martin"
    )
    assert isinstance(data, mie.fido.RegistrationData)
    assert type(data).from_json(data.to_json()) == data
    id_type, number = parse_id_nat(ID_NAT)
    identity = Identity(ID_NAT, id_type, number, None, None, None, None, True)
    registered = verify_registration(data, request, identity=identity, policy=policy, store=store)
    assert registered.level_cap is AssuranceLevel.SUBSTANTIAL
    authenticator = key.authenticator(credentials=[data.credential_id])
    result = login(
        authenticator,
        AuthRequest.new(ORIGIN),
        user=StaticPin(PIN),
        verifier=None,
        fido=FidoVerifier(policy, store),
    )
    assert result.level is AssuranceLevel.SUBSTANTIAL
    assert result.identity is not None and result.identity.id_nat == ID_NAT
    assert store.get_credential(RP_ID, data.credential_id).sign_count == 1


# PIN (plan D13)


def test_tries_are_read_before_the_pin_is_asked(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    user = StaticPin(PIN)
    key.authenticator(credentials=[data.credential_id]).authenticate(
        AuthRequest.new(ORIGIN), user=user
    )
    assert user.asked == [8]
    assert key.authenticator().pin_retries() == 8


def test_wrong_pin_is_invalid_pin_with_the_tries_read_again_and_no_retry(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    user = StaticPin(WRONG)
    with pytest.raises(InvalidPinError) as raised:
        key.authenticator(credentials=[data.credential_id]).authenticate(
            AuthRequest.new(ORIGIN), user=user
        )
    assert raised.value.tries_left == 7 and raised.value.code is ErrorCode.INVALID_PIN
    assert user.asked == [8]  # asked once: StaticPin would raise on a second request
    assert key.retries()[0] == 7
    assert key.engine.credentials[0].sign_count == 0


def test_one_try_left_is_refused_and_nothing_is_sent_after_reading_it(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    _spend_tries(key, 7)
    assert key.retries()[0] == 1
    user = StaticPin(PIN)
    key.device.sent.clear()
    with pytest.raises(LastTryRefusedError) as raised:
        key.authenticator(credentials=[data.credential_id]).authenticate(
            AuthRequest.new(ORIGIN), user=user
        )
    assert raised.value.code is ErrorCode.LAST_TRY_REFUSED
    assert user.asked == []
    assert key.device.sent[-1] == GET_RETRIES
    assert key.retries()[0] == 1
    assert key.engine.credentials[0].sign_count == 0


def test_allow_last_try_spends_it(build: Build) -> None:
    key = build()
    data, verified = _register(key)
    _spend_tries(key, 7)
    user = StaticPin(PIN)
    request = AuthRequest.new(ORIGIN, allow_last_try=True)
    evidence = key.authenticator(credentials=[data.credential_id]).authenticate(request, user=user)
    assert user.asked == [1]
    _verify_assertion(evidence, verified)
    assert key.retries()[0] == 8


def test_a_wrong_last_try_blocks_the_pin(build: Build) -> None:
    key = build()
    _spend_tries(key, 7)
    with pytest.raises(PinBlockedError) as raised:
        key.authenticator().authenticate(
            AuthRequest.new(ORIGIN, allow_last_try=True), user=StaticPin(WRONG)
        )
    assert raised.value.code is ErrorCode.PIN_BLOCKED
    assert key.retries()[0] == 0


def test_three_wrong_pins_block_until_the_key_is_power_cycled(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    authenticator = key.authenticator(credentials=[data.credential_id])
    tries = []
    for _ in range(2):
        with pytest.raises(InvalidPinError) as raised:
            authenticator.authenticate(AuthRequest.new(ORIGIN), user=StaticPin(WRONG))
        tries.append(raised.value.tries_left)
    assert tries == [7, 6]
    with pytest.raises(PinAuthBlockedError) as blocked:
        authenticator.authenticate(AuthRequest.new(ORIGIN), user=StaticPin(WRONG))
    assert blocked.value.code is ErrorCode.PIN_AUTH_BLOCKED
    # Then the tries read first say so: the user is not asked.
    user = StaticPin(PIN)
    with pytest.raises(PinAuthBlockedError):
        authenticator.authenticate(AuthRequest.new(ORIGIN), user=user)
    assert user.asked == []
    key.engine.power_cycle()
    user = StaticPin(PIN)
    authenticator.authenticate(AuthRequest.new(ORIGIN), user=user)
    assert user.asked == [5]


def test_a_blocked_pin_is_pin_blocked_without_asking(build: Build) -> None:
    key = build()
    _spend_tries(key, 8)
    assert key.retries()[0] == 0
    user = StaticPin(PIN)
    key.device.sent.clear()
    with pytest.raises(PinBlockedError) as raised:
        key.authenticator().authenticate(AuthRequest.new(ORIGIN), user=user)
    assert type(raised.value) is PinBlockedError and user.asked == []
    assert key.device.sent[-1] == GET_RETRIES


def test_no_pin_on_the_key_and_uv_required_is_pin_not_set(build: Build) -> None:
    key = build(pin=None)
    user = StaticPin(PIN)
    with pytest.raises(PinNotSetError) as raised:
        key.authenticator().register(
            AuthRequest.new(ORIGIN), user=user, user_name="a", display_name="A"
        )
    assert raised.value.code is ErrorCode.PIN_NOT_SET
    with pytest.raises(PinNotSetError):
        key.authenticator().authenticate(AuthRequest.new(ORIGIN), user=user)
    assert user.asked == [] and key.engine.credentials == ()
    assert key.authenticator().pin_retries() is None
    # Only getInfo went to the key.
    assert {cmd for cmd, _ in key.device.sent} == {0x04}


class _CancelledError(Exception):
    pass


class _Refusing(UserVerification):
    def __init__(self) -> None:
        self.asked: list[int | None] = []

    def request_pin(self, tries_left: int | None) -> str:
        self.asked.append(tries_left)
        raise _CancelledError("the user closed the dialog")


def test_user_cancelling_the_pin_propagates_and_nothing_is_sent_after(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    user = _Refusing()
    key.device.sent.clear()
    with pytest.raises(_CancelledError):
        key.authenticator(credentials=[data.credential_id]).authenticate(
            AuthRequest.new(ORIGIN), user=user
        )
    assert user.asked == [8]
    assert key.device.sent[-1] == GET_RETRIES
    assert key.engine.credentials[0].sign_count == 0


def test_a_bad_pin_format_is_refused_before_the_key_sees_it(build: Build) -> None:
    key = build()
    key.device.sent.clear()
    with pytest.raises(MieError) as raised:
        key.authenticator().authenticate(AuthRequest.new(ORIGIN), user=StaticPin("12"))
    assert raised.value.code is ErrorCode.MALFORMED
    assert key.device.sent[-1] == GET_RETRIES and key.retries()[0] == 8


def test_a_bytearray_pin_is_wiped(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    pin = bytearray(PIN.encode())
    key.authenticator(credentials=[data.credential_id]).authenticate(
        AuthRequest.new(ORIGIN), user=StaticPin(pin)
    )
    assert pin == bytearray(len(PIN))


def test_user_verification_without_a_user_is_refused_before_sending(build: Build) -> None:
    key = build()
    with pytest.raises(ValueError, match="user="):
        key.authenticator().authenticate(AuthRequest.new(ORIGIN))
    assert key.device.sent == []


# Touch


def test_touch_never_ends_in_touch_timeout_after_the_timeout(build: Build) -> None:
    key = build(touch=Touch.never())
    start = time.monotonic()
    with pytest.raises(TouchTimeoutError) as raised:
        key.authenticator(timeout=1.0).register(
            AuthRequest.new(ORIGIN), user=StaticPin(PIN), user_name="a", display_name="A"
        )
    elapsed = time.monotonic() - start
    assert raised.value.code is ErrorCode.READER_ERROR
    assert 0.9 <= elapsed < 10
    assert key.engine.credentials == ()


def test_the_keys_own_touch_timeout_is_touch_timeout(build: Build) -> None:
    key = build(touch=Touch.never(), touch_timeout=0.3)
    with pytest.raises(TouchTimeoutError, match="USER_ACTION_TIMEOUT"):
        key.authenticator(timeout=20.0).register(
            AuthRequest.new(ORIGIN), user=StaticPin(PIN), user_name="a", display_name="A"
        )


def test_on_touch_is_called_once_while_the_key_waits(build: Build) -> None:
    key = build(touch=Touch.after(0.3))
    calls: list[float] = []
    authenticator = key.authenticator(on_touch=lambda: calls.append(time.monotonic()))
    authenticator.register(
        AuthRequest.new(ORIGIN), user=StaticPin(PIN), user_name="a", display_name="A"
    )
    assert len(calls) == 1


def test_an_on_touch_failure_propagates_unchanged(build: Build) -> None:
    key = build(touch=Touch.after(0.3))

    def refuse() -> None:
        raise _CancelledError("the caller gave up")

    with pytest.raises(_CancelledError):
        key.authenticator(on_touch=refuse).register(
            AuthRequest.new(ORIGIN), user=StaticPin(PIN), user_name="a", display_name="A"
        )
    assert key.engine.credentials == ()


# Faults and refusals


def _commands(key: Key, operation: Callable[[Key], object]) -> int:
    """How many CBOR commands ``operation`` sends."""
    key.device.sent.clear()
    operation(key)
    return len(key.device.sent)


@pytest.mark.parametrize("operation", ["register", "authenticate"])
def test_pulled_mid_operation_is_card_removed(build: Build, operation: str) -> None:
    def run(key: Key, credential: bytes) -> object:
        authenticator = key.authenticator(credentials=[credential])
        if operation == "register":
            return authenticator.register(
                AuthRequest.new(ORIGIN), user=StaticPin(PIN), user_name="a", display_name="A"
            )
        return authenticator.authenticate(AuthRequest.new(ORIGIN), user=StaticPin(PIN))

    key = build()
    data, _ = _register(key)
    count = _commands(key, lambda k: run(k, data.credential_id))
    last = key.device.sent[-1][0]
    assert last == (0x01 if operation == "register" else 0x02)
    before = len(key.engine.credentials)
    counter = key.engine.credentials[0].sign_count
    if key.connection is None:
        # The emulator's own pull: the last command (makeCredential / getAssertion) is not run.
        key.engine.faults.fail_after = count - 1
    else:
        # The HID connection goes as the last command is sent (a getAssertion is sent twice:
        # python-fido2's up=false pre-flight for the allowList, then the real one).
        key.connection.pull_on = last
        key.connection.nth = sum(cmd == last for cmd, _ in key.device.sent)
    with pytest.raises(CardRemovedError) as raised:
        run(key, data.credential_id)
    assert raised.value.code is ErrorCode.CARD_REMOVED
    assert len(key.engine.credentials) == before
    assert key.engine.credentials[0].sign_count == counter


def test_an_excluded_credential_is_already_registered(build: Build) -> None:
    key = build()
    data, _ = _register(key)
    with pytest.raises(AlreadyRegisteredError) as raised:
        _register(key, exclude=[data.credential_id])
    assert raised.value.code is ErrorCode.ALREADY_REGISTERED
    assert len(key.engine.credentials) == 1


def test_no_credential_for_the_relying_party_is_credential_unknown(build: Build) -> None:
    key = build()
    with pytest.raises(CredentialUnknownError) as raised:
        key.authenticator().authenticate(AuthRequest.new(ORIGIN), user=StaticPin(PIN))
    assert raised.value.code is ErrorCode.CREDENTIAL_UNKNOWN
    data, _ = _register(key)
    with pytest.raises(CredentialUnknownError):
        key.authenticator(credentials=[bytes(48)]).authenticate(
            AuthRequest.new(ORIGIN), user=StaticPin(PIN)
        )
    assert key.engine.credentials[0].sign_count == 0
    # A credential of another relying party does not serve this one.
    other = key.authenticator(rp_id="chu-exemple.fr", credentials=[data.credential_id])
    with pytest.raises(CredentialUnknownError):
        other.authenticate(AuthRequest.new(ORIGIN), user=StaticPin(PIN))


def test_an_rp_id_not_valid_for_the_origin_is_refused_before_sending(build: Build) -> None:
    key = build()
    with pytest.raises(RpIdMismatchError):
        key.authenticator(rp_id="other.example").authenticate(
            AuthRequest.new(ORIGIN), user=StaticPin(PIN)
        )
    with pytest.raises(RpIdMismatchError):
        key.authenticator(rp_id="fr").authenticate(AuthRequest.new(ORIGIN), user=StaticPin(PIN))
    assert key.device.sent == []


def test_a_raw_challenge_is_never_signed(build: Build) -> None:
    key = build()
    with pytest.raises(TypeError):
        key.authenticator().authenticate(b"\0" * 32, user=StaticPin(PIN))  # type: ignore[arg-type]
    assert key.device.sent == []


class _U2fOnly(CtapDevice):
    """A key that answers getInfo naming only U2F_V2, or has no CBOR capability at all."""

    def __init__(self, cbor_capable: bool) -> None:
        self.cbor_capable = cbor_capable
        self.calls = 0

    @property
    def capabilities(self) -> int:
        return int(CAPABILITY.CBOR) if self.cbor_capable else 0

    def call(
        self, cmd: int, data: bytes = b"", event: Any = None, on_keepalive: Any = None
    ) -> bytes:
        self.calls += 1
        return b"\x00" + cbor.encode({1: ["U2F_V2"], 3: bytes(16)})

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


@pytest.mark.parametrize("cbor_capable", [True, False])
def test_a_ctap1_only_key_is_refused(cbor_capable: bool) -> None:
    device = _U2fOnly(cbor_capable)
    user = StaticPin(PIN)
    with pytest.raises(UnsupportedCardError, match="CTAP2"):
        Fido2Authenticator(device).authenticate(AuthRequest.new(ORIGIN), user=user)
    with pytest.raises(UnsupportedCardError):
        Fido2Authenticator(device).identify()
    assert user.asked == [] and device.calls <= 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": float("nan")},
        {"timeout": True},
        {"credentials": [b""]},
        {"credentials": [bytes(1024)]},
        {"name": ""},
        {"rp_id": ""},
    ],
)
def test_bad_construction_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fido2Authenticator(_U2fOnly(True), **kwargs)


def test_credentials_must_be_a_sequence_of_ids() -> None:
    with pytest.raises(TypeError):
        Fido2Authenticator(_U2fOnly(True), credentials=b"one id")  # type: ignore[arg-type]


def test_closing_closes_the_device(pki: TestAttestationPki) -> None:
    closed = threading.Event()

    class _Closing(_Recorder):
        def close(self) -> None:
            closed.set()

    with Fido2Authenticator(_Closing(EmulatedAuthenticator(pki=pki))):
        pass
    assert closed.is_set()


def test_import_mie_fido_loads_none_of_its_modules() -> None:
    code = (
        "import sys, mie.fido; "
        "print(sorted(m for m in sys.modules if m.startswith(('mie.', 'fido2', 'cryptography'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "['mie.fido']"
    assert "Fido2Authenticator" in dir(mie.fido)
    assert mie.fido.Fido2Authenticator is Fido2Authenticator
    for name in mie.fido.__all__:
        assert getattr(mie.fido, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = mie.fido.Nothing


def test_the_pin_is_in_no_log_record_error_or_repr(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    # Every logger at its lowest level (python-fido2's TRAFFIC level included): a right PIN,
    # then a wrong one; neither appears in a record, the error, its chain, or a repr.
    caplog.set_level(1)
    right, wrong = "Pz7-right!", "Qw8-wrong?"
    key = build(pin=right)
    data, _ = _register(key, pin=right)
    client = key.authenticator(credentials=[data.credential_id])
    with pytest.raises(InvalidPinError) as raised:
        client.authenticate(AuthRequest.new(ORIGIN), user=StaticPin(wrong))
    texts = [r.getMessage() for r in caplog.records]
    error: BaseException | None = raised.value
    while error is not None:
        texts += [str(error), repr(error), repr(error.args)]
        error = error.__cause__ or error.__context__
    texts += [repr(client), repr(key.engine), repr(key.device)]
    assert len(caplog.records) > 0
    for secret in (right, wrong):
        for form in (secret, secret.encode().hex(), pin_hash(secret).hex()):
            assert not [t for t in texts if form in t]


class _FingerprintMismatch(CtapDevice):
    """A key with built-in verification whose fingerprint check fails: getAssertion answers
    CTAP ``UV_INVALID`` (0x3F)."""

    def __init__(self, inner: EmulatedAuthenticator) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> int:
        return int(self.inner.capabilities)

    def call(
        self, cmd: int, data: bytes = b"", event: Any = None, on_keepalive: Any = None
    ) -> bytes:
        if cmd == CTAPHID.CBOR and data[:1] == b"\x02":
            return bytes([CtapError.ERR.UV_INVALID])
        return self.inner.call(cmd, data, event, on_keepalive)

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        return iter(())


def test_a_failed_built_in_verification_is_user_not_verified_not_pin_not_set(
    pki: TestAttestationPki,
) -> None:
    # UV_INVALID is a fingerprint that did not match, not a key without a PIN.
    device = _FingerprintMismatch(EmulatedAuthenticator(None, pki=pki))
    request = AuthRequest.new(ORIGIN, user_verification=False)
    with pytest.raises(UserNotVerifiedError, match="UV_INVALID") as raised:
        Fido2Authenticator(device, credentials=[bytes(32)]).authenticate(request)
    assert raised.value.code is ErrorCode.USER_NOT_VERIFIED
