"""The fuzz context of a test run: the run's TEST PKI, card credentials in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.context import Context


@pytest.fixture(scope="session")
def fuzz_context(test_pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Context:
    return Context(tmp_path_factory.mktemp("fuzz"), pki_dir=test_pki_dir)
