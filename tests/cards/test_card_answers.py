"""Whatever a card answers, a CPx session raises only mie's errors (issue 7, item 6).

Reproducers: card certificates that parse in one library but not the other, or hold an attribute
of the wrong ASN.1 type, raised ``InvalidVersion``, ``DuplicateExtension``, ``ValueError`` and
``TypeError`` out of ``identify()`` / ``authenticate()``; a whole session on randomly mutated
answers must raise nothing but :class:`~mie.errors.MieError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from asn1crypto import x509 as ax509  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.auth import CpxAuthenticator
from mie.emulation import EmulatedConnection
from mie.emulation.base import EmulatedCard
from mie.emulation.cpx import IasEccCard
from mie.emulation.registry import CardOptions, build_card
from mie.errors import BadResponseError, MieError
from mie.trust import Verifier
from tests.cards.faults import CorruptingConnection, Mutation, mutating, plant_certificate
from tests.cards.logins import log_in
from tests.cards.pki import pki_verifier

KINDS = ["cps3", "cps3-cl", "cpe", "cps4", "psi"]
INS_READ_BINARY = 0xB0
ID_NAT = b"810100099877"


def _certificate(card: IasEccCard) -> bytes:
    assert card.credentials is not None
    return card.credentials.authentication.certificate.public_bytes(Encoding.DER)


def _version_113(der: bytes) -> bytes:
    # TBS: 30 82 LL LL A0 03 02 01 <version>; asn1crypto reads 113, cryptography refuses it.
    assert der[8:13] == bytes.fromhex("A003020102")
    return der[:12] + b"\x71" + der[13:]


def _duplicate_extension(der: bytes) -> bytes:
    certificate = ax509.Certificate.load(der)
    tbs = certificate["tbs_certificate"]
    extensions = list(tbs["extensions"])
    tbs["extensions"] = ax509.Extensions([*extensions, extensions[0]])
    return bytes(certificate.dump(force=True))


def _retag_id_nat(tag: int) -> Callable[[bytes], bytes]:
    def retag(der: bytes) -> bytes:
        at = der.index(ID_NAT) - 2
        assert der[at] == 0x0C
        return der[:at] + bytes([tag]) + der[at + 1 :]

    return retag


MALFORMED = {
    "version-113": _version_113,
    "duplicate-extension": _duplicate_extension,
    "idnat-as-integer": _retag_id_nat(0x02),
    "idnat-as-bit-string": _retag_id_nat(0x03),
    "idnat-as-bmp-string": _retag_id_nat(0x1E),
}


@pytest.mark.parametrize("kind", ["cps3", "cps4"])
@pytest.mark.parametrize("mangle", sorted(MALFORMED))
def test_malformed_card_certificate_is_a_bad_response(
    mangle: str, kind: str, options: CardOptions
) -> None:
    card = build_card(kind, options)
    assert isinstance(card, IasEccCard)
    plant_certificate(card, MALFORMED[mangle](_certificate(card)))
    checked = pki_verifier(options.pki())
    for verifier in (None, checked):
        authenticator = CpxAuthenticator(
            EmulatedConnection(card), chain_checked=verifier is not None
        )
        with pytest.raises(BadResponseError) as raised:
            authenticator.identify()
        assert "\n" not in str(raised.value)
        with pytest.raises(BadResponseError):
            log_in(authenticator, verifier=verifier)


@pytest.fixture(scope="module")
def cards() -> dict[str, EmulatedCard]:
    # Built once: every example resets the card, and answers are mutated on the host side.
    options = CardOptions(pin="4826")
    return {kind: build_card(kind, options) for kind in KINDS}


@pytest.fixture(scope="module")
def checked() -> Verifier:
    return pki_verifier(CardOptions().pki())


_MUTATIONS = st.builds(
    Mutation,
    target=st.integers(0, 24),
    only_ins=st.sampled_from([None, None, INS_READ_BINARY]),
    kind=st.sampled_from(["bytes", "bytes", "truncate", "insert", "sw"]),
    seed=st.integers(0, 2**32 - 1),
)


@settings(max_examples=400)
@given(
    kind=st.sampled_from(KINDS),
    identify=st.booleans(),
    with_chain=st.booleans(),
    mutations=st.lists(_MUTATIONS, min_size=1, max_size=2),
)
def test_a_session_on_mutated_answers_raises_only_mie_errors(
    cards: dict[str, EmulatedCard],
    checked: Verifier,
    kind: str,
    identify: bool,
    with_chain: bool,
    mutations: list[Mutation],
) -> None:
    card = cards[kind]
    card.reset()
    connection = CorruptingConnection(EmulatedConnection(card), mutating(mutations))
    try:
        authenticator = CpxAuthenticator(connection, chain_checked=with_chain)
        if identify or kind == "cps3-cl":
            authenticator.identify()
        else:
            log_in(authenticator, verifier=checked if with_chain else None)
    except MieError as e:
        assert "\n" not in str(e)
