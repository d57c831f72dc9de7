"""The FIDO2 client: a security key on the common :class:`~mie.auth.Authenticator` model, over
python-fido2's ``Fido2Client`` (plan §3.1).

:class:`Fido2Authenticator` wraps any ``fido2.ctap.CtapDevice`` (HID, PC/SC through
:mod:`mie.transport.ctap`, the emulator in process). :meth:`~Fido2Authenticator.register`
creates a credential and returns its
:class:`~mie.fido.registration.RegistrationData`; :meth:`~Fido2Authenticator.authenticate`
returns a :class:`~mie.fido.evidence.WebAuthnAssertionEvidence`. The client data is WebAuthn's
own, ``{"type", "challenge": b64url(nonce), "origin", "crossOrigin": false}`` with the relying
party's nonce as the challenge and its origin (plan D1), so any WebAuthn verifier checks the
result unchanged.

The PIN is handled as the cards handle it (plan D13): the tries left are read first (none:
``pin_blocked``; the key waiting for a power cycle: ``pin_auth_blocked``; one, unless the
request allows the last try: ``last_try_refused``, nothing sent), the user is asked once, the
PIN is checked (:func:`~mie.fido.pin.check_fido_pin`), and a wrong PIN ends the operation
(``invalid_pin`` with the tries read again): no retry. The PIN is never logged.

Every failure is a :mod:`mie.errors` class (plan D7): the CTAP statuses and python-fido2's
``ClientError`` are translated at this edge, a key that goes away is ``card_removed``. A key
that speaks only CTAP1/U2F is refused (``unsupported_card``): it cannot verify its user.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NoReturn
from urllib.parse import urlsplit

from fido2.client import (
    ClientDataCollector,
    ClientError,
    Fido2Client,
    UserInteraction,
)
from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.base import Ctap2, Info
from fido2.ctap2.pin import ClientPin
from fido2.hid import ConnectionFailure, CtapHidDevice
from fido2.rpid import verify_rp_id
from fido2.webauthn import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    CollectedClientData,
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRequestOptions,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from mie.auth import Authenticator
from mie.core.connection import Connection, Transport
from mie.core.errors import (
    BadResponseError,
    CardRemovedError,
    InvalidPinError,
    LastTryRefusedError,
    MieError,
    PinAuthBlockedError,
    PinBlockedError,
    UnsupportedCardError,
)
from mie.fido.errors import (
    AlreadyRegisteredError,
    CredentialUnknownError,
    CtapStatusError,
    PinNotSetError,
    RpIdMismatchError,
    TouchTimeoutError,
    UserNotVerifiedError,
)
from mie.fido.evidence import WebAuthnAssertionEvidence
from mie.fido.pin import check_fido_pin
from mie.fido.registration import RegistrationData
from mie.request import AuthRequest, UserVerification
from mie.result import AuthenticatorInfo, Identification

__all__ = ["CtapConnection", "Fido2Authenticator", "credential_ref"]

logger = logging.getLogger(__name__)
ERR = CtapError.ERR

#: The COSE algorithms asked for by default: ES256, then EdDSA.
DEFAULT_ALGORITHMS = (-7, -8)
MAX_CREDENTIAL_ID = 1023
MAX_CREDENTIALS = 64
MAX_NAME = 64
USER_HANDLE_BYTES = 16
MAX_TIMEOUT_S = 600.0
MAX_TRANSPORTS = 8
_TRANSPORT = re.compile(r"[a-z][a-z0-9-]{0,31}")

_TOUCH_TIMEOUTS = frozenset({ERR.KEEPALIVE_CANCEL, ERR.USER_ACTION_TIMEOUT, ERR.ACTION_TIMEOUT})
# What python-fido2 raises when a key's answer does not parse (non-canonical CBOR, a missing
# member, a wrong type) or its CTAPHID framing breaks.
_BAD_ANSWERS = (ValueError, KeyError, TypeError, ConnectionFailure)


def credential_ref(credential_id: bytes) -> str:
    """The short name of a credential in results: the ``serial`` of a FIDO2 authentication.

    :param credential_id: the credential id (up to 1023 bytes).
    :return: the first 16 bytes of its SHA-256, in hex.
    """
    return hashlib.sha256(credential_id).digest()[:16].hex()


class CtapConnection(Connection):
    """The :class:`~mie.core.connection.Connection` of a FIDO2 key: closing it closes the device.

    :param device: the python-fido2 device.
    """

    def __init__(self, device: CtapDevice) -> None:
        self.device = device

    def close(self) -> None:
        """Close the device (a HID handle, a socket, a PC/SC connection)."""
        self.device.close()


class Fido2Authenticator(Authenticator):
    """A FIDO2 security key (CTAP 2.0 or 2.1) as an authenticator (see the module docstring).

    :param device: the key, any python-fido2 ``CtapDevice``.
    :param rp_id: the relying party id; ``None``: the host of each request's origin.
    :param credentials: the credential ids an authentication may use (the ``allowList``);
        empty: the key's discoverable credentials for the relying party (the newest).
    :param name: the ``kind`` reported in :attr:`info`.
    :param transport: how the key is reached; ``None``: USB for a HID device (also as
        :func:`~mie.transport.ctap.open_ctap_device` returns it), the card connection's for a
        FIDO applet on a smart card, else not known.
    :param atr: the ATR, for a key reached over PC/SC.
    :param timeout: seconds an operation may take, the user's touch included (then
        ``TouchTimeoutError``).
    :param on_touch: called once per operation when the key waits for the user's touch.
    :raises ValueError: a bad credential id, name or timeout.
    """

    connection: CtapConnection

    def __init__(
        self,
        device: CtapDevice,
        *,
        rp_id: str | None = None,
        credentials: Sequence[bytes] = (),
        name: str = "fido2",
        transport: Transport | None = None,
        atr: bytes | None = None,
        timeout: float = 30.0,
        on_touch: Callable[[], None] | None = None,
    ) -> None:
        if rp_id is not None and (not isinstance(rp_id, str) or not 0 < len(rp_id) <= 253):
            raise ValueError("rp_id must be a non-empty str of at most 253 characters")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise ValueError(f"The name must be a non-empty str of at most {MAX_NAME} characters")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT_S
            or math.isnan(timeout)
        ):
            raise ValueError(f"The timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
        self.connection = CtapConnection(device)
        self.device = device
        self.rp_id = rp_id
        self.credentials = _credential_ids(credentials, "credentials")
        self.timeout = float(timeout)
        self.on_touch = on_touch
        if transport is None:
            transport = _transport_of(device)
        self._info = AuthenticatorInfo(name, None, atr, transport)

    def __repr__(self) -> str:
        return f"Fido2Authenticator({self.device!r}, rp_id={self.rp_id!r})"

    @property
    def info(self) -> AuthenticatorInfo:
        """What was presented: the ``name`` given, the transport, and once an authentication
        named its credential the :func:`credential_ref` of it as the serial."""
        return self._info

    def identify(self) -> Identification:
        """Check the key speaks CTAP2 (one authenticatorGetInfo); a key holds no identity: the
        credential store knows whose a credential is.

        :return: the key, with no identity and no certificate.
        :raises UnsupportedCardError: not a CTAP2 key.
        """
        with _translated(None):
            _ctap2(self.device)
        return Identification(self._info, None, None)

    def pin_retries(self) -> int | None:
        """Read the PIN tries left (no PIN is asked, no try is spent).

        :return: the tries left, or ``None`` when the key has no PIN set.
        :raises UnsupportedCardError: not a CTAP2 key.
        """
        with _translated(None):
            ctap2 = _ctap2(self.device)
            if not ctap2.info.options.get("clientPin"):
                return None
            return int(ClientPin(ctap2).get_pin_retries()[0])

    def authenticate(
        self, request: AuthRequest, *, user: UserVerification | None = None
    ) -> WebAuthnAssertionEvidence:
        """Have the key sign an assertion for ``request`` (WebAuthn ``get``).

        :param request: the relying party's nonce (the challenge), origin, whether the user
            must be verified (the PIN), and whether the last PIN try may be spent.
        :param user: asked for the PIN once, after the tries were read, when the key needs it.
        :return: the assertion as evidence; :attr:`info` then names the credential.
        :raises TypeError: ``request`` is not an :class:`~mie.request.AuthRequest`.
        :raises ValueError: user verification is asked and no ``user`` was given; nothing sent.
        :raises RpIdMismatchError: the relying party id is not valid for the origin.
        :raises UnsupportedCardError: not a CTAP2 key.
        :raises PinNotSetError: user verification is asked and the key has no PIN (nor
            built-in verification).
        :raises LastTryRefusedError: one PIN try left and the request does not allow it.
        :raises PinBlockedError: no PIN try left.
        :raises PinAuthBlockedError: three wrong PINs in a row: unplug the key.
        :raises InvalidPinError: the key refused the PIN (``tries_left`` read again).
        :raises CredentialUnknownError: the key holds no credential for the relying party.
        :raises TouchTimeoutError: nobody touched the key in time.
        :raises CardRemovedError: the key went away.
        :raises CtapStatusError: any other CTAP status.
        """
        rp_id = self._start(request, user)
        interaction = _Interaction(self.device, request, user, self.on_touch)
        allow = [
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c)
            for c in self.credentials
        ]
        options = PublicKeyCredentialRequestOptions(
            challenge=request.nonce,
            timeout=self._timeout_ms,
            rp_id=rp_id,
            allow_credentials=allow or None,
            user_verification=_uv(request),
        )
        with _translated(interaction, rp_id=rp_id):
            client = self._client(request, rp_id, interaction)
            selection = client.get_assertion(options)
            response = selection.get_response(0)
            assertion = response.response
            credential_id = bytes(response.raw_id)
            evidence = WebAuthnAssertionEvidence(
                nonce=request.nonce,
                origin=request.origin,
                rp_id=rp_id,
                credential_id=credential_id,
                authenticator_data=bytes(assertion.authenticator_data),
                client_data_json=bytes(assertion.client_data),
                signature=bytes(assertion.signature),
                user_handle=(
                    bytes(assertion.user_handle) if assertion.user_handle is not None else None
                ),
            )
        self._info = replace(self._info, serial=credential_ref(credential_id))
        logger.info("FIDO2 assertion for %s by credential %s", rp_id, self._info.serial)
        return evidence

    def register(
        self,
        request: AuthRequest,
        *,
        user: UserVerification | None,
        user_name: str,
        display_name: str,
        resident_key: bool = False,
        exclude: Sequence[bytes] = (),
        algorithms: Sequence[int] = DEFAULT_ALGORITHMS,
    ) -> RegistrationData:
        """Create a credential on the key (WebAuthn ``create``, direct attestation).

        The WebAuthn user handle is 16 random bytes, new for each credential: no personal data
        goes to the key (the credential store binds the credential to the professional).

        :param request: the relying party's nonce (the challenge) and origin; its
            ``user_verification`` asks for the PIN.
        :param user: asked for the PIN once, after the tries were read.
        :param user_name: the account name the key may show (1 to 64 characters).
        :param display_name: the name the key may show (1 to 64 characters).
        :param resident_key: make a discoverable credential.
        :param exclude: credential ids already registered: the key refuses to register again.
        :param algorithms: the COSE algorithms accepted, by preference.
        :return: what :func:`mie.fido.registration.verify_registration` checks.
        :raises AlreadyRegisteredError: the key holds one of ``exclude`` for the relying party.
        :raises MieError: as :meth:`authenticate` (``credential_unknown`` aside).
        """
        rp_id = self._start(request, user)
        for what, text in (("user_name", user_name), ("display_name", display_name)):
            if not isinstance(text, str) or not 0 < len(text) <= MAX_NAME:
                raise ValueError(f"{what} must be a non-empty str of at most {MAX_NAME} characters")
        algs = tuple(algorithms)
        if not algs or any(type(alg) is not int for alg in algs):
            raise ValueError("The algorithms must be a non-empty sequence of COSE algorithm ints")
        excluded = [
            PublicKeyCredentialDescriptor(type=PublicKeyCredentialType.PUBLIC_KEY, id=c)
            for c in _credential_ids(exclude, "exclude")
        ]
        user_handle = os.urandom(USER_HANDLE_BYTES)
        options = PublicKeyCredentialCreationOptions(
            rp=PublicKeyCredentialRpEntity(name=rp_id, id=rp_id),
            user=PublicKeyCredentialUserEntity(
                id=user_handle, name=user_name, display_name=display_name
            ),
            challenge=request.nonce,
            pub_key_cred_params=[
                PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
                for alg in algs
            ],
            timeout=self._timeout_ms,
            exclude_credentials=excluded or None,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=(
                    ResidentKeyRequirement.REQUIRED
                    if resident_key
                    else ResidentKeyRequirement.DISCOURAGED
                ),
                user_verification=_uv(request),
            ),
            attestation=AttestationConveyancePreference.DIRECT,
        )
        interaction = _Interaction(self.device, request, user, self.on_touch)
        with _translated(interaction, rp_id=rp_id):
            client = self._client(request, rp_id, interaction)
            response = client.make_credential(options)
            attestation = response.response
            data = RegistrationData(
                nonce=request.nonce,
                origin=request.origin,
                rp_id=rp_id,
                credential_id=bytes(response.raw_id),
                user_handle=user_handle,
                client_data_json=bytes(attestation.client_data),
                attestation_object=bytes(attestation.attestation_object),
                transports=_transports(client.info.transports),
            )
        logger.info(
            "FIDO2 credential %s registered for %s", credential_ref(data.credential_id), rp_id
        )
        return data

    # Shared steps

    @property
    def _timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))

    def _start(self, request: AuthRequest, user: UserVerification | None) -> str:
        """Check what can be checked before anything is sent; return the relying party id."""
        if not isinstance(request, AuthRequest):
            raise TypeError(f"A FIDO2 key takes an AuthRequest, not a {type(request).__name__}")
        if request.user_verification and user is None:
            raise ValueError("User verification asks for the key's PIN: pass user=")
        rp_id = self.rp_id if self.rp_id is not None else _host(request.origin)
        if not _rp_id_valid(rp_id, request.origin):
            raise RpIdMismatchError(
                f"Relying party id {rp_id!r} is not valid for origin {request.origin}"
            )
        return rp_id

    def _client(self, request: AuthRequest, rp_id: str, interaction: _Interaction) -> Fido2Client:
        """Open a python-fido2 client on a checked CTAP2 key (no CTAP1 fallback)."""
        ctap2 = _ctap2(self.device)
        interaction.ctap2 = ctap2
        if request.user_verification and not _uv_configured(ctap2.info):
            raise PinNotSetError(
                "User verification is required and the key has no PIN set (nor built-in "
                "verification)"
            )
        client = Fido2Client(
            self.device, _NonceClientData(request, rp_id), interaction, extensions=[]
        )
        if "FIDO_2_0" not in client.info.versions:
            raise UnsupportedCardError("Not a CTAP2 key (python-fido2 fell back to CTAP1/U2F)")
        return client


@dataclass(frozen=True)
class _NonceClientData(ClientDataCollector):
    """WebAuthn client data with the request's nonce as the challenge and its origin."""

    request: AuthRequest
    rp_id: str

    def collect_client_data(
        self, options: PublicKeyCredentialCreationOptions | PublicKeyCredentialRequestOptions
    ) -> tuple[CollectedClientData, str]:
        if not hmac.compare_digest(bytes(options.challenge), self.request.nonce):
            raise ValueError("The options' challenge is not the request's nonce")
        if isinstance(options, PublicKeyCredentialCreationOptions):
            kind = CollectedClientData.TYPE.CREATE
        else:
            kind = CollectedClientData.TYPE.GET
        data = CollectedClientData.create(kind, self.request.nonce, self.request.origin)
        return data, self.rp_id


class _Interaction(UserInteraction):
    """python-fido2's user side: the touch prompt, and the PIN as the cards ask for it."""

    def __init__(
        self,
        device: CtapDevice,
        request: AuthRequest,
        user: UserVerification | None,
        on_touch: Callable[[], None] | None,
    ) -> None:
        self.device = device
        self.request = request
        self.user = user
        self.on_touch = on_touch
        self.ctap2: Ctap2 | None = None
        self.asked = False
        self.touched = False
        #: What this object raised, so the error edge passes it on unchanged.
        self.raised: BaseException | None = None
        self._lock = threading.Lock()

    def prompt_up(self) -> None:
        with self._lock:
            if self.touched:
                return
            self.touched = True
        if self.on_touch is not None:
            try:
                self.on_touch()
            except BaseException as e:
                self.raised = e
                raise

    def request_pin(self, permissions: ClientPin.PERMISSION, rp_id: str | None) -> str | None:
        try:
            return self._pin()
        except BaseException as e:
            self.raised = e
            raise

    def _pin(self) -> str:
        if self.asked:
            # python-fido2 asks again only after PIN_AUTH_BLOCKED, once it reconnected to the
            # key (NFC): the wrong PINs are the user's, the operation ends.
            raise PinAuthBlockedError()
        self.asked = True
        if self.user is None:
            raise ValueError("The key asks for its PIN: pass user=")
        tries = self.tries()
        pin = self.user.request_pin(tries)
        if isinstance(pin, str):
            return check_fido_pin(pin)
        if not isinstance(pin, bytes | bytearray):
            raise TypeError(f"request_pin returned a {type(pin).__name__}, not a str")
        owned = pin if isinstance(pin, bytearray) else bytearray(pin)
        try:
            return check_fido_pin(owned)
        finally:
            owned[:] = bytes(len(owned))

    def tries(self) -> int:
        """Read the tries left and refuse what the cards refuse; nothing else is sent."""
        ctap2 = self.ctap2 if self.ctap2 is not None else _ctap2(self.device)
        with _translated(None):
            retries, power_cycle = ClientPin(ctap2).get_pin_retries()
        if retries == 0:
            raise PinBlockedError()
        if power_cycle:
            raise PinAuthBlockedError()
        if retries == 1 and not self.request.allow_last_try:
            raise LastTryRefusedError()
        return int(retries)


def _ctap2(device: CtapDevice) -> Ctap2:
    """A CTAP2 session on ``device`` (one getInfo), refusing a key without FIDO_2_0."""
    try:
        ctap2 = Ctap2(device)
    except ValueError as e:
        if "CTAP2" in str(e):
            raise UnsupportedCardError("Not a CTAP2 key: it speaks only CTAP1/U2F") from e
        raise
    if "FIDO_2_0" not in ctap2.info.versions:
        raise UnsupportedCardError(
            f"Not a CTAP2 key: getInfo names versions {list(ctap2.info.versions)[:4]}"
        )
    return ctap2


def _transport_of(device: CtapDevice) -> Transport | None:
    """USB for a HID key; what a :mod:`mie.transport.ctap` device says it is (its
    ``transport``: a HID key behind the pull guard, a FIDO applet on a card); else not known."""
    if isinstance(device, CtapHidDevice):
        return Transport.USB
    transport = getattr(device, "transport", None)
    return transport if isinstance(transport, Transport) else None


def _uv(request: AuthRequest) -> UserVerificationRequirement:
    if request.user_verification:
        return UserVerificationRequirement.REQUIRED
    return UserVerificationRequirement.DISCOURAGED


def _uv_configured(info: Info) -> bool:
    return any(info.options.get(k) for k in ("clientPin", "uv", "bioEnroll"))


def _host(origin: str) -> str:
    host = urlsplit(origin).hostname
    return host if host is not None else ""


def _rp_id_valid(rp_id: str, origin: str) -> bool:
    try:
        return bool(verify_rp_id(rp_id, origin))
    except ValueError:
        return False


def _transports(named: Sequence[object]) -> tuple[str, ...]:
    """The transports getInfo names (informative): well-formed names, each once, at most 8."""
    kept: list[str] = []
    for transport in named:
        if isinstance(transport, str) and _TRANSPORT.fullmatch(transport) and transport not in kept:
            kept.append(transport)
    return tuple(kept[:MAX_TRANSPORTS])


def _credential_ids(ids: Sequence[bytes], what: str) -> tuple[bytes, ...]:
    if isinstance(ids, bytes | bytearray | str):
        raise TypeError(f"{what} is a sequence of credential ids, not one {type(ids).__name__}")
    result = tuple(bytes(i) if isinstance(i, bytearray) else i for i in ids)
    if len(result) > MAX_CREDENTIALS:
        raise ValueError(f"{what}: {len(result)} credential ids, at most {MAX_CREDENTIALS}")
    for credential_id in result:
        if not isinstance(credential_id, bytes):
            raise TypeError(f"{what}: a credential id is bytes, not {type(credential_id).__name__}")
        if not 1 <= len(credential_id) <= MAX_CREDENTIAL_ID:
            raise ValueError(
                f"{what}: a credential id of {len(credential_id)} bytes, 1 to {MAX_CREDENTIAL_ID}"
            )
    return result


# The error edge (plan D7)


@contextlib.contextmanager
def _translated(interaction: _Interaction | None, *, rp_id: str | None = None) -> Iterator[None]:
    """Turn what python-fido2 and the device raise into :mod:`mie.errors` classes."""
    try:
        yield
    except MieError:
        raise
    except Exception as e:
        if interaction is not None and e is interaction.raised:
            raise
        _translate(e, interaction, rp_id)


def _translate(e: Exception, interaction: _Interaction | None, rp_id: str | None) -> NoReturn:
    if isinstance(e, ClientError):
        cause = e.cause
        if isinstance(cause, CtapError):
            _ctap_error(cause, interaction, rp_id)
        if isinstance(cause, MieError):
            raise cause
        if e.code == ClientError.ERR.TIMEOUT:
            raise TouchTimeoutError("Nobody touched the key in time") from e
        if e.code == ClientError.ERR.CONFIGURATION_UNSUPPORTED:
            if "verification" in str(cause):
                raise PinNotSetError("The key has no PIN set (nor built-in verification)") from e
            raise UnsupportedCardError(f"The key cannot do this: {cause}") from e
        raise CtapStatusError(int(ERR.OTHER), f"FIDO2 client error {e.code.name}") from e
    if isinstance(e, CtapError):
        _ctap_error(e, interaction, rp_id)
    if isinstance(e, OSError):
        raise CardRemovedError(f"The security key went away: {_first_line(e)}") from e
    if isinstance(e, _BAD_ANSWERS):
        raise BadResponseError(f"The key's answer is malformed: {_first_line(e)}") from e
    raise e


def _ctap_error(e: CtapError, interaction: _Interaction | None, rp_id: str | None) -> NoReturn:
    code = e.code
    if code == ERR.CREDENTIAL_EXCLUDED:
        raise AlreadyRegisteredError(
            "The key already holds a credential of the exclude list for this relying party"
        ) from e
    if code == ERR.NO_CREDENTIALS:
        raise CredentialUnknownError(
            f"The key holds no usable credential for relying party {rp_id!r}"
        ) from e
    if code == ERR.PIN_NOT_SET:
        raise PinNotSetError("The key has no PIN set (nor built-in verification)") from e
    if code == ERR.UV_INVALID:  # built-in verification failed: a fingerprint did not match
        raise UserNotVerifiedError(
            "The key's built-in user verification failed (CTAP UV_INVALID)"
        ) from e
    if code in _TOUCH_TIMEOUTS:
        raise TouchTimeoutError(f"Nobody touched the key in time (CTAP {code.name})") from e
    if code == ERR.PIN_AUTH_BLOCKED:
        raise PinAuthBlockedError() from e
    if code == ERR.PIN_BLOCKED:
        raise PinBlockedError() from e
    if code == ERR.PIN_INVALID and interaction is not None:
        raise InvalidPinError(_tries_after(interaction)) from e
    name = code.name if isinstance(code, ERR) else "unknown"
    raise CtapStatusError(
        int(code), f"The key answered CTAP error 0x{int(code):02X} ({name})"
    ) from e


def _tries_after(interaction: _Interaction) -> int:
    """The tries left once the key refused a PIN, read again."""
    ctap2 = interaction.ctap2 if interaction.ctap2 is not None else _ctap2(interaction.device)
    with _translated(None):
        return int(ClientPin(ctap2).get_pin_retries()[0])


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:120] if text and text[0] else type(e).__name__
