"""The MIE lifecycle at the desk: ``mie desfire revoke``, ``mie fido revoke`` and
``--temporary`` on ``mie fido register`` / ``mie desfire enroll`` (issue 11 plan §5.3): what the
store holds after each, the audit chain of node ``cli:<hostname>``, the refusal of a revoked
MIE at its next verification, the level cap of a temporary one, and the options' refusals."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mie._cli.__main__ import run
from mie._cli.lifecycle import cli_node, parse_duration
from mie._cli.state import CliState, UsageError
from mie.emulation.base import EmulatedConnection
from mie.emulation.fido_pki import TestAttestationPki
from mie.store.base import MieRef
from mie.store.sqlite import SqliteStore
from tests.unit.test_cli_desfire import (
    PIN as BADGE_PIN,
)
from tests.unit.test_cli_desfire import (
    RPPS as BADGE_RPPS,
)
from tests.unit.test_cli_desfire import (
    UID,
    ReaderState,
    blank,
    enroll,
    write_badge_setup,
)
from tests.unit.test_cli_desfire import (
    isolated as desfire_isolated,
)
from tests.unit.test_cli_fido import (
    ORIGIN,
    PIN,
    RP_ID,
    RPPS,
    Desk,
    KeyState,
    _key,
    authenticate,
    desk,
    isolated_cli,
    one_error_line,
    pin_stdin,
    pki,
    register,
)

__all__ = ["desfire_isolated", "desk", "isolated_cli", "pin_stdin", "pki"]


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> Any:
    assert run(argv) == code, capsys.readouterr().err
    captured = capsys.readouterr()
    if code:
        one_error_line(captured.err)
    return json.loads(captured.out)


def _chain(capsys: pytest.CaptureFixture[str], url: str) -> str:
    assert run(["audit", "verify", "--store", url, "--node", cli_node()]) == 0
    return capsys.readouterr().out


# Option parsing


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90m", 5400), ("12h", 43200), ("7d", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1w", "-1d", "1.5h", "d", "12345678"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="--expires"):
        parse_duration(text)


def test_the_cli_node_names_this_host() -> None:
    node = cli_node()
    assert node.startswith("cli:") and len(node) <= 64


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--expires", "1d"), "--expires goes with --temporary"),
        (("--max-level", "low"), "--max-level goes with --temporary"),
        (("--temporary", "pvd"), "needs --expires"),
        (("--temporary", "pvd", "--expires", "8d"), "at most 7 days"),
        (("--temporary", "pvd", "--expires", "soon"), "--expires"),
        (("--temporary", "pvd", "--expires", "1d", "--replaces", "badge:00112233445566"),
         "go together"),
        (("--temporary", "pvd", "--expires", "1d", "--replaces", "card:1",
          "--replaces-reason", "lost"), "--replaces"),
        (("--temporary", "pvd", "--expires", "1d", "--store", "none"), "not --store none"),
        (("--temporary", "later", "--expires", "1d"), "--temporary"),
    ],
)  # fmt: skip
def test_a_bad_temporary_option_is_exit_2_before_the_key_is_touched(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    state = KeyState(_key(pki))
    args = ["fido", "register", "--identity", f"rpps={RPPS}", "--policy", desk.policy]
    store = [] if "--store" in extra else ["--store", desk.store]
    assert run([*args, *store, *extra], state) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert state.specs == []  # the key was never opened


# mie desfire revoke


def test_revoke_a_badge_then_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:{tmp_path / 'mie.db'}"
    argv = ["desfire", "revoke", "--uid", UID.hex(), "--reason", "lost", "--store", url]
    first = _json(capsys, [*argv, "--note", "reported at the desk", "--json"])
    assert first["mie"] == f"badge:{UID.hex()}" and first["reason"] == "lost"
    assert first["note"] == "reported at the desk" and first["by"] == cli_node()
    assert first["already_revoked"] is False and first["audit"]["seq"] == 1
    assert first["revoked_at"].endswith("Z")
    again = _json(capsys, ["desfire", "revoke", "--uid", UID.hex(), "--reason", "stolen",
                           "--store", url, "--json"])  # fmt: skip
    assert again["already_revoked"] is True
    assert (again["reason"], again["revoked_at"]) == ("lost", first["revoked_at"])
    assert again["audit"]["seq"] == 2
    with SqliteStore(tmp_path / "mie.db") as store:
        held = store.lifecycle(MieRef.badge(UID))
    assert held is not None and held.revocation is not None
    assert held.revocation.reason == "lost"
    assert _chain(capsys, url).startswith("2 records, chain intact, head ")
    # Text.
    assert run(argv) == 0
    assert capsys.readouterr().out.startswith(f"Already revoked: badge:{UID.hex()} (lost) at ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--uid", "0011", "--reason", "lost", "--store", "sqlite:x.db"), "--uid must be 7"),
        (("--uid", UID.hex(), "--reason", "gone", "--store", "sqlite:x.db"), "--reason"),
        (("--uid", UID.hex(), "--reason", "lost", "--store", "none"), "--store none"),
        (("--uid", UID.hex(), "--reason", "lost", "--store", "sqlite:x.db", "--note", "a\tb"),
         "note"),
        (("--uid", UID.hex(), "--reason", "lost"), "--store"),
    ],
)  # fmt: skip
def test_revoke_bad_usage_is_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["desfire", "revoke", *extra]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_a_revoked_badge_is_refused_before_its_pin_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    badge = blank()
    journal = tmp_path / "journal.csv"
    args = ("--identity", f"rpps={BADGE_RPPS[1:]}", "--pin-stdin")
    state = ReaderState(EmulatedConnection(badge))
    assert (
        enroll(setup, journal, state, *args, stdin=BADGE_PIN + "\n", monkeypatch=monkeypatch) == 0
    )
    capsys.readouterr()
    url = f"sqlite:{tmp_path / 'config' / 'mie.db'}"
    assert run(["desfire", "revoke", "--uid", UID.hex(), "--reason", "stolen", "--store", url]) == 0
    capsys.readouterr()
    stdin = io.StringIO("000000\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    argv = ["auth", "--badge-config", str(setup.config), "--pin-stdin", "--json"]
    assert run(argv, ReaderState(EmulatedConnection(badge))) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False and result["error"]["code"] == "revoked"
    assert stdin.tell() == 0  # the PIN was never read, so never presented nor counted


def test_enroll_a_temporary_badge_caps_its_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config", second_factor=True)
    badge = blank()
    journal = tmp_path / "journal.csv"
    old = "00112233445566"
    args = ("--identity", f"rpps={BADGE_RPPS[1:]}", "--pin-stdin", "--json",
            "--temporary", "unannounced", "--expires", "12h",
            "--replaces", f"badge:{old}", "--replaces-reason", "damaged")  # fmt: skip
    state = ReaderState(EmulatedConnection(badge))
    assert (
        enroll(setup, journal, state, *args, stdin=BADGE_PIN + "\n", monkeypatch=monkeypatch) == 0
    )
    report = json.loads(capsys.readouterr().out)
    (grant,) = report["temporary"]
    assert grant["mie"] == f"badge:{UID.hex()}" and grant["id_nat"] == BADGE_RPPS
    assert (grant["reason"], grant["max_level"]) == ("unannounced", "low")
    assert grant["replaces"] == f"badge:{old}" and grant["by"] == cli_node()
    assert grant["replaced"]["mie"] == f"badge:{old}" and grant["replaced"]["reason"] == "damaged"
    url = f"sqlite:{tmp_path / 'config' / 'mie.db'}"
    assert _chain(capsys, url).startswith("2 records, chain intact")  # temporary, revoke
    with SqliteStore(tmp_path / "config" / "mie.db") as store:
        held = store.lifecycle(MieRef.badge(UID))
        assert held is not None and held.temporary is not None
        replaced = store.lifecycle(MieRef.badge(bytes.fromhex(old)))
        assert replaced is not None and replaced.revocation is not None
    # The badge and its PIN would give substantial: the grant caps it at low.
    monkeypatch.setattr(sys, "stdin", io.StringIO(BADGE_PIN + "\n"))
    argv = ["auth", "--badge-config", str(setup.config), "--pin-stdin", "--json"]
    assert run(argv, ReaderState(EmulatedConnection(badge))) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["level"] == "low"
    assert any("temporary MIE (unannounced" in r for r in result["reasons"])


def test_enroll_temporary_needs_one_badge_and_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = write_badge_setup(tmp_path / "config")  # no second_factor store
    state: CliState = ReaderState(EmulatedConnection(blank()))
    args = ("--identity", f"rpps={BADGE_RPPS[1:]}", "--temporary", "pvd", "--expires", "1d")
    assert enroll(setup, tmp_path / "j.csv", state, *args, monkeypatch=monkeypatch) == 2
    assert "second_factor" in one_error_line(capsys.readouterr().err)
    csv = tmp_path / "rows.csv"
    csv.write_text(f"id_nat\n{BADGE_RPPS}\n")
    args = ("--csv", str(csv), "--temporary", "pvd", "--expires", "1d")
    assert enroll(setup, tmp_path / "j.csv", state, *args, monkeypatch=monkeypatch) == 2
    assert "with --identity only" in one_error_line(capsys.readouterr().err)


# mie fido revoke and register --temporary


def test_revoke_a_key_then_its_assertion_is_refused(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    state = KeyState(_key(pki))
    credential = register(state, desk, capsys, "--origin", ORIGIN)["credential"]
    argv = ["fido", "revoke", "--credential", credential["credential_id"], "--policy",
            desk.policy, "--reason", "left", "--store", desk.store, "--json"]  # fmt: skip
    done = _json(capsys, argv)
    assert done["mie"] == f"fido2:{credential['credential_id']}" and done["reason"] == "left"
    assert done["already_revoked"] is False
    assert _json(capsys, argv)["already_revoked"] is True
    (stored,) = desk.credentials()
    assert stored.suspended == "revoked"
    pin_stdin(PIN)
    result = authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}", code=1)
    assert result["error"]["code"] == "revoked"
    assert _chain(capsys, desk.store).startswith("2 records, chain intact")


def test_revoke_an_unknown_key_is_exit_1(desk: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fido", "revoke", "--credential", "AAAA", "--rp-id", RP_ID, "--reason", "lost",
            "--store", desk.store]  # fmt: skip
    assert run(argv) == 1
    one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--rp-id RP or --policy FILE"),
        (("--rp-id", RP_ID, "--policy", "p.json"), "one of them"),
        (("--rp-id", RP_ID, "--credential", "A=="), "--credential"),
    ],
)
def test_fido_revoke_bad_usage_is_exit_2(
    desk: Desk, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    argv = ["fido", "revoke", "--credential", "AAAA", "--reason", "lost", "--store", desk.store]
    assert run([*argv, *extra]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_register_a_temporary_key_replacing_a_lost_one(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    lost_key = KeyState(_key(pki))
    lost = register(lost_key, desk, capsys, "--origin", ORIGIN)["credential"]
    pin_stdin(PIN)
    spare = KeyState(_key(pki))
    outcome = register(spare, desk, capsys, "--origin", ORIGIN, "--temporary", "pvd",
                       "--expires", "2d", "--replaces", f"fido2:{lost['credential_id']}",
                       "--replaces-reason", "lost")  # fmt: skip
    credential, temporary = outcome["credential"], outcome["temporary"]
    assert credential["level_cap"] == "substantial"
    assert temporary["mie"] == f"fido2:{credential['credential_id']}"
    assert (temporary["reason"], temporary["max_level"]) == ("pvd", "substantial")
    assert temporary["id_nat"] == "8" + RPPS and temporary["by"] == cli_node()
    assert temporary["replaced"]["mie"] == f"fido2:{lost['credential_id']}"
    assert temporary["audit"]["node"] == cli_node()
    # The spare key logs in; the lost one is refused.
    pin_stdin(PIN)
    result = authenticate(spare, desk, capsys, "--credential", credential["credential_id"])
    assert result["valid"] is True and result["level"] == "substantial"
    assert any("temporary MIE (pvd" in r for r in result["reasons"])
    pin_stdin(PIN)
    refused = authenticate(lost_key, desk, capsys, "--credential", lost["credential_id"], code=1)
    assert refused["error"]["code"] == "revoked"
    # An unannounced arrival's spare key: low.
    pin_stdin(PIN)
    other = register(KeyState(_key(pki)), desk, capsys, "--origin", ORIGIN, "--temporary",
                     "unannounced", "--expires", "8h")  # fmt: skip
    assert other["credential"]["level_cap"] == "low"
    assert other["temporary"]["replaced"] is None
    # RS2 (issue 11 item 5, "audited"): each grant is a record of the CLI's chain, bound to
    # the idNat, naming the spare MIE and its reason, the chain intact, no PIN member in it.
    assert _chain(capsys, desk.store).startswith(f"{other['temporary']['audit']['seq']} records")
    with SqliteStore(desk.directory / "mie.db") as store:
        lines = store.audit_lines(cli_node())
    records = {json.loads(line)["seq"]: json.loads(line) for line in lines}
    for outcome_of in (outcome, other):
        record = records[outcome_of["temporary"]["audit"]["seq"]]
        assert record["event"] == "temporary", record
        assert record["identity"]["id_nat"] == "8" + RPPS
        assert outcome_of["temporary"]["mie"].removeprefix("fido2:") in json.dumps(record["mie"])
    assert all("pin" not in json.loads(line) for line in lines)  # no member carries a PIN
    assert _chain(capsys, desk.store).startswith("3 records, chain intact")
