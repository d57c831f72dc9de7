"""Issue 7 on the real PC/SC path: a card that goes silent, cards reset by another process, an
emulator flooded with chained commands, all through pcscd + vpcd."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from smartcard import scard

from mie.cards.demo import DemoSession
from mie.emulation import demo_card
from mie.emulation.base import EmulatedCard
from mie.emulation.vpcd import VpcdHost
from mie.errors import CardRemovedError, CardResetError, TransportTimeoutError
from mie.transport.pcsc import PcscConnection, _check
from tests.harness import (
    PORT1,
    READER1,
    Pcscd,
    attached,
    emulator_process,
    mie_command,
    settle_after_failure,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("operator_trust")]
# The second vpcd slot: the other integration tests use the first.
READER, PORT = READER1, str(PORT1)
_SLOT = ("--port", PORT, "--crl-port", "0")

# mie auth's default deadlines are 10 s per exchange and per transaction wait; the bound below
# leaves room for a loaded CI machine while still telling a deadline from a hang.
BOUND = 45.0
SELECT_DEMO = bytes.fromhex("00A4040C08F04D494544454D4F")


def _emulator(*args: str) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return emulator_process(*args, reader=READER)


def _attached(card: EmulatedCard) -> contextlib.AbstractContextManager[VpcdHost]:
    return attached(card, port=PORT1, reader=READER)


class _StderrWatch:
    """Collects an emulator process's stderr lines and tells when one contains ``text``."""

    def __init__(self, process: subprocess.Popen[bytes], text: str) -> None:
        self.seen = threading.Event()
        self.lines: list[str] = []
        self._text = text
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if self._text in line:
                self.seen.set()


def test_stalled_card_ends_mie_auth_with_a_typed_timeout_then_the_reader_serves_again(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    """Done-when of issue 7: a card that stops answering (its vpcd connection kept open) ends
    `mie auth` with a typed timeout in bounded time; a `mie info` started meanwhile also ends
    with a typed timeout; once the silent card is gone and another card is presented, a new
    `mie info` process reads it."""
    pin_file = tmp_path / "pin"
    with _emulator("cps3", "--stall-after", "4", *_SLOT) as emulator:
        watch = _StderrWatch(emulator, "Stall fault")
        started = time.monotonic()
        pin_file.write_text("1234\n")
        with pin_file.open() as pin:
            auth = subprocess.Popen(
                mie_command("auth", "--reader", READER, "--pin-stdin", "--json"),
                stdin=pin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        assert watch.seen.wait(30), "".join(watch.lines)
        info_started = time.monotonic()
        info = subprocess.run(
            mie_command("info", "--reader", READER, "--json"),
            capture_output=True,
            text=True,
            timeout=BOUND + 30,
        )
        info_took = time.monotonic() - info_started
        auth_out, auth_err = auth.communicate(timeout=BOUND + 30)
        auth_took = time.monotonic() - started
    assert auth_took < BOUND, auth_took
    assert auth.returncode == 1, auth_err
    result = json.loads(auth_out)
    assert result["valid"] is False
    assert result["error"]["code"] == "reader_error"
    assert "within 10 s" in result["error"]["message"]
    assert "Traceback" not in auth_err
    # The other process waited for the stalled session's transaction, bounded too.
    assert info_took < BOUND, info_took
    assert info.returncode == 1, info.stderr
    assert info.stderr.startswith("mie: error: ") and info.stderr.count("\n") == 1, info.stderr
    assert "within 10 s" in info.stderr
    # The silent card is gone (its emulator stopped, as a card pulled out); another is
    # presented in the same reader and a new process reads it.
    settle_after_failure()
    with _emulator("cps3", "--serial", "2812345670", *_SLOT):
        again = subprocess.run(
            mie_command("info", "--reader", READER, "--json"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["serial"] == "2812345670"


def test_exchange_deadline_abandons_the_connection_and_a_new_one_works(pcscd: Pcscd) -> None:
    with _attached(demo_card()) as host:
        host.stall_after = 1
        connection = PcscConnection(READER, timeout=1.0)
        try:
            assert connection.send_and_receive(SELECT_DEMO)[1] == 0x9000
            started = time.monotonic()
            with pytest.raises(TransportTimeoutError, match="within 1 s"):
                connection.send_and_receive(SELECT_DEMO)
            assert time.monotonic() - started < 10
            # Unusable from then on, without waiting again.
            with pytest.raises(TransportTimeoutError, match="abandoned"):
                connection.send_and_receive(SELECT_DEMO)
        finally:
            connection.close()
    settle_after_failure()
    with _attached(demo_card(serial="AFTER-STALL")), PcscConnection(READER) as fresh:
        assert DemoSession(fresh).serial() == "AFTER-STALL"


def test_transaction_and_connect_waits_have_deadlines(pcscd: Pcscd) -> None:
    with _attached(demo_card()), PcscConnection(READER) as holder:
        waiter = PcscConnection(READER, transaction_timeout=1.0)
        with holder.transaction():
            started = time.monotonic()
            with pytest.raises(TransportTimeoutError, match="Beginning transaction"):
                with waiter.transaction():
                    pass
            waiter.close()
            # pcscd holds a new connection back while a transaction is open.
            with pytest.raises(TransportTimeoutError, match="Connecting"):
                PcscConnection(READER, transaction_timeout=1.0)
            assert time.monotonic() - started < 15
            # The holder is unaffected.
            assert DemoSession(holder).serial() == "MIE0000001"
        with PcscConnection(READER) as later:
            assert DemoSession(later).serial() == "MIE0000001"


def test_a_reset_by_another_process_before_our_transaction_is_recovered(pcscd: Pcscd) -> None:
    """Issue 7 items 9 and 19: a connection opened before another client's session ended with
    a reset worked on, instead of failing with "Card was reset" reported as card_removed."""
    with _attached(demo_card(serial="SHARED")):
        with PcscConnection(READER) as first, PcscConnection(READER) as second:
            with second.transaction(reset=True):
                assert DemoSession(second).serial() == "SHARED"
            with first.transaction():
                assert DemoSession(first).serial() == "SHARED"
            # The resetting side goes on too (its own handle saw the reset as well).
            with second.transaction():
                assert DemoSession(second).serial() == "SHARED"
            # Outside a transaction, a reset before a connection's first exchange is recovered
            # too; after an exchange, nothing can tell what the reset undid: a typed reset.
            with PcscConnection(READER) as fresh:
                with second.transaction(reset=True):
                    DemoSession(second).serial()
                assert DemoSession(fresh).serial() == "SHARED"
            with pytest.raises(CardResetError):
                DemoSession(first).serial()


def test_our_own_closing_reset_does_not_hide_a_later_reset_by_another_process(
    pcscd: Pcscd,
) -> None:
    """Issue 8 clears a connection's "exchanged since the last reset" mark after its own
    closing reset (so its next exchange reconnects instead of failing). That mark is set again
    by the next exchange: a reset by another process after it is still a typed reset."""
    with _attached(demo_card(serial="SHARED")):
        with PcscConnection(READER) as ours, PcscConnection(READER) as other:
            with ours.transaction(reset=True):
                assert DemoSession(ours).serial() == "SHARED"
            # Reset again by the other process before our next exchange: nothing of ours
            # was left to lose, so the exchange reconnects and goes on.
            with other.transaction(reset=True):
                DemoSession(other).serial()
            assert DemoSession(ours).serial() == "SHARED"
            # Now ours has selected and read: a reset by the other process undoes that.
            with other.transaction(reset=True):
                DemoSession(other).serial()
            with pytest.raises(CardResetError):
                DemoSession(ours).serial()


def test_a_reset_is_never_called_a_removal() -> None:
    with pytest.raises(CardResetError) as raised:
        _check(scard.SCARD_W_RESET_CARD, "Transmitting APDU")
    assert not isinstance(raised.value, CardRemovedError)
    with pytest.raises(CardRemovedError):
        _check(scard.SCARD_W_REMOVED_CARD, "Transmitting APDU")


def _loop(mode: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.concurrent_client", mode, str(count), READER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("modes", [("auth", "info"), ("auth", "auth")])
def test_two_processes_looping_on_one_card_never_fail(pcscd: Pcscd, modes: tuple[str, str]) -> None:
    """Issue 7 items 9 and 19: started together, each ending sessions with a reset (auth) or
    not (info), two processes see no spurious removal, reset or protocol error."""
    count = 30
    with _emulator("cps3", *_SLOT):
        loops = [_loop(mode, count) for mode in modes]
        outputs = [loop.communicate(timeout=300) for loop in loops]
    for loop, (out, err) in zip(loops, outputs, strict=True):
        assert loop.returncode == 0, err
        summary = json.loads(out)
        assert summary == {"done": count, "failures": []}, summary["failures"]


def test_a_flood_of_chained_commands_does_not_take_the_emulator_down(pcscd: Pcscd) -> None:
    """Issue 7 item 8 through pcscd: 258 chained 255-byte commands used to end the host."""
    with _attached(demo_card(serial="STILL-HERE")), PcscConnection(READER) as connection:
        block = bytes.fromhex("10D60000FF") + b"\xaa" * 255
        answers = [connection.send_and_receive(block)[1] for _ in range(258)]
        assert 0x6700 in answers
        assert connection.send_and_receive(bytes.fromhex("00D6000001AA"))[1] != 0x9000
        assert DemoSession(connection).serial() == "STILL-HERE"


def test_mie_info_and_mie_auth_processes_side_by_side_never_fail(pcscd: Pcscd) -> None:
    """The issue's own form of items 9 and 19: `mie info` and `mie auth` runs in two loops."""
    count = 8
    failures: list[str] = []

    def loop(*args: str, pin: str | None = None) -> None:
        for i in range(count):
            out = subprocess.run(
                mie_command(*args, "--reader", READER, "--json"),
                input=pin,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0:
                failures.append(f"{args[0]} #{i}: exit {out.returncode}: {out.stderr.strip()}")

    with _emulator("cps3", "--port", PORT):
        threads = [
            threading.Thread(target=loop, args=("info",)),
            threading.Thread(target=loop, args=("auth", "--pin-stdin"), kwargs={"pin": "1234\n"}),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert failures == []
