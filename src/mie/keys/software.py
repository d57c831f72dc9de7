"""Keys held in this process's memory, for tests and demonstrations.

Master keys are diversified by :func:`mie.desfire.crypto.diversify_aes128` (AN10922 in software,
any input of 1 to 31 bytes; a token accepts only 16 to 31, see
:data:`mie.keys.base.PORTABLE_DIVERSIFICATION_INPUT`). Python cannot wipe memory, so the keys
stay in it until the process ends: use :class:`mie.keys.pkcs11.Pkcs11KeyProvider` for
production master keys.

Key file format (:meth:`SoftwareKeyProvider.from_file`): UTF-8 JSON of at most 64 KiB, with
permissions that give group and others nothing (``chmod 600``)::

    {
      "format": "mie-keys/1",
      "aes128": {"badge-master": "00112233445566778899aabbccddeeff"},
      "ecdsa-p256": {"enrolment-authority": "<64 hex digits: the private scalar d>"}
    }

``aes128`` maps master-key labels to 32 hex digits; ``ecdsa-p256`` maps signing-key labels to
the 64 hex digits of the P-256 private scalar (big-endian). Both sections are optional; no
other member is allowed.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.strictjson import loads, shown
from mie.desfire.crypto import diversify_aes128
from mie.keys.base import (
    DIVERSIFIED_KEY_SIZE,
    KeyFileError,
    KeyNotFoundError,
    KeyProvider,
    ProviderClosedError,
    check_diversification_input,
)

logger = logging.getLogger(__name__)

KEY_FILE_FORMAT = "mie-keys/1"
MAX_KEY_FILE = 64 * 1024
_AES_HEX = re.compile(r"[0-9A-Fa-f]{32}")
_SCALAR_HEX = re.compile(r"[0-9A-Fa-f]{64}")
_MEMBERS = frozenset({"format", "aes128", "ecdsa-p256"})


class SoftwareKeyProvider(KeyProvider):
    """Master and signing keys given as values.

    :param masters: AES-128 master keys (16 bytes each) by label.
    :param signing_keys: ECDSA P-256 private keys by label.
    :raises ValueError: a master key that is not 16 bytes, or a signing key not on P-256.
    """

    def __init__(
        self,
        masters: Mapping[str, bytes] | None = None,
        signing_keys: Mapping[str, ec.EllipticCurvePrivateKey] | None = None,
    ) -> None:
        self._masters = dict(masters or {})
        self._signing = dict(signing_keys or {})
        self._closed = False
        for label, value in self._masters.items():
            if len(value) != DIVERSIFIED_KEY_SIZE:
                raise ValueError(
                    f"Master key {shown(label)} is {len(value)} bytes, AES-128 needs 16"
                )
        for label, key in self._signing.items():
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError(f"Signing key {shown(label)} is not on P-256 ({key.curve.name})")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SoftwareKeyProvider:
        """Load the keys of a key file (format in the module documentation).

        :param path: the key file.
        :return: a provider holding its keys.
        :raises KeyFileError: unreadable, too large, readable or writable by group or others,
            or not of the format.
        :raises JsonFormatError: not strict JSON.
        """
        name = f"key file {os.fspath(path)!r}"
        document = loads(_read_private_file(path, name), name, max_bytes=MAX_KEY_FILE)
        masters, signing = _parse_key_file(document, name)
        logger.debug("Loaded %d master and %d signing keys", len(masters), len(signing))
        return cls(masters, signing)

    def diversify(self, master: str, diversification_input: bytes) -> bytes:
        """Derive a per-badge key by AN10922 (:meth:`KeyProvider.diversify`); any input of
        1 to 31 bytes."""
        self._check_open()
        check_diversification_input(diversification_input)
        key = self._masters.get(master)
        if key is None:
            raise KeyNotFoundError(f"No master key labelled {shown(master)}")
        logger.debug("Diversifying with master key %s", shown(master))
        return diversify_aes128(key, diversification_input)

    def sign(self, key: str, data: bytes) -> bytes:
        """Sign with ECDSA P-256 and SHA-256 (:meth:`KeyProvider.sign`)."""
        logger.debug("Signing with key %s", shown(key))
        return self._signing_key(key).sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        """:return: the public key of the signing key labelled ``key``."""
        return self._signing_key(key).public_key()

    def close(self) -> None:
        """Forget the keys (the values may remain in memory until Python reuses it)."""
        self._closed = True
        self._masters.clear()
        self._signing.clear()

    def _signing_key(self, label: str) -> ec.EllipticCurvePrivateKey:
        self._check_open()
        key = self._signing.get(label)
        if key is None:
            raise KeyNotFoundError(f"No signing key labelled {shown(label)}")
        return key

    def _check_open(self) -> None:
        if self._closed:
            raise ProviderClosedError("The software key provider is closed")

    def __repr__(self) -> str:
        return (
            f"SoftwareKeyProvider(masters={sorted(self._masters)}, "
            f"signing_keys={sorted(self._signing)})"
        )


def _read_private_file(path: str | os.PathLike[str], name: str) -> bytes:
    """:return: the bytes of a regular file that only its owner may read (at most one byte
    more than :data:`MAX_KEY_FILE`, so the parser sees an oversized file)."""
    try:
        # Non-blocking: a FIFO or a device named here must not stall the provider's opening.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise KeyFileError(f"Cannot read {name}: {e.strerror}") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"The {name} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(
                f"The {name} is open to other users (mode {stat.S_IMODE(mode):04o}): "
                f"make it private with chmod 600"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(f"Cannot read {name}: {e.strerror}") from e
    finally:
        os.close(fd)


def _parse_key_file(
    document: Any, name: str
) -> tuple[dict[str, bytes], dict[str, ec.EllipticCurvePrivateKey]]:
    if not isinstance(document, dict):
        raise KeyFileError(f"The {name} is not a JSON object")
    extra = sorted(set(document) - _MEMBERS)
    if extra:
        raise KeyFileError(f"The {name} has an unknown member {shown(extra[0])}")
    if document.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError(f"The {name} is not of the format {KEY_FILE_FORMAT!r}")
    masters = {
        label: bytes.fromhex(text)
        for label, text in _hex_section(document, "aes128", _AES_HEX, name).items()
    }
    signing = {
        label: _private_scalar(text, label, name)
        for label, text in _hex_section(document, "ecdsa-p256", _SCALAR_HEX, name).items()
    }
    return masters, signing


def _hex_section(
    document: dict[str, Any], member: str, pattern: re.Pattern[str], name: str
) -> dict[str, str]:
    section = document.get(member, {})
    if not isinstance(section, dict):
        raise KeyFileError(f"Member {member!r} of the {name} is not an object")
    for label, value in section.items():
        if not isinstance(value, str) or not pattern.fullmatch(value):
            digits = pattern.pattern.rsplit("{", 1)[1].rstrip("}")
            raise KeyFileError(
                f"Key {shown(label)} in {member!r} of the {name} is not {digits} hex digits"
            )
    return section


def _private_scalar(text: str, label: str, name: str) -> ec.EllipticCurvePrivateKey:
    try:
        return ec.derive_private_key(int(text, 16), ec.SECP256R1())
    except ValueError as e:
        raise KeyFileError(
            f"Key {shown(label)} in 'ecdsa-p256' of the {name} is not a P-256 private scalar"
        ) from e
