"""A verifier trusting the run's TEST PKI, for card tests that check chains."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from mie.emulation.testpki import Gamme, TestPki
from mie.trust import (
    Anchor,
    CrlIndex,
    CrlSet,
    RevocationMode,
    TrustStore,
    Usage,
    Verifier,
    VerifierBuilder,
)


def pki_verifier(pki: TestPki, revoked: list[int] | None = None, mode: str = "hard") -> Verifier:
    """An authentication verifier with the TEST roots as anchors and fresh CRLs of every CA.

    :param revoked: certificate serial numbers the CRLs list.
    :param mode: ``hard`` or ``soft`` revocation.
    """
    anchors = [Anchor.from_certificate(i.certificate, "explicit", True) for i in pki.roots.values()]
    crls = CrlSet.of(
        CrlIndex.from_bytes(pki.crl(g, revoked, authority=a).public_bytes(Encoding.DER), "test")
        for g in (Gamme.FORT, Gamme.STANDARD)
        for a in (False, True)
    )
    store = TrustStore(anchors, [i.certificate for i in pki.intermediates.values()])
    return (
        VerifierBuilder()
        .store(store)
        .usage(Usage.AUTH)
        .crls(crls)
        .revocation(RevocationMode(mode))
        .build()
    )
