"""Fixtures shared by all tests (helpers live in :mod:`tests.harness`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import VPCD_DRIVER, Pcscd, missing, pcscd_running


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """A running pcscd with vpcd's two readers."""
    try:
        import smartcard  # noqa: F401
    except ImportError:
        missing("pyscard is not installed (pip install 'mie[pcsc]')")
    if shutil.which("pcscd") is None:
        missing("pcscd is not installed (Debian package pcscd)")
    if not VPCD_DRIVER.exists():
        missing("the vpcd driver is not installed (Debian package vsmartcard-vpcd)")
    daemon = Pcscd(tmp_path_factory.mktemp("pcscd") / "pcscd.log")
    if not pcscd_running():
        daemon.start()
    else:
        daemon.wait_ready()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session", autouse=True)
def test_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One TEST PKI for the whole run, shared with emulator subprocesses via MIE_TEST_PKI."""
    directory = tmp_path_factory.mktemp("testpki")
    previous = os.environ.get("MIE_TEST_PKI")
    os.environ["MIE_TEST_PKI"] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop("MIE_TEST_PKI", None)
    else:
        os.environ["MIE_TEST_PKI"] = previous
