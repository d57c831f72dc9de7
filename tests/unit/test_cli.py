from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mie._cli.__main__ import run
from mie.transport.replay import load_vector


@pytest.fixture(autouse=True)
def isolated_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI configures the 'mie' logger; give it back as it was after each test."""
    monkeypatch.setenv("MIE_TEST_PKI", str(tmp_path / "testpki"))
    logger = logging.getLogger("mie")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.strip()]


def test_demo_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo"]) == 0
    out = capsys.readouterr().out
    assert "MIE0000001" in out
    assert "Dr Demo" in out


def test_demo_json_exits_0_with_parseable_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["demo", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results[0] == {
        "card": "iso7816",
        "serial": "MIE0000001",
        "public_file_bytes": 700,
        "pin_tries_before_verify": 3,
        "holder_after_verify": "Dr Demo",
    }
    assert results[1]["card"] == "cps3"
    assert results[1]["auth"]["valid"] is True


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No such command" in captured.err
    assert "Traceback" not in captured.err


def test_replay_of_a_missing_file_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["replay", str(tmp_path / "absent.json")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("mie: error:")
    assert "absent.json" in lines[0]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"description": "d", "source": "s", "kind": "k", "exchanges": [], "extra": 1}',
        '{"description": "d", "source": "s", "kind": "k", "exchanges": [{"c": "00", "r": "9000"}]}',
    ],
)
def test_replay_of_a_malformed_file_exits_2_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0].startswith("mie: error:")
    assert "bad.json" in lines[0]


def test_record_then_replay_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector_file = tmp_path / "demo.json"
    assert run(["record", "--out", str(vector_file), "--", "demo", "--only", "iso7816"]) == 0
    recorded = capsys.readouterr()
    vector = load_vector(vector_file)
    assert vector.command == ["demo", "--only", "iso7816"]
    assert vector.source == "emulator"
    assert "31323334" not in vector_file.read_text(encoding="utf-8")

    assert run(["replay", str(vector_file)]) == 0
    replayed = capsys.readouterr()
    assert replayed.out == recorded.out
    assert f"Replayed {len(vector.exchanges)} exchanges" in replayed.err


def test_replay_of_a_changed_command_exits_1_naming_the_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector_file = tmp_path / "demo.json"
    assert run(["record", "--out", str(vector_file), "--", "demo", "--only", "iso7816"]) == 0
    capsys.readouterr()
    obj = json.loads(vector_file.read_text(encoding="utf-8"))
    index = next(i for i, e in enumerate(obj["exchanges"]) if e["c"].startswith("00b0"))
    original = obj["exchanges"][index]["c"]
    changed = original[:-2] + f"{int(original[-2:], 16) ^ 0x01:02x}"
    obj["exchanges"][index]["c"] = changed
    vector_file.write_text(json.dumps(obj), encoding="utf-8")

    assert run(["replay", str(vector_file)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert lines[0] == (f"mie: error: Exchange {index}: expected command {changed}, got {original}")
