"""FIDO2 security keys as MIE: the client over python-fido2, the verifier, the attestation
policy and the FIDO metadata.

The public names below load on first use, each from its own module (PEP 562), so
``import mie.fido`` loads none of them: the verifier side (:mod:`mie.fido.assertion`,
:mod:`mie.fido.registration`, the codecs) depends only on :mod:`mie.core` and ``cryptography``;
only the client (:class:`Fido2Authenticator`) imports python-fido2.
"""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing alone costs ~10 ms (as in ``mie/__init__.py``).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mie.fido.allowlist import AaguidAllowlist
    from mie.fido.assertion import FidoVerifier
    from mie.fido.authenticator import Fido2Authenticator
    from mie.fido.evidence import WebAuthnAssertionEvidence
    from mie.fido.mds import MetadataIndex
    from mie.fido.policy import FidoPolicy
    from mie.fido.registration import RegisteredCredential, RegistrationData, verify_registration

# Public name -> the module that defines it (the TYPE_CHECKING imports above list the same).
_EXPORTS = {
    "AaguidAllowlist": "mie.fido.allowlist",
    "Fido2Authenticator": "mie.fido.authenticator",
    "FidoPolicy": "mie.fido.policy",
    "FidoVerifier": "mie.fido.assertion",
    "MetadataIndex": "mie.fido.mds",
    "RegisteredCredential": "mie.fido.registration",
    "RegistrationData": "mie.fido.registration",
    "WebAuthnAssertionEvidence": "mie.fido.evidence",
    "verify_registration": "mie.fido.registration",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mie.fido' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "AaguidAllowlist",
    "Fido2Authenticator",
    "FidoPolicy",
    "FidoVerifier",
    "MetadataIndex",
    "RegisteredCredential",
    "RegistrationData",
    "WebAuthnAssertionEvidence",
    "verify_registration",
]
