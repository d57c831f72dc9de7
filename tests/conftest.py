"""Fixtures shared by all tests (helpers live in :mod:`tests.harness`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

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
