"""The PKCS#11 key provider against a SoftHSM2 token that the fixture initialises."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from mie.core.errors import ErrorCode, MieError
from mie.keys import (
    DiversificationInputError,
    KeyNotFoundError,
    KeyPolicyError,
    KeyProviderError,
    ProviderClosedError,
    SoftwareKeyProvider,
    TokenLoginError,
)
from tests.harness import IN_CI
from tests.keys.conftest import SoftHsm

try:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

    from mie.keys.pkcs11 import Pkcs11KeyProvider
except ImportError:
    if IN_CI:
        raise
    pytest.skip("python-pkcs11 is not installed (pip install 'mie[hsm]')", allow_module_level=True)

VECTOR_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
# desfire.md §8.7: UID 04782E21801D80, AID 3042F5, system identifier "NXP Abu" (18 bytes).
VECTOR_INPUT = bytes.fromhex("04782E21801D803042F54E585020416275")
VECTOR_KEY = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")


def create_aes(
    hsm: SoftHsm, label: str, value: bytes, attributes: dict[Attribute, Any] | None = None
) -> None:
    """Store a secret key; by default a sensitive, non-extractable AES master key."""
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.VALUE: value,
        Attribute.LABEL: label,
        Attribute.TOKEN: True,
        Attribute.SIGN: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
    }
    template.update(attributes or {})
    with hsm.session() as session:
        session.create_object(template)


def create_ec(
    hsm: SoftHsm,
    label: str,
    curve: str = "secp256r1",
    private: dict[Attribute, Any] | None = None,
) -> bytes:
    """Generate an EC key pair in the token; :return: its public key as DER SubjectPublicKeyInfo,
    encoded by python-pkcs11 (not by the provider)."""
    with hsm.session() as session:
        parameters = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        public, _ = parameters.generate_keypair(
            store=True,
            label=label,
            private_template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                **(private or {}),
            },
        )
        return encode_ec_public_key(public)


def open_provider(hsm: SoftHsm) -> Pkcs11KeyProvider:
    return Pkcs11KeyProvider(hsm.module, hsm.token_label, lambda: hsm.pin)


@pytest.fixture
def master(softhsm: SoftHsm, label: str) -> bytes:
    """A random master key, stored in the token under ``label``; :return: its value."""
    value = secrets.token_bytes(16)
    create_aes(softhsm, label, value)
    return value


def test_the_token_diversifies_the_an10922_vector(softhsm: SoftHsm, label: str) -> None:
    create_aes(softhsm, label, VECTOR_MASTER)
    with open_provider(softhsm) as provider:
        assert provider.diversify(label, VECTOR_INPUT) == VECTOR_KEY


def test_the_token_and_the_software_provider_agree_on_every_length_from_16_to_31(
    softhsm: SoftHsm, label: str, master: bytes
) -> None:
    software = SoftwareKeyProvider({label: master})
    with open_provider(softhsm) as provider:
        for length in range(16, 32):
            data = secrets.token_bytes(length)
            assert provider.diversify(label, data) == software.diversify(label, data), length


def test_the_vector_master_agrees_with_software_on_vector_inputs_of_every_allowed_length(
    softhsm: SoftHsm, label: str
) -> None:
    create_aes(softhsm, label, VECTOR_MASTER)
    software = SoftwareKeyProvider({label: VECTOR_MASTER})
    # The §8.7 input, cut or extended by its own bytes, at each length the token accepts.
    inputs = [(VECTOR_INPUT * 2)[:n] for n in range(16, 32)]
    with open_provider(softhsm) as provider:
        assert [provider.diversify(label, m) for m in inputs] == [
            software.diversify(label, m) for m in inputs
        ]


@pytest.mark.parametrize("length", range(16))
def test_an_input_shorter_than_16_bytes_is_refused_with_the_way_out(
    softhsm: SoftHsm, label: str, master: bytes, length: int
) -> None:
    with open_provider(softhsm) as provider, pytest.raises(DiversificationInputError) as caught:
        provider.diversify(label, secrets.token_bytes(length))
    assert "system identifier" in str(caught.value)
    assert caught.value.code is ErrorCode.MALFORMED


def test_an_input_longer_than_31_bytes_is_refused(
    softhsm: SoftHsm, label: str, master: bytes
) -> None:
    with open_provider(softhsm) as provider, pytest.raises(DiversificationInputError):
        provider.diversify(label, bytes(32))


@pytest.mark.parametrize("length", [1, 7, 15])
def test_a_plain_cmac_of_a_short_input_is_not_the_an10922_key(length: int) -> None:
    # Why the token refuses short inputs: the CMAC it would compute is another key.
    data = secrets.token_bytes(length)
    key = secrets.token_bytes(16)
    cmac = CMAC(algorithms.AES(key))
    cmac.update(b"\x01" + data)
    assert cmac.finalize() != SoftwareKeyProvider({"m": key}).diversify("m", data)


def test_only_the_diversified_key_leaves_the_token(softhsm: SoftHsm, label: str) -> None:
    create_aes(softhsm, label, VECTOR_MASTER)
    with softhsm.session() as session:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({Attribute.EXTRACTABLE: True}, "CKA_EXTRACTABLE"),
        ({Attribute.SENSITIVE: False}, "CKA_SENSITIVE"),
        ({Attribute.SIGN: False}, "CKA_SIGN"),
        ({Attribute.VALUE: bytes(32)}, "AES-128"),
    ],
)
def test_a_master_key_that_could_leave_the_token_or_is_not_aes128_is_refused(
    softhsm: SoftHsm, label: str, attributes: dict[Attribute, Any], reason: str
) -> None:
    create_aes(softhsm, label, secrets.token_bytes(16), attributes)
    with open_provider(softhsm) as provider, pytest.raises(KeyPolicyError, match=reason):
        provider.diversify(label, VECTOR_INPUT)


def test_a_des3_key_under_the_label_is_refused(softhsm: SoftHsm, label: str) -> None:
    create_aes(softhsm, label, secrets.token_bytes(24), {Attribute.KEY_TYPE: KeyType.DES3})
    with open_provider(softhsm) as provider, pytest.raises(KeyPolicyError, match="AES-128"):
        provider.diversify(label, VECTOR_INPUT)


def test_a_missing_master_key_is_named(softhsm: SoftHsm, label: str) -> None:
    with open_provider(softhsm) as provider, pytest.raises(KeyNotFoundError, match=label):
        provider.diversify(label, VECTOR_INPUT)


def test_two_keys_under_one_label_are_refused(softhsm: SoftHsm, label: str) -> None:
    create_aes(softhsm, label, secrets.token_bytes(16))
    create_aes(softhsm, label, secrets.token_bytes(16))
    with open_provider(softhsm) as provider, pytest.raises(KeyNotFoundError, match="Several"):
        provider.diversify(label, VECTOR_INPUT)


def test_a_signature_made_in_the_token_verifies_with_cryptography(
    softhsm: SoftHsm, label: str
) -> None:
    spki = create_ec(softhsm, label)
    record = b"badge identity record"
    with open_provider(softhsm) as provider:
        signature = provider.sign(label, record)
        public = provider.public_key(label)
    assert (
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == spki
    )
    public.verify(signature, record, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, record + b"!", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("curve", "private", "reason"),
    [
        ("secp384r1", {}, "P-256"),
        ("secp256r1", {Attribute.EXTRACTABLE: True}, "CKA_EXTRACTABLE"),
        ("secp256r1", {Attribute.SENSITIVE: False}, "CKA_SENSITIVE"),
    ],
)
def test_a_signing_key_off_p256_or_that_could_leave_the_token_is_refused(
    softhsm: SoftHsm, label: str, curve: str, private: dict[Attribute, Any], reason: str
) -> None:
    create_ec(softhsm, label, curve, private)
    with open_provider(softhsm) as provider, pytest.raises(KeyPolicyError, match=reason):
        provider.sign(label, b"record")


def test_a_public_key_off_p256_is_refused(softhsm: SoftHsm, label: str) -> None:
    create_ec(softhsm, label, "secp384r1")
    with open_provider(softhsm) as provider, pytest.raises(KeyPolicyError, match="P-256"):
        provider.public_key(label)


def test_a_master_key_is_not_a_signing_key(softhsm: SoftHsm, label: str, master: bytes) -> None:
    with open_provider(softhsm) as provider, pytest.raises(KeyNotFoundError):
        provider.sign(label, b"record")


def test_a_wrong_pin_is_refused_and_never_shown(softhsm: SoftHsm) -> None:
    wrong = secrets.token_hex(8)
    with pytest.raises(TokenLoginError) as caught:
        Pkcs11KeyProvider(softhsm.module, softhsm.token_label, lambda: wrong)
    assert wrong not in str(caught.value)
    assert softhsm.pin not in str(caught.value)


def test_an_unknown_token_is_a_provider_error(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyProviderError, match="no-such-token"):
        Pkcs11KeyProvider(softhsm.module, "no-such-token", lambda: softhsm.pin)


def test_a_module_that_cannot_be_loaded_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(KeyProviderError, match="Cannot load"):
        Pkcs11KeyProvider(tmp_path / "missing.so", "t", lambda: "0000")


def test_a_second_login_in_the_same_process_is_refused_clearly(
    softhsm: SoftHsm, label: str, master: bytes
) -> None:
    with open_provider(softhsm) as provider:
        with pytest.raises(KeyProviderError, match="share one provider"):
            open_provider(softhsm)
        assert len(provider.diversify(label, VECTOR_INPUT)) == 16


def test_a_closed_provider_refuses_every_operation(
    softhsm: SoftHsm, label: str, master: bytes
) -> None:
    provider = open_provider(softhsm)
    provider.close()
    provider.close()
    with pytest.raises(ProviderClosedError):
        provider.diversify(label, VECTOR_INPUT)
    with pytest.raises(ProviderClosedError):
        provider.sign(label, b"record")
    with pytest.raises(ProviderClosedError):
        provider.public_key(label)


def test_neither_pin_key_nor_input_appears_in_logs_repr_or_errors(
    softhsm: SoftHsm, label: str, master: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = secrets.token_bytes(20)
    # The "mie" logger's own level may have been set by an in-process CLI run of another test.
    caplog.set_level(1, logger="mie")
    with open_provider(softhsm) as provider:
        derived = provider.diversify(label, data)
        with pytest.raises(MieError) as caught:
            provider.diversify(label, data[:10])
        shown = caplog.text + repr(provider) + str(caught.value)
    for secret in (softhsm.pin, master.hex(), derived.hex(), data.hex(), data[:10].hex()):
        assert secret.lower() not in shown.lower()
    assert label in caplog.text


def test_threads_share_one_provider(softhsm: SoftHsm, label: str, master: bytes) -> None:
    inputs = [secrets.token_bytes(16 + n) for n in range(16)]
    expected = [SoftwareKeyProvider({label: master}).diversify(label, m) for m in inputs]
    results: dict[int, list[bytes]] = {}
    with open_provider(softhsm) as provider:

        def work(n: int) -> None:
            results[n] = [provider.diversify(label, m) for m in inputs]

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: expected for n in range(4)}
