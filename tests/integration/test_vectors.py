"""Recorded vectors: recorded through pcscd, replayed byte-exactly, failing loudly on a change."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mie.cards.demo import DemoSession
from mie.transport.replay import ReplayConnection, load_vector
from tests.harness import READER0, Pcscd, emulator_process, mie_command

VECTORS = Path(__file__).resolve().parents[2] / "vectors"


def _mie(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mie_command(*args), capture_output=True, text=True, timeout=60)


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
def test_committed_vector_replays(path: Path) -> None:
    vector = load_vector(path)
    assert vector.command, f"{path.name} has no recorded command"
    replayed = _mie("replay", str(path))
    assert replayed.returncode == 0, replayed.stderr
    assert f"Replayed {len(vector.exchanges)} exchanges" in replayed.stderr


def test_vectors_readme_lists_every_vector() -> None:
    readme = (VECTORS / "README.md").read_text()
    for path in VECTORS.glob("*.json"):
        assert f"`{path.name}`" in readme
