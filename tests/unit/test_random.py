"""One injectable random source: recorded values replay byte for byte."""

from __future__ import annotations

import json

import pytest

from mie.core.errors import VectorFormatError
from mie.core.random import RandomSource, RecordingRandom, ReplayRandom, SystemRandom
from mie.emulation import EmulatedConnection, demo_card
from mie.transport.replay import RecordingConnection, Vector, parse_vector
from tests.unit.fakes import h


class _Counting(RandomSource):
    def __init__(self) -> None:
        self.next = 0

    def draw(self, name: str, size: int) -> bytes:
        self.next += 1
        return bytes([self.next]) * size


def test_the_system_source_gives_the_size_asked_and_fresh_values() -> None:
    rng = SystemRandom()
    first, second = rng.draw("nonce", 32), rng.draw("nonce", 32)
    assert len(first) == len(second) == 32 and first != second


def test_a_recording_numbers_a_name_drawn_again() -> None:
    rng = RecordingRandom(_Counting())
    assert rng.draw("nonce", 2) == b"\x01\x01"
    assert rng.draw("rnd_a", 1) == b"\x02"
    assert rng.draw("nonce", 2) == b"\x03\x03"
    assert rng.draw("nonce", 2) == b"\x04\x04"
    assert rng.values == {
        "nonce": b"\x01\x01",
        "rnd_a": b"\x02",
        "nonce.1": b"\x03\x03",
        "nonce.2": b"\x04\x04",
    }


def test_a_replay_serves_the_recorded_values_in_the_same_order() -> None:
    recording = RecordingRandom()
    drawn = [recording.draw(name, 16) for name in ("nonce", "rnd_a", "nonce")]
    replay = ReplayRandom(recording.values)
    assert [replay.draw(name, 16) for name in ("nonce", "rnd_a", "nonce")] == drawn


def test_a_replay_refuses_a_value_not_recorded_or_of_another_size() -> None:
    replay = ReplayRandom({"nonce": bytes(16)})
    with pytest.raises(VectorFormatError, match="random value 'nonce' has 16 bytes, not 32"):
        replay.draw("nonce", 32)
    with pytest.raises(VectorFormatError, match=r"no recorded random value 'nonce\.1'"):
        replay.draw("nonce", 16)
    with pytest.raises(VectorFormatError, match="no recorded random value 'rnd_a'"):
        ReplayRandom({}).draw("rnd_a", 16)


def test_a_recording_connection_writes_the_values_drawn_into_its_vector() -> None:
    rng = RecordingRandom(_Counting())
    recorder = RecordingConnection(EmulatedConnection(demo_card()), rng=rng)
    nonce = rng.draw("nonce", 4)
    recorder.send_and_receive(h("00 A4 04 00 08 F0 4D 49 45 44 45 4D 4F"))
    vector = recorder.vector("d", "emulator", "iso7816")
    assert vector.random == {"nonce": nonce.hex()}
    again = parse_vector(json_bytes(vector)).random_source()
    assert again.draw("nonce", 4) == nonce


def test_a_recording_connection_without_a_source_records_no_values() -> None:
    recorder = RecordingConnection(EmulatedConnection(demo_card()))
    assert recorder.vector("d", "emulator", "iso7816").random == {}


def json_bytes(vector: Vector) -> bytes:
    return json.dumps(vector.to_json()).encode()
