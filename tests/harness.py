"""Test harness: the real PC/SC stack (pcscd + vsmartcard-vpcd + pyscard) for integration tests.

A session fixture starts ``pcscd --foreground`` when none is running and stops what it started.
When ``CI=true``, anything missing (pcscd, the vpcd driver, pyscard, OpenSC) fails the test instead
of skipping it: CI must never pass by testing nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from mie.emulation.base import EmulatedCard
from mie.emulation.vpcd import VpcdHost

IN_CI = os.environ.get("CI") == "true"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
READER0 = "Virtual PCD 00 00"
READER1 = "Virtual PCD 00 01"
PORT0 = 35963
PORT1 = 35964
START_TIMEOUT = 15.0


def missing(reason: str) -> NoReturn:
    """Skip for a missing tool or daemon, or fail under CI where nothing may be missing (in a
    test, a fixture, or at a test module's top level: then the whole module)."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, reason: str) -> ModuleType:
    """Import a module the suite needs: :func:`pytest.importorskip` that fails under CI=true.

    ``importorskip`` skips for a missing module even under CI=true, where the project's rule is
    that anything missing is a failure (CI must never pass by testing nothing). Usable at a test
    module's top level (a missing module skips or fails the whole module) or inside a test.

    :param name: the module (``webauthn``, ``fido2.cbor``).
    :param reason: what needs it and how it is installed, for the skip or failure message.
    :return: the module.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or not (name == e.name or name.startswith(f"{e.name}.")):
            raise  # the module is there and broken: an error, not a skip
        missing(f"{name} is not installed: {reason}")


class Pcscd:
    """The pcscd the tests run against; ``owned`` when the harness started it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            ["pcscd", "--foreground"], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.wait_ready()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def wait_ready(self) -> None:
        from mie.errors import TransportError
        from mie.transport.pcsc import list_readers

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"pcscd exited with {self.process.returncode}: see {self.log_path}"
                )
            with contextlib.suppress(TransportError):
                if READER0 in [r.name for r in list_readers()]:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"pcscd did not show {READER0!r} within {START_TIMEOUT} s")


def pcscd_running() -> bool:
    from mie.errors import PcscUnavailableError
    from mie.transport.pcsc import list_readers

    try:
        list_readers()
    except PcscUnavailableError:
        return False
    return True


@contextlib.contextmanager
def attached(card: EmulatedCard, port: int = PORT0, reader: str = READER0) -> Iterator[VpcdHost]:
    """Present an emulated card on vpcd for the duration of the block."""
    from mie.transport.pcsc import wait_for_card, wait_for_removal

    host = VpcdHost(card, port=port)
    host.start()
    try:
        wait_for_card(reader, timeout=10)
        yield host
    finally:
        host.stop()
        with contextlib.suppress(Exception):
            wait_for_removal(reader, timeout=10)


# pcscd's event thread polls each reader every 400 ms. When a transmit is what first finds the card
# gone, the slot reads EMPTY at once but the event thread only processes the removal on its next
# poll; a card presented on vpcd before then is taken for the old one and never announced.
PCSCD_SETTLE = 1.0


def settle_after_failure() -> None:
    """Let pcscd's event thread process a removal that a failed transmit found first."""
    time.sleep(PCSCD_SETTLE)


def mie_command(*args: str) -> list[str]:
    """The command line running ``mie`` from this interpreter."""
    return [sys.executable, "-m", "mie", *args]


@contextlib.contextmanager
def emulator_process(*args: str, reader: str = READER0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mie emulate ARGS`` in its own process until the block ends."""
    from mie.transport.pcsc import wait_for_card, wait_for_removal

    process = subprocess.Popen(
        mie_command("emulate", *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_card(reader, timeout=15)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stderr:
            process.stderr.close()
        with contextlib.suppress(Exception):
            wait_for_removal(reader, timeout=10)


def opensc_pkcs11_module() -> Path | None:
    """OpenSC's PKCS#11 module, wherever this architecture's multiarch directory puts it."""
    candidates = sorted(Path("/usr/lib").glob("*/opensc-pkcs11.so"))
    candidates += [Path("/usr/lib/opensc-pkcs11.so")]
    return next((c for c in candidates if c.exists()), None)
