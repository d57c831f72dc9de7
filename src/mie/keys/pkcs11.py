"""Keys in a PKCS#11 token (an HSM, or SoftHSM2 in tests), through python-pkcs11.

Master keys are AES-128 secret keys found by ``CKA_LABEL``; each must be ``CKA_SENSITIVE``
and not ``CKA_EXTRACTABLE`` (a master key that can leave the token is refused as a
misconfiguration) and allowed to sign (``CKA_SIGN``). Diversification runs inside the token as
``C_Sign(CKM_AES_CMAC, 01 ‖ M)``, so only the per-badge key leaves it. That equals AN10922 when
``01 ‖ M`` is longer than one AES block: standard CMAC then pads to the same 32 bytes and picks
the same subkey. A shorter input would give another key, so inputs of fewer than 16 bytes are
refused (:class:`~mie.keys.base.DiversificationInputError`), never diversified differently.

The signing key is an EC private key on P-256 under the same rules (sensitive, not
extractable, ``CKA_SIGN``), with its public key stored under the same label. The SHA-256
digest is computed here and signed with ``CKM_ECDSA``, since SoftHSM2 2.6 has no
``CKM_ECDSA_SHA256``; the raw ``r ‖ s`` is returned as DER.

Limits of the library: a PKCS#11 call blocks until the module returns, and python-pkcs11 has
no timeout. A caller that needs a deadline (a network HSM) runs the provider in a worker
thread or process and gives up waiting itself; a call that never returns leaves that worker
blocked. PKCS#11 login state belongs to the process, so open one provider per token per
process and share it (it is thread-safe); :meth:`Pkcs11KeyProvider.close` logs the process
out of the token. When the token refuses the PIN, python-pkcs11 leaves the session it
opened for the login attempt open.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (
    MultipleTokensReturned,
    NoSuchToken,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.types import Object, Session, SignMixin, Token

from mie.core.strictjson import shown
from mie.keys.base import (
    DIVERSIFIED_KEY_SIZE,
    PORTABLE_DIVERSIFICATION_INPUT,
    KeyNotFoundError,
    KeyPolicyError,
    KeyProvider,
    KeyProviderError,
    ProviderClosedError,
    TokenLoginError,
    check_diversification_input,
)

logger = logging.getLogger(__name__)

PinSource = Callable[[], str]
"""Gives the token's user PIN when the provider logs in (once, at construction)."""

AN10922_AES128 = b"\x01"
"""The AN10922 constant that precedes the diversification input for AES-128."""

P256_PARAMETERS = bytes.fromhex("06082a8648ce3d030107")
"""``CKA_EC_PARAMS`` of P-256: the DER of the named-curve OID 1.2.840.10045.3.1.7."""

_P256_COORDINATE = 32

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Pkcs11KeyProvider(KeyProvider):
    """Master and signing keys in a PKCS#11 token, used in place.

    :param module: path of the PKCS#11 module (``/usr/lib/softhsm/libsofthsm2.so``).
    :param token_label: the label of the token (``CKA_LABEL`` of its token info).
    :param pin: gives the user PIN; called once, and the PIN is kept by nothing here.
    :raises KeyProviderError: the module cannot be loaded, or the token cannot be found
        (none or several have the label) or opened.
    :raises TokenLoginError: the token refused the PIN, or it is locked or expired.
    """

    def __init__(self, module: str | os.PathLike[str], token_label: str, pin: PinSource) -> None:
        self._module = os.fspath(module)
        self._token_label = token_label
        self._lock = threading.Lock()
        self._masters: dict[str, SignMixin] = {}
        self._signers: dict[str, SignMixin] = {}
        token = _find_token(self._module, token_label)
        self._session: Session | None = _log_in(token, pin)
        logger.info("Logged in to token %s", shown(token_label))

    def diversify(self, master: str, diversification_input: bytes) -> bytes:
        """Derive a per-badge key inside the token (:meth:`KeyProvider.diversify`).

        :raises DiversificationInputError: an input of fewer than 16 or more than 31 bytes;
            the message says to append a system identifier.
        """
        check_diversification_input(diversification_input, PORTABLE_DIVERSIFICATION_INPUT)
        logger.debug("Diversifying in the token with master key %s", shown(master))
        with self._lock:
            key = self._master(master)
            mac = self._call(
                key.sign,
                AN10922_AES128 + diversification_input,
                mechanism=Mechanism.AES_CMAC,
            )
        if len(mac) != DIVERSIFIED_KEY_SIZE:
            raise KeyProviderError(f"The token's AES-CMAC gave {len(mac)} bytes, not 16")
        return mac

    def sign(self, key: str, data: bytes) -> bytes:
        """Sign inside the token with ECDSA P-256 over SHA-256 (:meth:`KeyProvider.sign`)."""
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        logger.debug("Signing in the token with key %s", shown(key))
        with self._lock:
            signer = self._signer(key)
            raw = self._call(signer.sign, digest.finalize(), mechanism=Mechanism.ECDSA)
        if len(raw) != 2 * _P256_COORDINATE:
            raise KeyProviderError(f"The token's ECDSA signature is {len(raw)} bytes, not 64")
        r = int.from_bytes(raw[:_P256_COORDINATE], "big")
        s = int.from_bytes(raw[_P256_COORDINATE:], "big")
        return encode_dss_signature(r, s)

    def public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        """:return: the public key stored in the token under the label ``key``."""
        with self._lock:
            found = self._find(ObjectClass.PUBLIC_KEY, key, "public key")
            return self._call(_public_key_of, found, key)

    def close(self) -> None:
        """Log out of the token and close the session."""
        with self._lock:
            session, self._session = self._session, None
            self._masters.clear()
            self._signers.clear()
        if session is not None:
            try:
                session.close()
            except PKCS11Error as e:
                raise KeyProviderError(
                    f"Closing the session on token {shown(self._token_label)} failed "
                    f"({type(e).__name__})"
                ) from e

    def _master(self, label: str) -> SignMixin:
        key = self._masters.get(label)
        if key is None:
            found = self._find(ObjectClass.SECRET_KEY, label, "master key")
            key = self._call(_checked_master, found, label)
            self._masters[label] = key
        return key

    def _signer(self, label: str) -> SignMixin:
        key = self._signers.get(label)
        if key is None:
            found = self._find(ObjectClass.PRIVATE_KEY, label, "signing key")
            key = self._call(_checked_signer, found, label)
            self._signers[label] = key
        return key

    def _find(self, object_class: ObjectClass, label: str, what: str) -> Object:
        session = self._open_session()
        found = self._call(
            lambda: list(
                session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label})
            )
        )
        if not found:
            raise KeyNotFoundError(f"No {what} labelled {shown(label)} in the token")
        if len(found) > 1:
            raise KeyNotFoundError(
                f"Several objects are labelled {shown(label)} in the token: a label must name "
                f"one {what}"
            )
        return found[0]

    def _open_session(self) -> Session:
        if self._session is None:
            raise ProviderClosedError("The PKCS#11 key provider is closed")
        return self._session

    def _call(self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run a python-pkcs11 call, its failures made :class:`KeyProviderError`."""
        self._open_session()
        try:
            return function(*args, **kwargs)
        except PKCS11Error as e:
            # A failed call may mean a key was deleted or replaced: look it up again next time.
            self._masters.clear()
            self._signers.clear()
            raise KeyProviderError(
                f"The token {shown(self._token_label)} failed: {type(e).__name__}"
            ) from e

    def __repr__(self) -> str:
        state = "closed" if self._session is None else "open"
        return f"Pkcs11KeyProvider(module={self._module!r}, token={self._token_label!r}, {state})"


def _find_token(module: str, label: str) -> Token:
    try:
        return pkcs11.lib(module).get_token(token_label=label)
    except NoSuchToken as e:
        raise KeyProviderError(f"No token labelled {shown(label)} in {module}") from e
    except MultipleTokensReturned as e:
        raise KeyProviderError(f"Several tokens are labelled {shown(label)} in {module}") from e
    except PKCS11Error as e:
        raise KeyProviderError(f"Cannot load the PKCS#11 module {module}") from e


def _log_in(token: Token, pin: PinSource) -> Session:
    label = shown(token.label)
    try:
        return token.open(user_pin=pin())
    except (PinIncorrect, PinInvalid, PinLenRange) as e:
        raise TokenLoginError(f"The token {label} refused the user PIN") from e
    except PinLocked as e:
        raise TokenLoginError(f"The user PIN of token {label} is locked") from e
    except PinExpired as e:
        raise TokenLoginError(f"The user PIN of token {label} has expired") from e
    except UserAlreadyLoggedIn as e:
        raise KeyProviderError(
            f"This process is already logged in to token {label}: share one provider per token"
        ) from e
    except PKCS11Error as e:
        raise KeyProviderError(f"Cannot log in to token {label}: {type(e).__name__}") from e


def _checked_master(key: Object, label: str) -> SignMixin:
    name = f"Master key {shown(label)}"
    if key[Attribute.KEY_TYPE] != KeyType.AES or key[Attribute.VALUE_LEN] != DIVERSIFIED_KEY_SIZE:
        raise KeyPolicyError(f"{name} is not an AES-128 key")
    return _check_kept_in(key, name)


def _checked_signer(key: Object, label: str) -> SignMixin:
    name = f"Signing key {shown(label)}"
    _check_p256(key, label, "signing key")
    return _check_kept_in(key, name)


def _check_kept_in(key: Object, name: str) -> SignMixin:
    """Refuse a key the token would let out, or that cannot sign."""
    if not key[Attribute.SENSITIVE]:
        raise KeyPolicyError(f"{name} is not CKA_SENSITIVE: the token could reveal it")
    if key[Attribute.EXTRACTABLE]:
        raise KeyPolicyError(f"{name} is CKA_EXTRACTABLE: it could be wrapped out of the token")
    if not isinstance(key, SignMixin) or not key[Attribute.SIGN]:
        raise KeyPolicyError(f"{name} is not allowed to sign (CKA_SIGN)")
    return key


def _check_p256(key: Object, label: str, what: str) -> None:
    if key[Attribute.KEY_TYPE] != KeyType.EC or key[Attribute.EC_PARAMS] != P256_PARAMETERS:
        raise KeyPolicyError(f"The {what} {shown(label)} is not a P-256 key")


def _public_key_of(key: Object, label: str) -> ec.EllipticCurvePublicKey:
    """:return: the key of a public-key object, whose ``CKA_EC_POINT`` is the DER OCTET STRING
    of an X9.62 point."""
    _check_p256(key, label, "public key")
    ec_point: bytes = key[Attribute.EC_POINT]
    point = ec_point[2:]
    if len(ec_point) < 3 or ec_point[0] != 0x04 or ec_point[1] != len(point):
        raise KeyPolicyError(f"The EC point of public key {shown(label)} is not a DER octet string")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as e:
        raise KeyPolicyError(f"The public key {shown(label)} is not a point of P-256") from e
