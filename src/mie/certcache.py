"""A cache of the authentication certificates cards proved they hold the key of.

A warm login signs first and finds the certificate whose key verifies the signature here, so it
reads no certificate from the card; see :class:`CertificateCache` for why this never lets one
card pass for another.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _CacheEntry:
    der: bytes
    certificate: x509.Certificate
    key: rsa.RSAPublicKey
    # EF.SN as read in the session that proved this certificate: a hint to find the entry
    # before signing (CPS4), never a value reported.
    serial: str | None
    chain_verified: bool


class CertificateCache:
    """Authentication certificates of cards that proved they hold the certificate's key.

    Only an authentication adds entries: after the card's fresh signature verified with the
    certificate and, unless the caller opted out of chain checks, after its chain verified.
    :meth:`mie.auth.CpxAuthenticator.identify` never does. An entry is used only when a new
    signature verifies with its key, so it never vouches for another card, and the serial and
    identity of a result come from the certificate, never from how the entry was found.
    """

    def __init__(self, max_entries: int = 64) -> None:
        # Certificates are kept parsed, with their key: match() runs on every warm login.
        self._entries: dict[bytes, _CacheEntry] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def add(
        self,
        der: bytes,
        certificate: x509.Certificate,
        *,
        serial: str | None,
        chain_verified: bool,
    ) -> None:
        """Remember a certificate that verified a card's signature (least recently added go first).

        :param der: the certificate exactly as the card returned it.
        :param certificate: ``der`` parsed.
        :param serial: EF.SN as read in the same session (a lookup hint), if read.
        :param chain_verified: whether the certificate's chain verified.
        :raises ValueError: the certificate does not hold an RSA key.
        """
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("Only certificates with an RSA key are cached")
        digest = hashlib.sha256(der).digest()
        with self._lock:
            previous = self._entries.pop(digest, None)
            verified = chain_verified or (previous is not None and previous.chain_verified)
            self._entries[digest] = _CacheEntry(der, certificate, key, serial, verified)
            while len(self._entries) > self.max_entries:
                del self._entries[next(iter(self._entries))]

    def discard(self, der: bytes) -> None:
        """Forget the certificate ``der`` (it failed a check after it was found here)."""
        with self._lock:
            self._entries.pop(hashlib.sha256(der).digest(), None)

    def match(
        self, challenge: bytes, signature: bytes, *, chain_verified: bool = True
    ) -> tuple[bytes, x509.Certificate] | None:
        """Find the cached certificate whose key made ``signature`` over ``challenge``.

        An entry that fails in any way is a miss: one entry never breaks another card's login.

        :param chain_verified: consider only certificates whose chain verified.
        :return: ``(der, certificate)`` or ``None``.
        """
        for entry in self._candidates(chain_verified):
            if _entry_verifies(entry, challenge, signature):
                return entry.der, entry.certificate
        return None

    def by_serial(
        self, serial: str, *, chain_verified: bool = True
    ) -> tuple[bytes, x509.Certificate] | None:
        """The certificate last cached for a card that showed EF.SN ``serial`` (a hint only: the
        card must still prove it holds the key).

        :param chain_verified: consider only certificates whose chain verified.
        :return: ``(der, certificate)`` or ``None``.
        """
        found = [e for e in self._candidates(chain_verified) if e.serial == serial]
        return (found[-1].der, found[-1].certificate) if found else None

    def _candidates(self, chain_verified: bool) -> list[_CacheEntry]:
        with self._lock:
            entries = list(self._entries.values())
        return [e for e in entries if e.chain_verified or not chain_verified]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _entry_verifies(entry: _CacheEntry, challenge: bytes, signature: bytes) -> bool:
    if len(signature) != (entry.key.key_size + 7) // 8:
        return False
    try:
        entry.key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        # Any failure (not only a wrong signature) is a miss: the card's certificate is read.
        logger.debug("Cached certificate does not verify the signature")
        return False
    return True
