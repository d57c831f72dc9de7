"""End to end through pcscd + vpcd + pyscard, and OpenSC as an independent client."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

from mie.cards.demo import DemoSession
from mie.emulation import demo_card
from mie.errors import NoReaderError, ReaderBusyError
from mie.transport.pcsc import CardMonitor, PcscConnection, list_readers
from mie.transport.replay import RecordingConnection
from tests.harness import (
    PORT1,
    READER0,
    READER1,
    Pcscd,
    attached,
    emulator_process,
    mie_command,
    missing,
)

pytestmark = pytest.mark.pcsc


def test_readers_json_shows_the_emulated_card_and_the_empty_slot(pcscd: Pcscd) -> None:
    with emulator_process("iso7816"):
        out = subprocess.run(
            mie_command("readers", "--json"), capture_output=True, check=True, timeout=30
        )
    readers = {r["name"]: r for r in json.loads(out.stdout)["readers"]}
    card = demo_card()
    assert readers[READER0] == {"name": READER0, "card_present": True, "atr": card.atr.hex()}
    assert readers[READER1] == {"name": READER1, "card_present": False, "atr": None}


def test_emulator_on_second_slot_appears_in_reader_01(pcscd: Pcscd) -> None:
    with emulator_process("iso7816", "--port", str(PORT1), reader=READER1):
        status = {r.name: r for r in list_readers()}
    assert status[READER1].card_present
    assert not status[READER0].card_present


def test_opensc_tool_reads_the_emulated_atr(pcscd: Pcscd) -> None:
    if shutil.which("opensc-tool") is None:
        missing("opensc-tool is not installed (Debian package opensc)")
    card = demo_card()
    with attached(card):
        out = subprocess.run(
            ["opensc-tool", "--reader", "0", "--atr"], capture_output=True, text=True, timeout=30
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().replace(":", "").lower() == card.atr.hex()


def test_demo_session_over_pcsc_uses_t0_get_response_and_6cxx(pcscd: Pcscd) -> None:
    with attached(demo_card(serial="SERIAL-PCSC")), PcscConnection(READER0) as connection:
        recorder = RecordingConnection(connection)
        report = DemoSession(recorder).run("1234")
    assert report.serial == "SERIAL-PCSC"
    assert report.public_size == 700
    assert report.holder == "Dr Demo"
    commands = [e.command for e in recorder.exchanges]
    responses = [e.response for e in recorder.exchanges]
    assert any(c.startswith("00c00000") for c in commands)
    assert any(r[-2] == 0x6C for r in responses)
    assert "********" in "".join(commands)
    assert "31323334" not in "".join(commands)


def test_unknown_reader_name_is_a_typed_error(pcscd: Pcscd) -> None:
    with pytest.raises(NoReaderError, match="No reader named"):
        PcscConnection("No Such Reader")


def test_exclusive_connection_keeps_other_processes_out(pcscd: Pcscd) -> None:
    with attached(demo_card()), PcscConnection(READER0, exclusive=True):
        with pytest.raises(ReaderBusyError):
            PcscConnection(READER0)


def test_transaction_holds_off_a_second_client_until_it_ends(pcscd: Pcscd) -> None:
    held = 0.5
    with attached(demo_card()), PcscConnection(READER0) as first:
        second_done = threading.Event()
        waited: list[float] = []

        def second_client() -> None:
            start = time.monotonic()
            with PcscConnection(READER0, reset_on_close=False) as second, second.transaction():
                waited.append(time.monotonic() - start)
                DemoSession(second).serial()
            second_done.set()

        with first.transaction():
            DemoSession(first).serial()
            thread = threading.Thread(target=second_client)
            thread.start()
            time.sleep(held)
            assert not second_done.is_set()
        thread.join(10)
    assert second_done.is_set()
    assert waited[0] >= held * 0.8


def test_card_monitor_reports_insertion_and_removal(pcscd: Pcscd) -> None:
    events: list[tuple[str, str]] = []
    changed = threading.Condition()

    def on_insert(reader: str, atr: bytes) -> None:
        with changed:
            events.append(("insert", reader))
            changed.notify_all()

    def on_remove(reader: str) -> None:
        with changed:
            events.append(("remove", reader))
            changed.notify_all()

    with CardMonitor(on_insert, on_remove, poll=0.2) as monitor:
        with attached(demo_card()), changed:
            changed.wait_for(lambda: ("insert", READER0) in events, timeout=10)
        with changed:
            changed.wait_for(lambda: ("remove", READER0) in events, timeout=10)
    assert monitor.error is None
    assert events.index(("insert", READER0)) < events.index(("remove", READER0))
