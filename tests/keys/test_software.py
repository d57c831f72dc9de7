"""The software key provider: values in memory, or a private key file."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mie.core.errors import ErrorCode, JsonFormatError
from mie.keys import (
    DiversificationInputError,
    KeyFileError,
    KeyNotFoundError,
    KeyProvider,
    ProviderClosedError,
    SoftwareKeyProvider,
)
from mie.keys.software import MAX_KEY_FILE

VECTOR_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
# desfire.md §8.7: UID 04782E21801D80, AID 3042F5, system identifier "NXP Abu".
VECTOR_INPUT = bytes.fromhex("04782E21801D803042F54E585020416275")
VECTOR_KEY = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")
# A P-256 private scalar (any value in 1..n-1 is one).
SCALAR = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"


def write_key_file(path: Path, document: Any, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(document))
    path.chmod(mode)
    return path


def key_file_document(**members: Any) -> dict[str, Any]:
    document = {
        "format": "mie-keys/1",
        "aes128": {"badge-master": VECTOR_MASTER.hex()},
        "ecdsa-p256": {"authority": SCALAR},
    }
    document.update(members)
    return document


def test_the_an10922_vector() -> None:
    provider = SoftwareKeyProvider({"m": VECTOR_MASTER})
    assert provider.diversify("m", VECTOR_INPUT) == VECTOR_KEY


def test_it_is_a_key_provider() -> None:
    assert isinstance(SoftwareKeyProvider(), KeyProvider)


@pytest.mark.parametrize("length", range(1, 32))
def test_every_an10922_input_length_gives_a_16_byte_key(length: int) -> None:
    provider = SoftwareKeyProvider({"m": secrets.token_bytes(16)})
    assert len(provider.diversify("m", secrets.token_bytes(length))) == 16


@pytest.mark.parametrize("length", [0, 32, 40])
def test_an_input_outside_1_to_31_bytes_is_refused(length: int) -> None:
    provider = SoftwareKeyProvider({"m": VECTOR_MASTER})
    with pytest.raises(DiversificationInputError) as caught:
        provider.diversify("m", bytes(length))
    assert caught.value.code is ErrorCode.MALFORMED


def test_different_masters_give_different_keys() -> None:
    provider = SoftwareKeyProvider({"a": secrets.token_bytes(16), "b": secrets.token_bytes(16)})
    assert provider.diversify("a", VECTOR_INPUT) != provider.diversify("b", VECTOR_INPUT)


def test_an_unknown_label_is_named() -> None:
    provider = SoftwareKeyProvider({"m": VECTOR_MASTER})
    with pytest.raises(KeyNotFoundError, match="'other'"):
        provider.diversify("other", VECTOR_INPUT)
    with pytest.raises(KeyNotFoundError, match="'m'"):
        provider.sign("m", b"record")


def test_a_master_key_of_the_wrong_size_is_a_value_error_without_the_key() -> None:
    key = secrets.token_bytes(15)
    with pytest.raises(ValueError, match="15 bytes") as caught:
        SoftwareKeyProvider({"m": key})
    assert key.hex() not in str(caught.value)


def test_a_signing_key_off_p256_is_refused() -> None:
    with pytest.raises(ValueError, match="P-256"):
        SoftwareKeyProvider(signing_keys={"a": ec.generate_private_key(ec.SECP384R1())})


def test_a_signature_verifies_with_the_public_key() -> None:
    provider = SoftwareKeyProvider(signing_keys={"a": ec.generate_private_key(ec.SECP256R1())})
    signature = provider.sign("a", b"record")
    provider.public_key("a").verify(signature, b"record", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        provider.public_key("a").verify(signature, b"recorD", ec.ECDSA(hashes.SHA256()))


def test_a_closed_provider_refuses_every_operation() -> None:
    with SoftwareKeyProvider(
        {"m": VECTOR_MASTER}, {"a": ec.generate_private_key(ec.SECP256R1())}
    ) as p:
        assert p.diversify("m", VECTOR_INPUT) == VECTOR_KEY
    with pytest.raises(ProviderClosedError):
        p.diversify("m", VECTOR_INPUT)
    with pytest.raises(ProviderClosedError):
        p.sign("a", b"record")
    with pytest.raises(ProviderClosedError):
        p.public_key("a")


def test_the_repr_and_the_logs_name_labels_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1, logger="mie")
    provider = SoftwareKeyProvider({"badge-master": VECTOR_MASTER})
    derived = provider.diversify("badge-master", VECTOR_INPUT)
    shown = repr(provider) + caplog.text
    assert "badge-master" in shown
    for secret in (VECTOR_MASTER, derived, VECTOR_INPUT):
        assert secret.hex() not in shown.lower()


def test_a_key_file_loads_both_kinds_of_key(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys.json", key_file_document())
    provider = SoftwareKeyProvider.from_file(path)
    assert provider.diversify("badge-master", VECTOR_INPUT) == VECTOR_KEY
    expected = ec.derive_private_key(int(SCALAR, 16), ec.SECP256R1()).public_key()
    assert provider.public_key("authority") == expected
    expected.verify(provider.sign("authority", b"r"), b"r", ec.ECDSA(hashes.SHA256()))


def test_a_key_file_may_hold_one_kind_only(tmp_path: Path) -> None:
    document = {"format": "mie-keys/1", "aes128": {"m": VECTOR_MASTER.hex().upper()}}
    provider = SoftwareKeyProvider.from_file(write_key_file(tmp_path / "k.json", document))
    assert provider.diversify("m", VECTOR_INPUT) == VECTOR_KEY


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_other_users_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "keys.json", key_file_document(), mode)
    with pytest.raises(KeyFileError, match="chmod 600") as caught:
        SoftwareKeyProvider.from_file(path)
    assert caught.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "members",
    [
        {"format": "mie-keys/2"},
        {"extra": 1},
        {"aes128": {"m": VECTOR_MASTER.hex()[:-2]}},
        {"aes128": {"m": VECTOR_MASTER.hex() + "00"}},
        {"aes128": {"m": " " + VECTOR_MASTER.hex()[1:]}},
        {"aes128": {"m": 1}},
        {"aes128": [VECTOR_MASTER.hex()]},
        {"ecdsa-p256": {"a": SCALAR[:-1] + "g"}},
        {"ecdsa-p256": {"a": "0" * 64}},
        {"ecdsa-p256": {"a": "f" * 64}},
    ],
)
def test_a_key_file_off_the_format_is_refused_without_showing_a_key(
    tmp_path: Path, members: dict[str, Any]
) -> None:
    path = write_key_file(tmp_path / "keys.json", key_file_document(**members))
    with pytest.raises(KeyFileError) as caught:
        SoftwareKeyProvider.from_file(path)
    message = str(caught.value)
    assert "keys.json" in message
    for secret in (VECTOR_MASTER.hex(), VECTOR_MASTER.hex()[:20], SCALAR[:20]):
        assert secret not in message.lower()


def test_a_key_file_that_is_not_json_is_a_json_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"format": "mie-keys/1", "format": "mie-keys/1"}')
    path.chmod(0o600)
    with pytest.raises(JsonFormatError):
        SoftwareKeyProvider.from_file(path)


def test_a_key_file_too_large_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys.json", key_file_document(pad="x" * MAX_KEY_FILE))
    with pytest.raises(JsonFormatError, match="larger"):
        SoftwareKeyProvider.from_file(path)


def test_a_missing_key_file_or_a_directory_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="Cannot read"):
        SoftwareKeyProvider.from_file(tmp_path / "absent.json")
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        SoftwareKeyProvider.from_file(directory)


def test_a_key_file_named_as_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    # Nobody writes to the FIFO: a blocking open would never return.
    fifo = tmp_path / "keys.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        SoftwareKeyProvider.from_file(fifo)


def test_loading_a_key_file_logs_no_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mie")
    SoftwareKeyProvider.from_file(write_key_file(tmp_path / "k.json", key_file_document()))
    assert VECTOR_MASTER.hex() not in caplog.text.lower()
    assert SCALAR not in caplog.text.lower()
