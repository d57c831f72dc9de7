"""`mie desfire diversify|info|enroll`, `--badge-config` (plan D9) and `--reader nfc:…`, in
process on emulated badges (no daemon). :func:`write_badge_setup` is shared with the Done-when
flows of tests/integration/test_desfire_{nfc,pcsc}.py."""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie._cli.__main__ import run
from mie._cli.app import cli, exit_code_for
from mie._cli.state import CliState
from mie.core.connection import SmartCardConnection
from mie.desfire.config import BadgeConfig
from mie.desfire.crypto import diversify_aes128
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, personalise

h = bytes.fromhex
UID = h("04958caa5c5e80")
AID = h("494df0")
SYSTEM_ID = b"MIE-HSP"


@dataclass(frozen=True)
class BadgeSetup:
    """A badge configuration directory: ``badge.json``, ``keys.json``, ``authority.pem``."""

    config: Path
    keys: Path
    masters: dict[str, bytes]

    def key(self, label: str, diversification_input: bytes) -> bytes:
        """:return: the key the software provider derives (what the badge must hold)."""
        return diversify_aes128(self.masters[label], diversification_input)


def write_badge_setup(
    directory: Path,
    *,
    seed: int = 1,
    originality_keys: tuple[str, ...] = ("mie-test",),
    second_factor: bool = False,
    keys: dict[str, object] | None = None,
    issuer: str = "CH Exemple",
) -> BadgeSetup:
    """Write a badge configuration whose software keys are derived from ``seed`` (two seeds:
    two establishments with different master keys and authorities).

    :param keys: the config's ``keys`` member instead of the software key file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    labels = ("mie-picc", "mie-app", "mie-uid", "mie-read")
    masters = {label: bytes([seed, i]) * 8 for i, label in enumerate(labels)}
    authority = ec.derive_private_key(0x1D5A_7E57_0000 + seed, ec.SECP256R1())
    document = {
        "format": "mie-keys/1",
        "aes128": {label: value.hex() for label, value in masters.items()},
        "ecdsa-p256": {"mie-authority": f"{authority.private_numbers().private_value:064x}"},
    }
    key_file = directory / "keys.json"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    (directory / "authority.pem").write_bytes(
        authority.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config: dict[str, object] = {
        "format": "mie-badge/1",
        "keys": keys if keys is not None else {"provider": "software", "file": "keys.json"},
        "authorities": [{"name": issuer, "pem": "authority.pem", "test": True}],
        "issuer": issuer,
        "originality_keys": list(originality_keys),
    }
    if second_factor:
        config["second_factor"] = {"store": "sqlite:mie.db", "max_failures": 3}
    path = directory / "badge.json"
    path.write_text(json.dumps(config))
    return BadgeSetup(path, key_file, masters)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No badge configuration of the user's, and the 'mie' logger given back as it was."""
    monkeypatch.delenv("MIE_BADGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    logger = logging.getLogger("mie")
    handlers, level = list(logger.handlers), logger.level
    logger.handlers[:] = []
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


class ReaderState(CliState):
    """A CLI state whose reader holds ``card``."""

    def __init__(self, connection: SmartCardConnection) -> None:
        super().__init__()
        self.connection = connection
        self.opened = 0

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        self.opened += 1
        return self.connection


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("mie: error: ")
    return lines[0]


def personalised(setup: BadgeSetup, *, random_uid: bool) -> EmulatedDesfire:
    """A badge laid out as an enrolment under ``setup`` leaves it (the emulator's helper)."""
    config = BadgeConfig.load(setup.config)
    state = BadgeState(UID, BadgeKey(bytes(16), 0, KeyType.DES))
    app_keys = [
        setup.key("mie-app", config.diversification_input(UID)),
        setup.key("mie-uid", config.uid_read_input()),
        setup.key("mie-read", config.diversification_input(UID)),
        setup.key("mie-app", config.diversification_input(UID)),
        setup.key("mie-app", config.diversification_input(UID)),
    ]
    personalise(
        state,
        aid=AID,
        keys=app_keys,
        record=bytes(176),
        picc_key=setup.key("mie-picc", config.picc_input(UID)),
        random_uid=random_uid,
    )
    return EmulatedDesfire(state)


# --- diversify --------------------------------------------------------------------------------

VECTOR = [  # desfire.md §8.7 (AN10922 §2.2.1)
    "--master-key",
    "00112233445566778899AABBCCDDEEFF",
    "--uid",
    "04782E21801D80",
    "--aid",
    "3042F5",
    "--system-id",
    "4E585020416275",
]


def test_diversify_prints_the_an10922_vector(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["desfire", "diversify", *VECTOR]) == 0
    assert capsys.readouterr().out == "a8dd63a3b89d54b37ca802473fda9175\n"


def test_diversify_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["desfire", "diversify", *VECTOR, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"key": "a8dd63a3b89d54b37ca802473fda9175"}


def test_diversify_depends_on_every_input(capsys: pytest.CaptureFixture[str]) -> None:
    keys = set()
    for index in range(1, len(VECTOR), 2):
        changed = list(VECTOR)
        changed[index] = ("0" if changed[index][0] != "0" else "1") + changed[index][1:]
        assert run(["desfire", "diversify", *changed]) == 0
        keys.add(capsys.readouterr().out)
    assert len(keys) == 4 and "a8dd63a3b89d54b37ca802473fda9175\n" not in keys


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--master-key", "0011", "--master-key must be 16 bytes, not 2"),
        ("--master-key", "00" * 17, "--master-key must be 16 bytes, not 17"),
        ("--master-key", "zz" * 16, "--master-key is not hex"),
        ("--uid", "04782E21801D", "--uid must be 7 bytes, not 6"),
        ("--uid", "04782E21801D8000", "--uid must be 7 bytes, not 8"),
        ("--aid", "3042", "--aid must be 3 bytes, not 2"),
        ("--aid", "3042F5G", "--aid is not hex"),
        ("--system-id", "4E5850204162", None),
        ("--system-id", "4E58502041", "--system-id must be 6 to 21 bytes, not 5"),
        ("--system-id", "00" * 22, "--system-id must be 6 to 21 bytes, not 22"),
        ("--system-id", "", "--system-id must be 6 to 21 bytes, not 0"),
    ],
)
def test_diversify_refuses_a_bad_length_naming_the_option(
    capsys: pytest.CaptureFixture[str], option: str, value: str, message: str | None
) -> None:
    args = list(VECTOR)
    args[args.index(option) + 1] = value
    code = run(["desfire", "diversify", *args, "--json"])
    captured = capsys.readouterr()
    if message is None:  # 6 bytes: the shortest system identifier, accepted
        assert code == 0
        return
    assert code == 2
    assert one_error_line(captured.err) == f"mie: error: {message}"
    assert json.loads(captured.out) == {"error": {"code": "usage", "message": message}}
    # The key is never echoed back, even when wrong.
    assert "00112233445566778899" not in captured.err + captured.out


def test_diversify_without_an_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["desfire", "diversify", *VECTOR[:6]]) == 2
    assert "--system-id" in one_error_line(capsys.readouterr().err)


def test_every_desfire_option_has_a_help_line() -> None:
    group = cli.commands["desfire"]
    assert isinstance(group, click.Group)
    assert group.help
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"mie desfire {name} {param.opts}"
    for name in ("auth", "verify-evidence"):
        options = {o for p in cli.commands[name].params for o in getattr(p, "opts", ())}
        assert "--badge-config" in options, name


# --- the D8 codes end a command with exit 1 ---------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RecordCopiedError(RecordCopiedError.UID, "The record was issued for another badge"),
        RecordUntrustedError(RecordUntrustedError.UNKNOWN_AUTHORITY, "Unknown authority"),
        RecordFormatError("The record has a bad tag"),
    ],
)
def test_a_record_refused_is_a_failed_check(error: Exception) -> None:
    assert exit_code_for(error) == 1  # type: ignore[arg-type]


def test_the_other_desfire_codes_are_failed_checks() -> None:
    from mie.core.errors import ResponseIntegrityError
    from mie.desfire.errors import (
        CardCryptogramError,
        DesfireAuthenticationError,
        LegacyCryptoError,
        OriginalitySignatureError,
    )

    assert exit_code_for(DesfireAuthenticationError(b"", 0x91AE, 0x71)) == 1
    assert exit_code_for(CardCryptogramError("RndA'")) == 1
    assert exit_code_for(ResponseIntegrityError("MAC")) == 1
    assert exit_code_for(OriginalitySignatureError("no key")) == 1
    assert exit_code_for(LegacyCryptoError("DES")) == 1


# --- info ---------------------------------------------------------------------------------------


def info_json(state: CliState, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert run(["desfire", "info", *args, "--json"], state) == 0, capsys.readouterr().err
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_info_of_a_blank_badge(capsys: pytest.CaptureFixture[str]) -> None:
    badge = EmulatedDesfire(BadgeState.blank(UID))
    result = info_json(ReaderState(EmulatedConnection(badge)), capsys)
    assert result == {
        "product": "EV3",
        "hw": result["hw"],
        "sw": result["sw"],
        "storage_bytes": result["storage_bytes"],
        "uid": UID.hex(),
        "random_uid": False,
        "anticollision_uid": UID.hex(),
        # The emulator signs with its TEST key, which only a configuration trusts.
        "originality": {"key": None, "verified": False},
        "applications": [],
        "mie_application": False,
    }
    assert result["hw"] == {
        "vendor": 4,
        "type": 1,
        "subtype": 1,
        "major": 0x33,
        "minor": 0,
        "storage": result["hw"]["storage"],  # type: ignore[index]
        "protocol": 5,
    }
    assert result["storage_bytes"] in (2048, 4096, 8192)


def test_info_without_configuration_cannot_see_behind_a_random_uid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = personalised(setup, random_uid=True)
    result = info_json(ReaderState(EmulatedConnection(badge)), capsys)
    assert result["uid"] is None and result["random_uid"] is True
    anticollision = h(str(result["anticollision_uid"]))
    assert len(anticollision) == 4 and anticollision[0] == 0x08
    assert result["originality"] == {"key": None, "verified": False}
    assert result["mie_application"] is True


def test_info_with_the_configuration_reads_the_real_uid_and_checks_originality(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = personalised(setup, random_uid=True)
    state = ReaderState(EmulatedConnection(badge))
    result = info_json(state, capsys, "--badge-config", str(setup.config))
    assert result["uid"] == UID.hex() and result["random_uid"] is True
    assert result["originality"] == {"key": "mie test badge", "verified": True}
    assert result["mie_application"] is True


def test_info_reads_the_configuration_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    monkeypatch.setenv("MIE_BADGE_CONFIG", str(setup.config))
    badge = personalised(setup, random_uid=True)
    assert info_json(ReaderState(EmulatedConnection(badge)), capsys)["uid"] == UID.hex()


def test_info_reads_the_default_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "xdg" / "mie")
    assert setup.config == tmp_path / "xdg" / "mie" / "badge.json"
    badge = personalised(setup, random_uid=True)
    assert info_json(ReaderState(EmulatedConnection(badge)), capsys)["uid"] == UID.hex()


def test_info_with_another_establishment_s_keys_warns_and_shows_no_uid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = write_badge_setup(tmp_path / "ours", seed=1)
    theirs = write_badge_setup(tmp_path / "theirs", seed=2)
    badge = personalised(ours, random_uid=True)
    state = ReaderState(EmulatedConnection(badge))
    assert run(["desfire", "info", "--badge-config", str(theirs.config), "--json"], state) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["uid"] is None
    assert "refused the configuration's UID-read key" in captured.err


def test_info_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = personalised(setup, random_uid=True)
    state = ReaderState(EmulatedConnection(badge))
    assert run(["desfire", "info", "--badge-config", str(setup.config)], state) == 0
    out = capsys.readouterr().out
    assert out.startswith("DESFire EV3\n")
    assert f"UID: {UID.hex()} (random UID on)" in out
    assert "originality: verified (mie test badge)" in out
    assert "MIE application: yes" in out


def test_info_of_a_card_that_is_not_a_desfire_badge_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mie.emulation.iso7816 import demo_card

    state = ReaderState(EmulatedConnection(demo_card()))
    assert run(["desfire", "info", "--json"], state) == 1
    captured = capsys.readouterr()
    assert "not a DESFire badge" in one_error_line(captured.err)
    assert json.loads(captured.out)["error"]["code"] == "unsupported_card"


@pytest.mark.parametrize(
    "command",
    [
        ["desfire", "info"],
        ["auth"],
        ["verify-evidence", "x.json", "--nonce", "00" * 16, "--origin", "https://iam.example"],
    ],
)
def test_a_missing_badge_configuration_named_exits_2_before_the_reader_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    state = ReaderState(EmulatedConnection(EmulatedDesfire(BadgeState.blank(UID))))
    missing = tmp_path / "absent.json"
    assert run([*command, "--badge-config", str(missing), "--json"], state) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "No badge configuration" in line and "absent.json" in line
    assert json.loads(captured.out)["error"]["code"] == "usage"
    assert state.opened == 0


def test_a_missing_badge_configuration_in_the_environment_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIE_BADGE_CONFIG", str(tmp_path / "absent.json"))
    state = ReaderState(EmulatedConnection(EmulatedDesfire(BadgeState.blank(UID))))
    assert run(["desfire", "info"], state) == 2
    assert "absent.json" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "badge.json"),
        ('{"format": "mie-badge/1", "colour": "blue"}', "colour"),
        ('{"format": "mie-badge/1", "aid": "000000"}', "aid"),
    ],
)
def test_a_bad_badge_configuration_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, named: str
) -> None:
    path = tmp_path / "badge.json"
    path.write_text(content)
    state = ReaderState(EmulatedConnection(EmulatedDesfire(BadgeState.blank(UID))))
    assert run(["desfire", "info", "--badge-config", str(path)], state) == 2
    assert named in one_error_line(capsys.readouterr().err)


# --- --reader nfc:… ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "message"),
    [
        ("nfc:", "no nfcpy device path"),
        ("nfc:no-such-device", "no such NFC front end"),
    ],
)
def test_an_nfc_reader_that_cannot_be_used_exits_2(
    capsys: pytest.CaptureFixture[str], reader: str, message: str
) -> None:
    pytest.importorskip("nfc")
    assert run(["desfire", "info", "--reader", reader]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_an_nfc_reader_without_nfcpy_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "nfc", None)
    monkeypatch.delitem(sys.modules, "mie.transport.nfc", raising=False)
    assert run(["desfire", "info", "--reader", "nfc:udp:127.0.0.1:9"]) == 2
    assert "pip install 'mie[nfc]'" in one_error_line(capsys.readouterr().err)


def test_an_nfc_reader_opens_an_nfc_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nfc")
    # sys.modules' entry, which the CLI imports from (a test without nfcpy may have left
    # another module object as the package's attribute).
    nfc_transport = importlib.import_module("mie.transport.nfc")

    opened: list[tuple[str, float]] = []

    class Fake:
        def __init__(self, path: str, *, wait: float) -> None:
            opened.append((path, wait))

    monkeypatch.setattr(nfc_transport, "NfcConnection", Fake)
    state = CliState()
    connection = state.open_reader("nfc:udp:127.0.0.1:5000")
    assert isinstance(connection, Fake)
    assert opened == [("udp:127.0.0.1:5000", 5.0)]
    assert state.source == "emulator"
