"""Recorded vectors: recorded through pcscd, replayed byte-exactly, failing loudly on a change."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mie.cards.demo import DemoSession
from mie.transport.replay import ReplayConnection, load_vector
from tests.harness import READER0, Pcscd, emulator_process, mie_command

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def _mie(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mie_command(*args), capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.pcsc
def test_session_recorded_through_pcscd_replays_byte_exactly(pcscd: Pcscd, tmp_path: Path) -> None:
    vector_file = tmp_path / "info.json"
    with emulator_process("iso7816", "--serial", "RECORDED-1"):
        recorded = _mie("record", "--out", str(vector_file), "--", "info", "--reader", READER0)
    assert recorded.returncode == 0, recorded.stderr
    vector = load_vector(vector_file)
    assert vector.source == "emulator" and vector.kind == "iso7816"
    assert vector.command == ["info", "--reader", READER0]
    assert len(vector.exchanges) >= 4
    # No card is attached any more: the replay gets every byte from the file.
    replayed = _mie("replay", str(vector_file))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "RECORDED-1" in replayed.stdout


@pytest.mark.pcsc
def test_one_byte_changed_in_a_recorded_command_fails_loudly(pcscd: Pcscd, tmp_path: Path) -> None:
    vector_file = tmp_path / "info.json"
    with emulator_process("iso7816"):
        assert _mie("record", "-o", str(vector_file), "--", "info").returncode == 0
    obj = json.loads(vector_file.read_text())
    command = obj["exchanges"][2]["c"]
    obj["exchanges"][2]["c"] = command[:-2] + f"{int(command[-2:], 16) ^ 1:02x}"
    vector_file.write_text(json.dumps(obj))
    replayed = _mie("replay", str(vector_file))
    assert replayed.returncode == 1
    assert "Exchange 2: expected command" in replayed.stderr
    assert obj["exchanges"][2]["c"] in replayed.stderr and command in replayed.stderr


@pytest.mark.pcsc
def test_emulator_trace_masks_the_pin_and_replays_the_session(pcscd: Pcscd, tmp_path: Path) -> None:
    from mie.transport.pcsc import PcscConnection

    trace = tmp_path / "trace.json"
    with emulator_process("iso7816", "--pin", "8642", "--trace", str(trace)):
        with PcscConnection(READER0) as connection:
            report = DemoSession(connection).run("8642")
    assert report.holder == "Dr Demo"
    text = trace.read_text()
    assert "8642" not in text and "38363432" not in text
    vector = load_vector(trace)
    assert any("*" in e.command for e in vector.exchanges)
    replay = ReplayConnection(vector)
    assert DemoSession(replay).run("8642") == report
    replay.assert_complete()


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.name)
def test_committed_vector_replays(path: Path, tmp_path: Path) -> None:
    vector = load_vector(path)
    assert vector.command, f"{path.name} has no recorded command"
    env = None
    if vector.kind.startswith("desfire"):
        # A badge session replays with the badge configuration it was recorded with (keys,
        # authority): a vector may not name a local file, the environment does.
        from tests.desfire.vector_badge import write_setup

        env = {**os.environ, "MIE_BADGE_CONFIG": str(write_setup(tmp_path / "badge"))}
    replayed = _mie("replay", str(path), env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert f"Replayed {len(vector.exchanges)} exchanges" in replayed.stderr


def test_vectors_readme_lists_every_vector() -> None:
    readme = (VECTORS / "README.md").read_text()
    for path in VECTORS.glob("*.json"):
        assert f"`{path.name}`" in readme


def _self_signed_ca(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.PEM)


def test_a_shared_vector_cannot_import_a_trust_anchor_or_fetch(tmp_path: Path) -> None:
    # The reproducer of issue 7 item 15, as a user would run it: `mie replay evil.json`.
    trust, crls = tmp_path / "trust", tmp_path / "crl"
    ca = tmp_path / "evil-ca.pem"
    ca.write_bytes(_self_signed_ca("Evil CA"))
    commands = [
        ["trust", "import", str(ca)],
        ["crl", "fetch", "http://127.0.0.1:9/evil.crl"],
        ["emulate", "cps3", "--port", "9"],
    ]
    for number, command in enumerate(commands):
        vector = json.loads((VECTORS / "iso7816-demo.json").read_text())
        vector["command"] = command
        path = tmp_path / f"evil-{number}.json"
        path.write_text(json.dumps(vector))
        replayed = subprocess.run(
            mie_command("replay", str(path)),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MIE_TRUST_DIR": str(trust), "MIE_CRL_DIR": str(crls)},
        )
        assert replayed.returncode == 2, replayed.stderr
        assert replayed.stderr.startswith(f"mie: error: {path}: its recorded command")
        assert replayed.stderr.count("\n") == 1
    assert not trust.exists() and not crls.exists()
