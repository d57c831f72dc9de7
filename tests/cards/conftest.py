"""Fixtures for CPx card tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mie.emulation.registry import CardOptions


@pytest.fixture
def options(test_pki_dir: Path) -> CardOptions:
    return CardOptions(pin="4826", pki_dir=test_pki_dir)
