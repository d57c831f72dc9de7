"""Paths given as ``str`` work wherever mie takes a directory; fingerprints are lower-case hex."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mie.emulation.testpki import Gamme
from mie.emulation.testpki import TestPki as Pki
from mie.trust import CrlCache, TrustStore
from mie.trust.store import OperatorStore, fingerprint

URL = "http://127.0.0.1:9/ca.crl"


def test_crl_cache_takes_a_str_directory(tmp_path: Path) -> None:
    cache = CrlCache(str(tmp_path / "crl"))
    assert cache.path_for(URL).parent == tmp_path / "crl"
    assert cache.load(URL) is None
    assert cache.clean_temporary() == 0


def test_operator_store_and_default_store_take_a_str_directory(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIE_TRUST_DIR", raising=False)
    root = pki.roots[Gamme.FORT].certificate
    store = OperatorStore(str(tmp_path))
    assert store.add(root, allow_test=True) == "anchor"
    assert [a.certificate for a in store.anchors()] == [root]
    assert root in TrustStore.default(str(tmp_path))


def test_fingerprints_are_lower_case_hex_with_colons(pki: Pki) -> None:
    value = fingerprint(pki.roots[Gamme.FORT].certificate)
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){31}", value), value


def test_remove_accepts_an_upper_case_prefix(tmp_path: Path, pki: Pki) -> None:
    root = pki.roots[Gamme.FORT].certificate
    store = OperatorStore(tmp_path)
    store.add(root, allow_test=True)
    prefix = fingerprint(root)[:23].upper()
    assert store.remove(prefix) == [fingerprint(root).replace(":", "")]
    assert store.anchors() == []
