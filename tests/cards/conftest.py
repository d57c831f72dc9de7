"""Fixtures for CPx card tests: one TEST PKI per session (CA keys are slow to make)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mie.emulation.registry import CardOptions
from mie.emulation.testpki import TestPki


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("testpki")
    TestPki.load(directory)
    return directory


@pytest.fixture
def options(pki_dir: Path) -> CardOptions:
    return CardOptions(pin="4826", pki_dir=pki_dir)
