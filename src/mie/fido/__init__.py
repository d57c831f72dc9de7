"""FIDO2 security keys as MIE: the WebAuthn codecs, and (to come) the client over python-fido2,
the verifier and the attestation policy.

Importing this package loads nothing else: the verifier side (:mod:`mie.fido.authdata`,
:mod:`mie.fido.clientdata`, :mod:`mie.fido.cose`, :mod:`mie.fido.errors`) depends only on
:mod:`mie.core` and ``cryptography``, never on python-fido2.
"""

from __future__ import annotations
