"""Fixtures shared by all tests (helpers live in :mod:`tests.harness`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mie.emulation.testpki import TestPki
from mie.trust.store import OperatorStore
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
    """One TEST PKI for the whole run, shared with emulator subprocesses via MIE_TEST_PKI.

    Its roots and CAs are imported (as TEST anchors) into an operator trust store of the run's
    own (MIE_TRUST_DIR), and CRLs are cached in a directory of the run's own (MIE_CRL_DIR), so
    `mie auth` checks chains as an operator who trusts the TEST hierarchy would.
    """
    directory = tmp_path_factory.mktemp("testpki")
    environment = {
        "MIE_TEST_PKI": str(directory),
        "MIE_TRUST_DIR": str(tmp_path_factory.mktemp("trust")),
        "MIE_CRL_DIR": str(tmp_path_factory.mktemp("crl")),
    }
    previous = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    pki = TestPki.load(directory)
    store = OperatorStore(Path(environment["MIE_TRUST_DIR"]))
    for issued in [*pki.roots.values(), *pki.intermediates.values()]:
        store.add(issued.certificate, allow_test=True)
    yield directory
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
