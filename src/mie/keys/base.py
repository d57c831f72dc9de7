"""The key-provider interface and its errors.

A :class:`KeyProvider` holds two kinds of keys, each named by a label:

* AES-128 *master keys*, from which :meth:`KeyProvider.diversify` derives the per-badge key of
  NXP AN10922 (``CMAC(K, 01 ‖ M ‖ padding)``, see :func:`mie.desfire.crypto.diversify_aes128`);
* ECDSA P-256 *signing keys*, with which the enrolment authority signs badge identity records
  (:meth:`KeyProvider.sign`, checked with :meth:`KeyProvider.public_key`).

Only derived keys and signatures leave a provider; a master or private key never does. No
message, log line or ``repr`` of :mod:`mie.keys` carries key material, a diversification input
or a token PIN: only labels and lengths.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.errors import ErrorCode, MieError

DIVERSIFIED_KEY_SIZE = 16
"""Bytes of a diversified AES-128 key."""

MAX_DIVERSIFICATION_INPUT = 31
"""The longest AN10922 diversification input: ``01 ‖ M`` fills two AES blocks."""

PORTABLE_DIVERSIFICATION_INPUT = 16
"""The shortest input every provider accepts. A token computes AN10922 as a standard CMAC over
``01 ‖ M``, which is the same function only when ``01 ‖ M`` is longer than one AES block; the
default input ``UID(7) ‖ AID(3) ‖ system identifier`` reaches it with a 6-byte identifier."""


class KeyProviderError(MieError):
    """A key provider, or the token behind it, failed or refused an operation.

    ``reader_error`` is the closest contract code to "the security device failed"; a dedicated
    ``hsm_error`` code would say it better.
    """

    code = ErrorCode.READER_ERROR


class KeyNotFoundError(KeyProviderError):
    """No key has the label asked, or several have it (a label must name one key)."""


class KeyPolicyError(KeyProviderError):
    """The key has the label but not the properties :mod:`mie` requires: the wrong type or
    size, or a master or private key that the token would let out (not ``CKA_SENSITIVE``, or
    ``CKA_EXTRACTABLE``). Such a key is a misconfiguration, never used."""


class TokenLoginError(KeyProviderError):
    """The token refused the user PIN, or the PIN is locked. The message never has the PIN."""


class DiversificationInputError(KeyProviderError):
    """A diversification input this provider cannot diversify: outside 1..31 bytes, or shorter
    than the token path allows (:data:`PORTABLE_DIVERSIFICATION_INPUT`)."""

    code = ErrorCode.MALFORMED


class KeyFileError(KeyProviderError):
    """A key file that cannot be used: unreadable, readable by other users, or not of the
    format (:mod:`mie.keys.software`). The message names the file, never a key."""

    code = ErrorCode.MALFORMED


class ProviderClosedError(KeyProviderError):
    """The provider was used after :meth:`KeyProvider.close`."""


def check_diversification_input(data: bytes, minimum: int = 1) -> None:
    """Check the length of a diversification input.

    :param data: the input ``M`` (without the ``01`` constant).
    :param minimum: the shortest input the caller can diversify correctly.
    :raises DiversificationInputError: shorter than ``minimum`` or longer than 31 bytes.
    """
    if minimum <= len(data) <= MAX_DIVERSIFICATION_INPUT:
        return
    if len(data) > MAX_DIVERSIFICATION_INPUT:
        raise DiversificationInputError(
            f"Diversification input of {len(data)} bytes: AN10922 takes at most "
            f"{MAX_DIVERSIFICATION_INPUT}"
        )
    if minimum <= 1:
        raise DiversificationInputError("Empty diversification input: AN10922 takes 1 to 31 bytes")
    raise DiversificationInputError(
        f"Diversification input of {len(data)} bytes: this provider needs {minimum} to "
        f"{MAX_DIVERSIFICATION_INPUT} bytes, since a token's AES-CMAC over 01 ‖ M differs from "
        f"AN10922 when 01 ‖ M fits one AES block; append a system identifier to the input "
        f"(UID(7) ‖ AID(3) ‖ system identifier of at least 6 bytes)"
    )


class KeyProvider(abc.ABC):
    """Where master and signing keys live, and the operations that use them in place.

    A provider is a context manager; :meth:`close` releases it (a token session, key copies in
    memory) and is idempotent. Any use after :meth:`close` raises :class:`ProviderClosedError`.
    A provider is safe to share between threads.
    """

    @abc.abstractmethod
    def diversify(self, master: str, diversification_input: bytes) -> bytes:
        """Derive a per-badge AES-128 key by NXP AN10922.

        :param master: the label of the AES-128 master key.
        :param diversification_input: ``M``, typically ``UID(7) ‖ AID(3) ‖ system identifier``;
            every provider accepts 16 to 31 bytes (:data:`PORTABLE_DIVERSIFICATION_INPUT`).
        :return: the 16-byte diversified key.
        :raises DiversificationInputError: an input length the provider cannot diversify.
        :raises KeyNotFoundError: no master key, or several, have the label.
        :raises KeyPolicyError: the key is not a usable AES-128 master key.
        :raises KeyProviderError: the provider or its token failed.
        """

    @abc.abstractmethod
    def sign(self, key: str, data: bytes) -> bytes:
        """Sign with ECDSA P-256 over SHA-256.

        :param key: the label of the signing key.
        :param data: the message (hashed here with SHA-256).
        :return: the DER ``ECDSA-Sig-Value``, as :mod:`cryptography` verifies it.
        :raises KeyNotFoundError: no signing key, or several, have the label.
        :raises KeyPolicyError: the key is not a usable P-256 signing key.
        :raises KeyProviderError: the provider or its token failed.
        """

    @abc.abstractmethod
    def public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        """:return: the P-256 public key of the signing key labelled ``key``.

        :raises KeyNotFoundError: no public key, or several, have the label.
        :raises KeyPolicyError: the key is not a P-256 key.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the provider; closing twice does nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
