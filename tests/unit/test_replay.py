from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.cards.demo import DemoSession
from mie.core.connection import Transport
from mie.core.errors import ReplayMismatchError, VectorFormatError
from mie.emulation import EmulatedConnection, demo_card
from mie.transport.replay import (
    MAX_VECTOR_BYTES,
    Exchange,
    RecordingConnection,
    ReplayConnection,
    Vector,
    load_vector,
    parse_vector,
)
from tests.unit.fakes import h

PIN = "4826"
PIN_HEX = PIN.encode().hex()

VECTOR = Vector(
    description="select and read",
    source="emulator",
    kind="iso7816",
    atr=h("3B 09 80") + b"MIE-GEN1",
    exchanges=[
        Exchange("00a4040008f04d494544454d4f", h("61 1A")),
        Exchange("0020000108" + "*" * 16, h("90 00")),
        Exchange("00b081000a", b"MIE0000001" + h("90 00")),
    ],
    random={"challenge": "00ff"},
    command=["demo", "--only", "iso7816"],
)


def valid_json() -> dict[str, Any]:
    return {
        "description": "d",
        "source": "emulator",
        "kind": "iso7816",
        "atr": "3b00",
        "exchanges": [{"c": "00a4000c", "r": "9000"}],
        "random": {},
    }


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_vector_json_round_trip() -> None:
    obj = json.loads(json.dumps(VECTOR.to_json()))
    assert obj["exchanges"][2] == {"c": "00b081000a", "r": (b"MIE0000001" + h("90 00")).hex()}
    assert obj["atr"] == "3b09804d49452d47454e31"
    assert Vector.from_json(obj) == VECTOR


def test_vector_save_and_load_round_trip(tmp_path: Path) -> None:
    VECTOR.save(tmp_path / "v.json")
    assert load_vector(tmp_path / "v.json") == VECTOR
    assert load_vector(str(tmp_path / "v.json")) == VECTOR


def test_minimal_vector_defaults() -> None:
    obj = valid_json()
    del obj["random"]
    obj["atr"] = None
    vector = Vector.from_json(obj)
    assert (vector.atr, vector.random, vector.command) == (None, {}, None)
    assert "command" not in vector.to_json()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"comment": "x"}, "Unknown vector fields: 'comment'"),
        ({"description": None}, "'description'"),
        ({"description": ""}, "'description'"),
        ({"source": 3}, "'source'"),
        ({"kind": None}, "'kind'"),
        ({"atr": "3B00"}, "'atr' must be lowercase hex"),
        ({"atr": "3b0"}, "'atr' must be lowercase hex"),
        ({"atr": "zz"}, "'atr' must be lowercase hex"),
        ({"atr": 59}, "'atr' must be lowercase hex"),
        ({"exchanges": None}, "'exchanges' must be a list"),
        ({"exchanges": {"c": "00a4000c", "r": "9000"}}, "'exchanges' must be a list"),
        ({"exchanges": ["00a4000c"]}, "Exchange 0 must be an object"),
        ({"exchanges": [{"c": "00a4000c"}]}, "Exchange 0 must be an object with exactly"),
        ({"exchanges": [{"c": "00a4000c", "r": "9000", "x": ""}]}, "Exchange 0 must be"),
        ({"exchanges": [{"c": "00A4000C", "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a400", "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a4000c*", "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a4000cgg", "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a4000c", "r": "90"}]}, "Exchange 0: 'r' has no status word"),
        ({"exchanges": [{"c": "00a4000c", "r": ""}]}, "Exchange 0: 'r' has no status word"),
        ({"exchanges": [{"c": "00a4000c", "r": "90 00"}]}, "Exchange 0: 'r' must be lowercase"),
        ({"exchanges": [{"c": "00a4000c", "r": "9000"}, {"c": 1, "r": "9000"}]}, "Exchange 1"),
        ({"random": []}, "'random'"),
        ({"random": {"challenge": "ABCD"}}, "'random'"),
        ({"random": {"challenge": 7}}, "'random'"),
        ({"command": "demo"}, "'command' must be a list of strings"),
        ({"command": ["demo", 1]}, "'command' must be a list of strings"),
    ],
)
def test_load_vector_rejects_each_malformed_field(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    path = write(tmp_path / "bad.json", {**valid_json(), **change})
    with pytest.raises(VectorFormatError, match=re.escape(named)) as raised:
        load_vector(path)
    assert str(path) in str(raised.value)


def test_load_vector_rejects_a_missing_exchanges_field(tmp_path: Path) -> None:
    obj = valid_json()
    del obj["exchanges"]
    with pytest.raises(VectorFormatError, match="'exchanges' must be a list"):
        load_vector(write(tmp_path / "bad.json", obj))


def test_load_vector_rejects_a_json_array(tmp_path: Path) -> None:
    with pytest.raises(VectorFormatError, match="must be a JSON object"):
        load_vector(write(tmp_path / "bad.json", [valid_json()]))


def test_load_vector_rejects_text_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(VectorFormatError, match="is not JSON"):
        load_vector(path)


def test_load_vector_rejects_a_missing_or_undecodable_file(tmp_path: Path) -> None:
    with pytest.raises(VectorFormatError, match="Cannot read vector"):
        load_vector(tmp_path / "absent.json")
    (tmp_path / "latin1.json").write_bytes(b'{"description": "\xe9"}')
    with pytest.raises(VectorFormatError, match="Cannot read vector"):
        load_vector(tmp_path / "latin1.json")


def test_replay_serves_the_recorded_responses_in_order() -> None:
    replay = ReplayConnection(VECTOR, Transport.CONTACTLESS)
    assert replay.atr == VECTOR.atr
    assert replay.transport is Transport.CONTACTLESS
    assert replay.send_and_receive(h("00 A4 04 00 08 F0 4D 49 45 44 45 4D 4F")) == (b"", 0x611A)
    assert replay.send_and_receive(h("00 20 00 01 08 34 38 32 36 FF FF FF FF")) == (b"", 0x9000)
    assert replay.send_and_receive(h("00 B0 81 00 0A")) == (b"MIE0000001", 0x9000)
    replay.assert_complete()


def test_replay_matches_a_masked_verify_by_its_redacted_form() -> None:
    vector = Vector("v", "emulator", "iso7816", exchanges=list(VECTOR.exchanges[1:2]))
    ReplayConnection(vector).send_and_receive(h("00 20 00 01 08 39 39 39 39 39 39 39 39"))
    with pytest.raises(ReplayMismatchError, match=r"\*{8}, got 0020000104\*{8}$"):
        ReplayConnection(vector).send_and_receive(h("00 20 00 01 04 34 38 32 36"))


def test_replay_mismatch_names_the_exchange_and_both_commands() -> None:
    replay = ReplayConnection(VECTOR)
    replay.send_and_receive(h("00 A4 04 00 08 F0 4D 49 45 44 45 4D 4F"))
    replay.send_and_receive(h("00 20 00 01 08 34 38 32 36 FF FF FF FF"))
    with pytest.raises(ReplayMismatchError) as raised:
        replay.send_and_receive(h("00 B0 81 00 0B"))
    assert str(raised.value) == "Exchange 2: expected command 00b081000a, got 00b081000b"
    assert replay.position == 2


def test_replay_past_the_end_of_the_recording_raises() -> None:
    replay = ReplayConnection(Vector("v", "emulator", "iso7816"))
    with pytest.raises(ReplayMismatchError, match="Exchange 0: the recording has ended"):
        replay.send_and_receive(h("00 A4 00 0C"))


def test_assert_complete_raises_while_exchanges_remain() -> None:
    replay = ReplayConnection(VECTOR)
    replay.send_and_receive(h("00 A4 04 00 08 F0 4D 49 45 44 45 4D 4F"))
    with pytest.raises(ReplayMismatchError, match="stopped at exchange 1: 2 recorded"):
        replay.assert_complete()


def test_recording_never_stores_the_pin_and_replays_the_session(tmp_path: Path) -> None:
    recorder = RecordingConnection(EmulatedConnection(demo_card(pin=PIN)))
    report = DemoSession(recorder).run(PIN)
    path = tmp_path / "demo.json"
    recorder.vector("demo session", "emulator", "iso7816").save(path)

    text = path.read_text(encoding="utf-8")
    assert PIN_HEX not in text
    assert PIN not in text
    assert '"c": "0020000108' + "*" * 16 + '"' in text

    replay = ReplayConnection(load_vector(path))
    assert DemoSession(replay).run("9999") == report
    replay.assert_complete()


def test_recording_keeps_the_exact_response_bytes() -> None:
    recorder = RecordingConnection(EmulatedConnection(demo_card()))
    assert recorder.atr == h("3B 09 80") + b"MIE-GEN1"
    recorder.send_and_receive(h("00 A4 04 0C 08 F0 4D 49 45 44 45 4D 4F"))
    recorder.send_and_receive(h("00 B0 81 00 0A"))
    assert recorder.exchanges == [
        Exchange("00a4040c08f04d494544454d4f", h("90 00")),
        Exchange("00b081000a", b"MIE0000001" + h("90 00")),
    ]


def test_save_replaces_the_target_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "v.json"
    target.write_text("old", encoding="utf-8")
    real_replace = os.replace
    seen: list[tuple[str, str]] = []

    def replace(src: str, dst: str) -> None:
        assert target.read_text(encoding="utf-8") == "old"
        assert Path(src).parent == tmp_path
        assert json.loads(Path(src).read_text(encoding="utf-8")) == VECTOR.to_json()
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    VECTOR.save(target)
    assert [Path(dst) for _, dst in seen] == [target]
    assert load_vector(target) == VECTOR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]


def test_save_that_fails_leaves_the_old_content_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "v.json"
    target.write_text("old", encoding="utf-8")

    def replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        VECTOR.save(target)
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[" * 2000, "is nested too deeply"),
        ('{"a": ' * 5000 + "null" + "}" * 5000, "is nested too deeply"),
        ('{"description": ' + "9" * 5000 + "}", "'description' must be a non-empty string"),
        ('{"description": "d", "description": "e"}', "duplicate key 'description'"),
        ('{"description": NaN}', "is not JSON: NaN is not a JSON value"),
        ('{"description": "\\ud800"}', "not UTF-8 text"),
        ("\ufeff{}", "is not JSON"),
        ('{"description": "d"} {}', "is not JSON"),
        ('{"description": "d\u0000"}', "is not JSON"),
    ],
)
def test_parse_vector_refuses_hostile_json_naming_the_file(text: str, named: str) -> None:
    with pytest.raises(VectorFormatError, match=re.escape(named)) as raised:
        parse_vector(text.encode("utf-8", "surrogatepass"), "hostile.json")
    assert "hostile.json" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"atr": "3b00\n"}, "'atr' must be lowercase hex"),
        ({"atr": "3b"}, "'atr' must be 2 to 33 bytes"),
        ({"atr": "3b" * 34}, "'atr' must be 2 to 33 bytes"),
        ({"exchanges": [{"c": "00a4000c\n", "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a4000c", "r": "9000\n"}]}, "Exchange 0: 'r' must be lowercase"),
        ({"exchanges": [{"c": "00" * 65546, "r": "9000"}]}, "Exchange 0: 'c'"),
        ({"exchanges": [{"c": "00a4000c", "r": "00" * 65539}]}, "longer than a response APDU"),
        ({"random": {"challenge": "00\n"}}, "'random'"),
    ],
)
def test_load_vector_refuses_hex_with_a_newline_and_oversized_fields(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    path = write(tmp_path / "bad.json", {**valid_json(), **change})
    with pytest.raises(VectorFormatError, match=re.escape(named)):
        load_vector(path)


def test_load_vector_reads_no_more_than_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.write(b'{"description": "')
        f.write(b"x" * MAX_VECTOR_BYTES)
        f.write(b'"}')
    with pytest.raises(VectorFormatError, match=f"larger than {MAX_VECTOR_BYTES} bytes"):
        load_vector(path)


def test_load_vector_accepts_the_largest_apdus(tmp_path: Path) -> None:
    obj = {**valid_json(), "exchanges": [{"c": "00" * 65545, "r": "00" * 65538}]}
    vector = load_vector(write(tmp_path / "big.json", obj))
    assert len(vector.exchanges[0].response) == 65538


@settings(max_examples=300)
@given(data=st.binary(max_size=300))
def test_parse_vector_raises_only_vector_format_error_for_any_bytes(data: bytes) -> None:
    with contextlib.suppress(VectorFormatError):
        parse_vector(data, "fuzz.json")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300)
@given(key=st.sampled_from(sorted(valid_json())), value=_JSON)
def test_parse_vector_raises_only_vector_format_error_for_any_field_value(
    key: str, value: object
) -> None:
    data = json.dumps({**valid_json(), key: value}).encode()
    with contextlib.suppress(VectorFormatError):
        parse_vector(data, "fuzz.json")


def test_names_from_the_file_are_quoted_and_cut_short_in_messages() -> None:
    hostile = "\x1b[2J" + "k" * 1000
    with pytest.raises(VectorFormatError) as raised:
        parse_vector(json.dumps({**valid_json(), hostile: 1}).encode(), "v.json")
    assert "\x1b" not in str(raised.value) and len(str(raised.value)) < 200
    with pytest.raises(VectorFormatError, match="duplicate key") as raised:
        key = json.dumps(hostile)
        parse_vector(f"{{{key}: 1, {key}: 2}}".encode(), "v.json")
    assert "\x1b" not in str(raised.value) and len(str(raised.value)) < 200
