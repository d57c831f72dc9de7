"""Faults on the real PC/SC path: card pulled, emulator killed, pcscd stopped.

Each gives a typed error without hanging, and the next call works once the card or daemon is back.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from mie.cards.demo import DemoSession
from mie.emulation import demo_card
from mie.errors import (
    CardRemovedError,
    NoCardError,
    PcscUnavailableError,
    TransportError,
    TransportTimeoutError,
)
from mie.transport.pcsc import PcscConnection, list_readers, wait_for_card, wait_for_removal
from tests.harness import (
    READER0,
    READER1,
    Pcscd,
    attached,
    emulator_process,
    mie_command,
    settle_after_failure,
)

pytestmark = pytest.mark.pcsc


def test_card_removed_mid_session_raises_and_next_session_works(pcscd: Pcscd) -> None:
    with attached(demo_card()) as host, PcscConnection(READER0) as connection:
        session = DemoSession(connection)
        host.stop()
        wait_for_removal(READER0, timeout=10)
        with pytest.raises(CardRemovedError):
            session.serial()
    settle_after_failure()
    with attached(demo_card(serial="BACK-AGAIN")), PcscConnection(READER0) as connection:
        assert DemoSession(connection).serial() == "BACK-AGAIN"


def test_emulator_process_killed_gives_typed_error_then_recovers(pcscd: Pcscd) -> None:
    with emulator_process("iso7816") as process, PcscConnection(READER0) as connection:
        session = DemoSession(connection)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        started = time.monotonic()
        with pytest.raises((CardRemovedError, NoCardError)):
            session.serial()
        assert time.monotonic() - started < 10
    settle_after_failure()
    with emulator_process("iso7816", "--serial", "RESTARTED"), PcscConnection(READER0) as c:
        assert DemoSession(c).serial() == "RESTARTED"


def test_connecting_to_an_empty_reader_is_no_card(pcscd: Pcscd) -> None:
    with pytest.raises(NoCardError):
        PcscConnection(READER1)


def test_waiting_for_a_card_times_out(pcscd: Pcscd) -> None:
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError, match="not seen within"):
        wait_for_card(READER1, timeout=0.5)
    assert time.monotonic() - started < 5


def test_cli_reports_missing_card_and_unknown_reader_in_one_line(pcscd: Pcscd) -> None:
    no_card = subprocess.run(
        mie_command("info", "--reader", READER1), capture_output=True, text=True, timeout=30
    )
    assert no_card.returncode == 1
    assert no_card.stderr.count("\n") == 1 and "mie: error:" in no_card.stderr
    unknown = subprocess.run(
        mie_command("info", "--reader", "Nonexistent"), capture_output=True, text=True, timeout=30
    )
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("mie: error: ") and "Traceback" not in unknown.stderr


def test_pcscd_stopped_and_restarted(pcscd: Pcscd) -> None:
    if not pcscd.owned:
        pytest.skip("pcscd was started outside the test harness, which must not stop it")
    with attached(demo_card()) as host, PcscConnection(READER0) as connection:
        session = DemoSession(connection)
        pcscd.stop()
        with pytest.raises(PcscUnavailableError):
            list_readers()
        with pytest.raises(TransportError):
            session.serial()
        no_daemon = subprocess.run(
            mie_command("readers"), capture_output=True, text=True, timeout=30
        )
        assert no_daemon.returncode == 2
        assert "pcscd" in no_daemon.stderr and "Traceback" not in no_daemon.stderr
        pcscd.start()
        # The emulator host reconnects to the new vpcd by itself.
        assert host.connected.wait(10)
        wait_for_card(READER0, timeout=10)
        with PcscConnection(READER0) as again:
            assert DemoSession(again).serial() == "MIE0000001"
