"""`mie desfire diversify|info|enroll`, `--badge-config` (plan D9) and `--reader nfc:…`, in
process on emulated badges (no daemon). :func:`write_badge_setup` is shared with the Done-when
flows of tests/integration/test_desfire_{nfc,pcsc}.py."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mie._cli.__main__ import run
from mie._cli.app import cli, exit_code_for
from mie._cli.state import CliState
from mie.core.connection import SmartCardConnection
from mie.core.errors import CardRemovedError, NoCardError, TransportTimeoutError
from mie.desfire.config import BadgeConfig
from mie.desfire.crypto import diversify_aes128
from mie.desfire.errors import RecordCopiedError, RecordFormatError, RecordUntrustedError
from mie.emulation.base import EmulatedConnection
from mie.emulation.desfire import EmulatedDesfire
from mie.emulation.desfire_state import BadgeKey, BadgeState, KeyType, encode_state, personalise
from mie.emulation.iso7816 import demo_card
from mie.emulation.testpki import default_rpps
from tests.cards.faults import FailingConnection

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

    def key(self, name: str, diversification_input: bytes) -> bytes:
        """:return: the key the software provider derives from the master ``name`` (``picc``,
        ``app``, ``uid_read``, ``read``): what the badge must hold."""
        return diversify_aes128(self.masters[name], diversification_input)


def write_badge_setup(
    directory: Path,
    *,
    seed: int = 1,
    originality_keys: tuple[str, ...] = ("mie-test",),
    second_factor: bool = False,
    keys: dict[str, object] | None = None,
    issuer: str = "CH Exemple",
    labels: dict[str, str] | None = None,
) -> BadgeSetup:
    """Write a badge configuration whose software keys are derived from ``seed`` (two seeds:
    two establishments with different master keys and authorities).

    :param keys: the config's ``keys`` member instead of the software key file.
    :param labels: the config's ``labels`` (``picc``, ``app``, ``uid_read``, ``read``,
        ``authority``); the key file uses them.
    :return: the files, and the master keys by the config's label names (``picc``...).
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = ("picc", "app", "uid_read", "read")
    chosen = labels or {
        "picc": "mie-picc",
        "app": "mie-app",
        "uid_read": "mie-uid",
        "read": "mie-read",
        "authority": "mie-authority",
    }
    masters = {name: bytes([seed, i]) * 8 for i, name in enumerate(names)}
    authority = ec.derive_private_key(0x1D5A_7E57_0000 + seed, ec.SECP256R1())
    document = {
        "format": "mie-keys/1",
        "aes128": {chosen[name]: value.hex() for name, value in masters.items()},
        "ecdsa-p256": {chosen["authority"]: f"{authority.private_numbers().private_value:064x}"},
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
    if labels is not None:
        config["labels"] = labels
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


def personalised(setup: BadgeSetup, *, random_uid: bool, product: str = "ev3") -> EmulatedDesfire:
    """A badge laid out as an enrolment under ``setup`` leaves it (the emulator's helper)."""
    config = BadgeConfig.load(setup.config)
    state = BadgeState(UID, BadgeKey(bytes(16), 0, KeyType.DES))
    app_keys = [
        setup.key("app", config.diversification_input(UID)),
        setup.key("uid_read", config.uid_read_input()),
        setup.key("read", config.diversification_input(UID)),
        setup.key("app", config.diversification_input(UID)),
        setup.key("app", config.diversification_input(UID)),
    ]
    personalise(
        state,
        aid=AID,
        keys=app_keys,
        record=bytes(176),
        picc_key=setup.key("picc", config.picc_input(UID)),
        random_uid=random_uid,
    )
    return EmulatedDesfire(state, product=product)


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


def test_every_command_and_option_has_a_help_line() -> None:
    def walk(command: click.Command, path: str) -> None:
        assert command.help, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{path} {param.opts}"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    assert {"diversify", "info", "enroll"} <= set(cli.commands["desfire"].commands)  # type: ignore[attr-defined]
    walk(cli, "mie")
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


def test_a_relay_refusal_is_a_failed_check() -> None:
    from mie.relay.errors import RelayRefusedError

    assert exit_code_for(RelayRefusedError("VERIFY is not a DESFire command")) == 1


def test_desfire_and_agent_are_commands_of_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    listed = capsys.readouterr().out
    assert "\n  agent  " in listed and "\n  desfire  " in listed
    # Through the group (a global option first), not only through the entry point's shortcut.
    assert run(["--log-level", "info", "agent", "--help"]) == 0
    assert "--connect URL" in capsys.readouterr().out


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


def test_info_of_an_ev1_badge_reads_the_real_uid_with_ev1_authentication(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = personalised(setup, random_uid=True, product="ev1")
    state = ReaderState(EmulatedConnection(badge))
    result = info_json(state, capsys, "--badge-config", str(setup.config))
    assert (result["product"], result["uid"], result["random_uid"]) == ("EV1", UID.hex(), True)
    assert result["originality"] is None  # an EV1 has no Read_Sig


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


# --- enroll -------------------------------------------------------------------------------------

RPPS = "8" + default_rpps()
PIN = "482916"


class BadgeQueue(ReaderState):
    """A reader that is presented the ``badges`` one after the other (``enroll --csv``)."""

    def __init__(self, badges: list[SmartCardConnection]) -> None:
        super().__init__(badges[0] if badges else EmulatedConnection(demo_card()))
        self.badges = list(badges)
        self.presented: list[SmartCardConnection] = []
        self.removals = 0

    def wait_for_badge(self, reader: str | None, timeout: float) -> SmartCardConnection:
        if not self.badges:
            raise TransportTimeoutError(f"No badge within {timeout:g} s")
        self.presented.append(self.badges.pop(0))
        return self.presented[-1]

    def wait_for_removal(self, reader: str | None, timeout: float) -> None:
        self.removals += 1


def blank(uid: bytes = UID) -> EmulatedDesfire:
    return EmulatedDesfire(BadgeState.blank(uid))


def enroll(
    setup: BadgeSetup,
    journal: Path,
    state: CliState,
    *args: str,
    stdin: str = "",
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--journal", str(journal)]
    return run([*argv, *args], state)


def journal_steps(journal: Path) -> list[tuple[str, str, str, str]]:
    lines = journal.read_text().splitlines()
    assert lines[0] == "format,row,uid,step,state,at"
    return [tuple(line.split(",")[1:5]) for line in lines[1:]]  # type: ignore[misc]


def test_enroll_one_badge_then_info_shows_the_application(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    badge = blank()
    journal = tmp_path / "journal.csv"
    state = ReaderState(EmulatedConnection(badge))
    args = ("--identity", f"rpps={RPPS[1:]}", "--pin-stdin", "--issued", "2026-11-30", "--json")
    assert enroll(setup, journal, state, *args, stdin=PIN + "\n", monkeypatch=monkeypatch) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "enrolled": [{"row": RPPS, "uid": UID.hex(), "resumed_at": None}],
        "incomplete": [],
        "failed": [],
        "error": None,
    }
    steps = journal_steps(journal)
    assert steps[-1] == (RPPS, UID.hex(), "verified", "done")
    assert [s[2] for s in steps if s[3] == "done"] == [
        "begin",
        "picc_key",
        "application",
        "app_keys",
        "record",
        "second_factor",
        "random_uid",
        "verified",
    ]
    assert PIN not in captured.out + captured.err + journal.read_text()
    info = info_json(
        ReaderState(EmulatedConnection(badge)), capsys, "--badge-config", str(setup.config)
    )
    assert info["uid"] == UID.hex() and info["random_uid"] is True
    assert info["applications"] == [AID.hex()] and info["mie_application"] is True


def test_enroll_text_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    state = ReaderState(EmulatedConnection(blank()))
    psi = "4f0b7c1e-5d2a-4c8e-9a3b-6e1f2d7c8b90"
    args = ("--identity", f"psi={psi.upper()}")
    assert enroll(setup, tmp_path / "j.csv", state, *args, monkeypatch=monkeypatch) == 0
    row = psi.replace("-", "")
    assert capsys.readouterr().out == f"Enrolled: row {row}, badge {UID.hex()}\n"


def test_enroll_a_badge_twice_is_refused_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = blank()
    journal = tmp_path / "j.csv"
    args = ("--identity", f"rpps={RPPS[1:]}")
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(setup, journal, state, *args, monkeypatch=monkeypatch) == 0
    capsys.readouterr()
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(setup, journal, state, *args, "--json", monkeypatch=monkeypatch) == 1
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "was enrolled for row" in line
    # Rv-U: the JSON said nothing of the failure (an empty report, exit 1): it names it now.
    report = json.loads(captured.out)
    assert report == {"enrolled": [], "incomplete": [], "failed": [], "error": report["error"]}
    assert report["error"]["code"] == "card_error"
    assert line == f"mie: error: {report['error']['message']}"


def test_enroll_a_badge_of_another_system_is_refused_with_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = write_badge_setup(tmp_path / "ours", seed=1)
    theirs = write_badge_setup(tmp_path / "theirs", seed=2)
    badge = blank()
    args = ("--identity", f"rpps={RPPS[1:]}")
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(theirs, tmp_path / "theirs.csv", state, *args, monkeypatch=monkeypatch) == 0
    before = encode_state(badge.state)
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(ours, tmp_path / "ours.csv", state, *args, monkeypatch=monkeypatch) == 1
    assert "it was not enrolled here" in one_error_line(capsys.readouterr().err)
    assert encode_state(badge.state) == before


def test_removal_mid_enrolment_is_reported_then_finished_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = blank()
    journal = tmp_path / "j.csv"
    args = ("--identity", f"rpps={RPPS[1:]}", "--json")
    removed = FailingConnection(
        EmulatedConnection(badge),
        at=20,
        error=CardRemovedError("The card was removed"),
        before=badge.power_off,
    )
    assert enroll(setup, journal, ReaderState(removed), *args, monkeypatch=monkeypatch) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["enrolled"] == []
    [left] = result["incomplete"]
    assert left["row"] == RPPS and left["uid"] == UID.hex()
    step = left["step"]
    assert step in ("app_keys", "record")
    line = one_error_line(captured.err)
    assert f"1 badge left incomplete (run again to finish): row {RPPS}" in line
    assert f"incomplete at {step}" in line
    # Rv-Z: the line names why the run stopped (it said only what it left).
    assert line.startswith("mie: error: The card was removed; 1 badge left incomplete")
    assert result["error"]["message"] == line[12:]
    # The next run says so first, then finishes the badge where it stopped.
    badge.power_on()
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(setup, journal, state, *args, monkeypatch=monkeypatch) == 0
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert f"row {RPPS} ({UID.hex()}) incomplete at {step}" in first
    assert json.loads(captured.out)["enrolled"] == [
        {"row": RPPS, "uid": UID.hex(), "resumed_at": step}
    ]
    assert journal_steps(journal)[-1][2:] == ("verified", "done")


def test_reset_incomplete_deletes_the_application_and_enrols_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = blank()
    journal = tmp_path / "j.csv"
    args = ("--identity", f"rpps={RPPS[1:]}")
    removed = FailingConnection(
        EmulatedConnection(badge), at=24, error=CardRemovedError("The card was removed")
    )
    assert enroll(setup, journal, ReaderState(removed), *args, monkeypatch=monkeypatch) == 1
    capsys.readouterr()
    badge.power_off()
    badge.power_on()
    state = ReaderState(EmulatedConnection(badge))
    assert enroll(setup, journal, state, *args, "--reset-incomplete", monkeypatch=monkeypatch) == 0
    assert f"badge {UID.hex()} reset" in capsys.readouterr().err
    steps = journal_steps(journal)
    assert (RPPS, UID.hex(), "application", "reset") in steps
    after_reset = steps[steps.index((RPPS, UID.hex(), "application", "reset")) + 1 :]
    assert after_reset[0] == (RPPS, UID.hex(), "application", "intent")
    assert steps[-1][2:] == ("verified", "done")


def test_reset_incomplete_enrols_a_badge_left_by_another_row_for_the_row_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-H (F's point 6): one journal for single badges (the default one); a badge left
    # incomplete for row B, presented with --reset-incomplete for professional A, was enrolled
    # under row B with A's identity: the journal said B's badge done, A had none.
    setup = write_badge_setup(tmp_path / "config")
    badge = blank()
    journal = tmp_path / "j.csv"
    removed = FailingConnection(
        EmulatedConnection(badge), at=24, error=CardRemovedError("The card was removed")
    )
    other = ("--identity", f"rpps={RPPS2[1:]}")
    assert enroll(setup, journal, ReaderState(removed), *other, monkeypatch=monkeypatch) == 1
    capsys.readouterr()
    badge.power_off()
    badge.power_on()
    state = ReaderState(EmulatedConnection(badge))
    args = ("--identity", f"rpps={RPPS[1:]}", "--reset-incomplete", "--json")
    assert enroll(setup, journal, state, *args, monkeypatch=monkeypatch) == 0
    captured = capsys.readouterr()
    assert f"row {RPPS2}: badge {UID.hex()} reset, enrolled for row {RPPS}" in captured.err
    [done] = json.loads(captured.out)["enrolled"]
    assert (done["row"], done["uid"]) == (RPPS, UID.hex())
    steps = journal_steps(journal)
    assert steps[-1] == (RPPS, UID.hex(), "verified", "done")
    assert (RPPS2, UID.hex(), "verified", "done") not in steps
    result = auth_json(badge, setup, capsys)
    assert result["valid"] is True and result["identity"]["id_nat"] == RPPS


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "badges.csv"
    path.write_text(text, encoding="utf-8")
    return path


RPPS2 = "8" + "10100099802"  # RPPS numbers pass a Luhn check
RPPS3 = "8" + "10100099810"


def test_enroll_csv_enrols_one_badge_per_row_with_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    uids = [bytes([4, i, 2, 3, 4, 5, 6]) for i in (1, 2, 3)]
    table = f"row,id_nat,pin\na,{RPPS},1111\nb,{RPPS2},\nc,{RPPS3},3333\n"
    path = csv_file(tmp_path, table)
    state = BadgeQueue([EmulatedConnection(blank(uid)) for uid in uids])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--csv", str(path), "--json"]
    assert run(argv, state) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["enrolled"] == [
        {"row": row, "uid": uid.hex(), "resumed_at": None}
        for row, uid in zip("abc", uids, strict=True)
    ]
    assert "Enrolling" in captured.err  # click's progress bar, on stderr
    assert [line for line in captured.err.splitlines() if "present" in line] == [
        "row a: present a blank badge",
        "row b: present a blank badge",
        "row c: present a blank badge",
    ]
    assert state.removals == 3
    # The default journal sits next to the CSV; no PIN in it or in any output.
    journal = Path(str(path) + ".journal.csv").read_text()
    assert journal.count("verified,done") == 3
    for pin in ("1111", "3333"):
        assert pin not in journal + captured.out + captured.err
    # Row b has no PIN: no second factor step.
    second_factor = [line.split(",")[1] for line in journal.splitlines() if "second_factor" in line]
    assert sorted(set(second_factor)) == ["a", "c"]


def test_enroll_csv_asks_for_the_incomplete_rows_first_and_skips_the_done_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    uids = [bytes([4, i, 2, 3, 4, 5, 6]) for i in (1, 2, 3)]
    badges = [blank(uid) for uid in uids]
    path = csv_file(tmp_path, f"row,id_nat\na,{RPPS}\nb,{RPPS2}\nc,{RPPS3}\n")
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--csv", str(path)]
    # First run: a enrolled, b pulled out mid-enrolment and not presented again in time.
    pulled = FailingConnection(
        EmulatedConnection(badges[1]), at=22, error=CardRemovedError("The card was removed")
    )
    state = BadgeQueue([EmulatedConnection(badges[0]), pulled])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert run([*argv, "--wait", "5"], state) == 1
    captured = capsys.readouterr()
    assert "row b: The card was removed" in captured.err
    assert captured.err.splitlines()[-1] == (
        "mie: error: Row b: no badge enrolled within 5 s; 1 badge left incomplete (run again to "
        "finish): row b (04020203040506) incomplete at app_keys"
    )
    assert "row c" not in captured.err
    # Second run: b's badge is asked for first (c's blank badge is refused for it), a skipped.
    state = BadgeQueue([EmulatedConnection(badges[2]), EmulatedConnection(badges[1])])
    state.badges.append(EmulatedConnection(badges[2]))
    assert run(argv, state) == 0
    err = capsys.readouterr().err
    assert err.index("row b (040202") < err.index("row a: enrolled by an earlier run, skipped")
    asked = [line for line in err.splitlines() if ": present" in line]
    assert asked[0] == "row b: present its badge 04020203040506, to finish it"
    assert "Badge 04030203040506 is not row b's" in err
    assert asked[-1] == "row c: present a blank badge"
    journal = Path(str(path) + ".journal.csv").read_text()
    assert journal.count("verified,done") == 3


@pytest.mark.parametrize(
    ("table", "named"),
    [
        (f"id_nat,colour\n{RPPS},blue\n", "unknown column 'colour'"),
        (f"row,id_nat\n1,{RPPS}\n1,{RPPS2}\n", "row 1 is also on line 2"),
        ("row,id_nat\n1,81234\n", "id_nat"),
        ("row,pin\n1,1234\n", "no id_nat column"),
        (f"id_nat,pin\n{RPPS},12\n", "The pin is refused"),
    ],
)
def test_a_bad_csv_exits_2_with_one_line_before_any_badge(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    table: str,
    named: str,
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    path = csv_file(tmp_path, table)
    state = BadgeQueue([EmulatedConnection(blank())])
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--csv", str(path)]
    assert run(argv, state) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert state.presented == [] and state.opened == 0
    assert not Path(str(path) + ".journal.csv").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "named"),
    [
        ((), "", "Give --identity (one badge) or --csv FILE"),
        (("--identity", "rpps=1", "--csv", "x.csv"), "", "Give --identity"),
        (("--identity", "adeli=123456789"), "", "--identity 'adeli=123456789': rpps="),
        (("--identity", "rpps=12345"), "", "--identity 'rpps=12345': rpps=11 DIGITS expected"),
        (("--identity", "psi=not-a-uuid"), "", "--identity 'psi=not-a-uuid'"),
        (("--identity", f"rpps={RPPS[1:]}", "--issued", "30/11/2026"), "", "--issued"),
        (("--identity", f"rpps={RPPS[1:]}", "--issued", "2026-02-30"), "", "--issued"),
        (("--identity", f"rpps={RPPS[1:]}", "--issuer", "x" * 31), "", "--issuer"),
        (("--identity", f"rpps={RPPS[1:]}", "--pin-stdin"), "", "no PIN on standard input"),
        (("--identity", f"rpps={RPPS[1:]}", "--pin-stdin"), "12ab\n", "decimal digits"),
        (("--identity", f"rpps={RPPS[1:]}", "--pin-stdin"), "12\n", "PIN must have"),
        (("--csv", "x.csv", "--pin-stdin"), "", "--pin-stdin: with --identity only"),
        (("--identity", f"rpps={RPPS[1:]}", "--wait", "nan"), "", "--wait"),
    ],
)
def test_enroll_bad_usage_exits_2_with_one_line_before_any_badge(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    stdin: str,
    named: str,
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    state = ReaderState(EmulatedConnection(blank()))
    journal = tmp_path / "j.csv"
    assert enroll(setup, journal, state, *args, stdin=stdin, monkeypatch=monkeypatch) == 2
    captured = capsys.readouterr()
    assert named in one_error_line(captured.err)
    assert "12ab" not in captured.err
    assert state.opened == 0 and not journal.exists()


def test_enroll_a_pin_without_a_second_factor_store_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    state = ReaderState(EmulatedConnection(blank()))
    args = ("--identity", f"rpps={RPPS[1:]}", "--pin-stdin")
    assert enroll(setup, tmp_path / "j", state, *args, stdin="1234\n", monkeypatch=monkeypatch) == 2
    assert "second_factor" in one_error_line(capsys.readouterr().err)
    assert state.opened == 0


def test_enroll_without_an_issuer_anywhere_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    config = json.loads(setup.config.read_text())
    del config["issuer"]
    setup.config.write_text(json.dumps(config))
    state = ReaderState(EmulatedConnection(blank()))
    args = ("--identity", f"rpps={RPPS[1:]}")
    assert enroll(setup, tmp_path / "j", state, *args, monkeypatch=monkeypatch) == 2
    assert "--issuer" in one_error_line(capsys.readouterr().err)
    assert (
        enroll(setup, tmp_path / "j", state, *args, "--issuer", "CH B", monkeypatch=monkeypatch)
        == 0
    )


def test_enroll_needs_a_badge_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ReaderState(EmulatedConnection(blank()))
    assert run(["desfire", "enroll", "--identity", f"rpps={RPPS[1:]}"], state) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "No badge configuration" in line and "badge.json" in line
    assert state.opened == 0


# --- auth and verify-evidence with a badge -----------------------------------------------------

NONCE = "5a" * 32
ORIGIN = "https://iam.example"


def enrolled(
    setup: BadgeSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    uid: bytes = UID,
    pin: str | None = None,
) -> EmulatedDesfire:
    """A blank badge enrolled by ``mie desfire enroll`` under ``setup``."""
    badge = blank(uid)
    args = ["--identity", f"rpps={RPPS[1:]}"] + (["--pin-stdin"] if pin else [])
    journal = tmp_path / f"journal-{uid.hex()}.csv"
    state = ReaderState(EmulatedConnection(badge))
    code = enroll(setup, journal, state, *args, stdin=f"{pin}\n", monkeypatch=monkeypatch)
    assert code == 0
    return badge


def auth_json(
    badge: EmulatedDesfire,
    setup: BadgeSetup | None,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    expect: int = 0,
) -> dict[str, Any]:
    capsys.readouterr()
    config = ["--badge-config", str(setup.config)] if setup is not None else []
    argv = ["auth", *config, "--nonce", NONCE, "--origin", ORIGIN, "--json", *args]
    code = run(argv, ReaderState(EmulatedConnection(badge)))
    captured = capsys.readouterr()
    assert code == expect, captured.err
    result: dict[str, Any] = json.loads(captured.out)
    return result


def test_auth_of_an_enrolled_badge_prints_the_bound_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = enrolled(setup, tmp_path, monkeypatch)
    result = auth_json(badge, setup, capsys)
    assert result["valid"] is True and result["error"] is None
    assert result["identity"]["id_nat"] == RPPS and result["identity"]["id_type"] == "RPPS"
    assert result["authenticator"] == {
        "kind": "desfire-ev3",
        "serial": UID.hex(),
        "atr": result["authenticator"]["atr"],
        "transport": "contactless",
    }
    assert result["level"] == "low"  # the badge alone: possession
    assert result["evidence"]["type"] == "desfire-session"
    # Text: the national identifier, no name (a badge record carries none).
    assert (
        run(["auth", "--badge-config", str(setup.config)], ReaderState(EmulatedConnection(badge)))
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        f"Authenticated: desfire-ev3 card {UID.hex()}",
        f"  RPPS {RPPS[1:]}",
        "  level: low",
    ]


def test_auth_with_the_second_factor_pin_is_substantial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    badge = enrolled(setup, tmp_path, monkeypatch, pin=PIN)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PIN + "\n"))
    result = auth_json(badge, setup, capsys, "--pin-stdin")
    assert result["valid"] is True and result["level"] == "substantial"
    # A wrong PIN: counted, exit 1, never a result.
    monkeypatch.setattr(sys, "stdin", io.StringIO("000000\n"))
    result = auth_json(badge, setup, capsys, "--pin-stdin", expect=1)
    assert result["valid"] is False and result["error"]["code"] == "invalid_pin"
    assert result["error"]["tries_left"] == 2


def test_auth_of_a_badge_enrolled_under_another_master_key_is_key_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = write_badge_setup(tmp_path / "ours", seed=1)
    theirs = write_badge_setup(tmp_path / "theirs", seed=2)
    badge = enrolled(theirs, tmp_path, monkeypatch)
    result = auth_json(badge, ours, capsys, expect=1)
    assert result["valid"] is False and result["error"]["code"] == "key_mismatch"
    assert result["identity"] is None


def test_auth_of_a_record_copied_from_another_badge_is_record_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    original = enrolled(setup, tmp_path, monkeypatch, uid=UID)
    copy = enrolled(setup, tmp_path, monkeypatch, uid=h("04112233445566"))
    # The record file of the first badge written into the second one (its own keys).
    copy.state.applications[AID].files[1].data[:] = original.state.applications[AID].files[1].data
    result = auth_json(copy, setup, capsys, expect=1)
    assert result["valid"] is False and result["error"]["code"] == "record_copied"
    assert result["identity"] is None


def test_auth_of_a_badge_without_a_badge_configuration_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = enrolled(setup, tmp_path, monkeypatch)
    capsys.readouterr()
    assert run(["auth", "--json"], ReaderState(EmulatedConnection(badge))) == 2
    captured = capsys.readouterr()
    assert "No badge configuration" in one_error_line(captured.err)
    assert json.loads(captured.out)["error"]["code"] == "usage"


def test_verify_evidence_of_a_saved_badge_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    badge = enrolled(setup, tmp_path, monkeypatch, pin=PIN)
    saved = tmp_path / "auth.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO(PIN + "\n"))
    saved.write_text(json.dumps(auth_json(badge, setup, capsys, "--pin-stdin")))
    verify = ["verify-evidence", str(saved), "--nonce", NONCE, "--origin", ORIGIN, "--json"]
    config = ["--badge-config", str(setup.config)]
    # Without the PIN: the badge alone.
    assert run([*verify, *config]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["level"] == "low"
    assert result["identity"]["id_nat"] == RPPS
    # With it, on stdin: two factors.
    monkeypatch.setattr(sys, "stdin", io.StringIO(PIN + "\n"))
    assert run([*verify, *config, "--pin-stdin"]) == 0
    assert json.loads(capsys.readouterr().out)["level"] == "substantial"
    # Another nonce: refused.
    other = [*verify, *config]
    other[other.index(NONCE)] = "a5" * 32
    assert run(other) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "nonce_mismatch"
    # No badge configuration: bad usage, before anything is verified.
    assert run(verify) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Badge evidence (desfire-session) needs a badge configuration" in line


class _CountingStdin(io.StringIO):
    """Standard input that counts the characters handed out."""

    handed = 0

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        line = super().readline(-1 if size is None else size)
        self.handed += len(line)
        return line


@pytest.mark.parametrize("reader", ["auth", "enroll"])
def test_a_pin_line_on_stdin_is_read_bounded_and_refused(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rv-U: the PIN line of --pin-stdin was read whole (a line of any length into memory).
    from mie._cli.auth import CliPin
    from mie._cli.desfire import _read_pin
    from mie._cli.state import MAX_STDIN_PIN
    from mie.core.errors import PinFormatError
    from mie.store.secondfactor import SECOND_FACTOR_PIN

    stdin = _CountingStdin("1" * 100_000 + "\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(PinFormatError):
        if reader == "auth":
            SECOND_FACTOR_PIN.check(CliPin(from_stdin=True).request_pin(3))
        else:
            _read_pin()
    assert stdin.handed <= MAX_STDIN_PIN


def test_a_pin_on_stdin_is_the_line_without_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    from mie._cli.auth import CliPin

    monkeypatch.setattr(sys, "stdin", io.StringIO("1234\r\nrest\n"))
    assert CliPin(from_stdin=True).request_pin(None) == "1234"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--identity", "rpps=123"], "--identity 'rpps=123'"),
        (["--identity", "psi=not-a-uuid"], "--identity 'psi=not-a-uuid'"),
    ],
)
def test_enroll_names_a_bad_identity_before_a_missing_configuration(
    args: list[str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Rv-U: the missing default configuration was reported instead of the bad --identity.
    monkeypatch.delenv("MIE_BADGE_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert run(["desfire", "enroll", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


@pytest.mark.parametrize("command", ["auth", "verify-evidence"])
def test_the_help_of_auth_and_verify_evidence_says_how_a_badge_is_checked(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-U: their help described the CPx path alone (signature, chain, revocation).
    assert run([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.partition("Options:")[0].split())
    assert "DESFire badge" in text or "Badge evidence" in text
    assert "badge configuration" in text


@pytest.mark.parametrize("command", [["desfire", "info"], ["auth"], ["desfire", "enroll"]])
def test_a_badge_configuration_named_as_a_fifo_is_refused_without_waiting(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-U: opening a FIFO for reading waited for a writer for ever (mie desfire info hung).
    import threading

    fifo = tmp_path / "badge.json"
    os.mkfifo(fifo)
    extra = ["--identity", f"rpps={RPPS[1:]}"] if command[-1] == "enroll" else []
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(
            run(
                [*command, "--badge-config", str(fifo), *extra],
                ReaderState(EmulatedConnection(blank(UID))),
            )
        ),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the thread end: a writer opens the FIFO, then closes it
        with open(fifo, "w"):
            pass
        worker.join(10)
        pytest.fail("the badge configuration FIFO was waited on")
    assert codes == [2]
    assert "not a regular file" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("port", ["99999", "0", "x", "-1", "٣"])
def test_an_nfc_udp_port_that_is_no_port_exits_2_before_anything_is_opened(
    port: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-U: nfc:udp:127.0.0.1:99999 was taken, and no card looked for there for 5 s (exit 1).
    monkeypatch.setitem(sys.modules, "nfc", None)  # nothing is imported, let alone opened
    monkeypatch.delitem(sys.modules, "mie.transport.nfc", raising=False)
    assert run(["desfire", "info", "--reader", f"nfc:udp:127.0.0.1:{port}", "--json"]) == 2
    captured = capsys.readouterr()
    assert "the port must be a number from 1 to 65535" in one_error_line(captured.err)
    assert json.loads(captured.out)["error"]["code"] == "usage"


def test_an_nfc_udp_host_that_does_not_resolve_is_an_unknown_reader(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-U: exit 1 (a card or reader failure) for a reader that does not exist (README: exit 2).
    pytest.importorskip("nfc")
    import socket

    from mie.core.errors import TransportError

    nfc_transport = importlib.import_module("mie.transport.nfc")

    class Unresolved:
        def __init__(self, path: str, *, wait: float) -> None:
            cause = socket.gaierror(-2, "Name or service not known")
            raise TransportError(f"Cannot open the NFC front end {path!r}: {cause}") from cause

    monkeypatch.setattr(nfc_transport, "NfcConnection", Unresolved)
    assert run(["desfire", "info", "--reader", "nfc:udp:nohost.invalid:5000"]) == 2
    assert "no such host" in one_error_line(capsys.readouterr().err)
    # The port check leaves the paths nfcpy knows alone.
    state = CliState()
    for path in ("nfc:udp", "nfc:udp:127.0.0.1", "nfc:usb:054c:06c3"):
        with pytest.raises(TransportError):
            state.open_reader(path)


def test_info_text_behind_a_random_uid_says_originality_was_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-U: it said 'originality: not verified' of a genuine badge whose real UID it cannot see.
    setup = write_badge_setup(tmp_path / "config")
    badge = personalised(setup, random_uid=True)
    assert run(["desfire", "info"], ReaderState(EmulatedConnection(badge))) == 0
    out = capsys.readouterr().out
    assert "UID: (not read) (random UID on)" in out
    assert "originality: not checked (the real UID was not read)" in out


def test_enroll_csv_reports_a_row_that_cannot_be_enrolled_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-F/Rv-H: row a's badge was started with a PIN (the journal plans a second factor) and
    # the CSV now gives row a none: the library refuses it (EnrolmentInputError naming row a).
    # The run stopped there (exit 2, row b never enrolled); now row a is reported, b enrolled,
    # exit 1 naming row a.
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    x, y = bytes.fromhex("04010203040506"), bytes.fromhex("04020203040506")
    path = csv_file(tmp_path, f"row,id_nat\na,{RPPS}\nb,{RPPS2}\n")
    header = "format,row,uid,step,state,at\n"
    lines = [("begin", "intent"), ("second_factor", "planned"), ("begin", "done")]
    journal = "".join(f"mie-enrol/1,a,{x.hex()},{s},{st},2026-12-01T14:30:05Z\n" for s, st in lines)
    Path(str(path) + ".journal.csv").write_text(header + journal)
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--csv", str(path)]
    for as_json in (True, False):
        state = BadgeQueue([EmulatedConnection(blank(x)), EmulatedConnection(blank(y))])
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        assert run([*argv, "--json"] if as_json else argv, state) == 1
        captured = capsys.readouterr()
        last = captured.err.splitlines()[-1]
        assert last.startswith("mie: error: 1 row not enrolled: row a: Row a: badge 04010203040506")
        assert last.endswith(
            "; 1 badge left incomplete (run again to finish): "
            "row a (04010203040506) incomplete at picc_key"
        )
        assert "row a: " in captured.err and "; not enrolled, next row" in captured.err
        if as_json:
            result = json.loads(captured.out)
            assert [b["row"] for b in result["enrolled"]] == ["b"]
            [failed] = result["failed"]
            assert (failed["row"], failed["code"]) == ("a", "card_error")
            assert "second-factor PIN" in failed["message"]
            assert result["error"]["code"] == "card_error"
            assert last == f"mie: error: {result['error']['message']}"
        else:
            # Row b is enrolled by the first run: the second one skips it.
            assert "row b: enrolled by an earlier run, skipped" in captured.err
            assert captured.out.splitlines()[-1].startswith("Failed: row a: Row a: badge ")
    text = Path(str(path) + ".journal.csv").read_text()
    assert text.count("verified,done") == 1  # row b's


# --- exit codes of the key provider and the store (Rv-H) ----------------------------------------
# DESIGN.md: exit 1 when a check or an operation failed during the run (the key provider's
# token failing: code reader_error, as a reader's failure; the second-factor store unreachable:
# store_unavailable since issue 11, reader_error before);
# exit 2 when the input cannot be read (a key file or configuration that cannot be read or
# parsed), found before any card is touched. mie auth gave 2 for both, mie verify-evidence 1 for
# a token failing and 2 for a store unreachable, mie desfire info/enroll 2 for both.

UNREACHABLE = "postgresql://mie@127.0.0.1:1/mie"  # nothing listens on port 1: refused at once
FAULT_CODE = {"store": "store_unavailable", "token": "reader_error"}


def with_store(setup: BadgeSetup, store: str) -> None:
    """Point the configuration's second-factor store at ``store``."""
    document = json.loads(setup.config.read_text())
    document["second_factor"] = {"store": store, "max_failures": 3}
    setup.config.write_text(json.dumps(document))


def expose_key_file(setup: BadgeSetup) -> None:
    """Make the key file readable by others: unusable (KeyFileError)."""
    setup.keys.chmod(0o644)


def fail_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every diversification fail, as a token that stopped answering."""
    from mie.keys.base import KeyProviderError
    from mie.keys.software import SoftwareKeyProvider

    def fail(self: object, master: str, diversification_input: bytes) -> bytes:
        raise KeyProviderError("The token failed (test)")

    monkeypatch.setattr(SoftwareKeyProvider, "diversify", fail)


def break_setup(setup: BadgeSetup, fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if fault == "store":
        with_store(setup, UNREACHABLE)
    else:
        fail_token(monkeypatch)


def error_object_alone(captured: Any) -> str:
    """:return: the error line of a command refused with exit 2; under ``--json`` the error
    object alone, its message the line's."""
    line = one_error_line(captured.err)
    report = json.loads(captured.out)
    assert report == {"error": {"code": report["error"]["code"], "message": line[12:]}}
    return line


def test_auth_with_a_key_file_that_cannot_be_used_exits_2_before_the_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    expose_key_file(setup)
    state = ReaderState(EmulatedConnection(blank()))
    argv = ["auth", "--badge-config", str(setup.config), "--nonce", NONCE, "--origin", ORIGIN]
    assert run([*argv, "--json"], state) == 2
    assert "key file" in error_object_alone(capsys.readouterr())
    assert state.opened == 0


@pytest.mark.parametrize("fault", ["store", "token"])
def test_auth_whose_store_or_token_fails_is_a_failed_authentication_exit_1(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    badge = enrolled(setup, tmp_path, monkeypatch)
    break_setup(setup, fault, monkeypatch)
    result = auth_json(badge, setup, capsys, expect=1)
    assert result["valid"] is False and result["error"]["code"] == FAULT_CODE[fault]
    assert result["level"] is None and result["identity"] is None


def saved_badge_evidence(
    setup: BadgeSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> list[str]:
    """:return: the mie verify-evidence command line of a saved badge authentication."""
    badge = enrolled(setup, tmp_path, monkeypatch)
    saved = tmp_path / "auth.json"
    saved.write_text(json.dumps(auth_json(badge, setup, capsys)))
    return ["verify-evidence", str(saved), "--nonce", NONCE, "--origin", ORIGIN, "--json"]


def test_verify_evidence_with_a_key_file_that_cannot_be_used_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    verify = saved_badge_evidence(setup, tmp_path, monkeypatch, capsys)
    expose_key_file(setup)
    assert run([*verify, "--badge-config", str(setup.config)]) == 2
    assert "key file" in error_object_alone(capsys.readouterr())


@pytest.mark.parametrize("fault", ["store", "token"])
def test_verify_evidence_whose_store_or_token_fails_exits_1_with_the_result(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    verify = saved_badge_evidence(setup, tmp_path, monkeypatch, capsys)
    break_setup(setup, fault, monkeypatch)
    assert run([*verify, "--badge-config", str(setup.config)]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["valid"] is False and result["error"]["code"] == FAULT_CODE[fault]
    assert one_error_line(captured.err).startswith(f"mie: error: {FAULT_CODE[fault]}: ")


def test_info_with_a_key_file_that_cannot_be_used_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    expose_key_file(setup)
    state = ReaderState(EmulatedConnection(personalised(setup, random_uid=True)))
    assert run(["desfire", "info", "--badge-config", str(setup.config), "--json"], state) == 2
    assert "key file" in error_object_alone(capsys.readouterr())


def test_info_whose_token_fails_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    fail_token(monkeypatch)
    state = ReaderState(EmulatedConnection(personalised(setup, random_uid=True)))
    assert run(["desfire", "info", "--badge-config", str(setup.config), "--json"], state) == 1
    captured = capsys.readouterr()
    assert "The token failed (test)" in one_error_line(captured.err)
    assert json.loads(captured.out)["error"]["code"] == "reader_error"


def test_enroll_with_a_key_file_that_cannot_be_used_exits_2_before_the_badge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")
    expose_key_file(setup)
    badge = blank()
    before = encode_state(badge.state)
    state = ReaderState(EmulatedConnection(badge))
    args = ("--identity", f"rpps={RPPS[1:]}", "--json")
    assert enroll(setup, tmp_path / "j.csv", state, *args, monkeypatch=monkeypatch) == 2
    assert "key file" in error_object_alone(capsys.readouterr())
    assert state.opened == 0 and encode_state(badge.state) == before


@pytest.mark.parametrize("fault", ["store", "token"])
def test_enroll_whose_store_or_token_fails_exits_1(
    fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    break_setup(setup, fault, monkeypatch)
    badge = blank()
    state = ReaderState(EmulatedConnection(badge))
    args = ("--identity", f"rpps={RPPS[1:]}", "--pin-stdin", "--json")
    code = enroll(
        setup, tmp_path / "j.csv", state, *args, stdin=PIN + "\n", monkeypatch=monkeypatch
    )
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert PIN not in captured.out + captured.err
    assert json.loads(captured.out)["error"]["code"] == FAULT_CODE[fault]
    if fault == "store":
        assert state.opened == 0  # the store is opened before the badge is touched


def test_enroll_csv_stops_when_the_token_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-H: the token's failure names the row it met, but is not about that row: going on would
    # fail every badge after it the same way. The run stops, exit 1, reader_error.
    setup = write_badge_setup(tmp_path / "config")
    path = csv_file(tmp_path, f"row,id_nat\na,{RPPS}\nb,{RPPS2}\n")
    state = BadgeQueue([EmulatedConnection(blank(bytes([4, i, 2, 3, 4, 5, 6]))) for i in (1, 2)])
    fail_token(monkeypatch)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = ["desfire", "enroll", "--badge-config", str(setup.config), "--csv", str(path)]
    assert run([*argv, "--json"], state) == 1
    captured = capsys.readouterr()
    assert "row b: present" not in captured.err and len(state.badges) == 1
    result = json.loads(captured.out)
    assert result["enrolled"] == [] and result["failed"] == []
    assert result["error"]["code"] == "reader_error"
    assert "Row a: The token failed (test); the run stops" in result["error"]["message"]


def test_an_nfc_front_end_that_senses_no_badge_in_time_is_the_waits_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # W: over nfc:, enroll --csv met NfcConnection's NoCardError, which _present does not
    # take as "no badge within --wait": the run ended with the bare error object.
    pytest.importorskip("nfc")
    nfc_transport = importlib.import_module("mie.transport.nfc")

    class Nothing:
        def __init__(self, path: str, *, wait: float) -> None:
            raise NoCardError(f"No ISO 14443-4 card on {path} within {wait:g} s")

    monkeypatch.setattr(nfc_transport, "NfcConnection", Nothing)
    with pytest.raises(TransportTimeoutError, match="No badge within 2 s"):
        CliState().wait_for_badge("nfc:udp:127.0.0.1:5000", 2.0)


def test_enroll_one_badge_whose_token_fails_midway_reports_the_badge_left_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rv-Z: without --csv, a token failing once the badge was changed escaped the run: exit 1
    # with the bare error object, no report and no word of the badge left incomplete (the bulk
    # run and README: the --json report on exit 1 too once the run has a badge).
    from mie.keys.base import KeyProviderError
    from mie.keys.software import SoftwareKeyProvider

    setup = write_badge_setup(tmp_path / "config")
    journal = tmp_path / "j.csv"
    real = SoftwareKeyProvider.diversify

    def fails_after_the_picc_key(self: SoftwareKeyProvider, master: str, data: bytes) -> bytes:
        if journal.exists() and "picc_key,done" in journal.read_text():
            raise KeyProviderError("The token failed (test)")
        return real(self, master, data)

    monkeypatch.setattr(SoftwareKeyProvider, "diversify", fails_after_the_picc_key)
    badge = blank()
    state = ReaderState(EmulatedConnection(badge))
    args = ("--identity", f"rpps={RPPS[1:]}", "--json")
    assert enroll(setup, journal, state, *args, monkeypatch=monkeypatch) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["enrolled"] == [] and report["failed"] == []
    [left] = report["incomplete"]
    assert left["uid"] == badge.state.uid.hex()
    assert report["error"]["code"] == "reader_error"
    message = report["error"]["message"]
    assert "The token failed (test)" in message and "left incomplete" in message
    assert one_error_line(captured.err)[12:] == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rpps=10100099877", "810100099877"),
        ("RPPS=10100099877", "810100099877"),
        ("psi=3F2504E0-4F89-41D3-9A0C-0305E82C3301", "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
        ("rpps=810100099877", "error: rpps=11 DIGITS expected"),  # the 8 is mie's to add
        ("rpps=123", "error: rpps=11 DIGITS expected"),
        ("rpps=10100099870", "error: Luhn check digit"),
        ("rpps= 10100099877", "error: rpps=11 DIGITS expected"),
        ("psi=not-a-uuid", "error: psi=UUID expected"),
        ("adeli=123456789", "error: rpps=11 DIGITS or psi=UUID expected"),
    ],
)
def test_the_identity_option_messages_say_what_its_help_says(value: str, expected: str) -> None:
    # L1: the refusal said "(8 + 11 digits)" where the help says rpps=11 DIGITS.
    from mie._cli.desfire import parse_identity_option
    from mie._cli.state import UsageError

    if expected.startswith("error: "):
        with pytest.raises(UsageError) as raised:
            parse_identity_option(value)
        message = str(raised.value)
        assert expected.removeprefix("error: ") in message and "8 + 11" not in message
    else:
        assert parse_identity_option(value) == expected
