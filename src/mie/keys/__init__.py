"""Key providers: where the master keys of DESFire badges and the enrolment authority's signing
key live, and the operations that use them without letting them out.

:class:`SoftwareKeyProvider` holds keys in memory (tests, demonstrations);
:class:`mie.keys.pkcs11.Pkcs11KeyProvider` uses them inside a PKCS#11 token and needs the
``hsm`` extra (python-pkcs11), so it is imported from its module, not from here.
"""

from __future__ import annotations

from mie.keys.base import (
    DiversificationInputError,
    KeyFileError,
    KeyNotFoundError,
    KeyPolicyError,
    KeyProvider,
    KeyProviderError,
    ProviderClosedError,
    TokenLoginError,
)
from mie.keys.software import SoftwareKeyProvider

__all__ = [
    "DiversificationInputError",
    "KeyFileError",
    "KeyNotFoundError",
    "KeyPolicyError",
    "KeyProvider",
    "KeyProviderError",
    "ProviderClosedError",
    "SoftwareKeyProvider",
    "TokenLoginError",
]
