"""`mie fido list|register|auth|verify|mds` and `mie verify-evidence` on FIDO2 assertions, in
process: the emulated key (``mie.emulation.ctap2.EmulatedAuthenticator``) behind python-fido2's
own CTAPHID code (in-memory HID), a SQLite credential store in a temporary directory, a policy
trusting the TEST attestation root with the emulator's AAGUID allowlisted. Also the exit-code
contract of every FIDO2 error class and the ``--store`` URLs."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap import CtapDevice
from fido2.ctap2.base import Ctap2
from fido2.hid import CtapHidDevice

from mie._cli.__main__ import run
from mie._cli.app import exit_code_for
from mie._cli.options import parse_store_url
from mie._cli.state import CliState, UsageError
from mie.core.connection import SmartCardConnection
from mie.core.errors import MieError, PinAuthBlockedError
from mie.emulation.base import EmulatedConnection
from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection, hid_descriptor
from mie.emulation.fido_applet import EmulatedFidoApplet
from mie.emulation.fido_mds import TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
from mie.fido import errors as fido_errors
from mie.request import AuthRequest, StaticPin
from mie.store import errors as store_errors

ORIGIN = "https://iam.example"
RP_ID = "iam.example"
NONCE = "00" * 15 + "01" + "22" * 16
RPPS = "10100099877"


@pytest.fixture(autouse=True)
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI configures the 'mie' logger; give it back as it was after each test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIE_CRL_DIR", str(tmp_path / "crl"))
    logger = logging.getLogger("mie")
    handlers, level = list(logger.handlers), logger.level
    logger.handlers[:] = []
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    # Diagnostics may precede it (a chain checked under soft revocation logs a warning).
    lines = [line for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("WARNING mie.")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("mie: error: ")
    return lines[0]


def run_by_deadline(
    argv: list[str], fifo: Path, state: CliState | None = None, deadline: float = 20.0
) -> int:
    """``run(argv, state)`` in a thread: still running after ``deadline`` seconds (waiting on
    the FIFO ``fifo``), a writer opens the FIFO so that the command returns, and the test
    fails rather than hangs."""
    import os
    import threading

    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(run(argv, state)), daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        try:  # the reader waits in open(): a writer lets it through, its EOF ends the read
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        worker.join(deadline)
        pytest.fail(f"mie {' '.join(argv)} waited on the FIFO {fifo}")
    assert len(codes) == 1, "the command raised"
    return codes[0]


# The exit-code contract (plan §6.1, D7)

FAILED_CHECKS = [
    fido_errors.RpIdMismatchError("x"),
    fido_errors.UserNotPresentError("x"),
    fido_errors.UserNotVerifiedError("x"),
    fido_errors.AttestationRefusedError("x"),
    fido_errors.AttestationInvalidError("x"),
    fido_errors.UnknownAaguidError("x"),
    fido_errors.MetadataStatusError("x"),
    fido_errors.MetadataUntrustedError("x"),
    fido_errors.MetadataStaleError("x"),
    fido_errors.PinNotSetError("x"),
    fido_errors.TouchTimeoutError("x"),
    fido_errors.CtapStatusError(0x7F),
    fido_errors.AuthDataFormatError("x"),
    fido_errors.ClientDataFormatError("x"),
    fido_errors.CoseKeyFormatError("x"),
    fido_errors.CborFormatError("x", 0),
    PinAuthBlockedError("x"),
    store_errors.CredentialUnknownError("x"),
    store_errors.AlreadyRegisteredError("x"),
    store_errors.CloneSuspectedError("x"),
    store_errors.CounterUnsupportedError("x"),
]


@pytest.mark.parametrize("error", FAILED_CHECKS, ids=lambda e: type(e).__name__)
def test_every_fido_outcome_is_a_failed_check(error: MieError) -> None:
    assert exit_code_for(error) == 1


@pytest.mark.parametrize(
    "error",
    [fido_errors.FidoPolicyError("x"), fido_errors.MetadataFormatError("x")],
    ids=lambda e: type(e).__name__,
)
def test_an_unreadable_policy_or_metadata_file_is_bad_input(error: MieError) -> None:
    assert exit_code_for(error) == 2


# --store URLs


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("none", None),
        ("sqlite:mie.db", ("sqlite", "mie.db")),
        ("sqlite:///var/lib/mie/mie.db", ("sqlite", "/var/lib/mie/mie.db")),
        ("postgresql://mie@db/mie", ("postgresql", "postgresql://mie@db/mie")),
        ("postgres://mie@db/mie", ("postgresql", "postgres://mie@db/mie")),
    ],
)
def test_store_urls(url: str, parsed: tuple[str, str] | None) -> None:
    assert parse_store_url(url) == parsed


@pytest.mark.parametrize(
    "url", ["", "sqlite:", "sqlite://relative.db", "mysql://db", "mie.db", "x" * 5000]
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_store_url(url)


# Usage


def test_fido_is_a_command_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fido", "--help"]) == 0
    listed = capsys.readouterr().out
    for command in ("list", "register", "auth", "verify", "mds"):
        assert f"  {command} " in listed
    assert run(["fido", "mds", "--help"]) == 0
    listed = capsys.readouterr().out
    assert "  fetch " in listed and "  show " in listed


@pytest.mark.parametrize(
    "args",
    [
        ["fido", "auth", "--store", "sqlite:mie.db"],
        ["fido", "register", "--policy", "p.json", "--store", "none"],
        ["fido", "verify", "f.json", "--origin", ORIGIN, "--policy", "p.json", "--store", "x"],
    ],
)
def test_a_missing_option_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(args) == 2
    assert "Missing option" in one_error_line(capsys.readouterr().err)


def test_a_missing_policy_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["fido", "auth", "--policy", "absent.json", "--store", "sqlite:mie.db"]) == 2
    assert "absent.json" in one_error_line(capsys.readouterr().err)


def test_a_malformed_policy_exits_2_with_json_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.json").write_text('{"format": "mie-fido-policy/1", "rp_id": 7}')
    args = ["fido", "auth", "--policy", "p.json", "--store", "sqlite:mie.db", "--json"]
    assert run(args) == 2
    captured = capsys.readouterr()
    assert "rp_id" in one_error_line(captured.err)
    assert json.loads(captured.out)["error"]["code"] == "malformed"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--store", "mysql://db"], "--store"),
        (["--store", "none"], "needs a credential store"),
        (["--store", "sqlite:mie.db", "--nonce", "zz"], "--nonce must be hex"),
        (["--store", "sqlite:mie.db", "--nonce", "00"], "16 to 1024 bytes"),
        (["--store", "sqlite:mie.db", "--origin", "ftp://x"], "--origin"),
        (["--store", "sqlite:mie.db", "--credential", "a=="], "--credential"),
        (["--store", "sqlite:mie.db", "--timeout", "nan"], "--timeout"),
    ],
)
def test_fido_auth_bad_usage_exits_2(
    extra: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.json"
    # Not attested-only: the policy needs no allowlist for this usage check.
    policy.write_text(
        json.dumps({"format": "mie-fido-policy/1", "rp_id": RP_ID, "attestation": "optional"})
    )
    assert run(["fido", "auth", "--policy", str(policy), "--key", "emulator", *extra]) == 2
    assert fragment in one_error_line(capsys.readouterr().err)


# mie fido mds show | fetch (the TEST MDS publisher; fetch_blob is the network edge)


@pytest.fixture(scope="module")
def mds() -> TestMds:
    return TestMds.generate()


def _blob(mds: TestMds, tmp_path: Path, name: str = "mds.jwt", **kwargs: Any) -> Path:
    pki = TestAttestationPki.generate()
    entry = mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    path = tmp_path / name
    path.write_bytes(mds.blob([entry], **kwargs))
    return path


def _root_file(mds: TestMds, tmp_path: Path) -> Path:
    path = tmp_path / "mds-root.pem"
    path.write_bytes(mds.root_pem)
    return path


def test_mds_show_verifies_and_summarises(
    mds: TestMds, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob, root = _blob(mds, tmp_path, no=7), _root_file(mds, tmp_path)
    args = ["fido", "mds", "show", str(blob), "--root", str(root), "--json"]
    assert run([*args, "--aaguid", str(uuid.UUID(bytes=EMULATOR_AAGUID))]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["no"] == 7 and summary["entries"] == 1 and summary["reasons"] == []
    assert "mie TEST FIDO MDS" in summary["signer"]
    entry = summary["entry"]
    assert entry["description"] == "mie TEST emulated authenticator"
    assert entry["certification"] == "L1"
    assert [s["status"] for s in entry["statuses"]] == ["FIDO_CERTIFIED_L1"]
    assert run([*args, "--aaguid", "00000000-0000-0000-0000-000000000001"]) == 0
    assert json.loads(capsys.readouterr().out)["entry"] is None
    assert run(["fido", "mds", "show", str(blob), "--root", str(root)]) == 0
    assert "blob 7, next update" in capsys.readouterr().out


def test_mds_show_refuses_a_blob_not_signed_under_the_root(
    mds: TestMds, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without --root, the bundled FIDO Alliance root: the TEST blob does not chain to it.
    assert run(["fido", "mds", "show", str(_blob(mds, tmp_path)), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["code"] == "metadata_untrusted"
    one_error_line(captured.err)


def test_mds_show_of_a_stale_blob(
    mds: TestMds, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dt.date.today() - dt.timedelta(days=3)
    blob, root = _blob(mds, tmp_path, next_update=old), _root_file(mds, tmp_path)
    args = ["fido", "mds", "show", str(blob), "--root", str(root), "--json"]
    assert run(args) == 0
    assert "past its nextUpdate" in json.loads(capsys.readouterr().out)["reasons"][0]
    assert run([*args, "--stale", "refuse"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "metadata_stale"


@pytest.mark.parametrize(
    ("content", "fragment"), [(b"not a jws", "not a compact JWS"), (None, "Cannot read")]
)
def test_mds_show_of_an_unreadable_blob_exits_2(
    content: bytes | None, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mds.jwt"
    if content is not None:
        path.write_bytes(content)
    assert run(["fido", "mds", "show", str(path)]) == 2
    assert fragment in one_error_line(capsys.readouterr().err)


def test_mds_fetch_writes_only_a_newer_verified_blob(
    mds: TestMds,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mie.fido.mds

    served: list[bytes] = []
    monkeypatch.setattr(mie.fido.mds, "fetch_blob", lambda url, **kw: served[-1])
    root, out = _root_file(mds, tmp_path), tmp_path / "cache" / "mds.jwt"
    out.parent.mkdir()
    args = ["fido", "mds", "fetch", "--out", str(out), "--root", str(root), "--json"]
    # The TEST MDS chain names no CRL: the default hard revocation refuses it.
    served.append(_blob(mds, tmp_path, "b1", no=1).read_bytes())
    assert run(args) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "metadata_untrusted"
    assert not out.exists()
    args.append("--revocation=soft")
    served.append(_blob(mds, tmp_path, "b2", no=2).read_bytes())
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["no"] == 2
    kept = out.read_bytes()
    assert kept == served[-1]
    # The same number again, or an older one: a replay that could hide a revocation.
    for no in (2, 1):
        served.append(_blob(mds, tmp_path, f"b{no}x", no=no).read_bytes())
        assert run(args) == 1
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "metadata_stale"
        assert out.read_bytes() == kept
    # A blob that is not one, or signed under another root, is never written.
    served.append(b"x.x.x")
    assert run(args) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "malformed"
    served.append(_blob(TestMds.generate(), tmp_path, "other", no=9).read_bytes())
    assert run(args) == 0  # the same TEST root: accepted
    capsys.readouterr()
    assert out.read_bytes() == served[-1]
    bundled = ["fido", "mds", "fetch", "--out", str(tmp_path / "new.jwt"), "--json"]
    bundled.append("--revocation=soft")
    assert run(bundled) == 1  # the bundled FIDO Alliance root: not the TEST one
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "metadata_untrusted"
    assert not (tmp_path / "new.jwt").exists()
    assert run(["fido", "mds", "fetch", "--out", str(out), "--url", "http://mds.example/"]) == 2
    assert "https only" in one_error_line(capsys.readouterr().err)


# Registration and authentication on the emulated key, through python-fido2's CTAPHID code

PIN = "1234"


class KeyState(CliState):
    """A CLI state whose ``--key`` is always ``key`` behind an in-memory HID connection."""

    def __init__(self, key: EmulatedAuthenticator) -> None:
        super().__init__()
        self.key = key
        self.specs: list[str | None] = []

    def open_key(self, spec: str | None) -> CtapDevice:
        self.specs.append(spec)
        framing = CtapHidFraming(self.key)
        return CtapHidDevice(hid_descriptor("emulator"), InMemoryHidConnection(framing))


@dataclass(frozen=True)
class Desk:
    """A relying party's files: the policy (its allowlist and the TEST root) and the store."""

    directory: Path
    pki: TestAttestationPki

    @property
    def policy(self) -> str:
        return str(self.directory / "fido-policy.json")

    @property
    def store(self) -> str:
        return f"sqlite:{self.directory / 'mie.db'}"

    def write(self, *, aaguid: bytes = EMULATOR_AAGUID, **policy: Any) -> None:
        (self.directory / "fido-root.pem").write_bytes(self.pki.root.pem)
        key = {
            "aaguid": str(uuid.UUID(bytes=aaguid)),
            "name": "mie TEST emulated key",
            "roots": ["fido-root.pem"],
            "test": True,
        }
        aaguids = {
            "format": "mie-fido-aaguids/1",
            "source": "tests",
            "updated": "2026-12-01",
            "keys": [key],
        }
        (self.directory / "aaguids.json").write_text(json.dumps(aaguids))
        content = {"format": "mie-fido-policy/1", "rp_id": RP_ID, "allowlist": "aaguids.json"}
        Path(self.policy).write_text(json.dumps(content | policy))

    def credentials(self) -> tuple[Any, ...]:
        from mie.store.sqlite import SqliteStore

        with SqliteStore(self.directory / "mie.db") as store:
            return store.credentials_of("8" + RPPS)


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate()


@pytest.fixture
def desk(tmp_path: Path, pki: TestAttestationPki) -> Desk:
    made = Desk(tmp_path, pki)
    made.write()
    return made


@pytest.fixture
def pin_stdin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def give(pin: str = PIN) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(pin + "\n"))

    give()
    return give


def _key(pki: TestAttestationPki, **options: Any) -> EmulatedAuthenticator:
    return EmulatedAuthenticator(PIN, pki=pki, **options)


def register(
    state: CliState, desk: Desk, capsys: pytest.CaptureFixture[str], *extra: str, code: int = 0
) -> dict[str, Any]:
    args = ["fido", "register", "--identity", f"rpps={RPPS}", "--policy", desk.policy]
    assert run([*args, "--store", desk.store, "--pin-stdin", "--json", *extra], state) == code
    captured = capsys.readouterr()
    if code:
        one_error_line(captured.err)
    outcome: dict[str, Any] = json.loads(captured.out)
    return outcome


def authenticate(
    state: CliState, desk: Desk, capsys: pytest.CaptureFixture[str], *extra: str, code: int = 0
) -> dict[str, Any]:
    args = ["fido", "auth", "--policy", desk.policy, "--store", desk.store, "--origin", ORIGIN]
    assert run([*args, "--pin-stdin", "--json", *extra], state) == code, capsys.readouterr()
    captured = capsys.readouterr()
    if code:
        one_error_line(captured.err)
    result: dict[str, Any] = json.loads(captured.out)
    return result


def test_register_then_authenticate_at_substantial(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    state = KeyState(_key(pki))
    outcome = register(state, desk, capsys, "--origin", ORIGIN, "--nonce", NONCE)
    assert outcome["valid"] is True and outcome["error"] is None
    credential = outcome["credential"]
    assert credential["rp_id"] == RP_ID
    assert credential["aaguid"] == str(uuid.UUID(bytes=EMULATOR_AAGUID))
    assert credential["alg"] == "ES256" and credential["backup_eligible"] is False
    attestation = credential["attestation"]
    assert (attestation["format"], attestation["type"]) == ("packed", "basic")
    assert attestation["allowlisted"] is True and attestation["metadata"] is None
    assert "mie TEST" in attestation["trust_anchor"]
    assert credential["identity"]["id_nat"] == "8" + RPPS
    assert credential["identity"]["test_card"] is True
    assert credential["level_cap"] == "substantial"
    registration = outcome["registration"]
    assert registration["type"] == "webauthn-registration"
    assert registration["nonce"] == NONCE and registration["origin"] == ORIGIN
    (stored,) = desk.credentials()
    assert (
        base64.urlsafe_b64encode(stored.credential_id).rstrip(b"=").decode()
        == (credential["credential_id"])
    )

    pin_stdin(PIN)
    result = authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}")
    assert result["valid"] is True and result["level"] == "substantial"
    assert result["identity"]["id_nat"] == "8" + RPPS
    assert result["authenticator"]["kind"] == "fido2"
    # The serial names the credential by its credential_ref (plan §3.1, the name register
    # printed), never by its base64url id.
    assert result["authenticator"]["serial"] == credential["credential_ref"]
    assert len(credential["credential_ref"]) == 32
    int(credential["credential_ref"], 16)
    assert result["evidence"]["type"] == "webauthn-assertion"
    assert result["evidence"]["origin"] == ORIGIN
    assert desk.credentials()[0].sign_count > stored.sign_count

    pin_stdin(PIN)
    args = ["fido", "auth", "--policy", desk.policy, "--store", desk.store, "--origin", ORIGIN]
    assert run([*args, "--credential", credential["credential_id"], "--pin-stdin"], state) == 0
    shown = capsys.readouterr().out
    assert "level: substantial" in shown and f"RPPS {RPPS}" in shown
    # A key is not a card: the text names the credential as register did.
    ref = credential["credential_ref"]
    assert shown.startswith(f"Authenticated: fido2 key, credential {ref}\n")


def test_a_dry_run_stores_nothing(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    state = KeyState(_key(pki))
    args = ["fido", "register", "--identity", f"rpps={RPPS}", "--policy", desk.policy]
    assert run([*args, "--store", "none", "--pin-stdin"], state) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("Checked (dry run, not stored): credential ")
    assert "level cap: substantial" in shown
    assert desk.credentials() == ()
    pin_stdin(PIN)
    result = authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}", code=1)
    assert result["error"]["code"] == "credential_unknown"
    assert "No credential registered for rpps=" in result["error"]["message"]
    # Without a credential named, the key's discoverable ones: it has none.
    pin_stdin(PIN)
    assert authenticate(state, desk, capsys, code=1)["error"]["code"] == "credential_unknown"


@pytest.mark.parametrize(
    ("key_options", "policy", "code"),
    [
        ({"attestation": "self"}, {}, "attestation_refused"),
        ({"attestation": "none"}, {}, "attestation_refused"),
        # The leaf's AAGUID extension names the emulator's model, the authData another one.
        ({"aaguid": bytes(range(1, 17))}, {}, "attestation_invalid"),
        # The emulator's model is not the one the allowlist lists.
        ({}, {"aaguid": bytes(range(1, 17))}, "aaguid_unknown"),
        ({"backup_eligible": True}, {"backup_eligible": "refuse"}, None),
    ],
)
def test_a_refused_registration_exits_1_and_stores_nothing(
    key_options: dict[str, Any],
    policy: dict[str, Any],
    code: str | None,
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    desk.write(**policy)
    outcome = register(KeyState(_key(pki, **key_options)), desk, capsys, code=1)
    assert outcome["valid"] is False and outcome["credential"] is None
    if code is not None:
        assert outcome["error"]["code"] == code
    assert outcome["registration"]["type"] == "webauthn-registration"
    assert desk.credentials() == ()


def test_a_wrong_pin_says_the_tries_left(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    pin_stdin("9999")
    outcome = register(KeyState(_key(pki)), desk, capsys, code=1)
    assert outcome["error"]["code"] == "invalid_pin"
    assert outcome["error"]["tries_left"] == 7
    assert outcome["registration"] is None


def test_an_assertion_is_verified_once(
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    from mie.fido.authenticator import Fido2Authenticator

    key = _key(pki)
    register(KeyState(key), desk, capsys)
    device = KeyState(key).open_key(None)
    request = AuthRequest(bytes.fromhex(NONCE), ORIGIN)
    ids = [c.credential_id for c in desk.credentials()]
    authenticator = Fido2Authenticator(device, rp_id=RP_ID, credentials=ids)
    evidence = authenticator.authenticate(request, user=StaticPin(PIN))
    saved = tmp_path / "assertion.json"
    saved.write_text(json.dumps(evidence.to_json()))
    browser = tmp_path / "browser.json"
    browser.write_text(json.dumps(evidence.to_webauthn()))
    verify = ["fido", "verify", "--nonce", NONCE, "--origin", ORIGIN, "--policy", desk.policy]
    verify += ["--store", desk.store, "--json"]
    # Another nonce: refused before the counter moves.
    other = [*verify[:3], "ab" * 32, *verify[4:]]
    assert run([*other, str(saved)]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "nonce_mismatch"
    assert run([*verify, "--webauthn", str(browser)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is True and result["level"] == "substantial"
    # The same assertion again (the saved evidence, or through verify-evidence): a replay.
    assert run([*verify, str(saved)]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "suspected_clone"
    evidence_args = ["verify-evidence", str(saved), "--nonce", NONCE, "--origin", ORIGIN]
    assert run([*evidence_args, "--fido-policy", desk.policy, "--store", desk.store]) == 1
    assert "suspected_clone" in one_error_line(capsys.readouterr().err)
    assert run(evidence_args) == 2
    assert "--fido-policy and --store" in one_error_line(capsys.readouterr().err)
    assert run([*evidence_args, "--fido-policy", desk.policy]) == 2
    assert "go together" in one_error_line(capsys.readouterr().err)


def test_verify_evidence_checks_a_fresh_assertion(
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    from mie.fido.authenticator import Fido2Authenticator

    key = _key(pki)
    register(KeyState(key), desk, capsys)
    request = AuthRequest(bytes.fromhex(NONCE), ORIGIN)
    device = KeyState(key).open_key(None)
    ids = [c.credential_id for c in desk.credentials()]
    authenticator = Fido2Authenticator(device, rp_id=RP_ID, credentials=ids)
    evidence = authenticator.authenticate(request, user=StaticPin(PIN))
    saved = tmp_path / "assertion.json"
    saved.write_text(json.dumps(evidence.to_json()))
    args = ["verify-evidence", str(saved), "--nonce", NONCE, "--origin", ORIGIN, "--json"]
    assert run([*args, "--fido-policy", desk.policy, "--store", desk.store]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["level"] == "substantial" and result["identity"]["id_nat"] == "8" + RPPS


def test_no_key_or_several(
    desk: Desk, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mie.transport.ctap as ctap

    listed: list[Any] = []
    monkeypatch.setattr(ctap, "list_ctap_devices", lambda: listed)
    result = authenticate(CliState(), desk, capsys, code=1)
    assert result["error"]["code"] == "no_card"
    listed += [
        ctap.KeyListing("hid:/dev/hidraw1", "hid", "a"),
        ctap.KeyListing("hid:/dev/hidraw2", "hid", "b"),
    ]
    args = ["fido", "auth", "--policy", desk.policy, "--store", desk.store, "--origin", ORIGIN]
    assert run(args, CliState()) == 2
    assert "'hid:/dev/hidraw1', 'hid:/dev/hidraw2'" in one_error_line(capsys.readouterr().err)
    # Listed but gone (no such hidraw node): each entry says why it cannot be read.
    assert run(["fido", "list", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert [(k["key"], k["transport"]) for k in keys] == [
        ("hid:/dev/hidraw1", "usb"),
        ("hid:/dev/hidraw2", "usb"),
    ]
    assert all(k["error"] and k["aaguid"] is None for k in keys)
    assert run(["fido", "list"]) == 0
    assert "hid:/dev/hidraw2  (usb: b)" in capsys.readouterr().out
    assert run([*args, "--key", "usb:1"], CliState()) == 2
    assert "--key 'usb:1'" in one_error_line(capsys.readouterr().err)


def test_auth_of_a_fido_key_needs_both_options(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["auth", "--fido-policy", desk.policy]) == 2
    assert "go together" in one_error_line(capsys.readouterr().err)


def test_a_discoverable_credential_needs_no_credential_named(
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    state = KeyState(_key(pki))
    saved = tmp_path / "registration.json"
    outcome = register(state, desk, capsys, "--resident-key", "--out", str(saved))
    assert outcome["credential"]["discoverable"] is True
    assert json.loads(saved.read_text()) == outcome["registration"]
    pin_stdin(PIN)
    result = authenticate(state, desk, capsys)
    assert result["level"] == "substantial"
    # Without user verification the key signs on a touch alone: the policy requires UV.
    result = authenticate(state, desk, capsys, "--no-uv", code=1)
    assert result["error"]["code"] == "user_not_verified"


# mie demo: the FIDO2 key


def test_demo_registers_then_authenticates_the_emulated_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["demo", "--only", "fido2", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert entry["card"] == "fido2"
    auth = entry["auth"]
    assert auth["valid"] is True and auth["level"] == "substantial"
    assert entry["serial"] == auth["authenticator"]["serial"] is not None
    assert auth["authenticator"]["kind"] == "fido2"
    assert auth["authenticator"]["transport"] == "usb"
    assert auth["identity"]["id_nat"] == "810100099877"
    assert auth["identity"]["test_card"] is True
    assert auth["evidence"]["type"] == "webauthn-assertion"
    assert auth["evidence"]["origin"] == "https://localhost"
    assert "user verified by the key (PIN or biometrics)" in auth["reasons"]
    assert run(["demo", "--only", "fido2"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(
        "FIDO2 key (emulated CTAP 2.1, in process): registered (packed attestation, TEST root), "
        "authenticated, level substantial\n"
    )


def test_the_emulated_key_is_the_design_contracts() -> None:
    # DESIGN.md (contract): mie.emulation.ctap2.EmulatedAuthenticator(pin=...) is a
    # fido2.ctap.CtapDevice; issue 10: with that PIN set and packed attestation.
    from fido2.ctap2.base import Ctap2

    key = EmulatedAuthenticator(pin="1234")
    assert isinstance(key, CtapDevice)
    info = Ctap2(key).info
    assert info.options["clientPin"] is True
    assert bytes(info.aaguid) == EMULATOR_AAGUID
    assert key.attestation == "packed"


class KeyAndReaderState(KeyState):
    """The same emulated key as ``--key`` and, through its FIDO applet, in the PC/SC reader."""

    def open_reader(self, reader: str | None) -> SmartCardConnection:
        return EmulatedConnection(EmulatedFidoApplet(self.key))


def test_mie_auth_of_a_key_over_nfc_takes_the_fido_policy_and_store(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    state = KeyAndReaderState(_key(pki))
    register(state, desk, capsys, "--resident-key")
    # The registry's fido probe finds the applet; without the FIDO options: bad usage.
    pin_stdin(PIN)
    assert run(["auth", "--origin", ORIGIN, "--pin-stdin"], state) == 2
    assert "needs --fido-policy and --store" in one_error_line(capsys.readouterr().err)
    pin_stdin(PIN)
    args = ["auth", "--origin", ORIGIN, "--pin-stdin", "--json"]
    assert run([*args, "--fido-policy", desk.policy, "--store", desk.store], state) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["level"] == "substantial"
    assert result["authenticator"]["transport"] == "contactless"
    assert result["identity"]["id_nat"] == "8" + RPPS


def test_list_says_what_each_key_is(
    pki: TestAttestationPki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mie.transport.ctap as ctap

    listing = [ctap.KeyListing("hid:/dev/hidraw7", "hid", "mie emulated FIDO2 key")]
    monkeypatch.setattr(ctap, "list_ctap_devices", lambda: listing)
    state = KeyState(_key(pki))
    assert run(["fido", "list", "--json"], state) == 0
    (key,) = json.loads(capsys.readouterr().out)["keys"]
    assert key["aaguid"] == str(uuid.UUID(bytes=EMULATOR_AAGUID))
    assert "FIDO_2_1" in key["versions"] and key["options"]["clientPin"] is True
    assert key["pin_retries"] == 8 and key["error"] is None
    assert state.specs == ["hid:/dev/hidraw7"]
    assert run(["fido", "list"], state) == 0
    assert "PIN set, 8 tries left" in capsys.readouterr().out


def test_the_fido_metadata_of_the_policy_decides_the_model(
    desk: Desk,
    pki: TestAttestationPki,
    mds: TestMds,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    def publish(*statuses: tuple[str, str], no: int) -> None:
        entry = mds.entry(EMULATOR_AAGUID, [pki.root.certificate], statuses=statuses)
        (desk.directory / "mds.jwt").write_bytes(mds.blob([entry], no=no))

    _root_file(mds, desk.directory)
    publish(("FIDO_CERTIFIED_L1", "2026-01-01"), no=1)
    metadata = {"blob": "mds.jwt", "root": "mds-root.pem"}
    desk.write(allowlist=None, metadata=metadata)
    state = KeyState(_key(pki))
    outcome = register(state, desk, capsys)
    attestation = outcome["credential"]["attestation"]
    assert attestation["allowlisted"] is False
    assert attestation["metadata"] == {
        "description": "mie TEST emulated authenticator",
        "status": "FIDO_CERTIFIED_L1",
        "certification": "L1",
    }
    assert outcome["credential"]["level_cap"] == "substantial"
    # The model revoked since: the next login is refused, and so is a new registration.
    publish(("FIDO_CERTIFIED_L1", "2026-01-01"), ("REVOKED", "2026-11-30"), no=2)
    pin_stdin(PIN)
    result = authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}", code=1)
    assert result["error"]["code"] == "metadata_status"
    assert "REVOKED since 2026-11-30" in result["error"]["message"]
    pin_stdin(PIN)
    assert register(state, desk, capsys, code=1)["error"]["code"] == "metadata_status"
    assert len(desk.credentials()) == 1
    # A blob that does not parse is unreadable input: exit 2.
    (desk.directory / "mds.jwt").write_bytes(b"not a blob")
    pin_stdin(PIN)
    args = ["fido", "auth", "--policy", desk.policy, "--store", desk.store, "--origin", ORIGIN]
    assert run(args, state) == 2
    assert "compact JWS" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["register", "--identity", "rpps=1", "--store", "none"], "--identity 'rpps=1'"),
        (["register", "--identity", "adeli=1", "--store", "none"], "rpps=11 DIGITS or psi=UUID"),
        (
            ["register", "--identity", f"rpps={RPPS}", "--store", "none", "--user-name", "x" * 65],
            "--user-name",
        ),
        (["register", "--identity", f"rpps={RPPS}", "--store", "x:"], "--store 'x:'"),
        (["auth", "--store", "sqlite:a.db", "--identity", "psi=x"], "--identity 'psi=x'"),
        (
            ["verify", "f.json", "--nonce", NONCE, "--origin", ORIGIN, "--rp-id", RP_ID],
            "--rp-id goes with --webauthn",
        ),
    ],
)
def test_bad_usage_exits_2_before_the_key_is_touched(
    args: list[str], fragment: str, desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    state = KeyState(EmulatedAuthenticator(PIN))
    if args[0] == "verify":
        args = [*args, "--store", "sqlite:a.db"]
    assert run(["fido", *args, "--policy", desk.policy], state) == 2
    assert fragment in one_error_line(capsys.readouterr().err)
    assert state.specs == []


def test_a_failed_verification_names_the_credential_not_the_files_claim(
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    import hashlib

    state = KeyState(_key(pki))
    register(state, desk, capsys)
    pin_stdin(PIN)
    result = authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}", "--nonce", NONCE)
    ref = result["authenticator"]["serial"]
    credential_id = bytes.fromhex(result["evidence"]["credential_id"])
    assert ref == hashlib.sha256(credential_id).digest()[:16].hex()
    # A saved result claiming another authenticator (a CPS3 card of another serial): the
    # failed result (here a replay) must not repeat the claim as if it had been checked.
    result["authenticator"] |= {"kind": "cps3", "serial": "2800000001"}
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(result))
    browser = tmp_path / "browser.json"
    from mie.fido.evidence import WebAuthnAssertionEvidence

    evidence = WebAuthnAssertionEvidence.from_json(result["evidence"])
    assert isinstance(evidence, WebAuthnAssertionEvidence)
    browser.write_text(json.dumps(evidence.to_webauthn()))
    common = ["--nonce", NONCE, "--origin", ORIGIN, "--json"]
    for args in (
        ["fido", "verify", str(forged), "--policy", desk.policy, "--store", desk.store],
        ["fido", "verify", str(browser), "--webauthn", "--policy", desk.policy],
        ["verify-evidence", str(forged), "--fido-policy", desk.policy],
    ):
        if args[-1] == desk.policy:
            args = [*args, "--store", desk.store]
        assert run([*args, *common]) == 1, args
        captured = capsys.readouterr()
        one_error_line(captured.err)
        failure = json.loads(captured.out)
        assert failure["error"]["code"] == "suspected_clone"
        assert failure["authenticator"]["kind"] == "fido2", args
        assert failure["authenticator"]["serial"] == ref, args


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_an_out_path_that_is_not_a_regular_file_is_refused_before_anything_is_done(
    kind: str,
    desk: Desk,
    pki: TestAttestationPki,
    mds: TestMds,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --out is written atomically (a new file renamed over the path): /dev/null (here a FIFO,
    # the same to os.replace) or a link would be replaced by a regular file, not written to.
    import os
    import stat

    import mie.fido.mds

    out = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        (tmp_path / "target").write_text("kept")
        out.symlink_to(tmp_path / "target")
    fetched: list[str] = []
    monkeypatch.setattr(mie.fido.mds, "fetch_blob", lambda url, **kw: fetched.append(url))
    state = KeyState(_key(pki))
    args = ["fido", "register", "--identity", f"rpps={RPPS}", "--policy", desk.policy]
    assert run_by_deadline([*args, "--store", "none", "--out", str(out)], out, state) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)
    assert state.specs == []
    root = _root_file(mds, tmp_path)
    fetch = ["fido", "mds", "fetch", "--out", str(out), "--root", str(root)]
    assert run_by_deadline(fetch, out, state) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)
    assert fetched == []
    mode = os.lstat(out).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISLNK(mode)
    if kind == "symlink":
        assert (tmp_path / "target").read_text() == "kept"


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_sqlite_store_that_is_not_a_regular_file_is_bad_usage(
    kind: str,
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # SQLite fails on it only after creating its journal beside it (/dev/zero-journal).
    import os

    where = tmp_path / "store"
    if kind == "directory":
        where.mkdir()
    else:
        os.mkfifo(where)
    state = KeyState(_key(pki))
    args = ["fido", "auth", "--policy", desk.policy, "--store", f"sqlite:{where}"]
    assert run_by_deadline(args, where, state) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)
    assert state.specs == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("store")) == ["store"]


@pytest.mark.parametrize(
    ("content", "code", "fragment"),
    [
        (None, 2, "Cannot read WebAuthn response"),
        ("fifo", 2, "Cannot read WebAuthn response 'w3c.json': not a regular file"),
        (b" " * (64 * 1024 + 1), 2, "WebAuthn response 'w3c.json' is larger than 65536 bytes"),
        (b'{"id": ', 2, "WebAuthn response 'w3c.json'"),
        # JSON of another shape: a failed check on well-formed input, as a card's bad answer.
        (b'{"id": "AAAA", "rawId": "AAAA=", "type": "public-key", "response": {}}', 1, "padded"),
    ],
    ids=["missing", "fifo", "too-large", "not-json", "padded"],
)
def test_a_webauthn_file_that_cannot_be_used(
    content: bytes | str | None,
    code: int,
    fragment: str,
    desk: Desk,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os

    path = tmp_path / "w3c.json"
    if content == "fifo":
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    args = ["fido", "verify", "w3c.json", "--webauthn", "--nonce", NONCE, "--origin", ORIGIN]
    args += ["--policy", desk.policy, "--store", desk.store, "--json"]
    assert run_by_deadline(args, path) == code
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert fragment in line, line
    assert json.loads(captured.out)["error"]["code"] == "malformed"
    assert desk.credentials() == ()


def test_the_pin_is_in_no_output_log_or_file_of_the_cli(
    desk: Desk,
    pki: TestAttestationPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    pin_stdin: Callable[[str], None],
) -> None:
    # Every logger at its lowest level (traffic included): a registration, a login, a wrong PIN
    # (its error and JSON result): neither PIN, nor its hex or CTAP hash, is anywhere.
    from mie.emulation.ctap2_pin import pin_hash

    right, wrong = "Pz7-right!", "Qw8-wrong?"
    state = KeyState(EmulatedAuthenticator(right, pki=pki))
    caplog.set_level(1)
    saved = tmp_path / "registration.json"
    texts: list[str] = []
    pin_stdin(right)
    args = ["--log-level", "traffic", "fido", "register", "--identity", f"rpps={RPPS}"]
    args += ["--policy", desk.policy, "--store", desk.store, "--out", str(saved), "--json"]
    assert run([*args, "--pin-stdin"], state) == 0
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, saved.read_text()]
    for pin, code in ((right, 0), (wrong, 1)):
        pin_stdin(pin)
        args = ["--log-level", "traffic", "fido", "auth", "--policy", desk.policy]
        args += ["--store", desk.store, "--origin", ORIGIN, "--identity", f"rpps={RPPS}"]
        assert run([*args, "--pin-stdin", "--json"], state) == code
        captured = capsys.readouterr()
        texts += [captured.out, captured.err]
    assert '"invalid_pin"' in texts[-2]
    texts += [r.getMessage() for r in caplog.records]
    # The traffic was logged (python-fido2's CTAP exchanges among it): the check saw it.
    assert {r.name.split(".")[0] for r in caplog.records} >= {"mie", "fido2"}
    for secret in (right, wrong):
        for form in (secret, secret.encode().hex(), pin_hash(secret).hex()):
            assert not [t for t in texts if form in t], form


@pytest.mark.parametrize("member", ["blob", "root"])
def test_a_metadata_file_of_the_policy_that_is_a_fifo_is_refused_not_waited_on(
    member: str, desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Opening a FIFO for reading blocks until a writer comes: the command would wait forever.
    import os

    os.mkfifo(tmp_path / "fifo")
    metadata = {"blob": "mds.jwt", member: "fifo"}
    desk.write(allowlist=None, metadata=metadata)
    args = ["fido", "auth", "--policy", desk.policy, "--store", desk.store, "--key", "emulator"]
    assert run_by_deadline(args, tmp_path / "fifo") == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)


def test_an_mds_root_that_is_a_fifo_is_refused_not_waited_on(
    mds: TestMds, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    os.mkfifo(tmp_path / "fifo")
    blob = _blob(mds, tmp_path)
    fifo = tmp_path / "fifo"
    assert run_by_deadline(["fido", "mds", "show", str(blob), "--root", str(fifo)], fifo) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)
    out = ["--out", str(tmp_path / "new.jwt"), "--root", str(fifo)]
    assert run_by_deadline(["fido", "mds", "fetch", *out], fifo) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)


def test_mie_auth_of_a_key_over_nfc_finds_a_discoverable_credential_only(
    desk: Desk,
    pki: TestAttestationPki,
    capsys: pytest.CaptureFixture[str],
    pin_stdin: Callable[[str], None],
) -> None:
    # mie auth names no credential to the key (README, architecture.md): a credential made
    # without --resident-key is not found there; mie fido auth --identity finds it.
    state = KeyAndReaderState(_key(pki))
    register(state, desk, capsys)
    pin_stdin(PIN)
    args = ["auth", "--origin", ORIGIN, "--pin-stdin", "--json"]
    assert run([*args, "--fido-policy", desk.policy, "--store", desk.store], state) == 1
    captured = capsys.readouterr()
    # The line names the code, as mie fido auth's does.
    assert one_error_line(captured.err).startswith("mie: error: credential_unknown: ")
    assert json.loads(captured.out)["error"]["code"] == "credential_unknown"
    pin_stdin(PIN)
    assert authenticate(state, desk, capsys, "--identity", f"rpps={RPPS}")["valid"] is True


# L1: mie emulate fido2, --key emulator:STATE, mie fido verify of a browser's JSON


@pytest.fixture
def emulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``mie emulate fido2`` in process, served nowhere: what it would serve is kept (the
    engine, the vpcd card), its TEST PKI in ``tmp_path/pki``."""
    from mie._cli import emulate
    from mie.emulation.registry import build_fido_key

    monkeypatch.setenv("MIE_TEST_PKI", str(tmp_path / "pki"))
    served: list[Any] = []

    def build(options: Any) -> EmulatedAuthenticator:
        served.append(build_fido_key(options))
        return served[-1]

    def serve_vpcd(card: Any, *args: Any) -> int:
        served.append(card)
        return 0

    def serve_hid_socket(host: Any, path: Path) -> int:
        host.close()
        return 0

    monkeypatch.setattr(emulate, "build_fido_key", build)
    monkeypatch.setattr(emulate, "_serve_vpcd", serve_vpcd)
    monkeypatch.setattr(emulate, "_serve_hid_socket", serve_hid_socket)
    return served


def _client_pin_set(engine: EmulatedAuthenticator) -> bool:
    device = CtapHidDevice(
        hid_descriptor("emulator"), InMemoryHidConnection(CtapHidFraming(engine))
    )
    return bool(Ctap2(device).get_info().options.get("clientPin"))


def test_emulate_fido2_help_and_key_agree_on_the_pin(
    emulated: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The help showed --pin [default: 1234], and the key had no PIN: mie fido register then said
    # pin_not_set. The default is the cards' only; a FIDO2 key has the PIN --pin gives it.
    assert run(["emulate", "fido2", "--help"]) == 0
    options = " ".join(capsys.readouterr().out.partition("Options:")[2].split())
    pin_help = options.partition("--pin TEXT")[2].partition("--serial")[0]
    assert "[default: 1234]" not in pin_help
    assert "default 1234, cards only" in pin_help and "no PIN set unless given" in pin_help
    socket_path = tmp_path / "k.sock"
    assert run(["emulate", "fido2", "--hid-socket", str(socket_path)]) == 0
    assert not _client_pin_set(emulated[-1])
    assert run(["emulate", "fido2", "--hid-socket", str(socket_path), "--pin", "1234"]) == 0
    assert _client_pin_set(emulated[-1])


@pytest.mark.parametrize("select", [None, "fido2", "u2f"])
def test_emulate_fido2_select_sets_the_applets_select_answer(
    select: str | None, emulated: list[Any]
) -> None:
    from mie.transport.ctap import SELECT_FIDO

    assert run(["emulate", "fido2", *(["--select", select] if select else [])]) == 0
    data, sw = EmulatedConnection(emulated[-1]).send_and_receive(SELECT_FIDO)
    assert sw == 0x9000 and data == (b"U2F_V2" if select == "u2f" else b"FIDO_2_0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "u2f", "--hid-socket", "k.sock"], "--select: with vpcd only"),
        (["--hid-socket", "missing/k.sock"], "--hid-socket missing/k.sock: No such file"),
        (["--pki", "file/pki"], "--pki file/pki: not a directory"),
    ],
)
def test_emulate_fido2_bad_options_are_one_line_naming_the_option(
    args: list[str],
    message: str,
    emulated: list[Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "file").write_text("")
    assert run(["emulate", "fido2", *args]) == 2  # served, it would have been 0
    assert message in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["fido2", "cps3"])
def test_emulate_with_mie_test_pki_a_file_names_it(
    kind: str,
    emulated: list[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MIE_TEST_PKI", str(tmp_path / "file"))
    assert run(["emulate", kind, "--crl-port", "0"] if kind == "cps3" else ["emulate", kind]) == 2
    assert "$MIE_TEST_PKI" in one_error_line(capsys.readouterr().err)
    assert emulated == []


def test_an_emulator_state_in_a_missing_directory_is_bad_usage(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It made the directories and a blank key, and the user was told pin_not_set.
    state = tmp_path / "no" / "such" / "k.json"
    args = ["fido", "register", "--identity", f"rpps={RPPS}", "--policy", desk.policy]
    assert run([*args, "--store", "none", "--key", f"emulator:{state}"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(state.parent) in line and "is not there" in line
    assert not (tmp_path / "no").exists()


def test_a_new_emulator_state_file_in_an_existing_directory_is_a_new_key(tmp_path: Path) -> None:
    from mie.transport.ctap import open_ctap_device

    state = tmp_path / "k.json"
    device = open_ctap_device(f"emulator:{state}")
    try:
        assert Ctap2(device).get_info().options.get("clientPin") is False  # no PIN set
    finally:
        device.close()
    assert state.is_file()


def test_fido_verify_of_a_browsers_json_without_webauthn_says_to_add_it(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = tmp_path / "w3c.json"
    browser.write_text(json.dumps({"id": "AAAA", "rawId": "AAAA", "type": "public-key"}))
    args = ["fido", "verify", str(browser), "--nonce", NONCE, "--origin", ORIGIN]
    assert run([*args, "--policy", desk.policy, "--store", desk.store]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "W3C WebAuthn JSON" in line and "add --webauthn --rp-id" in line, line
    # Evidence of another unknown type keeps the evidence reader's own message.
    browser.write_text(json.dumps({"type": "carrier-pigeon"}))
    assert run([*args, "--policy", desk.policy, "--store", desk.store]) == 1
    assert "Unknown evidence type 'carrier-pigeon'" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["fido2", "desfire"])
def test_emulate_state_in_a_missing_directory_is_bad_usage(
    kind: str, emulated: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As --key emulator:STATE: the state file's writer made the directories and a blank key.
    state = tmp_path / "no" / "such" / "k.json"
    assert run(["emulate", kind, "--state", str(state)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--state {state}" in line and "is not there" in line
    assert not (tmp_path / "no").exists()
    assert run(["emulate", "cps3", "--state", str(state)]) == 2  # not for a card, as before
    assert "only for mie emulate desfire" in one_error_line(capsys.readouterr().err)
