"""NIST PKITS through mie's verifier (RFC 5280 profile, RFC 5280 engine enabled).

The expected outcome of each test is its file-name prefix (Valid/Invalid) under the default
PKITS settings (README in ``../shared/data/pkits``). Every CA certificate and CRL of the suite is
offered to every test, as a path-building validator would see them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import cache
from pathlib import Path

import pytest

from mie.trust import (
    CrlIndex,
    CrlSet,
    Profile,
    TrustStore,
    VerificationError,
    Verifier,
    VerifierBuilder,
    load_certificates,
)

PKITS = Path(__file__).resolve().parents[3] / "shared" / "data" / "pkits"
# Inside the validity of every PKITS certificate and CRL (2010-01-01 .. 2030-12-31).
AT = dt.datetime(2015, 6, 1, tzinfo=dt.UTC)
REQUIRED = {"4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.14", "4.15"}
# Tests of other sections that do not give the expected result: none today. Add entries as
# "<file name>": "<why>" only with a justification.
SKIP: dict[str, str] = {}

_SECTIONS = (
    ("4.1", r"CertificatePath|CASignature|EESignature|DSA"),
    ("4.2", r"notBefore|notAfter"),
    ("4.3", r"NameChaining|NameUIDs|RFC3280|UTF8String|Rollover"),
    ("4.15", r"deltaCRL"),
    (
        "4.14",
        r"distributionPoint|NoissuingDistributionPoint|onlyContains|onlySomeReasons"
        r"|IDPwithindirectCRL|cRLIssuer",
    ),
    (
        "4.4",
        r"MissingCRL|RevokedCA|RevokedEE|BadCRL|WrongCRL|TwoCRLs|UnknownCRL|CRLnextUpdate"
        r"|SerialNumber|SeparateCertificateandCRLKeys",
    ),
    ("4.5", r"BasicSelfIssued"),
    ("4.6", r"basicConstraints|cAFalse|pathLenConstraint"),
    ("4.7", r"keyUsage"),
    ("4.13", r"nameConstraints"),
    ("4.16", r"UnknownNotCritical|UnknownCritical"),
    ("4.8-4.12", r"."),
)


def section_of(name: str) -> str:
    """The PKITS section of a test, from its end-entity file name."""
    for section, pattern in _SECTIONS:
        if re.search(pattern, name):
            return section
    raise AssertionError(name)


def _cases() -> list[str]:
    if not PKITS.is_dir():
        return []
    names = os.listdir(PKITS / "certs")
    return sorted(n for n in names if n.endswith("EE.crt") and n.startswith(("Valid", "Invalid")))


@cache
def _suite() -> tuple[Verifier, list[bytes]]:
    certs = PKITS / "certs"
    anchor = load_certificates((certs / "TrustAnchorRootCertificate.crt").read_bytes(), "anchor")
    crls = CrlSet.of(
        CrlIndex.from_bytes(p.read_bytes(), p.name) for p in sorted((PKITS / "crls").iterdir())
    )
    pool = [
        p.read_bytes()
        for p in sorted(certs.iterdir())
        if not p.name.endswith("EE.crt") and p.name != "TrustAnchorRootCertificate.crt"
    ]
    verifier = (
        VerifierBuilder()
        .store(TrustStore.from_certificates(anchor))
        .time(AT)
        .crls(crls)
        .profile(Profile.RFC5280)
        .rfc5280_fallback()
        .build()
    )
    return verifier, pool


def test_pkits_is_present() -> None:
    if not PKITS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PKITS data missing at {PKITS}")
        pytest.skip(f"PKITS data missing at {PKITS}")
    cases = _cases()
    assert len(cases) > 200
    sections = {section_of(c) for c in cases}
    assert REQUIRED <= sections


@pytest.mark.parametrize("name", _cases())
def test_pkits(name: str) -> None:
    if name in SKIP:
        pytest.skip(SKIP[name])
    verifier, pool = _suite()
    leaf = (PKITS / "certs" / name).read_bytes()
    expected_valid = name.startswith("Valid")
    try:
        verifier.verify(leaf, pool)
    except VerificationError as e:
        assert not expected_valid, f"{section_of(name)} {name}: {e.code.value}: {e.message}"
    else:
        assert expected_valid, f"{section_of(name)} {name} was accepted"
