"""Certificates handed to the verifier as cryptography objects get the strict parse that DER
and files get (issue 8: certificates read from a card skipped it)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mie.emulation.testpki import Gamme
from mie.emulation.testpki import TestPki as Pki
from mie.trust import ErrorCode, RevocationMode, TrustStore, VerificationError, VerifierBuilder
from mie.trust.parse import check_certificate_der
from tests.trust.conftest import make_cert, person

# subjectDirectoryAttributes holding a NULL: cryptography keeps it as an unrecognised extension,
# asn1crypto's strict parse refuses it.
SUBJECT_DIRECTORY_ATTRIBUTES = x509.ObjectIdentifier("2.5.29.9")


def _verifier(pki: Pki) -> VerifierBuilder:
    store = TrustStore.from_certificates([pki.roots[Gamme.FORT].certificate], test=True)
    return VerifierBuilder().store(store).revocation(RevocationMode.SOFT)


def _lenient_only(pki: Pki) -> x509.Certificate:
    bad = x509.UnrecognizedExtension(SUBJECT_DIRECTORY_ATTRIBUTES, b"\x05\x00")
    return make_cert(pki.intermediates[Gamme.FORT], person(), extra=[(bad, False)]).certificate


def test_the_input_is_one_only_the_strict_parser_refuses(pki: Pki) -> None:
    cert = _lenient_only(pki)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert x509.load_der_x509_certificate(der) == cert
    with pytest.raises(VerificationError):
        check_certificate_der(der, "leaf")


@pytest.mark.parametrize("form", ["object", "der"])
def test_leaf_refused_by_the_strict_parse_is_malformed(pki: Pki, form: str) -> None:
    cert = _lenient_only(pki)
    leaf = cert if form == "object" else cert.public_bytes(serialization.Encoding.DER)
    with pytest.raises(VerificationError) as caught:
        _verifier(pki).build().verify(leaf, [pki.intermediates[Gamme.FORT].certificate])
    assert caught.value.code is ErrorCode.MALFORMED
    assert "leaf certificate" in caught.value.message


def test_intermediate_object_refused_by_the_strict_parse_is_malformed(pki: Pki) -> None:
    root = pki.roots[Gamme.FORT]
    bad = x509.UnrecognizedExtension(SUBJECT_DIRECTORY_ATTRIBUTES, b"\x05\x00")
    ca = make_cert(
        root, pki.intermediates[Gamme.FORT].certificate.subject, ca=True, extra=[(bad, False)]
    )
    with pytest.raises(VerificationError) as caught:
        _verifier(pki).build().verify(_good_leaf(pki), [ca.certificate])
    assert caught.value.code is ErrorCode.MALFORMED
    assert "intermediate certificate" in caught.value.message


def _good_leaf(pki: Pki) -> x509.Certificate:
    return make_cert(pki.intermediates[Gamme.FORT], person()).certificate


def test_well_formed_objects_still_verify(pki: Pki) -> None:
    result = (
        _verifier(pki).build().verify(_good_leaf(pki), [pki.intermediates[Gamme.FORT].certificate])
    )
    assert len(result.path) == 3
