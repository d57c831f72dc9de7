"""Fixtures shared by all tests (helpers live in :mod:`tests.harness`)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from mie.emulation.testpki import TestPki
from mie.trust.store import OperatorStore
from tests.harness import VPCD_DRIVER, Pcscd, missing, pcscd_running

# No per-example deadline (a loaded 2-core CI machine is slow, not wrong); under CI the examples
# are derandomized so a landing never depends on luck, while local runs keep exploring.
settings.register_profile("mie", deadline=None, derandomize=os.environ.get("CI") == "true")
settings.load_profile("mie")


NO_PYSCARD = "pyscard is not installed (pip install 'mie[pcsc]')"


def _for_want_of_pyscard(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ImportError) and (seen.name or "").split(".")[0] == "smartcard":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _TestModule(pytest.Module):
    """A test module that is skipped with the reason, instead of stopping the collection, when
    it cannot be imported for want of pyscard (under CI=true the harness fails it instead)."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        try:
            return super().collect()
        except self.CollectError as e:
            if not _for_want_of_pyscard(e):
                raise
            missing(
                f"{self.path.name} needs pyscard, which is not installed (pip install 'mie[pcsc]')"
            )


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return _TestModule.from_parent(parent, path=module_path)


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """A running pcscd with vpcd's two readers."""
    try:
        import smartcard  # noqa: F401
    except ImportError:
        missing(NO_PYSCARD)
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


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def test_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One TEST PKI for the whole run, shared with emulator subprocesses via MIE_TEST_PKI, and a
    CRL cache of the run's own (MIE_CRL_DIR), so no test touches the user's cache."""
    directory = tmp_path_factory.mktemp("testpki")
    values = {"MIE_TEST_PKI": str(directory), "MIE_CRL_DIR": str(tmp_path_factory.mktemp("crl"))}
    with _environment(values):
        TestPki.load(directory)
        yield directory


@pytest.fixture(scope="module")
def operator_trust(test_pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An operator trust store (MIE_TRUST_DIR) holding the run's TEST roots and CAs, for the
    tests of one module: `mie auth` then checks chains as an operator who trusts the TEST
    hierarchy would."""
    directory = tmp_path_factory.mktemp("trust")
    pki = TestPki.load(test_pki_dir)
    store = OperatorStore(directory)
    for issued in [*pki.roots.values(), *pki.intermediates.values()]:
        store.add(issued.certificate, allow_test=True)
    with _environment({"MIE_TRUST_DIR": str(directory)}):
        yield directory
