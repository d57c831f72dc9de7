"""mie.desfire.config: the strict badge configuration (plan D9, D10, D11) and the AN10922
diversification inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from mie.core import strictjson
from mie.core.errors import ErrorCode, JsonFormatError
from mie.desfire import crypto
from mie.desfire.config import (
    MAX_CONFIG_BYTES,
    BadgeConfig,
    BadgeConfigError,
    KeyLabels,
    Originality,
    OriginalityRead,
    Pkcs11Keys,
    SecondFactorSettings,
    SoftwareKeys,
    UidSource,
    default_path,
    diversification_input,
    open_keys,
)
from mie.desfire.errors import DesfireInputError, OriginalitySignatureError
from mie.desfire.record import authority_key_id
from mie.keys import SoftwareKeyProvider

h = bytes.fromhex
AUTHORITY = ec.derive_private_key(0x1D5A_7E57_0001, ec.SECP256R1())
TEST_AUTHORITY = ec.derive_private_key(0x7E57_0003, ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "authority.pem").write_bytes(pem(AUTHORITY))
    (tmp_path / "test-authority.pem").write_bytes(pem(TEST_AUTHORITY))
    return tmp_path


def full() -> dict[str, Any]:
    """Every member, none at its default."""
    return {
        "format": "mie-badge/1",
        "aid": "010203",
        "system_id": "4e585020416275",
        "keys": {"provider": "software", "file": "keys.json"},
        "labels": {
            "picc": "p",
            "app": "a",
            "uid_read": "u",
            "read": "r",
            "authority": "auth",
        },
        "authorities": [
            {"name": "CH Exemple", "pem": "authority.pem", "test": False},
            {"name": "TEST", "pem": "test-authority.pem", "test": True},
        ],
        "issuer": "CH Exemple",
        "uid_source": "div-file",
        "random_uid": False,
        "originality": "optional",
        "originality_keys": ["nxp", "mie-test"],
        "originality_read": "plain",
        "second_factor": {"store": "sqlite:state/mie.db", "max_failures": 3},
        "legacy": True,
    }


def write(folder: Path, obj: object, name: str = "badge.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# --- reading ---------------------------------------------------------------------------------


def test_a_minimal_file_takes_the_defaults(folder: Path) -> None:
    config = BadgeConfig.load(write(folder, {"format": "mie-badge/1"}))
    assert config.aid == h("494df0")
    assert config.system_id == b"MIE-HSP" == h("4d49452d485350")
    assert config.keys is None
    assert config.labels == KeyLabels("mie-picc", "mie-app", "mie-uid", "mie-read", "mie-authority")
    assert config.authorities == ()
    assert config.issuer is None
    assert config.uid_source is UidSource.GET_CARD_UID
    assert config.random_uid is True
    assert config.originality is Originality.REQUIRED
    assert config.originality_keys == ("nxp",)
    # The default reads the signature inside the session: in clear it would track the badge.
    assert config.originality_read is OriginalityRead.FULL
    assert config.second_factor is None
    assert config.legacy is False
    assert config.require_ev2 is False
    assert config.source == folder / "badge.json"


def test_every_member_is_read(folder: Path) -> None:
    config = BadgeConfig.load(write(folder, full()))
    assert config.aid == h("010203")
    assert config.system_id == b"NXP Abu"
    assert config.keys == SoftwareKeys(folder / "keys.json")
    assert config.labels == KeyLabels("p", "a", "u", "r", "auth")
    assert [(a.name, a.test) for a in config.authorities] == [("CH Exemple", False), ("TEST", True)]
    assert config.authorities[0].key_id == authority_key_id(AUTHORITY.public_key())
    assert config.authorities[1].public_key.public_numbers() == (
        TEST_AUTHORITY.public_key().public_numbers()
    )
    assert config.issuer == "CH Exemple"
    assert config.uid_source is UidSource.DIV_FILE
    assert config.random_uid is False
    assert config.originality is Originality.OPTIONAL
    assert config.originality_keys == ("nxp", "mie-test")
    assert config.originality_read is OriginalityRead.PLAIN
    assert config.second_factor == SecondFactorSettings("sqlite", str(folder / "state/mie.db"), 3)
    assert config.legacy is True


def test_require_ev2_is_read_and_cannot_go_with_legacy(folder: Path) -> None:
    obj = {"format": "mie-badge/1", "require_ev2": True}
    assert BadgeConfig.load(write(folder, obj)).require_ev2 is True
    path = write(folder, {**obj, "legacy": True})
    with pytest.raises(BadgeConfigError, match="require_ev2 and legacy") as caught:
        BadgeConfig.load(path)
    assert caught.value.field == "require_ev2"


def test_pkcs11_keys_and_absolute_paths(folder: Path) -> None:
    obj = full()
    obj["keys"] = {
        "provider": "pkcs11",
        "module": "/usr/lib/softhsm/libsofthsm2.so",
        "token": "mie",
        "pin_env": "MIE_HSM_PIN",
    }
    obj["authorities"] = [{"name": "CH", "pem": str(folder / "authority.pem")}]
    obj["second_factor"] = {"store": "postgresql://mie:secret@127.0.0.1/mie"}
    config = BadgeConfig.from_json(obj, base=Path("/nowhere"))
    assert config.keys == Pkcs11Keys(Path("/usr/lib/softhsm/libsofthsm2.so"), "mie", "MIE_HSM_PIN")
    assert config.authorities[0].test is False
    assert config.second_factor is not None
    assert config.second_factor.store == "postgresql"
    assert config.second_factor.max_failures == 5
    assert "secret" not in repr(config.second_factor)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/lib/mie/mie.db", "/var/lib/mie/mie.db"),
        ("sqlite:mie.db", "BASE/mie.db"),
        ("postgres://db/mie", "postgres://db/mie"),
    ],
)
def test_store_urls(url: str, expected: str, folder: Path) -> None:
    obj = {"format": "mie-badge/1", "second_factor": {"store": url}}
    config = BadgeConfig.from_json(obj, base=folder)
    assert config.second_factor is not None
    assert config.second_factor.location == expected.replace("BASE", str(folder))


def test_the_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MIE_BADGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "mie" / "badge.json"
    monkeypatch.setenv("MIE_BADGE_CONFIG", str(tmp_path / "here.json"))
    assert default_path() == tmp_path / "here.json"
    write(tmp_path, {"format": "mie-badge/1", "aid": "aabbcc"}, "here.json")
    assert BadgeConfig.load().aid == h("aabbcc")


def test_a_missing_file_is_no_badge_configuration(tmp_path: Path) -> None:
    with pytest.raises(BadgeConfigError, match="No badge configuration") as caught:
        BadgeConfig.load(tmp_path / "absent.json")
    assert caught.value.code is ErrorCode.USAGE
    assert caught.value.field is None


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(BadgeConfigError, match="Cannot read"):
        BadgeConfig.load(tmp_path)


def test_the_size_bound(folder: Path) -> None:
    obj = {"format": "mie-badge/1", "issuer": "x"}
    text = json.dumps(obj)
    path = folder / "big.json"
    path.write_text(text[:-1] + " " * (MAX_CONFIG_BYTES - len(text) + 1) + "}", encoding="utf-8")
    assert path.stat().st_size == MAX_CONFIG_BYTES + 1
    with pytest.raises(JsonFormatError, match="larger than"):
        BadgeConfig.load(path)
    path.write_text(text[:-1] + " " * (MAX_CONFIG_BYTES - len(text)) + "}", encoding="utf-8")
    assert BadgeConfig.load(path).issuer == "x"


@pytest.mark.parametrize(
    "text", ['{"format": "mie-badge/1", "format": "mie-badge/1"}', "{", '\ufeff{"format": 1}']
)
def test_not_strict_json(text: str, folder: Path) -> None:
    path = folder / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(JsonFormatError):
        BadgeConfig.load(path)


# --- refusals, each naming its field ---------------------------------------------------------

REFUSED: list[tuple[str, Any, str]] = [
    ("format", "mie-badge/2", "format"),
    ("format", None, "format"),
    ("aid", "494DF0", "aid"),
    ("aid", "494df", "aid"),
    ("aid", "494df0aa", "aid"),
    ("aid", "000000", "aid"),
    ("aid", 0x494DF0, "aid"),
    ("system_id", "4d49452d48", "system_id"),  # 5 bytes: a token's CMAC would differ
    ("system_id", "00" * 22, "system_id"),
    ("system_id", "", "system_id"),
    ("keys", "keys.json", "keys"),
    ("keys", {"provider": "hsm", "file": "k"}, "keys.provider"),
    ("keys", {"file": "k"}, "keys.provider"),
    ("keys", {"provider": "software"}, "keys.file"),
    ("keys", {"provider": "software", "file": "k", "pin": "1"}, "keys.'pin'"),
    ("keys", {"provider": "software", "file": ""}, "keys.file"),
    ("keys", {"provider": "software", "file": "a\x00b"}, "keys.file"),
    ("keys", {"provider": "pkcs11", "module": "m", "token": "t"}, "keys.pin_env"),
    ("keys", {"provider": "pkcs11", "module": "m", "token": "t", "pin_env": "1X"}, "keys.pin_env"),
    ("keys", {"provider": "pkcs11", "module": "m", "token": "", "pin_env": "P"}, "keys.token"),
    ("labels", {"read": "has space"}, "labels.read"),
    ("labels", {"read": ""}, "labels.read"),
    ("labels", {"read": "x" * 65}, "labels.read"),
    ("labels", {"write": "x"}, "labels.'write'"),
    ("labels", ["mie-read"], "labels"),
    ("authorities", {"name": "x"}, "authorities"),
    ("authorities", [{"name": "x"}], "authorities[0].pem"),
    ("authorities", [{"pem": "authority.pem"}], "authorities[0].name"),
    ("authorities", [{"name": "x", "pem": "authority.pem", "test": "no"}], "authorities[0].test"),
    ("authorities", [{"name": "x", "pem": "authority.pem", "id": 1}], "authorities[0].'id'"),
    ("authorities", [{"name": "x", "pem": "missing.pem"}], "authorities[0].pem"),
    ("authorities", [{"name": "x", "pem": "p384.pem"}], "authorities[0].pem"),
    ("authorities", [{"name": "x", "pem": "garbage.pem"}], "authorities[0].pem"),
    ("authorities", [{"name": "x", "pem": "huge.pem"}], "authorities[0].pem"),
    ("authorities", [{"name": "x", "pem": "fifo.pem"}], "authorities[0].pem"),
    ("authorities", [{"name": "x", "pem": "."}], "authorities[0].pem"),
    (
        "authorities",
        [{"name": "a", "pem": "authority.pem"}, {"name": "b", "pem": "authority.pem"}],
        "authorities[1]",
    ),
    ("authorities", [{"name": str(i), "pem": "authority.pem"} for i in range(17)], "authorities"),
    ("issuer", "", "issuer"),
    ("issuer", "é" * 16, "issuer"),
    ("issuer", "CH\tExemple", "issuer"),
    ("issuer", 5, "issuer"),
    ("uid_source", "uid", "uid_source"),
    ("uid_source", "anticollision", "uid_source"),  # random_uid is true by default
    ("random_uid", "true", "random_uid"),
    ("random_uid", 1, "random_uid"),
    ("originality", "yes", "originality"),
    ("originality", True, "originality"),
    ("originality_read", "mac", "originality_read"),
    ("originality_read", "FULL", "originality_read"),
    ("originality_read", None, "originality_read"),
    ("originality_read", 1, "originality_read"),
    ("originality_keys", [], "originality_keys"),
    ("originality_keys", ["nxp", "nxp"], "originality_keys"),
    ("originality_keys", ["acme"], "originality_keys"),
    ("originality_keys", "nxp", "originality_keys"),
    ("second_factor", {"store": "redis://x"}, "second_factor.store"),
    ("second_factor", {"store": "sqlite://relative.db"}, "second_factor.store"),
    ("second_factor", {"max_failures": 5}, "second_factor.store"),
    ("second_factor", {"store": "sqlite:a.db", "max_failures": 0}, "second_factor.max_failures"),
    ("second_factor", {"store": "sqlite:a.db", "max_failures": 5.0}, "second_factor.max_failures"),
    ("second_factor", {"store": "sqlite:a.db", "max_failures": -1}, "second_factor.max_failures"),
    ("second_factor", {"store": "sqlite:a.db", "max_failures": 1001}, "second_factor.max_failures"),
    ("second_factor", {"store": "sqlite:a.db", "max_failures": "5"}, "second_factor.max_failures"),
    ("second_factor", {"store": "sqlite:a.db", "lock": 1}, "second_factor.'lock'"),
    ("second_factor", "sqlite:a.db", "second_factor"),
    ("legacy", None, "legacy"),
    ("require_ev2", "true", "require_ev2"),
    ("require_ev2", None, "require_ev2"),
    ("unknown", 1, "'unknown'"),
]


@pytest.mark.parametrize(
    ("member", "value", "field"), REFUSED, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(REFUSED)]
)
def test_a_bad_member_is_refused_by_name(member: str, value: Any, field: str, folder: Path) -> None:
    (folder / "p384.pem").write_bytes(pem(ec.derive_private_key(5, ec.SECP384R1())))
    (folder / "garbage.pem").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    (folder / "huge.pem").write_bytes(pem(AUTHORITY) + b"\n" * 20000)
    os.mkfifo(folder / "fifo.pem")  # nobody writes: a blocking open would never return
    obj = {"format": "mie-badge/1", member: value}
    path = write(folder, obj)
    with pytest.raises(BadgeConfigError) as caught:
        BadgeConfig.load(path)
    assert caught.value.field == field
    assert caught.value.code is ErrorCode.USAGE
    message = str(caught.value)
    assert message.startswith(f"Badge configuration {str(path)!r}: ") and "\n" not in message
    # The baseline without the bad member loads, so the member is what was refused.
    del obj[member]
    if member != "format":
        BadgeConfig.load(write(folder, obj))


def test_not_an_object(folder: Path) -> None:
    with pytest.raises(BadgeConfigError, match="not a JSON object"):
        BadgeConfig.load(write(folder, ["mie-badge/1"]))


def test_anticollision_with_a_static_uid_is_allowed(folder: Path) -> None:
    obj = {"format": "mie-badge/1", "uid_source": "anticollision", "random_uid": False}
    assert BadgeConfig.load(write(folder, obj)).uid_source is UidSource.ANTICOLLISION


def test_the_constructor_checks_too() -> None:
    with pytest.raises(BadgeConfigError, match="system_id"):
        BadgeConfig(system_id=b"short")
    with pytest.raises(BadgeConfigError, match="aid"):
        BadgeConfig(aid=bytes(3))
    with pytest.raises(BadgeConfigError, match="uid_source"):
        BadgeConfig(uid_source=UidSource.ANTICOLLISION)


# --- diversification inputs (D11) ------------------------------------------------------------

UID = h("04782e21801d80")  # desfire.md §8.7


def test_the_an10922_example_input() -> None:
    # desfire.md §8.7: M = UID ‖ AID 3042F5 ‖ "NXP Abu", 17 bytes (18 with the 01 constant).
    m = diversification_input(UID, h("3042f5"), b"NXP Abu")
    assert m == h("04782e21801d803042f54e585020416275")
    master = h("00112233445566778899aabbccddeeff")
    assert crypto.diversify_aes128(master, m) == h("a8dd63a3b89d54b37ca802473fda9175")


def test_the_config_inputs() -> None:
    config = BadgeConfig()
    assert config.diversification_input(UID) == UID + h("494df0") + b"MIE-HSP"
    assert len(config.diversification_input(UID)) == 17
    assert config.uid_read_input() == bytes(7) + h("494df0") + b"MIE-HSP"
    assert config.picc_input(UID) == UID + bytes(3) + b"MIE-HSP"


@pytest.mark.parametrize("size", [6, 21])
def test_inputs_span_what_every_provider_takes(size: int) -> None:
    m = diversification_input(UID, h("494df0"), bytes(range(1, size + 1)))
    assert len(m) == 10 + size and 16 <= len(m) <= 31


@pytest.mark.parametrize(
    ("uid", "aid", "system_id", "part"),
    [
        (UID[:4], h("494df0"), b"MIE-HSP", "UID"),
        (UID + b"\x00", h("494df0"), b"MIE-HSP", "UID"),
        (UID, h("494d"), b"MIE-HSP", "AID"),
        (UID, h("494df0"), b"MIE-H", "system identifier"),
        (UID, h("494df0"), bytes(22), "system identifier"),
        (UID.hex(), h("494df0"), b"MIE-HSP", "UID"),
    ],
)
def test_a_bad_input_part_is_refused(uid: Any, aid: bytes, system_id: bytes, part: str) -> None:
    with pytest.raises(DesfireInputError, match=part) as caught:
        diversification_input(uid, aid, system_id)
    assert caught.value.code is ErrorCode.MALFORMED
    assert UID.hex() not in str(caught.value)


# --- the key provider ------------------------------------------------------------------------


def test_open_keys_software(folder: Path) -> None:
    keys = folder / "keys.json"
    keys.write_text(
        json.dumps(
            {"format": "mie-keys/1", "aes128": {"mie-read": "00112233445566778899aabbccddeeff"}}
        )
    )
    os.chmod(keys, 0o600)
    config = BadgeConfig.from_json(
        {"format": "mie-badge/1", "keys": {"provider": "software", "file": "keys.json"}},
        base=folder,
    )
    with open_keys(config) as provider:
        assert isinstance(provider, SoftwareKeyProvider)
        m = config.diversification_input(UID)
        assert provider.diversify("mie-read", m) == crypto.diversify_aes128(
            h("00112233445566778899aabbccddeeff"), m
        )


def test_open_keys_without_a_provider() -> None:
    with pytest.raises(BadgeConfigError) as caught:
        open_keys(BadgeConfig())
    assert caught.value.field == "keys"


def test_open_keys_pkcs11_needs_its_pin_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIE_TEST_NO_PIN", raising=False)
    config = BadgeConfig(keys=Pkcs11Keys(Path("/nonexistent.so"), "mie", "MIE_TEST_NO_PIN"))
    with pytest.raises(BadgeConfigError, match="MIE_TEST_NO_PIN") as caught:
        open_keys(config)
    assert caught.value.field == "keys.pin_env"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(member=st.sampled_from(sorted(full())), value=_JSON)
def test_any_json_value_of_a_member_loads_or_names_the_member(member: str, value: Any) -> None:
    obj = strictjson.loads(
        json.dumps({"format": "mie-badge/1", member: value}).encode(), "test", max_bytes=1 << 20
    )
    if member == "format":
        obj["format"] = value if not isinstance(value, str) else value + "?"
    try:
        BadgeConfig.from_json(obj, base=Path("/nonexistent-mie-config-dir"))
    except BadgeConfigError as e:
        assert e.field is not None and e.field.split(".")[0].split("[")[0] in (
            member,
            f"'{member}'",
        )


# --- originality keys ------------------------------------------------------------------------


def _test_signature(uid: bytes) -> bytes:
    from mie.emulation.desfire import TEST_ORIGINALITY_PRIVATE

    der = TEST_ORIGINALITY_PRIVATE.sign(
        crypto.originality_digest(uid), ec.ECDSA(Prehashed(hashes.SHA224()))
    )
    r, s = decode_dss_signature(der)
    return r.to_bytes(28, "big") + s.to_bytes(28, "big")


def test_the_default_trusts_the_nxp_keys_only() -> None:
    assert BadgeConfig().originality_key_set() == crypto.NXP_ORIGINALITY_KEYS
    with pytest.raises(OriginalitySignatureError):
        crypto.verify_originality_signature(
            UID, _test_signature(UID), BadgeConfig().originality_key_set()
        )


def test_mie_test_adds_the_emulated_badges_key() -> None:
    config = BadgeConfig(originality_keys=("nxp", "mie-test"))
    keys = config.originality_key_set()
    assert keys[: len(crypto.NXP_ORIGINALITY_KEYS)] == crypto.NXP_ORIGINALITY_KEYS
    found = crypto.verify_originality_signature(UID, _test_signature(UID), keys)
    assert found.name == "mie test badge"
    only_test = BadgeConfig(originality_keys=("mie-test",)).originality_key_set()
    assert len(only_test) == 1


def test_a_configuration_named_as_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "badge.json"
    os.mkfifo(fifo)  # nobody writes: a blocking open would never return
    with pytest.raises(BadgeConfigError, match="not a regular file") as caught:
        BadgeConfig.load(fifo)
    assert caught.value.code is ErrorCode.USAGE


def test_a_choice_given_in_code_as_its_string_is_the_choice_or_refused() -> None:
    # Rv-Z: the checks compare with ``is``; BadgeConfig(originality="required") was none of the
    # choices, so a missing or bad signature read as optional, and originality_read="plain" as
    # full. Now the string is made the choice, and a string that is none is refused.
    config = BadgeConfig(
        originality="required",  # type: ignore[arg-type]
        originality_read="plain",  # type: ignore[arg-type]
        uid_source="div-file",  # type: ignore[arg-type]
    )
    assert config.originality is Originality.REQUIRED
    assert config.originality_read is OriginalityRead.PLAIN
    assert config.uid_source is UidSource.DIV_FILE
    values: tuple[tuple[str, Any], ...] = (("originality", "Required"), ("originality_read", None))
    for name, value in values:
        with pytest.raises(BadgeConfigError, match=f"{name} is not one of") as caught:
            BadgeConfig(**{name: value})
        assert caught.value.field == name


@pytest.mark.parametrize("name", ["random_uid", "legacy", "require_ev2"])
def test_a_flag_given_in_code_is_a_bool_or_refused(name: str) -> None:
    # Rv-Z: BadgeConfig(legacy="false") was a truthy opt-in to DES/3DES badges.
    with pytest.raises(BadgeConfigError, match=f"{name} is not true or false") as caught:
        BadgeConfig(**{name: "false"})  # type: ignore[arg-type]
    assert caught.value.field == name
    flag: dict[str, Any] = {name: False}
    assert getattr(BadgeConfig(**flag), name) is False
