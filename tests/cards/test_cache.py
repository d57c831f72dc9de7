"""The certificate cache holds only certificates a card proved (issue 7, item 1).

Reproducers: one certificate read with one name byte changed (key untouched), and a planted
certificate whose key cannot be loaded, must not affect later logins in the same process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mie.auth import CertificateCache, CpxAuthenticator
from mie.emulation import EmulatedConnection
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import BadResponseError
from mie.policy import AssuranceLevel
from mie.trust import ErrorCode, VerificationError
from tests.cards.faults import CorruptingConnection, alter_file_byte, plant_certificate
from tests.cards.logins import evidence_of, log_in
from tests.cards.pki import pki_verifier

RSA_ENCRYPTION = bytes.fromhex("06092A864886F70D010101")


def _card(kind: str, options: CardOptions) -> IasEccCard:
    card = build_card(kind, options)
    assert isinstance(card, IasEccCard) and card.credentials is not None
    return card


def _certificate(card: IasEccCard) -> bytes:
    assert card.credentials is not None
    return card.credentials.authentication.certificate.public_bytes(Encoding.DER)


def _renamed_once(card: IasEccCard) -> CorruptingConnection:
    """The card, with one byte of the holder's family name changed in the first certificate
    read (the key and everything else untouched)."""
    der = _certificate(card)
    index = der.index(b"DUPONT")
    return CorruptingConnection(EmulatedConnection(card), alter_file_byte(der, index, ord("E")))


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_identify_of_an_altered_certificate_does_not_fail_later_checked_logins(
    kind: str, options: CardOptions
) -> None:
    card = _card(kind, options)
    cache = CertificateCache()
    seen = CpxAuthenticator(_renamed_once(card), cache=cache, chain_checked=False).identify()
    assert seen.identity is not None
    assert seen.identity.family_name == "EUPONT", "the fault did not hit the certificate"
    verifier = pki_verifier(options.pki())
    for _ in range(2):
        result = log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache), verifier=verifier)
        assert result.identity is not None and result.identity.family_name == "DUPONT"
        assert result.level is AssuranceLevel.SUBSTANTIAL


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_a_login_that_read_an_altered_certificate_does_not_fail_the_next_ones(
    kind: str, options: CardOptions
) -> None:
    card = _card(kind, options)
    cache = CertificateCache()
    verifier = pki_verifier(options.pki())
    with pytest.raises(VerificationError) as raised:
        log_in(CpxAuthenticator(_renamed_once(card), cache=cache), verifier=verifier)
    assert raised.value.code is ErrorCode.BAD_SIGNATURE
    result = log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache), verifier=verifier)
    assert result.identity is not None and result.identity.family_name == "DUPONT"


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
def test_identify_of_an_altered_certificate_does_not_rename_later_unchecked_logins(
    kind: str, options: CardOptions
) -> None:
    card = _card(kind, options)
    cache = CertificateCache()
    CpxAuthenticator(_renamed_once(card), cache=cache, chain_checked=False).identify()
    result = log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False))
    assert result.identity is not None and result.identity.family_name == "DUPONT"
    assert evidence_of(result).chain[0] == _certificate(card)


def test_identify_caches_nothing(options: CardOptions) -> None:
    cache = CertificateCache()
    card = _card("cps3", options)
    CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False).identify()
    assert len(cache) == 0


def test_unchecked_logins_never_serve_checked_ones(options: CardOptions) -> None:
    # The certificate an unchecked login cached is the card's own; a checked login reads and
    # checks it all the same, and only then is it cached as chain-verified.
    card = _card("cps3", options)
    cache = CertificateCache()
    log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=False))
    assert len(cache) == 1
    assert cache.match(b"x" * 32, b"", chain_verified=True) is None
    verifier = pki_verifier(options.pki())
    connection = CorruptingConnection(EmulatedConnection(card), lambda c, d, sw: None)
    log_in(CpxAuthenticator(connection, cache=cache), verifier=verifier)
    assert any(c[1] == 0xB0 and c[2] < 0x80 for c in connection.commands), "certificate not read"


def _unloadable_key(der: bytes) -> bytes:
    # rsaEncryption becomes 1.2.840.113549.1.1.99: the certificate parses, its key never loads.
    assert der.count(RSA_ENCRYPTION) == 1
    return der.replace(RSA_ENCRYPTION, RSA_ENCRYPTION[:-1] + b"\x63")


@pytest.mark.parametrize("checked", [False, True])
def test_a_planted_certificate_with_an_unloadable_key_does_not_break_other_cards(
    checked: bool, options: CardOptions
) -> None:
    cache = CertificateCache()
    planted = _card("cps3", dataclasses.replace(options, serial="2800000066"))
    plant_certificate(planted, _unloadable_key(_certificate(planted)))
    with contextlib.suppress(BadResponseError):
        CpxAuthenticator(EmulatedConnection(planted), cache=cache).identify()
    verifier = pki_verifier(options.pki()) if checked else None
    for kind in ("cps3", "cpe", "cps4"):
        other = CpxAuthenticator(
            EmulatedConnection(_card(kind, options)), cache=cache, chain_checked=checked
        )
        for _ in range(2):
            assert evidence_of(log_in(other, verifier=verifier)).signature


def test_a_certificate_with_an_unloadable_key_is_a_bad_response(options: CardOptions) -> None:
    card = _card("cps3", options)
    plant_certificate(card, _unloadable_key(_certificate(card)))
    authenticator = CpxAuthenticator(EmulatedConnection(card), chain_checked=False)
    with pytest.raises(BadResponseError):
        authenticator.identify()
    with pytest.raises(BadResponseError):
        log_in(authenticator)


def test_a_checked_login_whose_cached_certificate_fails_forgets_it(options: CardOptions) -> None:
    card = _card("cps3", options)
    cache = CertificateCache()
    pki = options.pki()
    log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache), verifier=pki_verifier(pki))
    assert len(cache) == 1
    serial = card.credentials.authentication.certificate.serial_number  # type: ignore[union-attr]
    revoked = pki_verifier(pki, [serial])
    with pytest.raises(VerificationError):
        log_in(CpxAuthenticator(EmulatedConnection(card), cache=cache), verifier=revoked)
    assert len(cache) == 0


def _self_signed(bits: int) -> tuple[bytes, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another card")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.DER), certificate


@pytest.mark.parametrize("checked", [False, True])
def test_a_cps4_serial_hint_to_a_key_of_another_size_does_not_break_that_card(
    checked: bool, options: CardOptions
) -> None:
    # Another card that showed this card's EF.SN proved a certificate with a 1024-bit key: the
    # card refuses a block of that size (6700), which must send the login to the card's own
    # certificate, not fail every later login of the card.
    card = _card("cps4", options)
    cache = CertificateCache()
    der, certificate = _self_signed(1024)
    serial = CpxAuthenticator(EmulatedConnection(card)).identify().authenticator.serial
    cache.add(der, certificate, serial=serial, chain_verified=checked)
    verifier = pki_verifier(options.pki()) if checked else None
    for _ in range(2):
        result = log_in(
            CpxAuthenticator(EmulatedConnection(card), cache=cache, chain_checked=checked),
            verifier=verifier,
        )
        assert evidence_of(result).chain[0] == _certificate(card)
